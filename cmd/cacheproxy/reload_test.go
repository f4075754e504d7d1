package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// fakeReloader records the configurations it is given and answers err.
type fakeReloader struct {
	mu       sync.Mutex
	err      error
	got      []*config.Config
	inside   int           // Reloads in progress
	overlaps int           // Reloads that started while another was in progress
	hold     chan struct{} // if not nil, Reload waits for it to be closed
}

func (f *fakeReloader) Reload(cfg *config.Config) error {
	f.mu.Lock()
	f.inside++
	if f.inside > 1 {
		f.overlaps++
	}
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inside--
	if f.err != nil {
		return f.err
	}
	f.got = append(f.got, cfg)
	return nil
}

func (f *fakeReloader) configs() []*config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*config.Config(nil), f.got...)
}

// statsSource is an admin.Source with no figures.
type statsSource struct{}

func (statsSource) Stats() []proxy.PoolStats { return nil }
func (statsSource) Ready() bool              { return true }
func (statsSource) Uptime() time.Duration    { return time.Second }

// reloadFixture is a reloadManager on a file, with a running admin server
// and a fake proxy.
type reloadFixture struct {
	t     *testing.T
	path  string
	m     *reloadManager
	fake  *fakeReloader
	adm   *admin.Server
	log   *testserver.SyncBuffer
	start *config.Config
}

// fixedNow is the time the fixtures' clock always says.
var fixedNow = time.Unix(1700000000, 0)

// newReloadFixture writes text to a file, loads it as the command line
// args (plus -c FILE) say, and runs the admin server it names.
func newReloadFixture(t *testing.T, text string, args ...string) *reloadFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	o, code, ok := parseFlags(append([]string{"-c", path}, args...), io.Discard, io.Discard)
	if !ok {
		t.Fatalf("parseFlags: exit %d", code)
	}
	l, err := loadConfig(o)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	f := &reloadFixture{t: t, path: path, fake: &fakeReloader{}, log: &testserver.SyncBuffer{}, start: l.cfg}
	log := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.m = newReloadManager(o, l, log, notFoundResolver{})
	f.m.now = func() time.Time { return fixedNow }
	f.adm, err = admin.New(admin.Options{Addr: l.cfg.Admin.Listen, StatsAddr: l.cfg.Stats.Listen, Config: l.cfg,
		Source: statsSource{}, Logger: log, PollInterval: -1, Reload: f.m.reloadHTTP,
		Token: l.cfg.Admin.Token, Pprof: l.cfg.Admin.Pprof})
	if err != nil {
		t.Fatal(err)
	}
	f.m.attach(f.fake, f.adm, l.cfg, l.hash)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.adm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("admin.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("admin.Run did not return within 30s of its context's end")
		}
	})
	return f
}

// write replaces the file's contents.
func (f *reloadFixture) write(text string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// metric returns the value of the sample of name whose labels include
// label=value ("" for none), from the admin server's registry.
func (f *reloadFixture) metric(name, label, value string) (float64, bool) {
	f.t.Helper()
	fams, err := f.adm.Registry().Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.Metric {
			match := label == ""
			for _, lp := range m.Label {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue(), true
			}
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// wantMetric fails unless the sample is there with value want.
func (f *reloadFixture) wantMetric(name, label, value string, want float64) {
	f.t.Helper()
	got, ok := f.metric(name, label, value)
	if !ok || got != want {
		f.t.Errorf("%s{%s=%q}: got %v (present %v); want %v", name, label, value, got, ok, want)
	}
}

// hashOf is the hash the metrics give a file's text: the first 12 hex
// digits of its SHA-256.
func hashOf(t *testing.T, text string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])[:12]
}

// reloadConf is a native file: admin on adminAddr, one memcache pool on
// listen with the servers named mc1..mcN.
func reloadConf(adminAddr, listen string, servers int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin:\n  listen: %s\npools:\n  mc:\n    listen: %s\n    servers:\n", adminAddr, listen)
	for i := 1; i <= servers; i++ {
		fmt.Fprintf(&b, "      - 127.0.0.1:%d:1 mc%d\n", 21210+i, i)
	}
	return b.String()
}

// TestReloadBadFile: a file that does not load is refused with what -t
// prints (file:line for each problem), logged one problem a record,
// counted as an error, and the proxy is not called.
func TestReloadBadFile(t *testing.T) {
	adminAddr, listen := testserver.FreeAddr(t), testserver.FreeAddr(t)
	good := reloadConf(adminAddr, listen, 3)
	f := newReloadFixture(t, good)
	for i, tc := range []struct {
		name, text string
		want       string // a line the error must have, with FILE for the path
	}{
		{"yaml syntax", good + "    timeout: [\n", "FILE:10: YAML: did not find expected node content"},
		{"validation", strings.Replace(good, "127.0.0.1:21212:1 mc2", "127.0.0.1:21212:0 mc2", 1) + "    hash: fnv2\n",
			`FILE:8: pool "mc": servers[1]: weight 0: must be > 0`},
		{"unreadable", "", "config: open FILE: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unreadable" {
				if err := os.Remove(f.path); err != nil {
					t.Fatal(err)
				}
			} else {
				f.write(tc.text)
			}
			_, err := f.m.reload(triggerSIGHUP, false)
			var re *admin.ReloadError
			if !errors.As(err, &re) || re.Status != http.StatusBadRequest {
				t.Fatalf("reload: got %v; want a 400 ReloadError", err)
			}
			// Exactly what -t prints, less its last line.
			var stdout, stderr bytes.Buffer
			if code := run([]string{"-t", "-c", f.path}, &stdout, &stderr, notFoundResolver{}); code != 1 {
				t.Fatalf("-t: exit %d", code)
			}
			tOut := strings.TrimSuffix(stderr.String(), "cacheproxy: configuration file '"+f.path+"' syntax is invalid\n")
			if got := err.Error() + "\n"; got != tOut {
				t.Errorf("error:\ngot  %q\nwant %q (what -t prints)", got, tOut)
			}
			if want := strings.ReplaceAll(tc.want, "FILE", f.path); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q: want %q in it", err, want)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				rec := `level=ERROR msg="configuration not reloaded: the file has a problem; the running configuration is unchanged" trigger=SIGHUP file=` +
					f.path + ` problem=` + strconv.Quote(line) + "\n"
				if !strings.Contains(f.log.String(), rec) {
					t.Errorf("log: no %q in\n%s", rec, f.log.String())
				}
			}
			f.wantMetric("cacheproxy_config_reloads_total", "result", "error", float64(i+1))
			f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 0)
			f.wantMetric("cacheproxy_config_hash", "hash", hashOf(t, good), 1)
			if n := len(f.fake.configs()); n != 0 {
				t.Errorf("the proxy was given %d configurations; want none", n)
			}
		})
	}
}

// TestReloadApplyError: when the proxy refuses the configuration, nothing
// switches: the new admin listener bound for it is closed again, the old
// one serves, the configuration in use and its hash stay, and the refusal
// is counted and logged with the changes it would have made.
func TestReloadApplyError(t *testing.T) {
	adminAddr, listen, newAdmin := testserver.FreeAddr(t), testserver.FreeAddr(t), testserver.FreeAddr(t)
	good := reloadConf(adminAddr, listen, 3)
	f := newReloadFixture(t, good)
	f.fake.err = errors.New(`pool "mc": server_connections cannot change live`)
	f.write(reloadConf(newAdmin, listen, 4))
	_, err := f.m.reload(triggerHTTP, false)
	var re *admin.ReloadError
	if !errors.As(err, &re) || re.Status != http.StatusConflict || err.Error() != `pool "mc": server_connections cannot change live` {
		t.Fatalf("reload: got %v; want a 409 ReloadError with the proxy's reason", err)
	}
	ln, lerr := net.Listen("tcp", newAdmin)
	if lerr != nil {
		t.Errorf("the new admin address is still bound after the refusal: %v", lerr)
	} else {
		ln.Close()
	}
	if msg := testserver.Healthz(adminAddr); msg != "" {
		t.Errorf("the old admin listener: %s", msg)
	}
	if got := f.adm.Addr(); got != adminAddr {
		t.Errorf("admin Addr: got %s; want %s", got, adminAddr)
	}
	if cs := config.Diff(f.start, f.m.cur); len(cs) != 0 {
		t.Errorf("configuration in use changed: %s", cs)
	}
	f.wantMetric("cacheproxy_config_reloads_total", "result", "error", 1)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 0)
	f.wantMetric("cacheproxy_config_hash", "hash", hashOf(t, good), 1)
	want := `level=ERROR msg="configuration not reloaded: it cannot be applied; the running configuration is unchanged" trigger="POST /reload" file=` + f.path +
		` changes="admin.listen ` + adminAddr + ` -> ` + newAdmin + `; pool \"mc\": server mc4 added (127.0.0.1:21214 weight 1)"` +
		` err="pool \"mc\": server_connections cannot change live"` + "\n"
	if !strings.Contains(f.log.String(), want) {
		t.Errorf("log: no %q in\n%s", want, f.log.String())
	}

	// A listener that cannot bind refuses the reload before the proxy is
	// asked.
	f.fake.err = nil
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	f.write(reloadConf(taken.Addr().String(), listen, 4))
	if _, err := f.m.reload(triggerSIGHUP, false); !errors.As(err, &re) || re.Status != http.StatusConflict || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("reload onto a taken admin address: got %v; want a 409 naming it", err)
	}
	if n := len(f.fake.configs()); n != 0 {
		t.Errorf("the proxy was given %d configurations; want none", n)
	}
	f.wantMetric("cacheproxy_config_reloads_total", "result", "error", 2)
}

// TestReloadOK: a good file reaches the proxy; the admin listener moves;
// the metrics and the log say so; a second reload of the same file is "no
// change" and does not bother the proxy.
func TestReloadOK(t *testing.T) {
	adminAddr, listen, newAdmin := testserver.FreeAddr(t), testserver.FreeAddr(t), testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(adminAddr, listen, 3))
	next := reloadConf(newAdmin, listen, 4)
	f.write(next)
	summary, err := f.m.reload(triggerSIGHUP, false)
	if err != nil {
		t.Fatal(err)
	}
	wantSummary := `admin.listen ` + adminAddr + ` -> ` + newAdmin + `; pool "mc": server mc4 added (127.0.0.1:21214 weight 1)`
	if summary != wantSummary {
		t.Errorf("summary:\ngot  %q\nwant %q", summary, wantSummary)
	}
	got := f.fake.configs()
	if len(got) != 1 || len(got[0].Pool("mc").Servers) != 4 {
		t.Fatalf("the proxy got %d configurations; want 1 with 4 servers", len(got))
	}
	if msg := testserver.Healthz(newAdmin); msg != "" {
		t.Errorf("the new admin listener: %s", msg)
	}
	waitUntil(t, func() string {
		if testserver.Healthz(adminAddr) == "" {
			return "the old admin listener still answers"
		}
		return ""
	})
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 1)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "error", 0)
	f.wantMetric("cacheproxy_config_hash", "hash", hashOf(t, next), 1)
	f.wantMetric("cacheproxy_config_last_reload_success_timestamp_seconds", "", "", float64(fixedNow.Unix()))
	if fams, _ := f.adm.Registry().Gather(); true {
		for _, fam := range fams {
			if fam.GetName() == "cacheproxy_config_hash" && len(fam.Metric) != 1 {
				t.Errorf("cacheproxy_config_hash has %d series; want 1", len(fam.Metric))
			}
		}
	}
	want := `level=INFO msg="configuration reloaded" trigger=SIGHUP file=` + f.path + ` hash=` + hashOf(t, next) +
		` changes=` + strconv.Quote(wantSummary) + "\n"
	if !strings.Contains(f.log.String(), want) {
		t.Errorf("log: no %q in\n%s", want, f.log.String())
	}

	summary, err = f.m.reload(triggerSIGHUP, false)
	if err != nil || summary != "no change" {
		t.Errorf("second reload: got %q, %v; want \"no change\"", summary, err)
	}
	if n := len(f.fake.configs()); n != 1 {
		t.Errorf("the proxy got %d configurations; want still 1", n)
	}
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 2)
}

// TestReloadKeepsFlags: a listener given on the command line overrides
// every reloaded file, as it overrides the first.
func TestReloadKeepsFlags(t *testing.T) {
	flagAdmin, listen := testserver.FreeAddr(t), testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(testserver.FreeAddr(t), listen, 3), "--admin", flagAdmin)
	f.write(reloadConf(testserver.FreeAddr(t), listen, 3))
	summary, err := f.m.reload(triggerSIGHUP, false)
	if err != nil || summary != "no change" {
		t.Errorf("reload: got %q, %v; want \"no change\" (--admin wins over the file)", summary, err)
	}
	if got := f.adm.Addr(); got != flagAdmin {
		t.Errorf("admin Addr: got %s; want %s", got, flagAdmin)
	}
}

// TestReloadHTTP drives POST /reload on the admin listener: 200 with the
// summary, 400 with the file's problems, 405 for GET.
func TestReloadHTTP(t *testing.T) {
	adminAddr, listen := testserver.FreeAddr(t), testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(adminAddr, listen, 3))
	post := func(method string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+"/reload", nil)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	f.write(reloadConf(adminAddr, listen, 4))
	if code, body := post(http.MethodPost); code != 200 || body != `pool "mc": server mc4 added (127.0.0.1:21214 weight 1)`+"\n" {
		t.Errorf("POST good file: got %d %q", code, body)
	}
	f.write(strings.Replace(reloadConf(adminAddr, listen, 3), "mc:\n    listen:", "mc:\n    hash: fnv2\n    listen:", 1))
	wantBad := f.path + `:5: pool "mc": hash: unknown hash "fnv2" (want one of crc16, crc32, crc32a, fnv1_32, fnv1_64, fnv1a_32, fnv1a_64, hsieh, jenkins, md5, murmur, one_at_a_time)` + "\n"
	if code, body := post(http.MethodPost); code != 400 || body != wantBad {
		t.Errorf("POST bad file: got %d %q; want 400 %q", code, body, wantBad)
	}
	if code, body := post(http.MethodGet); code != 405 || body != "method GET not allowed: POST /reload reloads the configuration file\n" {
		t.Errorf("GET: got %d %q", code, body)
	}
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 1)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "error", 1)

	// A POST /reload that moves the admin listener is answered on the old
	// one; then the new one serves and the old one is gone.
	newAdmin, stats := testserver.FreeAddr(t), testserver.FreeAddr(t)
	f.write(reloadConf(newAdmin, listen, 4) + "stats:\n  listen: " + stats + "\n")
	want := `admin.listen ` + adminAddr + ` -> ` + newAdmin + `; stats.listen "" -> ` + stats + "\n"
	if code, body := post(http.MethodPost); code != 200 || body != want {
		t.Errorf("POST moving the admin listener: got %d %q; want 200 %q", code, body, want)
	}
	if msg := testserver.Healthz(newAdmin); msg != "" {
		t.Errorf("the new admin listener: %s", msg)
	}
	waitUntil(t, func() string {
		if testserver.Healthz(adminAddr) == "" {
			return "the old admin listener still answers"
		}
		return ""
	})
	c, err := net.DialTimeout("tcp", stats, 5*time.Second)
	if err != nil {
		t.Fatalf("stats listener turned on by the reload: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || !strings.HasPrefix(string(b), `{"service":"cacheproxy"`) {
		t.Errorf("stats document: got %q, %v", b, err)
	}
}

// TestReloadSerialised: reloads asked for at once run one at a time.
func TestReloadSerialised(t *testing.T) {
	listen := testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(testserver.FreeAddr(t), listen, 3))
	f.fake.hold = make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		text := reloadConf(testserver.FreeAddr(t), listen, 3+i%2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Written between reloads, never while one reads the file.
			f.m.mu.Lock()
			err := os.WriteFile(f.path, []byte(text), 0o644)
			f.m.mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = f.m.reload(triggerHTTP, false)
		}()
	}
	waitUntil(t, func() string {
		f.fake.mu.Lock()
		defer f.fake.mu.Unlock()
		if f.fake.inside == 0 {
			return "no reload reached the proxy"
		}
		return ""
	})
	close(f.fake.hold)
	wg.Wait()
	if f.fake.overlaps != 0 {
		t.Errorf("%d reloads overlapped", f.fake.overlaps)
	}
	ok, _ := f.metric("cacheproxy_config_reloads_total", "result", "ok")
	if n := len(f.fake.configs()); n == 0 || float64(n) > ok {
		t.Errorf("proxy got %d configurations, %v reloads ok", n, ok)
	}
}

// waitUntil polls cond until it returns "" or 15s pass.
func waitUntil(t *testing.T, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestReloadNoLeak reloads 100 times, moving the admin listener and turning
// the stats listener on and off each time: afterwards the goroutines and
// file descriptors are back to their level before (the old listeners and
// their servers are gone).
func TestReloadNoLeak(t *testing.T) {
	listen := testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(testserver.FreeAddr(t), listen, 3))
	if msg := testserver.Healthz(f.adm.Addr()); msg != "" { // the admin server is up
		t.Fatal(msg)
	}
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	for i := range 100 {
		text := reloadConf(testserver.FreeAddr(t), listen, 3+i%2)
		if i%2 == 0 {
			text += "stats:\n  listen: " + testserver.FreeAddr(t) + "\n"
		}
		f.write(text)
		if _, err := f.m.reload(triggerSIGHUP, false); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if msg := testserver.Healthz(f.adm.Addr()); msg != "" {
			t.Fatalf("reload %d: admin: %s", i, msg)
		}
	}
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 100)
	// The last stats listener is off again (i=99 is odd), one admin
	// listener is open as before; retired servers shut down in the
	// background, so poll.
	waitUntil(t, func() string {
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g > baseG || fd > baseFD {
			return fmt.Sprintf("after 100 reloads: %d goroutines (%d before), %d descriptors (%d before)", g, baseG, fd, baseFD)
		}
		return ""
	})
}
