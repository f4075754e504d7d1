package proxy_test

import (
	"bufio"
	"errors"
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

// readToEOF reads what c still receives until the proxy closes it, and
// fails if it is not closed within proxytest.Timeout. A reset after the
// last byte counts as closed.
func readToEOF(t *testing.T, c *proxytest.Conn) string {
	t.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	b, err := io.ReadAll(c.R)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within %v (got %q)", proxytest.Timeout, b)
	}
	return string(b)
}

// stillOpen fails if c has been closed or has received anything: a read
// must time out.
func stillOpen(t *testing.T, c *proxytest.Conn, who string) {
	t.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	b, err := c.R.Peek(1)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: got %q, %v; want the connection open and quiet", who, b, err)
	}
}

// waitTimeouts polls the proxy's count of clients of pool (an index)
// closed by timeout kind until it reaches want; more fails at once.
func waitTimeouts(t *testing.T, p *proxy.Proxy, pool int, kind proxy.TimeoutKind, want int64) {
	t.Helper()
	testserver.WaitFor(t, proxytest.Timeout, fmt.Sprintf("%s timeouts = %d", kind, want), func() error {
		got := p.Stats()[pool].ClientTimeouts[kind]
		if got > want {
			t.Fatalf("pool %d: %s timeouts = %d; want %d", pool, kind, got, want)
		}
		if got != want {
			return fmt.Errorf("%s timeouts = %d", kind, got)
		}
		return nil
	})
}

// TestClientIdleTimeout: with client_idle_timeout, a client with nothing
// in flight and no input for that long is closed silently, not before; a
// client that keeps talking, a Redis client blocked in BLPOP and a
// subscribed one are not idle. The other pool (timeout off) keeps its idle
// client: the same sweep looked at it.
func TestClientIdleTimeout(t *testing.T) {
	const idle = time.Second // the shortest allowed: checks run once a second
	mc, rs := testserver.Memcached(t), testserver.Redis(t)
	mp := proxytest.MemcachePool(t, "mc", mc)
	mp.ClientIdleTimeout = idle
	rp := proxytest.RedisPool(t, "r", rs)
	rp.ClientIdleTimeout = idle
	off := proxytest.MemcachePool(t, "off", mc)
	p := proxytest.Start(t, proxy.Options{}, mp, rp, off)

	keep := proxytest.Dial(t, off.Listen)
	keep.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	blocked := proxytest.Dial(t, rp.Listen)
	blocked.Send("BLPOP idle:list 0\r\n")
	sub := proxytest.Dial(t, rp.Listen)
	sub.RoundTrip("SUBSCRIBE idle:chan\r\n", "*3\r\n", "$9\r\n", "subscribe\r\n", "$9\r\n", "idle:chan\r\n", ":1\r\n")
	// Wait until the BLPOP is in flight on the server, so the blocked
	// client is past any input of its own.
	direct := proxytest.Dial(t, rs.Addr)
	testserver.WaitFor(t, proxytest.Timeout, "BLPOP blocked on the server", func() error {
		info, err := testserver.Info(rs.Addr, "", "clients")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "blocked_clients:1") {
			return errors.New("no blocked client yet")
		}
		return nil
	})

	// The idle clients start last: when they are closed, the clients
	// above have been quiet at least as long.
	mIdle := proxytest.Dial(t, mp.Listen)
	rIdle := proxytest.Dial(t, rp.Listen)
	start := time.Now() // before their last activity
	mIdle.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")
	rIdle.RoundTrip("PING\r\n", "+PONG\r\n")
	talker := proxytest.Dial(t, mp.Listen)
	stop := make(chan struct{})
	talked := make(chan error, 1)
	go func() {
		// A request every 200ms: never idle for a second.
		r := bufio.NewReader(talker.C)
		for {
			select {
			case <-stop:
				talked <- nil
				return
			case <-time.After(200 * time.Millisecond):
			}
			_ = talker.C.SetDeadline(time.Now().Add(proxytest.Timeout))
			if _, err := io.WriteString(talker.C, "get k\r\n"); err != nil {
				talked <- err
				return
			}
			for _, want := range []string{"VALUE k 0 1\r\n", "v\r\n", "END\r\n"} {
				if l, err := r.ReadString('\n'); err != nil || l != want {
					talked <- fmt.Errorf("got %q, %v; want %q", l, err, want)
					return
				}
			}
		}
	}()

	for _, c := range []*proxytest.Conn{mIdle, rIdle} {
		if got := readToEOF(t, c); got != "" {
			t.Fatalf("idle client got %q before the close; want nothing (closed silently)", got)
		}
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("idle clients closed after %v; want no sooner than client_idle_timeout %v", d, idle)
	}
	waitTimeouts(t, p, 0, proxy.TimeoutIdle, 1)
	waitTimeouts(t, p, 1, proxy.TimeoutIdle, 1)
	close(stop)
	if err := <-talked; err != nil {
		t.Fatalf("client sending every 200ms: %v", err)
	}
	stillOpen(t, keep, "idle client of the pool without client_idle_timeout")
	keep.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	stillOpen(t, sub, "subscribed client")
	direct.RoundTrip("PUBLISH idle:chan hello\r\n", ":1\r\n")
	sub.Expect("*3\r\n", "$7\r\n", "message\r\n", "$9\r\n", "idle:chan\r\n", "$5\r\n", "hello\r\n")
	stillOpen(t, blocked, "client blocked in BLPOP")
	direct.RoundTrip("RPUSH idle:list x\r\n", ":1\r\n")
	blocked.Expect("*2\r\n", "$9\r\n", "idle:list\r\n", "$1\r\n", "x\r\n")
	if got := p.Stats()[2].ClientTimeouts[proxy.TimeoutIdle]; got != 0 {
		t.Errorf("pool without client_idle_timeout: %d idle timeouts; want 0", got)
	}
	// Once its BLPOP is answered, the blocked client is idle like any.
	if got := readToEOF(t, blocked); got != "" {
		t.Fatalf("formerly blocked client got %q; want a silent close", got)
	}
	waitTimeouts(t, p, 1, proxy.TimeoutIdle, 2)
}

// TestClientRequestTimeout: with client_request_timeout, a client that
// started a request and stalls is told so (memcached's and Redis's error
// forms) and closed, not before the timeout; a big value arriving slowly
// but steadily is not cut; the pool with the timeout off keeps its half
// request.
func TestClientRequestTimeout(t *testing.T) {
	// 2s, not the 1s minimum: the steady sender below must not be taken
	// for a stalled one if a loaded box holds its goroutine for a while.
	const timeout = 2 * time.Second
	mc, rs := testserver.Memcached(t), testserver.Redis(t)
	mp := proxytest.MemcachePool(t, "mc", mc)
	mp.ClientRequestTimeout = timeout
	rp := proxytest.RedisPool(t, "r", rs)
	rp.ClientRequestTimeout = timeout
	off := proxytest.MemcachePool(t, "off", mc)
	off.ClientRequestTimeout = 0
	p := proxytest.Start(t, proxy.Options{}, mp, rp, off)

	held := proxytest.Dial(t, off.Listen)
	held.Send("get hel")

	// Slow but steady: a 768 KiB value sent 64 KiB every 300ms takes
	// 3.6s, well past the timeout, and is not cut: each check (once a
	// second) sees it grew by config.RequestProgress or more.
	steady := proxytest.Dial(t, mp.Listen)
	const chunk, chunks = config.RequestProgress, 12
	steadyDone := make(chan error, 1)
	go func() {
		_ = steady.C.SetWriteDeadline(time.Now().Add(proxytest.Timeout))
		if _, err := fmt.Fprintf(steady.C, "set steady 0 0 %d\r\n", chunk*chunks); err != nil {
			steadyDone <- err
			return
		}
		for i := 0; i < chunks; i++ {
			time.Sleep(300 * time.Millisecond) // the pace of a slow sender, not synchronisation
			if _, err := steady.C.Write([]byte(strings.Repeat("s", chunk))); err != nil {
				steadyDone <- err
				return
			}
		}
		_, err := io.WriteString(steady.C, "\r\n")
		steadyDone <- err
	}()

	start := time.Now()
	cases := []struct {
		name, listen, send, want string
	}{
		{"memcache command line", mp.Listen, "get fo", "SERVER_ERROR request timed out: incomplete after 2s\r\n"},
		{"memcache data block", mp.Listen, "set k 0 0 10\r\nabc", "SERVER_ERROR request timed out: incomplete after 2s\r\n"},
		{"memcache after a reply", mp.Listen, "version\r\nver", "VERSION " + proxy.Version + "\r\nSERVER_ERROR request timed out: incomplete after 2s\r\n"},
		{"redis header", rp.Listen, "*2\r\n$3\r\nGET\r\n$3\r\nfo", "-ERR request timed out: incomplete after 2s\r\n"},
		{"redis inline", rp.Listen, "PIN", "-ERR request timed out: incomplete after 2s\r\n"},
	}
	conns := make([]*proxytest.Conn, len(cases))
	for i, tc := range cases {
		conns[i] = proxytest.Dial(t, tc.listen)
		conns[i].Send(tc.send)
	}
	for i, tc := range cases {
		if got := readToEOF(t, conns[i]); got != tc.want {
			t.Errorf("%s: got %q then close; want %q", tc.name, got, tc.want)
		}
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("stalled clients closed after %v; want no sooner than client_request_timeout %v", d, timeout)
	}
	waitTimeouts(t, p, 0, proxy.TimeoutRequest, 3)
	waitTimeouts(t, p, 1, proxy.TimeoutRequest, 2)

	if err := <-steadyDone; err != nil {
		t.Fatalf("steady sender: %v", err)
	}
	steady.Expect("STORED\r\n")
	steady.RoundTrip("get steady\r\n", fmt.Sprintf("VALUE steady 0 %d\r\n", chunk*chunks))
	if got := steady.ReadN(chunk*chunks + 7); got != strings.Repeat("s", chunk*chunks)+"\r\nEND\r\n" {
		t.Fatalf("steady value read back wrong (%d bytes)", len(got))
	}
	if got := p.Stats()[0].ClientTimeouts[proxy.TimeoutRequest]; got != 3 {
		t.Errorf("memcache pool: %d request timeouts; want 3 (the steady sender is not one)", got)
	}
	stillOpen(t, held, "half request on the pool without client_request_timeout")
	held.RoundTrip("lo\r\n", "END\r\n")
}

// TestMaxClientsRefusalWords: a client over limits.max_clients is told what
// the real server says at its own limit (memcached -c, redis-server
// maxclients), byte for byte, and closed.
func TestMaxClientsRefusalWords(t *testing.T) {
	mc := testserver.Memcached(t, "-c", "40") // memcached keeps some of the 40 for itself
	rs := testserver.Redis(t, "--maxclients", "1")
	for _, tc := range []struct {
		name   string
		server *testserver.Process
		pool   config.Pool
	}{
		{"memcache", mc, proxytest.MemcachePool(t, "mc", mc)},
		{"redis", rs, proxytest.RedisPool(t, "r", rs)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := serverRefusal(t, tc.server.Addr)
			tc.pool.Limits.MaxClients = 1
			p := proxytest.Start(t, proxy.Options{}, tc.pool)
			first := proxytest.Dial(t, tc.pool.Listen)
			if tc.pool.Protocol == config.ProtocolRedis {
				first.RoundTrip("PING\r\n", "+PONG\r\n")
			} else {
				first.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
			}
			second := proxytest.Dial(t, tc.pool.Listen)
			if got := readToEOF(t, second); got != want {
				t.Fatalf("client over max_clients: got %q then close; want %q, as the server says", got, want)
			}
			if got := p.Stats()[0].Rejected[proxy.RejectMaxClients]; got != 1 {
				t.Fatalf("rejected max_clients = %d; want 1", got)
			}
		})
	}
}

// serverRefusal opens connections to a real server until it refuses one,
// and returns what the refused connection received before the close.
// Nothing is sent, so the refusal is not lost to a reset.
func serverRefusal(t *testing.T, addr string) string {
	t.Helper()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		conns = append(conns, c)
	}
	// The last connections are the refused ones: each has its refusal
	// and EOF at once.
	for i := len(conns) - 1; i >= 0; i-- {
		_ = conns[i].SetReadDeadline(time.Now().Add(proxytest.Timeout))
		b, err := io.ReadAll(conns[i])
		if err == nil && len(b) > 0 {
			return string(b)
		}
	}
	t.Fatalf("%s refused none of %d connections", addr, len(conns))
	return ""
}
