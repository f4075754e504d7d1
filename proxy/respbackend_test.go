package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// readRespCommand reads one multibulk request, as the proxy sends them.
func readRespCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 4 || line[0] != '*' {
		return nil, fmt.Errorf("not a multibulk request: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(h[1:]))
		if err != nil {
			return nil, err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:l])
	}
	return args, nil
}

// hostileRedis is a fake Redis for the failure paths: GET answers with the
// reply its key names; MGET answers a one-element array whatever it was
// asked; anything else +OK (which cannot answer INCR).
func hostileRedis(t *testing.T) *testserver.Process {
	addr := proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			args, err := readRespCommand(r)
			if err != nil {
				return
			}
			var out string
			switch strings.ToUpper(args[0]) {
			case "PING":
				out = "+PONG\r\n"
			case "MGET":
				out = "*1\r\n$1\r\nx\r\n"
			case "SUBSCRIBE": // the confirmation, then an integer no one asked for
				out = "*3\r\n$9\r\nsubscribe\r\n$" + strconv.Itoa(len(args[1])) + "\r\n" + args[1] + "\r\n:1\r\n"
				if args[1] == "bogus" {
					out += ":7\r\n"
				}
			case "GET":
				switch args[1] {
				case "push": // a RESP3 push frame on a RESP2 connection
					out = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n$1\r\nv\r\n"
				case "badtype":
					out = "?what\r\n"
				case "badlen":
					out = "$abc\r\n"
				case "extra": // two replies to one request
					out = "$1\r\na\r\n$1\r\nb\r\n"
				case "resp3null":
					out = "_\r\n"
				case "int": // an integer cannot answer GET
					out = ":1\r\n"
				default:
					out = "$" + strconv.Itoa(len(args[1])) + "\r\n" + args[1] + "\r\n"
				}
			default:
				out = "+OK\r\n"
			}
			if _, err := io.WriteString(c, out); err != nil {
				return
			}
		}
	})
	return &testserver.Process{Addr: addr}
}

// TestRespBackendRepliesThatCannotAnswer: a backend reply that cannot be
// framed, or cannot answer the request at the head of the connection's
// FIFO, closes that connection and fails what was in flight with an error
// naming the server; never a value meant for something else. The next
// request gets a new connection and its own reply.
func TestRespBackendRepliesThatCannotAnswer(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", hostileRedis(t))
	proxytest.Start(t, proxy.Options{}, pool)
	const failed = "-ERR server r1 sent a malformed reply\r\n"
	tests := []struct {
		name, send, want string
	}{
		{"push frame on a RESP2 connection", "GET push\r\n", failed},
		{"RESP3 null on a RESP2 connection", "GET resp3null\r\n", failed},
		{"unknown type byte", "GET badtype\r\n", failed},
		{"bad bulk length", "GET badlen\r\n", failed},
		{"integer for GET", "GET int\r\n", failed},
		{"simple string for INCR", "INCR n\r\n", failed},
		{"a one-key MGET fits its one-element array", "MGET a\r\n", "*1\r\n$1\r\nx\r\n"},
		// The push frame fails GET push; the request behind it on the
		// same connection fails too, rather than take the push's "v".
		{"request behind a push frame", "GET push\r\nGET mine\r\n", failed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := proxytest.Dial(t, pool.Listen)
			c.Send(tc.send)
			if got := c.ReadN(len(tc.want)); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
			if strings.Count(tc.send, "\r\n") == 2 {
				// The second request's reply: its own value or the
				// failure, never "v".
				switch got := c.Line(); got {
				case failed:
				case "$4\r\n":
					c.Expect("mine\r\n")
				default:
					t.Fatalf("second request: got %q; want %q or its own value", got, failed)
				}
			}
			c.RoundTrip("GET after\r\n", "$5\r\n", "after\r\n")
		})
	}
	t.Run("a reply where none is owed", func(t *testing.T) {
		c := proxytest.Dial(t, pool.Listen)
		c.RoundTrip("GET extra\r\n", "$1\r\n", "a\r\n")
		// "b" arrived with nothing owed: the connection was dropped, so
		// no later request can be given it.
		for i := 0; i < 3; i++ {
			c.RoundTrip("GET mine"+strconv.Itoa(i)+"\r\n", "$5\r\n", "mine"+strconv.Itoa(i)+"\r\n")
		}
	})
}

// TestRespBackendSubscribedConnectionStrict: on a subscribed connection a
// server may send messages (arrays) and errors; anything else ends the
// connection, and the client, whose subscriptions would silently vanish,
// is closed with an error naming the server.
func TestRespBackendSubscribedConnectionStrict(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", hostileRedis(t))
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("SUBSCRIBE bogus\r\n")
	c.Expect("*3\r\n", "$9\r\n", "subscribe\r\n", "$5\r\n", "bogus\r\n", ":1\r\n")
	c.Expect("-ERR server r1 sent a malformed reply\r\n")
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	if n, err := c.R.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d more bytes; want the connection closed", n)
	}
}

// TestRespBackendMGETFragmentCount: an MGET fragment's array must hold one
// element per key the fragment asked for; a short one fails the MGET
// instead of padding it with nulls.
func TestRespBackendMGETFragmentCount(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", hostileRedis(t), hostileRedis(t))
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = "key" + strconv.Itoa(i)
	}
	c.Send("MGET " + strings.Join(keys, " ") + "\r\n")
	got := c.Line()
	if !strings.HasPrefix(got, "-ERR server r") || !strings.HasSuffix(got, " sent a malformed reply\r\n") {
		t.Fatalf("MGET of 8 keys over 2 servers answering one element each: got %q; want -ERR server rN sent a malformed reply", got)
	}
	// One key per server: the one-element arrays fit.
	c.RoundTrip("MGET key0\r\n", "*1\r\n", "$1\r\n", "x\r\n")
}

// TestRespHostileClientLeavesOthersExact: while one client sends the
// differential fuzz's mutated streams through the proxy, other clients on
// the same backend connections see exactly their own values: client A's
// INCR clientA:counter counts 1, 2, 3..., client C reads back what it wrote.
func TestRespHostileClientLeavesOthersExact(t *testing.T) {
	rs := []*testserver.Process{testserver.Redis(t), testserver.Redis(t)}
	pool := proxytest.RedisPool(t, "r", rs...)
	// One event loop: every client shares the same backend connections.
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var streams atomic.Int64
	for g := int64(0); g < 3; g++ {
		wg.Add(1)
		go func() { // clients B: mutated streams, a new connection for each
			defer wg.Done()
			for seed := g * 1_000_000; !stop.Load(); seed++ {
				c, err := net.DialTimeout("tcp", pool.Listen, proxytest.Timeout)
				if err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
				_, _ = c.Write(respStream(777_000 + seed))
				if seed%2 == 0 {
					// Take what comes for a moment (nothing waits on
					// this), else leave with replies still owed.
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
					_, _ = io.Copy(io.Discard, c)
				}
				c.Close()
				streams.Add(1)
			}
		}()
	}

	a := proxytest.Dial(t, pool.Listen)
	c := proxytest.Dial(t, pool.Listen)
	const rounds = 400
	for i := 1; i <= rounds; i++ {
		// Pipelined, so replies on a shared backend connection interleave
		// with client B's.
		a.Send("INCR clientA:counter\r\n*2\r\n$4\r\nINCR\r\n$15\r\nclientA:counter\r\n")
		a.Expect(":"+strconv.Itoa(2*i-1)+"\r\n", ":"+strconv.Itoa(2*i)+"\r\n")
		v := "v" + strconv.Itoa(i) + strings.Repeat("x", i%7)
		c.Send("SET clientC:value " + v + "\r\nMGET clientC:value clientA:counter nokey\r\n")
		c.Expect("+OK\r\n", "*3\r\n", "$"+strconv.Itoa(len(v))+"\r\n", v+"\r\n",
			"$"+strconv.Itoa(len(strconv.Itoa(2*i)))+"\r\n", strconv.Itoa(2*i)+"\r\n", "$-1\r\n")
	}
	stop.Store(true)
	wg.Wait()
	if streams.Load() == 0 {
		t.Fatal("clients B sent no streams")
	}
	t.Logf("%d rounds; clients B sent %d mutated streams", rounds, streams.Load())
	// The counters agree with the servers themselves.
	ctx := context.Background()
	g := goRedis(t, pool.Listen)
	if n, err := g.Get(ctx, "clientA:counter").Int(); err != nil || n != 2*rounds {
		t.Fatalf("GET clientA:counter: %d, %v; want %d", n, err, 2*rounds)
	}
}
