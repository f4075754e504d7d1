package admin_test

import (
	"context"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func TestEndpoints(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src, Pprof: true})
	allEjected := []proxy.PoolStats{
		{Name: "ok", Servers: []proxy.ServerStats{{Name: "a", State: pool.StateEjected}, {Name: "b", State: pool.StateFailing}}},
		{Name: "zeta", Servers: []proxy.ServerStats{{Name: "c", State: pool.StateEjected}}},
		{Name: "gone", Servers: []proxy.ServerStats{{Name: "d", State: pool.StateEjected}, {Name: "e", State: pool.StateEjected}}},
	}
	tests := []struct {
		name     string
		ready    bool
		stats    []proxy.PoolStats
		path     string
		wantCode int
		wantBody string // prefix
	}{
		{"healthz before boot", false, nil, "/healthz", 200, "ok\n"},
		{"readyz before boot", false, nil, "/readyz", 503, "not ready\n"},
		{"readyz booted", true, nil, "/readyz", 200, "ready\n"},
		{"healthz booted", true, nil, "/healthz", 200, "ok\n"},
		{"readyz every server ejected", false, allEjected, "/readyz", 503, "not ready: every server ejected in pool gone, zeta\n"},
		{"healthz every server ejected", false, allEjected, "/healthz", 200, "ok\n"},
		{"pprof index", true, nil, "/debug/pprof/", 200, "<html>"},
		{"pprof cmdline", true, nil, "/debug/pprof/cmdline", 200, ""},
		{"pprof named profile", true, nil, "/debug/pprof/goroutine?debug=1", 200, "goroutine profile:"},
		{"unknown path", true, nil, "/nope", 404, "404 page not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src.set(tt.ready, tt.stats)
			code, body := get(t, s, tt.path)
			if code != tt.wantCode || !strings.HasPrefix(body, tt.wantBody) {
				t.Errorf("GET %s: got %d %q; want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	src.set(false, allEjected)
	m := scrape(t, s)
	for _, c := range []struct {
		name string
		lv   []string
		want float64
	}{
		{"cacheproxy_ready", nil, 0},
		{"cacheproxy_uptime_seconds", nil, 42},
		{"cacheproxy_server_up", []string{"pool", "ok", "server", "b"}, 0},
		{"cacheproxy_server_state", []string{"pool", "ok", "server", "b", "state", "failing"}, 1},
		{"cacheproxy_server_state", []string{"pool", "ok", "server", "b", "state", "up"}, 0},
		{"cacheproxy_server_state", []string{"pool", "ok", "server", "a", "state", "ejected"}, 1},
	} {
		if got := m.must(t, c.name, c.lv...); got != c.want {
			t.Errorf("%s{%s}: got %v; want %v", c.name, labels(c.lv...), got, c.want)
		}
	}
}

// TestHistogramBuckets checks the conversion of the proxy's per-bucket
// counts into Prometheus's cumulative buckets.
func TestHistogramBuckets(t *testing.T) {
	var h proxy.Histogram
	h.Counts[0] = 3                           // <= 50us
	h.Counts[2] = 2                           // <= 250us
	h.Counts[len(proxy.LatencyBuckets)-1] = 1 // <= 1s
	h.Counts[len(proxy.LatencyBuckets)] = 4   // > 1s
	h.Sum = 7 * time.Second
	src := &fakeSource{}
	src.set(true, []proxy.PoolStats{{Name: "p", Latency: h}})
	s := startAdmin(t, admin.Options{Source: src})
	mt, ok := scrape(t, s).find("cacheproxy_request_duration_seconds", "pool", "p")
	if !ok || mt.Histogram == nil {
		t.Fatalf("no histogram")
	}
	hg := mt.Histogram
	if hg.GetSampleCount() != 10 || hg.GetSampleSum() != 7 {
		t.Errorf("count %d sum %v; want 10 and 7", hg.GetSampleCount(), hg.GetSampleSum())
	}
	want := map[float64]uint64{50e-6: 3, 100e-6: 3, 250e-6: 5, 0.5: 5, 1: 6, math.Inf(1): 10}
	// The text format lists the +Inf bucket too.
	if len(hg.Bucket) != len(proxy.LatencyBuckets)+1 {
		t.Fatalf("%d buckets; want %d", len(hg.Bucket), len(proxy.LatencyBuckets)+1)
	}
	seen := 0
	for _, b := range hg.Bucket {
		w, ok := want[b.GetUpperBound()]
		if !ok {
			continue
		}
		seen++
		if b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: got %d; want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d bucket bounds checked", seen, len(want))
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := admin.New(admin.Options{}); err == nil {
		t.Errorf("New without Source: got nil error")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, o := range []admin.Options{
		{Source: &fakeSource{}, Addr: ln.Addr().String()},
		{Source: &fakeSource{}, Addr: "127.0.0.1:0", StatsAddr: ln.Addr().String()},
	} {
		if _, err := admin.New(o); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Errorf("New(%+v) on a port in use: got %v; want an error naming the address", o, err)
		}
	}
}

func TestCloseWithoutRunAndRunTwice(t *testing.T) {
	s, err := admin.New(admin.Options{Source: &fakeSource{}, Addr: "127.0.0.1:0", StatsAddr: "127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	addr, saddr := s.Addr(), s.StatsAddr()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, a := range []string{addr, saddr} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("listen on %s after Close: %v", a, err)
		}
		ln.Close()
	}
	if err := s.Run(context.Background()); err == nil {
		t.Errorf("Run after Close: got nil error")
	}

	s2 := startAdmin(t, admin.Options{Source: &fakeSource{}})
	waitFor(t, 10*time.Second, func() string { // the first Run is serving
		resp, err := http.Get("http://" + s2.Addr() + "/healthz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return ""
	})
	if err := s2.Run(context.Background()); err == nil {
		t.Errorf("second Run: got nil error")
	}
	if s2.StatsAddr() != "" {
		t.Errorf("StatsAddr with stats off: got %q; want \"\"", s2.StatsAddr())
	}
}

// TestRunStops checks that Run returns promptly once its context is done,
// with a stats client connected and idle.
func TestRunStops(t *testing.T) {
	s, err := admin.New(admin.Options{Source: &fakeSource{}, Addr: "127.0.0.1:0", StatsAddr: "127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, 10*time.Second, func() string {
		resp, err := http.Get("http://" + s.Addr() + "/healthz")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		return ""
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", s.StatsAddr(), time.Second); err == nil {
		t.Errorf("stats port still accepting after Run returned")
	}
}
