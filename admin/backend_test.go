package admin_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestBackendCollector polls real memcached and redis-server processes
// (one with a password, one replica, one wrong password, one dead address)
// and finds their figures as gauges and counters.
func TestBackendCollector(t *testing.T) {
	mc := testserver.Memcached(t)
	rd := testserver.Redis(t)
	replica := testserver.Redis(t, "--replicaof", "127.0.0.1", strconv.Itoa(rd.Port))
	authed := testserver.Redis(t, "--requirepass", "s3cret")
	dead := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))

	m := proxytest.Dial(t, mc.Addr)
	for i := range 7 {
		m.RoundTrip(fmt.Sprintf("set k%d 0 0 1\r\nx\r\n", i), "STORED\r\n")
	}
	m.RoundTrip("get k1\r\n", "VALUE k1 0 1\r\n", "x\r\n", "END\r\n")
	m.RoundTrip("get k2 nope\r\n", "VALUE k2 0 1\r\n", "x\r\n", "END\r\n")

	r := proxytest.Dial(t, rd.Addr)
	for i := range 4 {
		r.RoundTrip(fmt.Sprintf("SET k%d v\r\n", i), "+OK\r\n")
	}
	r.RoundTrip("SELECT 1\r\n", "+OK\r\n")
	r.RoundTrip("SET a v\r\nSET b v\r\nGET a\r\nGET missing\r\n", "+OK\r\n", "+OK\r\n", "$1\r\n", "v\r\n", "$-1\r\n")

	mcPool := config.NewPool("mcp", config.ProtocolMemcache)
	mcPool.Servers = []config.Server{
		{Name: "m1", Addr: mc.Addr, Network: "tcp", Weight: 1},
		{Name: "gone", Addr: dead, Network: "tcp", Weight: 1},
	}
	rdPool := config.NewPool("rdp", config.ProtocolRedis)
	rdPool.Servers = []config.Server{{Name: "r1", Addr: rd.Addr, Network: "tcp", Weight: 1, Replicas: []config.Replica{config.NewReplica(replica.Addr)}}}
	authPool := config.NewPool("auth", config.ProtocolRedis)
	authPool.RedisAuth = "s3cret"
	authPool.Servers = []config.Server{{Name: "a1", Addr: authed.Addr, Network: "tcp", Weight: 1}}
	badPool := config.NewPool("badauth", config.ProtocolRedis)
	badPool.RedisAuth = "wrong"
	badPool.Servers = []config.Server{{Name: "b1", Addr: authed.Addr, Network: "tcp", Weight: 1}}
	cfg := &config.Config{Pools: []config.Pool{authPool, badPool, mcPool, rdPool}}

	s := startAdmin(t, admin.Options{Source: &fakeSource{}, Config: cfg, PollInterval: 50 * time.Millisecond})

	type want struct {
		name string
		lv   []string
		cmp  func(float64) bool
		desc string
	}
	eq := func(w float64) (func(float64) bool, string) {
		return func(v float64) bool { return v == w }, fmt.Sprintf("== %v", w)
	}
	gt := func(w float64) (func(float64) bool, string) {
		return func(v float64) bool { return v > w }, fmt.Sprintf("> %v", w)
	}
	var wants []want
	add := func(name string, lv []string, f func(float64) bool, d string) {
		wants = append(wants, want{name, lv, f, d})
	}
	m1 := []string{"pool", "mcp", "server", "m1", "addr", mc.Addr}
	r1 := []string{"pool", "rdp", "server", "r1", "addr", rd.Addr}
	r1r := []string{"pool", "rdp", "server", "r1", "addr", replica.Addr}
	a1 := []string{"pool", "auth", "server", "a1"}
	f, d := eq(1)
	add("cacheproxy_backend_up", m1, f, d)
	add("cacheproxy_backend_up", r1, f, d)
	add("cacheproxy_backend_up", r1r, f, d)
	add("cacheproxy_backend_up", a1, f, d)
	add("cacheproxy_backend_role", append(r1, "role", "master"), f, d)
	add("cacheproxy_backend_role", append(r1r, "role", "slave"), f, d)
	f, d = eq(0)
	add("cacheproxy_backend_up", []string{"pool", "mcp", "server", "gone"}, f, d)
	add("cacheproxy_backend_up", []string{"pool", "badauth", "server", "b1"}, f, d)
	add("cacheproxy_backend_evictions_total", m1, f, d)
	add("cacheproxy_backend_evictions_total", r1, f, d)
	add("cacheproxy_backend_items", a1, f, d)
	add("cacheproxy_backend_memory_limit_bytes", r1, f, d)
	f, d = eq(7)
	add("cacheproxy_backend_items", m1, f, d)
	f, d = eq(2)
	add("cacheproxy_backend_hits_total", m1, f, d)
	f, d = eq(1)
	add("cacheproxy_backend_misses_total", m1, f, d)
	add("cacheproxy_backend_hits_total", r1, f, d)
	add("cacheproxy_backend_misses_total", r1, f, d)
	f, d = eq(6)
	add("cacheproxy_backend_items", r1, f, d)
	add("cacheproxy_backend_items", r1r, f, d) // replicated
	f, d = eq(64 << 20)
	add("cacheproxy_backend_memory_limit_bytes", m1, f, d) // testserver runs memcached -m 64
	f, d = gt(0)
	for _, lv := range [][]string{m1, r1, r1r} {
		add("cacheproxy_backend_memory_used_bytes", lv, f, d)
		add("cacheproxy_backend_connections", lv, f, d)
	}
	add("cacheproxy_backend_replication_offset_bytes", r1, f, d)
	add("cacheproxy_backend_replication_offset_bytes", r1r, f, d)

	waitFor(t, 20*time.Second, func() string {
		m := scrape(t, s)
		for _, w := range wants {
			v, ok := m.value(w.name, w.lv...)
			if !ok {
				return fmt.Sprintf("no sample %s{%s}", w.name, labels(w.lv...))
			}
			if !w.cmp(v) {
				return fmt.Sprintf("%s{%s}: got %v; want %s", w.name, labels(w.lv...), v, w.desc)
			}
		}
		// A failed poll reports only up and the poll's duration.
		if v, ok := m.value("cacheproxy_backend_items", "server", "gone"); ok {
			return fmt.Sprintf("dead server has items %v; want no sample", v)
		}
		return ""
	})
}
