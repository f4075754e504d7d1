// Package proxytest runs a real proxy for tests: pool configurations over
// real backends (internal/testserver), a proxy started until the test ends,
// a line-oriented client, and a fake backend for failure paths.
package proxytest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// Timeout bounds every read, write and wait of this package.
const Timeout = 15 * time.Second

// PoolTimeout is the server timeout of the pools this package builds: long
// enough that a loaded CI machine (2 cores shared by several test runs, a
// concurrent benchmark) never fails a healthy server's request on it, and
// shorter than Timeout, so a request that does time out is answered before
// a test gives up reading. A test of timeouts sets its own short timeout.
const PoolTimeout = 10 * time.Second

// MemcachePool returns a memcache pool over backends (servers named mc1,
// mc2, ...) listening on a free loopback port, hash murmur, timeout
// PoolTimeout.
func MemcachePool(t testing.TB, name string, backends ...*testserver.Process) config.Pool {
	t.Helper()
	return pool(t, name, config.ProtocolMemcache, "mc", backends)
}

// RedisPool returns a redis pool over backends (servers named r1, r2, ...)
// listening on a free loopback port, hash murmur, hash tag "{}", timeout
// PoolTimeout.
func RedisPool(t testing.TB, name string, backends ...*testserver.Process) config.Pool {
	t.Helper()
	p := pool(t, name, config.ProtocolRedis, "r", backends)
	p.HashTag = "{}"
	return p
}

func pool(t testing.TB, name string, proto config.Protocol, prefix string, backends []*testserver.Process) config.Pool {
	p := config.NewPool(name, proto)
	p.Listen = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	p.Hash = "murmur"
	p.Timeout = PoolTimeout
	for i, b := range backends {
		p.Servers = append(p.Servers, config.Server{
			Name: fmt.Sprintf("%s%d", prefix, i+1), Addr: b.Addr, Network: "tcp", Weight: 1,
		})
	}
	return p
}

// Logger logs warnings and up to stderr, everything when PROXY_DEBUG is set.
func Logger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("PROXY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Start runs a proxy over pools until the test ends and returns it once it
// is ready (every listener up; no connection is made, so client counts start
// at zero).
func Start(t testing.TB, opts proxy.Options, pools ...config.Pool) *proxy.Proxy {
	t.Helper()
	return StartConfig(t, opts, &config.Config{Pools: pools})
}

// StartConfig is Start for a whole configuration (proxy-wide keys such as
// max_memory).
func StartConfig(t testing.TB, opts proxy.Options, cfg *config.Config) *proxy.Proxy {
	t.Helper()
	p, done := run(t, opts, cfg)
	deadline := time.Now().Add(Timeout)
	for !p.Ready() {
		select {
		case err := <-done:
			t.Fatalf("proxy stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not ready after %v", Timeout)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	return p
}

// StartListening is StartConfig for a proxy that is not ready yet (a
// discovery pool before its endpoint's first answer): it returns once
// every pool's listener accepts.
func StartListening(t testing.TB, opts proxy.Options, cfg *config.Config) *proxy.Proxy {
	t.Helper()
	p, done := run(t, opts, cfg)
	for i := range cfg.Pools {
		WaitAccept(t, cfg.Pools[i].Listen, done)
	}
	return p
}

// run validates cfg and runs a proxy over it until the test ends; done
// delivers Run's result should it stop early.
func run(t testing.TB, opts proxy.Options, cfg *config.Config) (*proxy.Proxy, chan error) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if opts.Logger == nil {
		opts.Logger = Logger()
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
	return p, done
}

// WaitAccept polls addr until it accepts a connection, failing the test if
// done delivers (the proxy stopped) or Timeout passes.
func WaitAccept(t testing.TB, addr string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
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

// Conn is a line-oriented test client. C and R are the connection and its
// reader, for tests that need them.
type Conn struct {
	T testing.TB
	C net.Conn
	R *bufio.Reader
}

// Dial connects to addr; the connection is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{T: t, C: c, R: bufio.NewReader(c)}
}

// DialTLS connects to addr and completes a TLS handshake with cfg; the
// connection is closed when the test ends.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Conn {
	t.Helper()
	c, err := DialTLSErr(addr, cfg)
	if err != nil {
		t.Fatalf("dial %s over TLS: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{T: t, C: c, R: bufio.NewReader(c)}
}

// DialTLSErr connects to addr and completes a TLS handshake with cfg within
// Timeout, returning the error instead of failing a test.
func DialTLSErr(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: Timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// Send writes s.
func (c *Conn) Send(s string) {
	c.T.Helper()
	_ = c.C.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.C, s); err != nil {
		c.T.Fatalf("write %q: %v", s, err)
	}
}

// Line reads one line, with its terminator.
func (c *Conn) Line() string {
	c.T.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(Timeout))
	l, err := c.R.ReadString('\n')
	if err != nil {
		c.T.Fatalf("read line (got %q): %v", l, err)
	}
	return l
}

// Expect reads len(want) lines and compares them with want.
func (c *Conn) Expect(want ...string) {
	c.T.Helper()
	for _, w := range want {
		if got := c.Line(); got != w {
			c.T.Fatalf("got %q; want %q", got, w)
		}
	}
}

// RoundTrip sends s and expects the lines want.
func (c *Conn) RoundTrip(s string, want ...string) {
	c.T.Helper()
	c.Send(s)
	c.Expect(want...)
}

// ReadN reads exactly n bytes.
func (c *Conn) ReadN(n int) string {
	c.T.Helper()
	buf := make([]byte, n)
	_ = c.C.SetReadDeadline(time.Now().Add(Timeout))
	if _, err := io.ReadFull(c.R, buf); err != nil {
		c.T.Fatalf("read %d bytes (got %q): %v", n, buf, err)
	}
	return string(buf)
}

// ReadGet reads a memcached get reply up to END and returns the keys in
// order and key -> value.
func (c *Conn) ReadGet() ([]string, map[string]string) {
	c.T.Helper()
	var order []string
	vals := map[string]string{}
	for {
		l := c.Line()
		if l == "END\r\n" {
			return order, vals
		}
		var key string
		var flags, n int
		if _, err := fmt.Sscanf(l, "VALUE %s %d %d", &key, &flags, &n); err != nil {
			c.T.Fatalf("got %q; want VALUE or END", l)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.R, buf); err != nil {
			c.T.Fatalf("read value: %v", err)
		}
		order = append(order, key)
		vals[key] = string(buf[:n])
	}
}

// FakeServer is testserver.FakeServer, for callers of this package.
func FakeServer(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	return testserver.FakeServer(t, handle)
}
