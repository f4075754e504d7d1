package admin_test

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// keysOn returns a key of prefix that goes to each server of pool, in
// server order.
func keysOn(t *testing.T, pool config.Pool, prefix string) []string {
	t.Helper()
	ring, err := pool.Ring()
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, len(pool.Servers))
	for i, found := 0, 0; found < len(keys); i++ {
		k := prefix + ":" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if s := ring.Pick([]byte(k)); keys[s] == "" {
			keys[s] = k
			found++
		}
	}
	return keys
}

// fragmentProxy runs a proxy over pools with a debug logger writing to the
// returned buffer, and an admin endpoint.
func fragmentProxy(t *testing.T, pools ...config.Pool) (*admin.Server, *testserver.SyncBuffer) {
	t.Helper()
	var logs testserver.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := proxytest.Start(t, proxy.Options{Logger: log}, pools...)
	s := startAdmin(t, admin.Options{Source: p, Config: &config.Config{Pools: pools}, PollInterval: -1, Version: "v-test"})
	return s, &logs
}

// wantFragmentErrors checks cacheproxy_fragment_errors_total for every
// server of pool.
func wantFragmentErrors(t *testing.T, s *admin.Server, pool string, want map[string]float64) {
	t.Helper()
	m := scrape(t, s)
	for server, w := range want {
		got, ok := m.value("cacheproxy_fragment_errors_total", "pool", pool, "server", server)
		if !ok || got != w {
			t.Errorf("cacheproxy_fragment_errors_total{pool=%q,server=%q}: got %v (present %v); want %v", pool, server, got, ok, w)
		}
	}
}

// wantLog checks that the log has a debug line for a failed fragment with
// these fields, the cause starting with cause.
func wantLog(t *testing.T, logs *testserver.SyncBuffer, fields, cause string) {
	t.Helper()
	want := `level=DEBUG msg="multi-key fragment failed" ` + fields + ` cause="` + cause
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q; log:\n%s", want, logs.String())
	}
}

// TestFragmentErrorsServerStopped: a memcached multi-get spanning two
// servers, one of them stopped, answers the live server's value and misses
// for the stopped one's keys (as twemproxy does), and the failed fragment
// is counted against the stopped server and logged at debug level.
func TestFragmentErrorsServerStopped(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc1, mc2)
	pool.AutoEjectHosts = false
	s, logs := fragmentProxy(t, pool)
	keys := keysOn(t, pool, "frag")
	c := proxytest.Dial(t, pool.Listen)
	for _, k := range keys {
		c.RoundTrip("set "+k+" 0 0 1\r\nv\r\n", "STORED\r\n")
	}
	c.RoundTrip("get "+keys[0]+" "+keys[1]+"\r\n",
		"VALUE "+keys[0]+" 0 1\r\n", "v\r\n", "VALUE "+keys[1]+" 0 1\r\n", "v\r\n", "END\r\n")
	wantFragmentErrors(t, s, "mc", map[string]float64{"mc1": 0, "mc2": 0})

	mc2.Stop()
	c.RoundTrip("gat 0 "+keys[1]+" "+keys[0]+"\r\n", "VALUE "+keys[0]+" 0 1\r\n", "v\r\n", "END\r\n")
	wantFragmentErrors(t, s, "mc", map[string]float64{"mc1": 0, "mc2": 1})
	wantLog(t, logs, "pool=mc server=mc2 command=gat keys=1", "SERVER_ERROR server mc2 ")
}

// TestFragmentErrorsTimeout: a fragment whose server never answers fails
// after the pool's timeout: memcached answers the other server's values
// and misses, Redis MGET the timeout error (the first fragment error, as
// before); both are counted and logged.
func TestFragmentErrorsTimeout(t *testing.T) {
	stall := func() *testserver.Process {
		return &testserver.Process{Addr: proxytest.FakeServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })}
	}
	mcPool := proxytest.MemcachePool(t, "mc", testserver.Memcached(t), stall())
	rdPool := proxytest.RedisPool(t, "rd", testserver.Redis(t), stall())
	for _, p := range []*config.Pool{&mcPool, &rdPool} {
		p.Timeout = 300 * time.Millisecond // what this test is about
		p.AutoEjectHosts = false
	}
	s, logs := fragmentProxy(t, mcPool, rdPool)

	keys := keysOn(t, mcPool, "frag")
	mc := proxytest.Dial(t, mcPool.Listen)
	mc.RoundTrip("set "+keys[0]+" 0 0 1\r\nv\r\n", "STORED\r\n")
	mc.RoundTrip("get "+keys[0]+" "+keys[1]+"\r\n", "VALUE "+keys[0]+" 0 1\r\n", "v\r\n", "END\r\n")

	rkeys := keysOn(t, rdPool, "frag")
	rd := proxytest.Dial(t, rdPool.Listen)
	rd.RoundTrip("*3\r\n$3\r\nSET\r\n$"+strconv.Itoa(len(rkeys[0]))+"\r\n"+rkeys[0]+"\r\n$1\r\nv\r\n", "+OK\r\n")
	rd.RoundTrip("*3\r\n$4\r\nMGET\r\n$"+strconv.Itoa(len(rkeys[0]))+"\r\n"+rkeys[0]+"\r\n$"+strconv.Itoa(len(rkeys[1]))+"\r\n"+rkeys[1]+"\r\n",
		"-ERR server r2 timed out after 300ms\r\n")

	wantFragmentErrors(t, s, "mc", map[string]float64{"mc1": 0, "mc2": 1})
	wantFragmentErrors(t, s, "rd", map[string]float64{"r1": 0, "r2": 1})
	wantLog(t, logs, "pool=mc server=mc2 command=get keys=1", "SERVER_ERROR server mc2 timed out after 300ms")
	wantLog(t, logs, "pool=rd server=r2 command=mget keys=1", "ERR server r2 timed out after 300ms")
}
