package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func TestReviewLostBackendRequestRecycledOnce(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = 5 * time.Second
	pool.AutoEjectHosts = false
	pool.Servers = []config.Server{{Name: "echo", Addr: echoMemcached(t), Network: "tcp", Weight: 1}}
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("get die\r\n")
	if got := c.Line(); !strings.HasPrefix(got, "SERVER_ERROR ") {
		t.Fatalf("get die: got %q; want SERVER_ERROR", got)
	}
	c.Send("get k1\r\nget k2\r\nget k3\r\n")
	for _, k := range []string{"k1", "k2", "k3"} {
		c.Expect("VALUE "+k+" 0 2\r\n", k+"\r\n", "END\r\n")
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
}

// A SUBSCRIBE whose server can't be reached must be answered (an error, or
// the connection closed), not left waiting forever.
func TestReviewSubscribeToUnreachableServerAnswers(t *testing.T) {
	pool := config.NewPool("r", config.ProtocolRedis)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = time.Second
	pool.AutoEjectHosts = false
	pool.Servers = []config.Server{{Name: "gone", Addr: deadAddr(t), Network: "tcp", Weight: 1}}
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
	_ = c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.R.ReadString('\n')
	if err != nil && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("SUBSCRIBE to an unreachable server: got %q, %v; want an -ERR reply or the connection closed", l, err)
	}
	if err == nil && !strings.HasPrefix(l, "-ERR ") {
		t.Fatalf("SUBSCRIBE to an unreachable server: got %q; want -ERR", l)
	}
}

// fakeRedis is a minimal RESP server that tracks MULTI per connection:
// inside MULTI commands answer +QUEUED, outside +OK (and are counted in
// applied); a command whose first argument is "die" closes the connection.
func fakeRedis(t *testing.T, applied *int64, mu *sync.Mutex) string {
	t.Helper()
	return proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		inMulti, queued := false, 0
		for {
			args, err := readCommand(r)
			if err != nil {
				return
			}
			var reply string
			switch cmd := strings.ToUpper(args[0]); {
			case len(args) > 1 && args[1] == "die":
				return
			case cmd == "PING":
				reply = "+PONG\r\n"
			case cmd == "MULTI":
				inMulti, queued, reply = true, 0, "+OK\r\n"
			case cmd == "EXEC" && inMulti:
				reply = fmt.Sprintf("*%d\r\n%s", queued, strings.Repeat("+OK\r\n", queued))
				inMulti = false
			case cmd == "EXEC":
				reply = "-ERR EXEC without MULTI\r\n"
			case inMulti:
				queued++
				reply = "+QUEUED\r\n"
			default:
				mu.Lock()
				*applied++
				mu.Unlock()
				reply = "+OK\r\n"
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	})
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	var n int
	if _, err := fmt.Sscanf(line, "*%d\r\n", &n); err != nil {
		return nil, fmt.Errorf("bad array header %q: %w", line, err)
	}
	args := make([]string, 0, n)
	for i := 0; i < n; i++ {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		var size int
		if _, err := fmt.Sscanf(h, "$%d\r\n", &size); err != nil {
			return nil, fmt.Errorf("bad bulk header %q: %w", h, err)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

func respCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// When a transaction's connection is lost, later commands of that
// transaction must not run outside it on a fresh connection.
func TestReviewTransactionConnectionLostDoesNotRunCommandsOutsideMulti(t *testing.T) {
	var mu sync.Mutex
	var applied int64
	pool := config.NewPool("r", config.ProtocolRedis)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = 5 * time.Second
	pool.AutoEjectHosts = false
	pool.Servers = []config.Server{{Name: "fake", Addr: fakeRedis(t, &applied, &mu), Network: "tcp", Weight: 1}}
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(respCmd("MULTI") + respCmd("SET", "a", "1"))
	c.Expect("+OK\r\n", "+QUEUED\r\n")
	c.Send(respCmd("SET", "die", "1"))
	if got := c.Line(); !strings.HasPrefix(got, "-ERR ") {
		t.Fatalf("command on a lost connection: got %q; want -ERR", got)
	}
	c.Send(respCmd("SET", "b", "2"))
	_ = c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := c.R.ReadString('\n')
	if err == nil && got == "+OK\r\n" {
		t.Errorf("SET inside MULTI after the connection was lost: got %q; want +QUEUED, an error or the connection closed", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if applied != 0 {
		t.Errorf("commands run outside the transaction: %d; want 0", applied)
	}
}

// Replies to a subscribed client come in request order: the SUBSCRIBE
// confirmation before the answer to the PING pipelined after it.
func TestReviewSubscribeThenPingInOrder(t *testing.T) {
	rd := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", rd)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(respCmd("SUBSCRIBE", "ch") + respCmd("PING"))
	c.Expect("*3\r\n", "$9\r\n", "subscribe\r\n", "$2\r\n", "ch\r\n", ":1\r\n")
	c.Expect("*2\r\n", "$4\r\n", "pong\r\n", "$0\r\n", "\r\n")
}
