package proxy_test

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestDedicatedConnectionCounted: what a client's own connection to a
// server carries (a transaction, a blocking command) counts in the
// server's requests, responses and dials, as on its shared connections.
func TestDedicatedConnectionCounted(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("MULTI\r\n", "+OK\r\n")
	c.RoundTrip("SET a 1\r\n", "+QUEUED\r\n")
	c.RoundTrip("EXEC\r\n", "*1\r\n", "+OK\r\n")
	c.RoundTrip("BLPOP nolist 0.01\r\n", "*-1\r\n")
	c.RoundTrip("GET a\r\n", "$1\r\n", "1\r\n") // on the shared connection
	// MULTI, SET, EXEC and BLPOP on the client's own connection, GET on
	// the shared one: a dial each. The server's latency is the shared
	// connections' only: a blocking command's wait is the client's.
	s := p.Stats()[0].Servers[0]
	if s.Requests != 5 || s.Responses != 5 || s.Dials != 2 || s.Latency.Count() != 1 {
		t.Errorf("server counters: got %d requests, %d responses, %d dials, %d latencies; want 5, 5, 2, 1", s.Requests, s.Responses, s.Dials, s.Latency.Count())
	}
}
