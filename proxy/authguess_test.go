package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

const wrongPass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"

func authCmd(pass string) string {
	return fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(pass), pass)
}

// readToEnd reads lines until the connection ends and returns them and the
// error that ended it.
func readToEnd(t *testing.T, c *proxytest.Conn) ([]string, error) {
	t.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	var lines []string
	for {
		l, err := c.R.ReadString('\n')
		if err != nil {
			return lines, err
		}
		lines = append(lines, l)
	}
}

// closedByPeer: EOF, or a reset (input the proxy dropped unread makes the
// kernel answer with RST), not the test's read deadline.
func closedByPeer(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func authFailures(p *proxy.Proxy, pool string) int64 {
	for _, ps := range p.Stats() {
		if ps.Name == pool {
			return ps.AuthFailures
		}
	}
	return -1
}

// TestAuthGuessingClosed: wrong AUTH passwords on a pool with redis_auth
// are answered as Redis does, and the MaxAuthFailures-th closes the
// connection, whether they come one by one or 5,000 pipelined; a right
// password still works, before the limit and on other connections, and
// other clients carry on.
func TestAuthGuessingClosed(t *testing.T) {
	r := testserver.Redis(t, "--requirepass", "s3cret")
	pool := proxytest.RedisPool(t, "r", r)
	pool.RedisAuth = "s3cret"
	p := proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()

	// A client that authenticated before the attack.
	good := redis.NewClient(&redis.Options{Addr: pool.Listen, Password: "s3cret"})
	t.Cleanup(func() { good.Close() })
	if err := good.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET before the attack: %v", err)
	}

	// One by one: MaxAuthFailures replies, then the connection ends.
	seq := proxytest.Dial(t, pool.Listen)
	for i := 1; i < proxy.MaxAuthFailures; i++ {
		seq.RoundTrip(authCmd(fmt.Sprintf("guess%d", i)), wrongPass)
	}
	seq.Send(authCmd("last-guess"))
	lines, err := readToEnd(t, seq)
	if len(lines) != 1 || lines[0] != wrongPass || !closedByPeer(err) {
		t.Fatalf("wrong AUTH #%d: got %q then %v; want one WRONGPASS and the connection closed", proxy.MaxAuthFailures, lines, err)
	}
	if got := authFailures(p, "r"); got != proxy.MaxAuthFailures {
		t.Errorf("AuthFailures after the sequential attack: got %d; want %d", got, proxy.MaxAuthFailures)
	}

	// 5,000 pipelined in one write: MaxAuthFailures replies at most, then
	// the connection ends; the rest is never parsed.
	pipe := proxytest.Dial(t, pool.Listen)
	var b strings.Builder
	for i := 0; i < 5000; i++ {
		b.WriteString(authCmd(fmt.Sprintf("p%d", i)))
	}
	go func() { _, _ = io.WriteString(pipe.C, b.String()) }() // may fail once the proxy closes
	lines, err = readToEnd(t, pipe)
	if !closedByPeer(err) {
		t.Fatalf("5,000 pipelined wrong AUTHs: the connection did not end (%d replies, then %v)", len(lines), err)
	}
	if len(lines) > proxy.MaxAuthFailures {
		t.Fatalf("5,000 pipelined wrong AUTHs: %d replies; want at most %d", len(lines), proxy.MaxAuthFailures)
	}
	for _, l := range lines {
		if l != wrongPass {
			t.Fatalf("pipelined wrong AUTH: reply %q; want %q", l, wrongPass)
		}
	}
	if got := authFailures(p, "r"); got != 2*proxy.MaxAuthFailures {
		t.Errorf("AuthFailures after the pipelined attack: got %d; want %d (the rest never parsed)", got, 2*proxy.MaxAuthFailures)
	}

	// A right password just before the limit works and starts the count again.
	c := proxytest.Dial(t, pool.Listen)
	for round := 0; round < 2; round++ {
		for i := 1; i < proxy.MaxAuthFailures; i++ {
			c.RoundTrip(authCmd("nope"), wrongPass)
		}
		c.RoundTrip(authCmd("s3cret"), "+OK\r\n")
	}
	c.RoundTrip("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$6\r\n", "before\r\n")

	// HELLO 3 AUTH counts too.
	h := proxytest.Dial(t, pool.Listen)
	hello := "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$4\r\nnope\r\n"
	for i := 1; i < proxy.MaxAuthFailures; i++ {
		h.RoundTrip(hello, wrongPass)
	}
	h.Send(hello)
	lines, err = readToEnd(t, h)
	if len(lines) != 1 || lines[0] != wrongPass || !closedByPeer(err) {
		t.Fatalf("wrong HELLO AUTH #%d: got %q then %v; want one WRONGPASS and the connection closed", proxy.MaxAuthFailures, lines, err)
	}

	// Others are unaffected: the old client and a new one.
	if err := good.Set(ctx, "k", "after", 0).Err(); err != nil {
		t.Fatalf("SET after the attack: %v", err)
	}
	fresh := redis.NewClient(&redis.Options{Addr: pool.Listen, Password: "s3cret"})
	t.Cleanup(func() { fresh.Close() })
	if v, err := fresh.Get(ctx, "k").Result(); err != nil || v != "after" {
		t.Fatalf("GET on a new connection after the attack: %q, %v; want after", v, err)
	}
	if got, want := authFailures(p, "r"), int64(2*proxy.MaxAuthFailures+2*(proxy.MaxAuthFailures-1)+proxy.MaxAuthFailures); got != want {
		t.Errorf("AuthFailures at the end: got %d; want %d", got, want)
	}
}
