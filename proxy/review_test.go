package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// echoMemcached is a fake memcached: "get <key>" answers the key as its own
// value, "get die" closes the connection without answering.
func echoMemcached(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Fields(line)
					if len(f) < 2 || f[0] != "get" {
						_, _ = fmt.Fprint(c, "ERROR\r\n")
						continue
					}
					var out strings.Builder
					for _, k := range f[1:] {
						if k == "die" {
							return
						}
						fmt.Fprintf(&out, "VALUE %s 0 %d\r\n%s\r\n", k, len(k), k)
					}
					out.WriteString("END\r\n")
					if _, err := fmt.Fprint(c, out.String()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// A request failed by a lost backend connection is recycled exactly once:
// afterwards two pipelined requests must be two requests.
func TestReviewLostBackendRequestRecycledOnce(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = 5 * time.Second
	pool.AutoEjectHosts = false
	pool.Servers = []config.Server{{Name: "echo", Addr: echoMemcached(t), Network: "tcp", Weight: 1}}
	startProxy(t, proxy.Options{Loops: 1}, pool)
	c := dial(t, pool.Listen)
	c.send("get die\r\n")
	if got := c.line(); !strings.HasPrefix(got, "SERVER_ERROR ") {
		t.Fatalf("get die: got %q; want SERVER_ERROR", got)
	}
	c.send("get k1\r\nget k2\r\nget k3\r\n")
	for _, k := range []string{"k1", "k2", "k3"} {
		c.expect("VALUE "+k+" 0 2\r\n", k+"\r\n", "END\r\n")
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
	startProxy(t, proxy.Options{Loops: 1}, pool)
	c := dial(t, pool.Listen)
	c.send("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("SUBSCRIBE to an unreachable server: got %q, %v; want an -ERR reply or the connection closed", l, err)
	}
	if err == nil && !strings.HasPrefix(l, "-ERR ") {
		t.Fatalf("SUBSCRIBE to an unreachable server: got %q; want -ERR", l)
	}
}
