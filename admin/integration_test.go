package admin_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestMetricsKnownTraffic sends known traffic through a 3-server pool and
// finds, in /metrics, the per-server request, hit and miss counts the ring
// placement implies; the backends' own hit and miss counts agree; then a
// killed server shows as ejected and down.
func TestMetricsKnownTraffic(t *testing.T) {
	mcs := []*testserver.Process{testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)}
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	pool.AutoEjectHosts = true
	pool.ServerFailureLimit = 1
	pool.ServerRetryTimeout = time.Second
	cfg := &config.Config{Pools: []config.Pool{pool}}
	p := startProxy(t, cfg)
	s := startAdmin(t, admin.Options{Source: p, Config: cfg, PollInterval: 50 * time.Millisecond, Version: "v-test"})
	ring, err := pool.Ring()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"mc1", "mc2", "mc3"}
	wantReq := make([]int, 3)
	wantHits := make([]int, 3)
	wantMiss := make([]int, 3)
	c := proxytest.Dial(t, pool.Listen)
	const n = 60
	for i := range n {
		k := fmt.Sprintf("adm:%d", i)
		c.RoundTrip(fmt.Sprintf("set %s 0 0 2\r\nv%d\r\n", k, i%10), "STORED\r\n")
		c.RoundTrip("get "+k+"\r\n", fmt.Sprintf("VALUE %s 0 2\r\n", k), fmt.Sprintf("v%d\r\n", i%10), "END\r\n")
		c.RoundTrip("get "+k+":miss\r\n", "END\r\n")
		s := ring.Pick([]byte(k))
		wantReq[s] += 2
		wantHits[s]++
		m := ring.Pick([]byte(k + ":miss"))
		wantReq[m]++
		wantMiss[m]++
	}
	// One multi-get over 12 stored keys and 1 missing one: one fragment per
	// server that holds any of them.
	multi := []string{}
	var want []string
	frags := map[int]bool{}
	for i := range 12 {
		k := fmt.Sprintf("adm:%d", i)
		multi = append(multi, k)
		want = append(want, fmt.Sprintf("VALUE %s 0 2\r\n", k), fmt.Sprintf("v%d\r\n", i%10))
		s := ring.Pick([]byte(k))
		wantHits[s]++
		frags[s] = true
	}
	multi = append(multi, "adm:nope")
	ms := ring.Pick([]byte("adm:nope"))
	wantMiss[ms]++
	frags[ms] = true
	for s := range frags {
		wantReq[s]++
	}
	c.RoundTrip("get "+strings.Join(multi, " ")+"\r\n", append(want, "END\r\n")...)

	m := scrape(t, s)
	for i, name := range names {
		lv := []string{"pool", "mc", "server", name}
		checks := []struct {
			metric string
			want   int
		}{
			{"cacheproxy_server_requests_total", wantReq[i]},
			{"cacheproxy_server_responses_total", wantReq[i]},
			{"cacheproxy_server_hits_total", wantHits[i]},
			{"cacheproxy_server_misses_total", wantMiss[i]},
			{"cacheproxy_server_connections", 1},
			{"cacheproxy_server_in_flight", 0},
			{"cacheproxy_server_up", 1},
			{"cacheproxy_server_ejections_total", 0},
		}
		for _, ch := range checks {
			if got := m.must(t, ch.metric, lv...); got != float64(ch.want) {
				t.Errorf("%s{%s}: got %v; want %d", ch.metric, labels(lv...), got, ch.want)
			}
		}
		h, ok := m.find("cacheproxy_server_request_duration_seconds", lv...)
		if !ok || h.Histogram == nil {
			t.Fatalf("no histogram cacheproxy_server_request_duration_seconds{%s}", labels(lv...))
		}
		if got := h.Histogram.GetSampleCount(); got != uint64(wantReq[i]) {
			t.Errorf("server %s: latency sample count %d; want %d", name, got, wantReq[i])
		}
		if b := h.Histogram.Bucket; len(b) == 0 || b[len(b)-1].GetCumulativeCount() > h.Histogram.GetSampleCount() {
			t.Errorf("server %s: buckets %v not cumulative up to the count %d", name, b, h.Histogram.GetSampleCount())
		}
		if got := m.must(t, "cacheproxy_server_state", append(lv, "state", "up")...); got != 1 {
			t.Errorf("server %s: state up = %v; want 1", name, got)
		}
	}
	pl := []string{"pool", "mc"}
	classes := []struct {
		class string
		want  int
	}{{"read", 2 * n}, {"write", n}, {"multi", 1}, {"fanout", 0}, {"local", 0}, {"invalid", 0}}
	for _, cl := range classes {
		if got := m.must(t, "cacheproxy_requests_total", append(pl, "class", cl.class)...); got != float64(cl.want) {
			t.Errorf("requests_total{class=%q}: got %v; want %d", cl.class, got, cl.want)
		}
		if got := m.must(t, "cacheproxy_errors_total", append(pl, "class", cl.class)...); got != 0 {
			t.Errorf("errors_total{class=%q}: got %v; want 0", cl.class, got)
		}
	}
	if got := m.must(t, "cacheproxy_fragments_total", pl...); got != float64(len(frags)) {
		t.Errorf("fragments_total: got %v; want %d", got, len(frags))
	}
	if h, ok := m.find("cacheproxy_request_duration_seconds", pl...); !ok || h.Histogram.GetSampleCount() != 3*n+1 {
		t.Errorf("pool latency histogram: %v; want %d samples", h, 3*n+1)
	}
	if got := m.must(t, "cacheproxy_client_connections", pl...); got < 1 {
		t.Errorf("client_connections: got %v; want >= 1", got)
	}
	if got := m.must(t, "cacheproxy_build_info", "version", "v-test"); got != 1 {
		t.Errorf("build_info: got %v; want 1", got)
	}
	if got := m.must(t, "cacheproxy_memory_limit_bytes"); got != float64(config.DefaultMaxMemory()) {
		t.Errorf("memory_limit_bytes: got %v; want the default max_memory %d", got, config.DefaultMaxMemory())
	}
	if got := m.must(t, "cacheproxy_rejected_total", append(pl, "reason", "memory")...); got != 0 {
		t.Errorf("rejected_total{reason=memory}: got %v; want 0", got)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Errorf("no go_goroutines: Go collector not registered")
	}
	if _, ok := m["process_open_fds"]; !ok {
		t.Errorf("no process_open_fds: process collector not registered")
	}

	// The backends' own figures agree with what the proxy saw: the
	// collector polls stats directly, which counts no get.
	waitFor(t, 15*time.Second, func() string {
		m := scrape(t, s)
		for i, name := range names {
			lv := []string{"pool", "mc", "server", name}
			hits, ok1 := m.value("cacheproxy_backend_hits_total", lv...)
			miss, ok2 := m.value("cacheproxy_backend_misses_total", lv...)
			if !ok1 || !ok2 || hits != float64(wantHits[i]) || miss != float64(wantMiss[i]) {
				return fmt.Sprintf("server %s: backend hits %v (%v) misses %v (%v); want %d and %d",
					name, hits, ok1, miss, ok2, wantHits[i], wantMiss[i])
			}
		}
		return ""
	})

	// Kill the server holding adm:0 and keep asking for its keys.
	dead := ring.Pick([]byte("adm:0"))
	mcs[dead].Kill()
	lv := []string{"pool", "mc", "server", names[dead]}
	waitFor(t, 20*time.Second, func() string {
		_ = c.C.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c.C, "get adm:0\r\n"); err != nil {
			return fmt.Sprintf("write: %v", err)
		}
		// A SERVER_ERROR while the failure is noticed, END once the key
		// has moved to a live server.
		if l, err := c.R.ReadString('\n'); err != nil {
			return fmt.Sprintf("read: %v", err)
		} else if l != "END\r\n" && !strings.HasPrefix(l, "SERVER_ERROR") {
			t.Fatalf("get adm:0 after kill: got %q; want END or SERVER_ERROR", l)
		}
		m := scrape(t, s)
		ej, _ := m.value("cacheproxy_server_state", append(lv, "state", "ejected")...)
		up, _ := m.value("cacheproxy_server_state", append(lv, "state", "up")...)
		n, _ := m.value("cacheproxy_server_ejections_total", lv...)
		sup, _ := m.value("cacheproxy_server_up", lv...)
		bup, ok := m.value("cacheproxy_backend_up", lv...)
		if ej != 1 || up != 0 || n < 1 || sup != 0 || !ok || bup != 0 {
			return fmt.Sprintf("server %s: state ejected=%v up=%v, ejections %v, server_up %v, backend_up %v (%v); want 1, 0, >= 1, 0, 0",
				names[dead], ej, up, n, sup, bup, ok)
		}
		return ""
	})
	// The other two serve on, so the proxy stays ready.
	if code, body := get(t, s, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with one of three servers ejected: %d %q; want 200", code, body)
	}
}
