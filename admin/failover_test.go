package admin_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// cacheproxy_failovers_total is exported for followed servers only.
func TestFailoversMetric(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src})
	src.set(true, []proxy.PoolStats{{Name: "r", Protocol: "redis", Servers: []proxy.ServerStats{
		{Name: "m1", Addr: "127.0.0.1:7001", Followed: true, Failovers: 3},
		{Name: "plain", Addr: "127.0.0.1:7002"},
	}}})
	m := scrape(t, s)
	if got := m.must(t, "cacheproxy_failovers_total", "pool", "r", "server", "m1"); got != 3 {
		t.Fatalf("failovers of m1: %v, want 3", got)
	}
	if _, ok := m.find("cacheproxy_failovers_total", "pool", "r", "server", "plain"); ok {
		t.Fatal("a server the proxy does not follow has cacheproxy_failovers_total")
	}
}
