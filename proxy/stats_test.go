package proxy_test

import (
	"fmt"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func TestStatsCountKnownTraffic(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	p := proxytest.Start(t, proxy.Options{}, pool)
	ring, _ := pool.Ring()
	c := proxytest.Dial(t, pool.Listen)
	wantReq := make([]int64, 3)
	wantHits := make([]int64, 3)
	wantMiss := make([]int64, 3)
	for i := 0; i < 90; i++ {
		k := fmt.Sprintf("st:%d", i)
		s := ring.Pick([]byte(k))
		c.Send(fmt.Sprintf("set %s 0 0 1\r\nx\r\nget %s\r\nget %s-missing\r\n", k, k, k))
		c.Expect("STORED\r\n", "VALUE "+k+" 0 1\r\n", "x\r\n", "END\r\n", "END\r\n")
		wantReq[s] += 2
		wantHits[s]++
		ms := ring.Pick([]byte(k + "-missing"))
		wantReq[ms]++
		wantMiss[ms]++
	}
	c.Send("version\r\nbogus\r\n")
	c.Expect("VERSION "+proxy.Version+"\r\n", "ERROR\r\n")
	st := p.Stats()
	if len(st) != 1 || len(st[0].Servers) != 3 {
		t.Fatalf("stats shape: %d pools; want 1 with 3 servers", len(st))
	}
	ps := st[0]
	for s, ss := range ps.Servers {
		if ss.Requests != wantReq[s] || ss.Responses != wantReq[s] {
			t.Errorf("server %d: requests %d responses %d; want %d", s, ss.Requests, ss.Responses, wantReq[s])
		}
		if ss.Hits != wantHits[s] || ss.Misses != wantMiss[s] {
			t.Errorf("server %d: hits %d misses %d; want %d %d", s, ss.Hits, ss.Misses, wantHits[s], wantMiss[s])
		}
		if ss.Latency.Count() != uint64(wantReq[s]) {
			t.Errorf("server %d: latency count %d; want %d", s, ss.Latency.Count(), wantReq[s])
		}
		if ss.Connections != 1 || ss.InFlight != 0 {
			t.Errorf("server %d: connections %d in flight %d; want 1 and 0", s, ss.Connections, ss.InFlight)
		}
	}
	if got := ps.Requests[proxy.ClassRead]; got != 180 {
		t.Errorf("read requests %d; want 180", got)
	}
	if got := ps.Requests[proxy.ClassWrite]; got != 90 {
		t.Errorf("write requests %d; want 90", got)
	}
	if got := ps.Requests[proxy.ClassLocal]; got != 1 {
		t.Errorf("local requests %d; want 1", got)
	}
	if got := ps.Rejected[proxy.RejectProtocol]; got != 1 {
		t.Errorf("rejected (protocol) %d; want 1", got)
	}
	if ps.ClientConnections != 1 || ps.ClientConnectionsTotal != 1 || ps.ClientEOF != 0 {
		t.Errorf("client connections %d total %d eof %d; want 1, 1, 0", ps.ClientConnections, ps.ClientConnectionsTotal, ps.ClientEOF)
	}
	// The memcached "stats" command reports the same figures.
	c.Send("stats\r\n")
	got := map[string]string{}
	for {
		l := c.Line()
		if l == "END\r\n" {
			break
		}
		var name, value string
		if _, err := fmt.Sscanf(l, "STAT %s %s", &name, &value); err != nil {
			t.Fatalf("stats line %q: %v", l, err)
		}
		got[name] = value
	}
	for name, want := range map[string]string{"get_hits": "90", "get_misses": "90", "curr_connections": "1",
		"total_connections": "1", "cmd_total": "272", "servers": "3", "servers_ejected": "0", "version": proxy.Version} {
		if got[name] != want {
			t.Errorf("stats %s: got %q; want %q", name, got[name], want)
		}
	}
}
