package proxy_test

import (
	"bufio"
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

// Third review: regressions found in the merged big-reply and half-close
// work, each with the sequence that showed it.

// TestResetWhilePacedOutput: a client that resets its connection while big
// replies are being paced to it is dropped; the loop goes on (the failed
// write closed the client inside the pacing loop, which then indexed the
// output it had just dropped, and the panic took the process down).
func TestResetWhilePacedOutput(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t, "-I", "2m"), testserver.Memcached(t, "-I", "2m")
	pool := proxytest.MemcachePool(t, "mc", mc1, mc2)
	pool.Limits.MaxValueSize = 2 << 20
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	setter := proxytest.Dial(t, pool.Listen)
	v := strings.Repeat("v", 900<<10)
	for i := range 4 {
		setter.RoundTrip(fmt.Sprintf("set big%d 0 0 %d\r\n%s\r\n", i, len(v), v), "STORED\r\n")
	}
	// 5 x 4.5 MB of replies per connection: past the 16 MiB of unsent
	// output that pauses a client, and far past what each round reads
	// (the proxy still reads every reply off the shared backend
	// connections, so more would only load the box: 40 connections).
	var req strings.Builder
	for i := range 5 {
		fmt.Fprintf(&req, "get big%d\r\nget big0 big1 big2 big3\r\n", i%4)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			errs <- func() error {
				for round := range 5 {
					c, err := net.DialTimeout("tcp", pool.Listen, proxytest.Timeout)
					if err != nil {
						return err
					}
					if _, err := io.WriteString(c, req.String()); err != nil {
						c.Close()
						return err
					}
					if (g+round)%2 == 0 {
						_ = c.(*net.TCPConn).CloseWrite()
					}
					_ = c.SetReadDeadline(time.Now().Add(proxytest.Timeout))
					buf := make([]byte, (64+round*200)<<10)
					if _, err := io.ReadFull(c, buf); err != nil {
						c.Close()
						return fmt.Errorf("round %d: read: %w", round, err)
					}
					_ = c.(*net.TCPConn).SetLinger(0) // close with a reset
					c.Close()
				}
				return nil
			}()
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The proxy still serves.
	setter.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	waitClients(t, p, 1)
}

// TestBlockedClientGoneReleasesItsCommand: a client that closes while its
// BLPOP waits is gone, as in Redis: the next RPUSH is not taken by it (kept
// alive as half-closed, the BLPOP took the element and wrote it to nobody).
func TestBlockedClientGoneReleasesItsCommand(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	p := proxytest.Start(t, proxy.Options{}, pool)
	for _, half := range []bool{false, true} {
		c, err := net.DialTimeout("tcp", pool.Listen, proxytest.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "BLPOP q 0\r\n"); err != nil {
			t.Fatal(err)
		}
		other := proxytest.Dial(t, pool.Listen)
		// Wait until the BLPOP is blocked at the server.
		deadline := time.Now().Add(proxytest.Timeout)
		for !strings.Contains(serverInfo(t, r.Addr), "blocked_clients:1\r\n") {
			if time.Now().After(deadline) {
				t.Fatalf("BLPOP never blocked")
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
		if half {
			_ = c.(*net.TCPConn).CloseWrite()
		} else {
			c.Close()
		}
		// Once the proxy has let the client go, the server's blocked
		// client is gone too.
		waitClients(t, p, 1)
		deadline = time.Now().Add(proxytest.Timeout)
		for !strings.Contains(serverInfo(t, r.Addr), "blocked_clients:0\r\n") {
			if time.Now().After(deadline) {
				t.Fatalf("BLPOP still blocked at the server after the client left")
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
		other.RoundTrip("RPUSH q x\r\n", ":1\r\n")
		other.RoundTrip("LLEN q\r\n", ":1\r\n")
		other.RoundTrip("DEL q\r\n", ":1\r\n")
		other.C.Close()
		c.Close()
		waitClients(t, p, 0)
	}
}

// serverInfo returns redis-server's INFO clients, asked directly.
func serverInfo(t *testing.T, addr string) string {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.C.Close()
	c.Send("INFO clients\r\n")
	var n int
	if hdr := c.Line(); len(hdr) < 2 || hdr[0] != '$' {
		t.Fatalf("INFO: got %q", hdr)
	} else if _, err := fmt.Sscanf(hdr, "$%d\r\n", &n); err != nil {
		t.Fatalf("INFO header %q: %v", hdr, err)
	}
	return c.ReadN(n + 2)
}

// TestSlowSubscriberClosedAtOutputLimit: a subscriber that does not read is
// closed once 32 MiB of messages wait for it, and other clients' big replies
// are not refused for memory meanwhile.
func TestSlowSubscriberClosedAtOutputLimit(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	p := proxytest.Start(t, proxy.Options{}, pool)
	sub, err := net.DialTimeout("tcp", pool.Listen, proxytest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	_ = sub.(*net.TCPConn).SetReadBuffer(8 << 10)
	if _, err := io.WriteString(sub, "SUBSCRIBE ch\r\n"); err != nil {
		t.Fatal(err)
	}
	sr := bufio.NewReader(sub)
	_ = sub.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	for range 6 { // *3 $9 subscribe $2 ch :1
		if _, err := sr.ReadString('\n'); err != nil {
			t.Fatalf("subscribe confirmation: %v", err)
		}
	}
	pub := proxytest.Dial(t, pool.Listen)
	msg := strings.Repeat("m", 500<<10)
	pubCmd := fmt.Sprintf("*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$%d\r\n%s\r\n", len(msg), msg)
	deadline := time.Now().Add(proxytest.Timeout)
	for p.Stats()[0].Rejected[proxy.RejectBuffer] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber not closed at the output limit")
		}
		pub.Send(pubCmd)
		if got := pub.Line(); got != ":1\r\n" && got != ":0\r\n" {
			t.Fatalf("PUBLISH: got %q", got)
		}
	}
	// The proxy let it go: only the publisher is left.
	waitClients(t, p, 1)
	pub.RoundTrip("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", "+OK\r\n")
	if n := p.Stats()[0].Rejected[proxy.RejectMemory]; n != 0 {
		t.Fatalf("memory refusals: %d; want 0", n)
	}
}
