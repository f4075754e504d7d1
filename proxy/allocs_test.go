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

// TestZeroAllocsOneInFlight guards the steady-state hot path at one request
// in flight per connection (issue 17): through a real memcached and
// redis-server with the default options, one connection and then 16 (each
// run writes one request on every connection, then reads every reply, so
// the loop batches the 16 in flight across clients), the whole process
// allocates nothing per round of requests. testing.AllocsPerRun counts
// every allocation of the process (the proxy's loops, its timers, this
// client, which allocates nothing per request) and averages over the runs
// with integer division, so the few allocations of the proxy's own
// periodic work (the timeout sweep every 40 ms, ...) round to 0 while one
// per request or per loop iteration (a flush task handed to gnet costs
// two) does not.
//
// Not 32 connections: gnet replaces its epoll event list (one allocation)
// when a wait returns as many events as the list holds (at least 32) and
// again when a later wait returns fewer than half of that; 32 clients made
// ready at once by this test would make it do so every round. Under the
// benchmark's load (32 clients, each waiting for its reply) a wait seldom
// returns 32 events.
func TestZeroAllocsOneInFlight(t *testing.T) {
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
	for _, tc := range cases {
		for _, conns := range []int{1, 16} {
			t.Run(fmt.Sprintf("%s/%d conns", tc.name, conns), func(t *testing.T) {
				round := roundOfRequests(t, tc.pool.Listen, conns, tc.req, tc.last, tc.lines)
				for range 200 { // warm up: buffers, free lists, pools
					round()
				}
				if got := testing.AllocsPerRun(1000, round); got != 0 {
					t.Errorf("got %v allocations per round of %d requests (one in flight per connection); want 0", got, conns)
				}
			})
		}
	}
}

// roundOfRequests dials conns connections to addr and returns a function
// that writes req once on each, then reads each reply (lines lines, the
// last ending with last), failing t on anything else. It allocates
// nothing.
func roundOfRequests(t *testing.T, addr string, conns int, req, last string, lines int) func() {
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
	reqB, lastB := []byte(req), []byte(last)
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
