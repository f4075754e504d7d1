package admin_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The Redis Cluster metrics are exported for cluster pools only.
func TestClusterMetrics(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src})
	src.set(true, []proxy.PoolStats{
		{Name: "rc", Protocol: "redis", Cluster: proxy.ClusterStats{Enabled: true, Masters: 3, Covered: 16384,
			Refreshes: 7, Errors: 2, Changes: 4, Moved: 11, Ask: 5}},
		{Name: "plain", Protocol: "redis"},
	})
	m := scrape(t, s)
	for _, tc := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"cacheproxy_cluster_redirects_total", []string{"kind", "moved"}, 11},
		{"cacheproxy_cluster_redirects_total", []string{"kind", "ask"}, 5},
		{"cacheproxy_cluster_refreshes_total", nil, 7},
		{"cacheproxy_cluster_refresh_errors_total", nil, 2},
		{"cacheproxy_cluster_changes_total", nil, 4},
		{"cacheproxy_cluster_masters", nil, 3},
		{"cacheproxy_cluster_slots", nil, 16384},
	} {
		if got := m.must(t, tc.name, append([]string{"pool", "rc"}, tc.kv...)...); got != tc.want {
			t.Errorf("%s %v: %v, want %v", tc.name, tc.kv, got, tc.want)
		}
		if _, ok := m.find(tc.name, "pool", "plain"); ok {
			t.Errorf("a pool without cluster has %s", tc.name)
		}
	}
}
