package admin_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// hotSource is a fakeSource that lists hot keys.
type hotSource struct {
	fakeSource
	keys map[string][]proxy.HotKeyStats
}

func (h *hotSource) HotKeys() map[string][]proxy.HotKeyStats { return h.keys }

// TestHotKeysEndpoint: GET /hotkeys has the shape, keys cut to 64
// bytes with other than printable ASCII escaped; the near-cache metrics
// are exported for a pool with hot keys on, by cause, and not for others.
func TestHotKeysEndpoint(t *testing.T) {
	long := ""
	for len(long) < 70 {
		long += "k"
	}
	src := &hotSource{keys: map[string][]proxy.HotKeyStats{
		"mc": {
			{Key: "user:1\x00\xff b", Rate: 1234.5, ReadShare: 1, Server: "mc2", Cached: true},
			{Key: long, Rate: 99.94, Server: "mc1"},
		},
	}}
	src.set(true, []proxy.PoolStats{
		{Name: "mc", NearCache: proxy.NearCacheStats{Enabled: true, Hits: 7, Misses: 3, Fills: 2,
			Invalidations: [4]int64{5, 4, 1, 0}, Bytes: 300, Promotions: 2, Demotions: 1}},
		{Name: "off"},
		{Name: "rd", Protocol: "redis", NearCache: proxy.NearCacheStats{Enabled: true, Invalidations: [4]int64{0, 0, 0, 9}},
			Servers: []proxy.ServerStats{{Name: "r1", TrackingUp: true}, {Name: "r2"}}},
	})
	s := startAdmin(t, admin.Options{Source: src})
	code, body := get(t, s, "/hotkeys")
	want := `{"pools":{"mc":[{"key":"user:1\\x00\\xff\\x20b","rate":1234.5,"server":"mc2","cached":true},` +
		`{"key":"` + long[:64] + `","rate":99.9,"server":"mc1","cached":false}]}}` + "\n"
	if code != 200 || body != want {
		t.Errorf("GET /hotkeys: got %d %q; want 200 %q", code, body, want)
	}
	m := scrape(t, s)
	for _, c := range []struct {
		name string
		lv   []string
		want float64
	}{
		{"cacheproxy_near_cache_hits_total", []string{"pool", "mc"}, 7},
		{"cacheproxy_near_cache_misses_total", []string{"pool", "mc"}, 3},
		{"cacheproxy_near_cache_fills_total", []string{"pool", "mc"}, 2},
		{"cacheproxy_near_cache_invalidations_total", []string{"pool", "mc", "cause", "write"}, 5},
		{"cacheproxy_near_cache_invalidations_total", []string{"pool", "mc", "cause", "reply"}, 4},
		{"cacheproxy_near_cache_invalidations_total", []string{"pool", "mc", "cause", "flush"}, 1},
		{"cacheproxy_near_cache_bytes", []string{"pool", "mc"}, 300},
		{"cacheproxy_hotkey_promotions_total", []string{"pool", "mc"}, 2},
		{"cacheproxy_hotkey_demotions_total", []string{"pool", "mc"}, 1},
		{"cacheproxy_near_cache_invalidations_total", []string{"pool", "rd", "cause", "tracking"}, 9},
		{"cacheproxy_near_cache_tracking_up", []string{"pool", "rd", "server", "r1"}, 1},
		{"cacheproxy_near_cache_tracking_up", []string{"pool", "rd", "server", "r2"}, 0},
	} {
		if got := m.must(t, c.name, c.lv...); got != c.want {
			t.Errorf("%s{%s}: got %v; want %v", c.name, labels(c.lv...), got, c.want)
		}
	}
	if _, ok := m.find("cacheproxy_near_cache_hits_total", "pool", "off"); ok {
		t.Errorf("near-cache metrics exported for a pool with hot keys off")
	}
	if _, ok := m.find("cacheproxy_near_cache_tracking_up", "pool", "mc"); ok {
		t.Errorf("tracking_up exported for a memcached pool")
	}
}
