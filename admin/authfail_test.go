package admin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestMetricsAuthFailures: wrong AUTH passwords through a real proxy show
// in cacheproxy_auth_failures_total{pool}, and so do a memcache pool's
// wrong auth_file credentials.
func TestMetricsAuthFailures(t *testing.T) {
	r := testserver.Redis(t, "--requirepass", "pw")
	rp := proxytest.RedisPool(t, "r", r)
	rp.RedisAuth = "pw"
	mp := proxytest.MemcachePool(t, "mc", testserver.Memcached(t))
	mp.AuthFile = filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(mp.AuthFile, []byte("app:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Pools: []config.Pool{rp, mp}}
	p := startProxy(t, cfg)
	s := startAdmin(t, admin.Options{Source: p, PollInterval: -1})
	if got := scrape(t, s).must(t, "cacheproxy_auth_failures_total", "pool", "r"); got != 0 {
		t.Fatalf("auth_failures_total before any AUTH: %v; want 0", got)
	}
	c := proxytest.Dial(t, rp.Listen)
	for i := range 3 {
		pass := fmt.Sprintf("bad%d", i)
		c.RoundTrip(fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(pass), pass),
			"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
	}
	c.RoundTrip("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", "+OK\r\n")
	m := scrape(t, s)
	if got := m.must(t, "cacheproxy_auth_failures_total", "pool", "r"); got != 3 {
		t.Errorf("auth_failures_total{pool=r}: got %v; want 3", got)
	}
	if got := m.must(t, "cacheproxy_auth_failures_total", "pool", "mc"); got != 0 {
		t.Errorf("auth_failures_total{pool=mc}: got %v; want 0", got)
	}
	mc := proxytest.Dial(t, mp.Listen)
	mc.RoundTrip("set a 0 0 9\r\napp wrong\r\n", "CLIENT_ERROR authentication failure\r\n")
	mc.RoundTrip("set a 0 0 10\r\napp secret\r\n", "STORED\r\n")
	if got := scrape(t, s).must(t, "cacheproxy_auth_failures_total", "pool", "mc"); got != 1 {
		t.Errorf("auth_failures_total{pool=mc}: got %v; want 1", got)
	}
}
