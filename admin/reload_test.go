package admin_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// do sends method path to addr and returns the status, the body and the
// Allow header.
func do(t *testing.T, method, addr, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Allow")
}

// TestReloadEndpoint checks POST /reload's answers for each outcome of
// Options.Reload, and that any other method is refused without calling it.
func TestReloadEndpoint(t *testing.T) {
	var mu sync.Mutex
	var next func() (string, error)
	calls := 0
	s := startAdmin(t, admin.Options{Source: &fakeSource{}, Reload: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return next()
	}})
	for _, tc := range []struct {
		name   string
		method string
		result func() (string, error)
		status int
		body   string
		allow  string
	}{
		{"ok", http.MethodPost, func() (string, error) { return `pool "mc": server mc4 added (127.0.0.1:11214 weight 1)`, nil },
			200, `pool "mc": server mc4 added (127.0.0.1:11214 weight 1)` + "\n", ""},
		{"no change", http.MethodPost, func() (string, error) { return "no change", nil }, 200, "no change\n", ""},
		{"bad file", http.MethodPost, func() (string, error) {
			return "", &admin.ReloadError{Status: 400, Err: errors.New("c.yaml:3: pool \"a\": hash: unknown hash \"fnv2\"\nc.yaml:5: pool \"a\": servers[0]: weight 0: must be > 0")}
		}, 400, "c.yaml:3: pool \"a\": hash: unknown hash \"fnv2\"\nc.yaml:5: pool \"a\": servers[0]: weight 0: must be > 0\n", ""},
		{"refused live", http.MethodPost, func() (string, error) {
			return "", &admin.ReloadError{Status: 409, Err: errors.New("pool \"mc\": protocol cannot change live")}
		}, 409, "pool \"mc\": protocol cannot change live\n", ""},
		{"other error", http.MethodPost, func() (string, error) { return "", errors.New("boom") }, 500, "boom\n", ""},
		{"GET", http.MethodGet, nil, 405, "method GET not allowed: POST /reload reloads the configuration file\n", "POST"},
		{"PUT", http.MethodPut, nil, 405, "method PUT not allowed: POST /reload reloads the configuration file\n", "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			next, calls = tc.result, 0
			mu.Unlock()
			status, body, allow := do(t, tc.method, s.Addr(), "/reload")
			if status != tc.status || body != tc.body || allow != tc.allow {
				t.Errorf("%s /reload: got %d %q (Allow %q); want %d %q (Allow %q)", tc.method, status, body, allow, tc.status, tc.body, tc.allow)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := map[bool]int{true: 1, false: 0}[tc.result != nil]; calls != want {
				t.Errorf("Reload called %d times; want %d", calls, want)
			}
		})
	}

	// Without Options.Reload there is no /reload.
	s2 := startAdmin(t, admin.Options{Source: &fakeSource{}})
	if status, _, _ := do(t, http.MethodPost, s2.Addr(), "/reload"); status != 404 {
		t.Errorf("POST /reload without Options.Reload: got %d; want 404", status)
	}
}

// TestReloadMetrics checks the reload figures through the registry: both
// results from the start, the hash series replaced (not added to), and the
// timestamp.
func TestReloadMetrics(t *testing.T) {
	s := startAdmin(t, admin.Options{Source: &fakeSource{}})
	m := scrape(t, s)
	for _, r := range []string{"ok", "error"} {
		if v := m.must(t, "cacheproxy_config_reloads_total", "result", r); v != 0 {
			t.Errorf("reloads_total{result=%q} at start: got %v; want 0", r, v)
		}
	}
	if _, ok := m.value("cacheproxy_config_hash"); ok {
		t.Errorf("config_hash before any ConfigLoaded: want no sample")
	}

	at := time.Unix(1700000000, 500_000_000)
	s.ConfigLoaded("0123456789ab", at)
	s.CountReload(false)
	s.CountReload(false)
	s.CountReload(true)
	s.ConfigLoaded("ba9876543210", at.Add(time.Second))
	m = scrape(t, s)
	for _, c := range []struct {
		name string
		lv   []string
		want float64
	}{
		{"cacheproxy_config_reloads_total", []string{"result", "ok"}, 1},
		{"cacheproxy_config_reloads_total", []string{"result", "error"}, 2},
		{"cacheproxy_config_last_reload_success_timestamp_seconds", nil, 1700000001.5},
		{"cacheproxy_config_hash", []string{"hash", "ba9876543210"}, 1},
	} {
		if got := m.must(t, c.name, c.lv...); got != c.want {
			t.Errorf("%s{%s}: got %v; want %v", c.name, labels(c.lv...), got, c.want)
		}
	}
	if n := len(m["cacheproxy_config_hash"].Metric); n != 1 {
		t.Errorf("cacheproxy_config_hash: %d series; want 1 (the old hash removed)", n)
	}
}

// TestMoveListeners moves the HTTP and stats listeners of a running
// server, keeps an unchanged one, turns one off, and checks that a bind
// failure or an Abort leaves the old ones serving and nothing new open.
func TestMoveListeners(t *testing.T) {
	s := startAdmin(t, admin.Options{Source: &fakeSource{}, StatsAddr: "127.0.0.1:0"})
	waitFor(t, 10*time.Second, func() string { return testserver.Healthz(s.Addr()) })
	oldHTTP, oldStats := s.Addr(), s.StatsAddr()

	// A taken address: an error naming it; the old listeners still serve.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	newHTTP := testserver.FreeAddr(t)
	if _, err := s.MoveListeners(newHTTP, taken.Addr().String()); err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("MoveListeners onto a taken stats address: got %v; want an error naming it", err)
	}
	assertFree(t, newHTTP) // the HTTP listener it bound first was closed
	if msg := testserver.Healthz(oldHTTP); msg != "" {
		t.Fatalf("old admin listener after a failed move: %s", msg)
	}

	// Abort: the new listener is closed, the old one serves on.
	mv, err := s.MoveListeners(newHTTP, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mv.Abort()
	assertFree(t, newHTTP)
	if s.Addr() != oldHTTP || s.StatsAddr() != oldStats {
		t.Fatalf("after Abort: Addr %s StatsAddr %s; want %s %s", s.Addr(), s.StatsAddr(), oldHTTP, oldStats)
	}

	// Commit: HTTP moves, stats goes off.
	mv, err = s.MoveListeners(newHTTP, "")
	if err != nil {
		t.Fatal(err)
	}
	if msg := testserver.Healthz(oldHTTP); msg != "" { // nothing switched before Commit
		t.Fatalf("old admin listener before Commit: %s", msg)
	}
	mv.Commit()
	if s.Addr() != newHTTP || s.StatsAddr() != "" {
		t.Fatalf("after Commit: Addr %q StatsAddr %q; want %q \"\"", s.Addr(), s.StatsAddr(), newHTTP)
	}
	waitFor(t, 10*time.Second, func() string { return testserver.Healthz(newHTTP) })
	waitFor(t, 10*time.Second, func() string {
		if testserver.Healthz(oldHTTP) == "" {
			return "old admin listener still answers"
		}
		return ""
	})
	waitFor(t, 10*time.Second, func() string {
		if c, err := net.DialTimeout("tcp", oldStats, time.Second); err == nil {
			c.Close()
			return "old stats listener still accepts"
		}
		return ""
	})

	// Stats back on; the admin address unchanged keeps its listener.
	newStats := testserver.FreeAddr(t)
	mv, err = s.MoveListeners(newHTTP, newStats)
	if err != nil {
		t.Fatal(err)
	}
	mv.Commit()
	if got := statsDocument(t, newStats); !strings.HasPrefix(got, `{"service":"cacheproxy"`) {
		t.Errorf("stats on the new address: got %q", got)
	}
	if msg := testserver.Healthz(newHTTP); msg != "" {
		t.Errorf("unchanged admin listener: %s", msg)
	}
}

// assertFree fails unless addr can be listened on.
func assertFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s still bound: %v", addr, err)
	}
	ln.Close()
}

// statsDocument reads one stats document from addr.
func statsDocument(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSetConfigPolls checks that the backend figures follow SetConfig: a
// server added is polled, one removed leaves /metrics.
func TestSetConfigPolls(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	pool := func(servers ...config.Server) *config.Config {
		p := config.NewPool("mc", config.ProtocolMemcache)
		p.Servers = servers
		return &config.Config{Pools: []config.Pool{p}}
	}
	s1 := config.Server{Name: "mc1", Addr: mc1.Addr, Network: "tcp", Weight: 1}
	s2 := config.Server{Name: "mc2", Addr: mc2.Addr, Network: "tcp", Weight: 1}
	s := startAdmin(t, admin.Options{Source: &fakeSource{}, Config: pool(s1), PollInterval: 50 * time.Millisecond})
	up := func(server, addr string) func() string {
		return func() string {
			if v, ok := scrape(t, s).value("cacheproxy_backend_up", "pool", "mc", "server", server, "addr", addr); !ok || v != 1 {
				return "no cacheproxy_backend_up 1 for " + server
			}
			return ""
		}
	}
	waitFor(t, 20*time.Second, up("mc1", mc1.Addr))
	s.SetConfig(pool(s2))
	waitFor(t, 20*time.Second, up("mc2", mc2.Addr))
	if _, ok := scrape(t, s).value("cacheproxy_backend_up", "server", "mc1"); ok {
		t.Errorf("mc1, removed by SetConfig, still has cacheproxy_backend_up")
	}
}
