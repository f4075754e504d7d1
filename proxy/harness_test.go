package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// memcachePool returns a memcache pool config over the given backends,
// listening on a free port.
func memcachePool(t testing.TB, name string, backends ...*testserver.Process) config.Pool {
	t.Helper()
	p := config.NewPool(name, config.ProtocolMemcache)
	p.Listen = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	p.Hash = "murmur"
	p.Timeout = 2 * time.Second
	for i, b := range backends {
		p.Servers = append(p.Servers, config.Server{
			Name: fmt.Sprintf("mc%d", i+1), Addr: b.Addr, Network: "tcp", Weight: 1,
		})
	}
	return p
}

// startProxy runs a proxy over pools until the test ends and returns it once
// every listener accepts connections.
func startProxy(t testing.TB, opts proxy.Options, pools ...config.Pool) *proxy.Proxy {
	t.Helper()
	cfg := &config.Config{Pools: pools}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if opts.Logger == nil {
		level := slog.LevelWarn
		if os.Getenv("PROXY_DEBUG") != "" {
			level = slog.LevelDebug
		}
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	p, err := proxy.New(cfg, opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("proxy.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("proxy did not stop within 30s")
		}
	})
	for _, pool := range pools {
		waitAccept(t, pool.Listen, done)
	}
	return p
}

// waitAccept polls addr until it accepts, failing if the proxy stopped.
func waitAccept(t testing.TB, addr string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("proxy stopped before listening on %s: %v", addr, err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not accepting on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// conn is a line-oriented test client.
type conn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *conn) send(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *conn) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line (got %q): %v", l, err)
	}
	return l
}

// expect reads len(want) lines and compares them with want.
func (c *conn) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.line(); got != w {
			c.t.Fatalf("got %q; want %q", got, w)
		}
	}
}

// readGet reads a get reply up to END and returns key -> value.
func (c *conn) readGet() ([]string, map[string]string) {
	c.t.Helper()
	var order []string
	vals := map[string]string{}
	for {
		l := c.line()
		if l == "END\r\n" {
			return order, vals
		}
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "VALUE" {
			c.t.Fatalf("got %q; want VALUE or END", l)
		}
		n, _ := strconv.Atoi(f[3])
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatalf("read value: %v", err)
		}
		order = append(order, f[1])
		vals[f[1]] = string(buf[:n])
	}
}
