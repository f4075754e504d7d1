package admin_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// Replicas are servers of their own on /metrics (a role label, a
// "server/replica" name, their own traffic and health; the replicated-pool
// counters) and in the twemproxy stats document (extra servers).
func TestReplicaMetricsAndStats(t *testing.T) {
	primary, replica := testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
	pool.ReadPolicy = config.ReadReplica // write_policy all by default
	p := proxytest.Start(t, proxy.Options{}, pool)
	s := startAdmin(t, admin.Options{Source: p, Config: &config.Config{Pools: []config.Pool{pool}}, PollInterval: -1,
		StatsAddr: "127.0.0.1:0"})
	// The replica already holds d: the replicated add is refused there.
	proxytest.Dial(t, replica.Addr).RoundTrip("set d 0 0 1\r\nR\r\n", "STORED\r\n")
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")
	c.RoundTrip("add d 0 0 1\r\nP\r\n", "STORED\r\n")
	c.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	c.RoundTrip("get nope\r\n", "END\r\n")

	m := scrape(t, s)
	for _, tc := range []struct {
		name string
		lv   []string
		want float64
	}{
		{"cacheproxy_server_requests_total", []string{"pool", "mc", "server", "mc1", "role", "primary"}, 2},
		{"cacheproxy_server_requests_total", []string{"pool", "mc", "server", "mc1/r1", "role", "replica"}, 4},
		{"cacheproxy_server_hits_total", []string{"pool", "mc", "server", "mc1/r1", "role", "replica"}, 1},
		{"cacheproxy_server_misses_total", []string{"pool", "mc", "server", "mc1/r1", "role", "replica"}, 1},
		{"cacheproxy_server_up", []string{"pool", "mc", "server", "mc1/r1", "role", "replica"}, 1},
		{"cacheproxy_server_state", []string{"pool", "mc", "server", "mc1/r1", "role", "replica", "state", "up"}, 1},
		{"cacheproxy_replica_disagreements_total", []string{"pool", "mc", "server", "mc1/r1"}, 1},
		{"cacheproxy_replica_disagreements_total", []string{"pool", "mc", "server", "mc1"}, 0},
		{"cacheproxy_replica_async_errors_total", []string{"pool", "mc", "server", "mc1/r1"}, 0},
		{"cacheproxy_replica_readmitted_misses_total", []string{"pool", "mc", "server", "mc1/r1"}, 0},
	} {
		if got := m.must(t, tc.name, tc.lv...); got != tc.want {
			t.Errorf("%s{%s}: got %v; want %v", tc.name, labels(tc.lv...), got, tc.want)
		}
	}

	doc := readStats(t, s.StatsAddr())
	mc, ok := doc["mc"].(map[string]any)
	if !ok {
		t.Fatalf("stats document has no pool mc: %v", doc)
	}
	for server, requests := range map[string]float64{"mc1": 2, "mc1/r1": 4} {
		ss, ok := mc[server].(map[string]any)
		if !ok || ss["requests"] != requests {
			t.Errorf("stats document mc/%s: %v; want requests %v", server, mc[server], requests)
		}
	}
}
