package admin_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The discovery metrics are exported for discovery pools only.
func TestDiscoveryMetrics(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src})
	src.set(true, []proxy.PoolStats{
		{Name: "ec", Protocol: "memcache", Discovery: proxy.DiscoveryStats{Enabled: true, Version: 12, Nodes: 4, Changes: 3, Errors: 5}},
		{Name: "plain", Protocol: "memcache"},
	})
	m := scrape(t, s)
	for name, want := range map[string]float64{
		"cacheproxy_discovery_errors_total":   5,
		"cacheproxy_discovery_changes_total":  3,
		"cacheproxy_discovery_config_version": 12,
		"cacheproxy_discovery_nodes":          4,
	} {
		if got := m.must(t, name, "pool", "ec"); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
		if _, ok := m.find(name, "pool", "plain"); ok {
			t.Errorf("a pool without discovery has %s", name)
		}
	}
}
