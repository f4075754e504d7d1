package admin_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// testLogger logs warnings and up to stderr, everything with ADMIN_DEBUG set.
func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("ADMIN_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// startAdmin builds an admin server from o (listening on free loopback ports
// unless o says otherwise) and runs it until the test ends.
func startAdmin(t *testing.T, o admin.Options) *admin.Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	s, err := admin.New(o)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("admin.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("admin.Run did not return within 30s")
		}
	})
	return s
}

// get fetches path from the admin server and returns the status and body.
func get(t *testing.T, s *admin.Server, path string) (int, string) {
	t.Helper()
	code, _, body := getAuth(t, s, path, "")
	return code, body
}

// metrics is one scrape of /metrics.
type metrics map[string]*dto.MetricFamily

// scrape fetches and parses /metrics.
func scrape(t *testing.T, s *admin.Server) metrics {
	t.Helper()
	code, body := get(t, s, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d; want 200; body %q", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// labels renders a label set as name="value",... in name order.
func labels(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+"="+strconv.Quote(kv[i+1]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// find returns the sample of family name whose labels include kv.
func (m metrics) find(name string, kv ...string) (*dto.Metric, bool) {
	f := m[name]
	if f == nil {
		return nil, false
	}
next:
	for _, mt := range f.Metric {
		for i := 0; i+1 < len(kv); i += 2 {
			found := false
			for _, lp := range mt.Label {
				if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return mt, true
	}
	return nil, false
}

// value returns the counter, gauge or untyped value of the sample of name
// with labels kv, and whether it exists.
func (m metrics) value(name string, kv ...string) (float64, bool) {
	mt, ok := m.find(name, kv...)
	if !ok {
		return 0, false
	}
	switch {
	case mt.Counter != nil:
		return mt.Counter.GetValue(), true
	case mt.Gauge != nil:
		return mt.Gauge.GetValue(), true
	case mt.Untyped != nil:
		return mt.Untyped.GetValue(), true
	}
	return 0, false
}

// must returns value(name, kv...) or fails the test.
func (m metrics) must(t *testing.T, name string, kv ...string) float64 {
	t.Helper()
	v, ok := m.value(name, kv...)
	if !ok {
		t.Fatalf("no sample %s{%s}", name, labels(kv...))
	}
	return v
}

// waitFor polls cond until it returns "" or the deadline passes, then fails
// with cond's last complaint.
func waitFor(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, msg)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// fakeSource is a Source whose figures the test sets.
type fakeSource struct {
	mu    sync.Mutex
	stats []proxy.PoolStats
	ready bool
}

func (f *fakeSource) Stats() []proxy.PoolStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]proxy.PoolStats, len(f.stats))
	for i, ps := range f.stats {
		out[i] = ps
		out[i].Servers = append([]proxy.ServerStats(nil), ps.Servers...)
	}
	return out
}

func (f *fakeSource) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeSource) Uptime() time.Duration { return 42 * time.Second }

func (f *fakeSource) set(ready bool, stats []proxy.PoolStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready, f.stats = ready, stats
}

// startProxy runs a proxy on cfg's pools until the test ends.
func startProxy(t *testing.T, cfg *config.Config) *proxy.Proxy {
	t.Helper()
	return proxytest.Start(t, proxy.Options{Logger: testLogger()}, cfg.Pools...)
}
