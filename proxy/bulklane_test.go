package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// serverConns is how many connections the proxy has open to the pool's
// first server.
func serverConns(p *proxy.Proxy) int64 {
	return p.Stats()[0].Servers[0].Connections
}

// TestBulkLane: a client whose replies are big moves to the server's bulk
// connection, dialed then (a pool with small replies only keeps one
// connection), and back to the shared one once its replies are small
// again. Its requests stay in order throughout: each round writes a key and
// reads it back, pipelined between big gets.
func TestBulkLane(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	small := proxytest.Dial(t, pool.Listen)
	small.RoundTrip("set k 0 0 1\r\nx\r\n", "STORED\r\n")
	small.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")
	if got := serverConns(p); got != 1 {
		t.Fatalf("connections to the server with small replies only: got %d; want 1", got)
	}
	big := strings.Repeat("b", 256<<10)
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(big), big), "STORED\r\n")
	bigReply := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(big), big)
	round := func(i int, withBig bool) {
		t.Helper()
		v := fmt.Sprintf("v%d", i)
		req := fmt.Sprintf("set r 0 0 %d\r\n%s\r\nget r\r\n", len(v), v)
		want := "STORED\r\n" + fmt.Sprintf("VALUE r 0 %d\r\n%s\r\nEND\r\n", len(v), v)
		if withBig {
			req = "get big\r\n" + req + "get big\r\n"
			want = bigReply + want + bigReply
		}
		c.Send(req)
		expectBytes(t, c, want)
	}
	round(0, true) // on the shared connection: its replies so far were small
	round(1, true) // big replies on average: on the bulk connection
	if got := serverConns(p); got != 2 {
		t.Fatalf("connections to the server after big replies: got %d; want 2", got)
	}
	for i := 2; i < 20; i++ {
		round(i, false) // small replies again: back on the shared one
	}
	small.RoundTrip("get r\r\n", "VALUE r 0 3\r\n", "v19\r\n", "END\r\n")
}

// TestBulkLaneHeadOfLine: a client with big replies does not hold up
// another client's small reply. The server holds its reply to the big
// client's second get until the test ends; the small client's get, sent
// after it, is answered meanwhile, because it travels on another
// connection (on one connection the server answers in order, so it would
// wait behind the held reply).
func TestBulkLaneHeadOfLine(t *testing.T) {
	big := strings.Repeat("b", 128<<10)
	release := make(chan struct{})
	gets := make(chan struct{}, 16)
	addr := proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.TrimSpace(line) {
			case "get big":
				gets <- struct{}{}
				if len(gets) > 1 { // the second and later: held
					<-release
				}
				_, _ = fmt.Fprintf(c, "VALUE big 0 %d\r\n%s\r\nEND\r\n", len(big), big)
			case "version":
				_, _ = io.WriteString(c, "VERSION fake\r\n")
			default:
				_, _ = io.WriteString(c, "END\r\n")
			}
		}
	})
	pool := proxytest.MemcachePool(t, "mc")
	pool.Servers = []config.Server{{Name: "mc1", Addr: addr, Network: "tcp", Weight: 1}}
	pool.Timeout = 0 // no timeout: the held reply stays outstanding
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	// Cleanups run last first: the held reply goes before the proxy waits
	// for it to stop, and before the fake server waits for its handlers.
	t.Cleanup(func() { close(release) })
	bc := proxytest.Dial(t, pool.Listen)
	bc.RoundTrip("get big\r\n", "VALUE big 0 131072\r\n", big+"\r\n", "END\r\n")
	bc.Send("get big\r\n") // held by the server
	deadline := time.Now().Add(proxytest.Timeout)
	for len(gets) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second get big did not reach the server")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	small := proxytest.Dial(t, pool.Listen)
	small.RoundTrip("get k\r\n", "END\r\n")
	if got := serverConns(p); got != 2 {
		t.Errorf("connections to the server: got %d; want 2", got)
	}
}

// TestBulkLaneRedis is TestBulkLane on a Redis pool, for a RESP2 and a
// RESP3 client (whose connections are a set of their own): big replies
// move the client to the bulk connection, and its writes and reads stay
// in order across the move and back.
func TestBulkLaneRedis(t *testing.T) {
	for _, proto := range []string{"RESP2", "RESP3"} {
		t.Run(proto, func(t *testing.T) {
			r := testserver.Redis(t)
			pool := proxytest.RedisPool(t, "r", r)
			p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
			c := proxytest.Dial(t, pool.Listen)
			if proto == "RESP3" {
				c.Send("HELLO 3\r\nPING\r\n")
				for c.Line() != "+PONG\r\n" { // HELLO's map, then PING's reply
				}
			}
			big := strings.Repeat("b", 256<<10)
			c.Send(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n%s\r\n", len(big), big))
			c.Expect("+OK\r\n")
			if got := serverConns(p); got != 1 {
				t.Fatalf("connections to the server with small replies only: got %d; want 1", got)
			}
			bigReply := fmt.Sprintf("$%d\r\n%s\r\n", len(big), big)
			round := func(i int, withBig bool) {
				t.Helper()
				v := fmt.Sprintf("v%d", i)
				req := fmt.Sprintf("SET r %s\r\nGET r\r\n", v)
				want := "+OK\r\n" + fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)
				if withBig {
					req = "GET big\r\n" + req + "GET big\r\n"
					want = bigReply + want + bigReply
				}
				c.Send(req)
				expectBytes(t, c, want)
			}
			round(0, true)
			round(1, true)
			if got := serverConns(p); got != 2 {
				t.Fatalf("connections to the server after big replies: got %d; want 2", got)
			}
			for i := 2; i < 20; i++ {
				round(i, false)
			}
		})
	}
}
