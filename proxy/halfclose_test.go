package proxy_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// halfCloseExchange sends req on a new connection to addr, shuts down the
// writing side at once, and returns everything read until the proxy closes.
func halfCloseExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, proxytest.Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(proxytest.Timeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("shutdown(SHUT_WR): %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read until the proxy closes: %v (read %d bytes: %.200q)", err, len(got), got)
	}
	return string(got)
}

// TestHalfCloseMemcache: a client that shuts down its writing side right
// after its requests gets every reply, then the proxy closes. With a small
// in-flight limit the proxy is still holding unparsed requests when the EOF
// arrives, so the input left in gnet's buffer must be carried over too.
func TestHalfCloseMemcache(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	for _, maxInFlight := range []int{1024, 3} {
		t.Run(fmt.Sprintf("max_in_flight=%d", maxInFlight), func(t *testing.T) {
			pool := proxytest.MemcachePool(t, "mc", mc1, mc2)
			pool.Limits.MaxInFlight = maxInFlight
			p := proxytest.Start(t, proxy.Options{}, pool)
			addr := pool.Listen

			// README's first example, 20 times.
			for i := range 20 {
				v := fmt.Sprintf("hello%02d", i)
				req := fmt.Sprintf("set greeting 0 0 %d\r\n%s\r\nget greeting\r\n", len(v), v)
				want := fmt.Sprintf("STORED\r\nVALUE greeting 0 %d\r\n%s\r\nEND\r\n", len(v), v)
				if got := halfCloseExchange(t, addr, req); got != want {
					t.Fatalf("run %d: got %q; want %q", i, got, want)
				}
			}

			// 100 pipelined requests of mixed kinds, over both servers,
			// 25 times: the EOF races the replies that reopen the
			// client's in-flight window (16 requests before its first
			// reply), and the input left must be parsed either way.
			for run := range 25 {
				halfClosePipelined(t, addr, fmt.Sprintf("hc%d-%d", maxInFlight, run))
			}
			waitClients(t, p, 0)
		})
	}
}

// halfClosePipelined sends 100 pipelined memcache requests of mixed kinds
// with keys named after prefix, shuts down, and checks every reply.
func halfClosePipelined(t *testing.T, addr, prefix string) {
	t.Helper()
	var req, want strings.Builder
	for i := range 100 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		switch i % 3 {
		case 0:
			fmt.Fprintf(&req, "set %s 0 0 %d\r\n%d\r\n", k, len(fmt.Sprint(i)), i)
			want.WriteString("STORED\r\n")
		case 1:
			prev := fmt.Sprintf("%s-%d", prefix, i-1)
			fmt.Fprintf(&req, "get %s %s\r\n", prev, k)
			fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%d\r\nEND\r\n", prev, len(fmt.Sprint(i-1)), i-1)
		case 2:
			fmt.Fprintf(&req, "incr %s 1\r\n", k)
			want.WriteString("NOT_FOUND\r\n")
		}
	}
	if got := halfCloseExchange(t, addr, req.String()); got != want.String() {
		t.Fatalf("100 pipelined requests then shutdown: got %d bytes %.300q...; want %d bytes %.300q...",
			len(got), got, len(want.String()), want.String())
	}
}

// TestHalfCloseRedis: the same for Redis, with replies that depend on order
// (INCR) and a multi-server MGET.
func TestHalfCloseRedis(t *testing.T) {
	r1, r2 := testserver.Redis(t), testserver.Redis(t)
	for _, maxInFlight := range []int{1024, 3} {
		t.Run(fmt.Sprintf("max_in_flight=%d", maxInFlight), func(t *testing.T) {
			pool := proxytest.RedisPool(t, "r", r1, r2)
			pool.Limits.MaxInFlight = maxInFlight
			p := proxytest.Start(t, proxy.Options{}, pool)
			// INCR 100 times, with an MGET of the counter and two keys
			// on other servers every tenth command; 25 times, as the
			// EOF races the replies (TestHalfCloseMemcache).
			for run := range 25 {
				halfCloseIncr(t, pool.Listen, fmt.Sprintf("ctr%d-%d", maxInFlight, run))
			}
			// Inline commands too, as redis-cli and nc users type them.
			if got, want := halfCloseExchange(t, pool.Listen, "PING\r\nECHO hi\r\n"), "+PONG\r\n$2\r\nhi\r\n"; got != want {
				t.Fatalf("inline then shutdown: got %q; want %q", got, want)
			}
			waitClients(t, p, 0)
		})
	}
}

// halfCloseIncr sends 100 pipelined commands on counter ctr, shuts down,
// and checks every reply.
func halfCloseIncr(t *testing.T, addr, ctr string) {
	t.Helper()
	var req, want strings.Builder
	n := 0
	for i := 1; i <= 100; i++ {
		if i%10 == 0 {
			fmt.Fprintf(&req, "*4\r\n$4\r\nMGET\r\n$%d\r\n%s\r\n$1\r\na\r\n$1\r\nb\r\n", len(ctr), ctr)
			fmt.Fprintf(&want, "*3\r\n$%d\r\n%d\r\n$-1\r\n$-1\r\n", len(fmt.Sprint(n)), n)
			continue
		}
		n++
		fmt.Fprintf(&req, "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", len(ctr), ctr)
		fmt.Fprintf(&want, ":%d\r\n", n)
	}
	if got := halfCloseExchange(t, addr, req.String()); got != want.String() {
		t.Fatalf("100 pipelined commands then shutdown: got %d bytes %.300q...; want %d bytes %.300q...",
			len(got), got, want.Len(), want.String())
	}
}

// TestHalfCloseQuitAndIncomplete: input that ends in an incomplete request
// gets the replies to the complete ones, and quit still closes.
func TestHalfCloseQuitAndIncomplete(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	p := proxytest.Start(t, proxy.Options{}, pool)
	cases := []struct{ req, want string }{
		{"set a 0 0 1\r\nx\r\nget a\r\nget b", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{"get a\r\nquit\r\nget a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n"},
		{"set c 0 0 10\r\nabc", ""},
	}
	for _, tc := range cases {
		if got := halfCloseExchange(t, pool.Listen, tc.req); got != tc.want {
			t.Errorf("%q then shutdown: got %q; want %q", tc.req, got, tc.want)
		}
	}
	waitClients(t, p, 0)
}

// waitClients polls the proxy's client count until it is n.
func waitClients(t *testing.T, p *proxy.Proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Timeout)
	for {
		var got int64
		for _, ps := range p.Stats() {
			got += ps.ClientConnections
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client connections: got %d; want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestHalfCloseBigReplies: replies big enough to be streamed and paced (over
// 64 KiB) reach a client that closed its writing side, whole and in order.
func TestHalfCloseBigReplies(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc1, mc2)
	p := proxytest.Start(t, proxy.Options{}, pool)
	var req, want strings.Builder
	keys := []string{"big-a", "big-b", "big-c", "big-d"}
	for i, k := range keys {
		v := strings.Repeat(string(rune('a'+i)), 300<<10+i)
		fmt.Fprintf(&req, "set %s 0 0 %d\r\n%s\r\n", k, len(v), v)
		want.WriteString("STORED\r\n")
	}
	req.WriteString("get " + strings.Join(keys, " ") + "\r\n")
	for i, k := range keys {
		fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\n", k, 300<<10+i, strings.Repeat(string(rune('a'+i)), 300<<10+i))
	}
	want.WriteString("END\r\n")
	for i := len(keys) - 1; i >= 0; i-- {
		fmt.Fprintf(&req, "get %s\r\n", keys[i])
		fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\nEND\r\n", keys[i], 300<<10+i, strings.Repeat(string(rune('a'+i)), 300<<10+i))
	}
	for range 3 {
		if got := halfCloseExchange(t, pool.Listen, req.String()); got != want.String() {
			t.Fatalf("big replies after shutdown: got %d bytes; want %d (first difference at %d)",
				len(got), want.Len(), firstDiff(got, want.String()))
		}
	}
	waitClients(t, p, 0)
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
