package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestAllocsPerRequest guards the steady-state hot path's allocations
// (issue 17) through a real memcached and redis-server with the default
// options. testing.AllocsPerRun counts every allocation of the process
// (the proxy's loops, its timers, this client, which allocates nothing per
// request) and averages over the runs with integer division, so the few
// allocations of the proxy's own periodic work (the timeout sweep every
// 40 ms, ...) round to 0. What is left is the flush task the loop hands
// gnet once per event-loop iteration that queued backend writes
// (EventLoop.Execute: a closure and a queue node, 2 allocations), which
// batches the backend writes of every client served in the iteration:
//
//   - one connection, one request in flight: one iteration per request, so
//     exactly the task's 2 per request, and nothing of the proxy's own;
//   - 16 connections, one request in flight each (every run writes one
//     request on each, then reads every reply): at most the task's 2 per
//     request, however the 16 fall into loop iterations (3 or 4 per run on
//     an idle box; a loaded one may wake the loop for each client);
//   - one connection, 16 in flight: at most the task's 2 per 16 requests,
//     which `go test -benchmem` shows as 0 allocs/op.
//
// Not 32 connections: gnet replaces its epoll event list (one allocation)
// when a wait returns as many events as the list holds (at least 32) and
// again when a later wait returns fewer than half of that; 32 clients made
// ready at once by this test would make it do so every run. Under the
// benchmark's load (32 clients, each waiting for its reply) a wait seldom
// returns 32 events.
func TestAllocsPerRequest(t *testing.T) {
	mcPool := proxytest.MemcachePool(t, "mc", testserver.Memcached(t))
	rdPool := proxytest.RedisPool(t, "r", testserver.Redis(t))
	proxytest.Start(t, proxy.Options{Logger: proxytest.Logger()}, mcPool, rdPool)
	value := string(bytes.Repeat([]byte("v"), 32))
	proxytest.Dial(t, mcPool.Listen).RoundTrip("set k 0 0 32\r\n"+value+"\r\n", "STORED\r\n")
	proxytest.Dial(t, rdPool.Listen).RoundTrip("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$32\r\n"+value+"\r\n", "+OK\r\n")

	cases := []struct {
		name      string
		pool      config.Pool
		req, last string // the request, and how its reply's last line ends
		lines     int    // lines in the reply
	}{
		{"memcache get", mcPool, "get k\r\n", "END\r\n", 3},
		{"memcache set", mcPool, "set s 0 0 8\r\n12345678\r\n", "STORED\r\n", 1},
		{"redis GET", rdPool, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", value + "\r\n", 2},
		{"redis SET", rdPool, "*3\r\n$3\r\nSET\r\n$1\r\ns\r\n$8\r\n12345678\r\n", "+OK\r\n", 1},
	}
	shapes := []struct {
		conns, depth int
		max          float64 // allocations per run, at most
	}{
		{1, 1, 2},   // the flush task's 2, once per request
		{16, 1, 32}, // at most the task's 2 per request
		{1, 16, 2},  // the flush task's 2 per 16 requests
	}
	for _, tc := range cases {
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%s/%d conns x %d in flight", tc.name, sh.conns, sh.depth), func(t *testing.T) {
				round := roundOfRequests(t, tc.pool.Listen, sh.conns, sh.depth, tc.req, tc.last, tc.lines)
				for range 200 { // warm up: buffers, free lists, pools
					round()
				}
				if got := testing.AllocsPerRun(1000, round); got > sh.max {
					t.Errorf("got %v allocations per run of %d requests; want at most %v", got, sh.conns*sh.depth, sh.max)
				}
			})
		}
	}
}

// roundOfRequests dials conns connections to addr and returns a function
// that writes req depth times (in one write) on each, then reads each
// connection's depth replies (lines lines each, the last ending with
// last), failing t on anything else. It allocates nothing.
func roundOfRequests(t *testing.T, addr string, conns, depth int, req, last string, lines int) func() {
	t.Helper()
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	cs := make([]conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs[i] = conn{c, bufio.NewReaderSize(c, 4096)}
	}
	reqB, lastB := bytes.Repeat([]byte(req), depth), []byte(last)
	return func() {
		for _, c := range cs {
			if _, err := c.c.Write(reqB); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range cs {
			// A deadline, so a lost reply fails the test instead of hanging it.
			if err := c.c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			for range depth {
				var line []byte
				for range lines {
					var err error
					if line, err = c.r.ReadSlice('\n'); err != nil {
						t.Fatalf("reading the reply to %q: %v", req, err)
					}
				}
				if !bytes.HasSuffix(line, lastB) {
					t.Fatalf("reply to %q ends with %q; want %q", req, line, last)
				}
			}
		}
	}
}
