package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func TestMemcacheMetaProtocol(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	steps := []struct{ send, want string }{
		{"ms mk1 2\r\nhi\r\n", "HD\r\n"},
		{"mg mk1 v\r\n", "VA 2\r\nhi\r\n"},
		{"mg mk1 v k O123\r\n", "VA 2 kmk1 O123\r\nhi\r\n"},
		{"mg missing v\r\n", "EN\r\n"},
		// Quiet mode: misses and HD are dropped, mn closes the batch.
		{"mg missing v q\r\nmg mk1 v q\r\nms mk2 1 q\r\nx\r\nmd nokey q\r\nmn\r\n", "VA 2\r\nhi\r\nNF\r\nMN\r\n"},
		{"ma cnt N0 J5\r\n", "HD\r\n"},
		{"ma cnt v\r\n", "VA 1\r\n6\r\n"},
		{"md mk1\r\n", "HD\r\n"},
		{"mg mk1 v\r\n", "EN\r\n"},
		// base64 keys: routed by the decoded key, same server as the plain one.
		{"ms bWsy 1 b\r\ny\r\n", "HD\r\n"},
		{"mg mk2 v\r\n", "VA 1\r\ny\r\n"},
		{"mn\r\n", "MN\r\n"},
	}
	for _, st := range steps {
		c.Send(st.send)
		if got := c.ReadN(len(st.want)); got != st.want {
			t.Fatalf("after %q: got %q; want %q", st.send, got, st.want)
		}
	}
}

// stallServer accepts connections and reads without ever answering.
func stallServer(t *testing.T) string {
	t.Helper()
	return proxytest.FakeServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

func TestMemcacheTimeoutFailsRequestsAndKeepsClient(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = 150 * time.Millisecond
	pool.Servers = []config.Server{{Name: "stall", Addr: stallServer(t), Network: "tcp", Weight: 1}}
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("get a\r\nget b\r\nversion\r\n")
	for _, k := range []string{"a", "b"} {
		if got := c.Line(); !strings.HasPrefix(got, "SERVER_ERROR ") || !strings.Contains(got, "timed out") {
			t.Fatalf("get %s: got %q; want SERVER_ERROR ... timed out", k, got)
		}
	}
	c.Expect("VERSION " + proxy.Version + "\r\n")
}

func TestMemcacheGracefulShutdownDeliversOwedReplies(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	cfg := &config.Config{Pools: []config.Pool{pool}}
	p, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	proxytest.WaitAccept(t, pool.Listen, done)
	c := proxytest.Dial(t, pool.Listen)
	// A large pipelined batch is in flight when shutdown starts.
	var b strings.Builder
	const n = 2000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "set k%d 0 0 1\r\nv\r\n", i)
	}
	c.Send(b.String())
	c.Expect("STORED\r\n") // the batch is being served
	cancel()
	for i := 1; i < n; i++ {
		got := c.Line()
		if got != "STORED\r\n" {
			t.Fatalf("reply %d during drain: got %q; want STORED", i, got)
		}
	}
	// Then the connection closes and Run returns.
	_ = c.C.SetReadDeadline(time.Now().Add(15 * time.Second))
	if l, err := c.R.ReadString('\n'); err == nil {
		t.Fatalf("after drain: got %q; want close", l)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after drain")
	}
	if cn, err := net.DialTimeout("tcp", pool.Listen, time.Second); err == nil {
		cn.Close()
		t.Fatal("listener still accepting after Run returned")
	}
}

func TestMemcacheInFlightLimitPausesWithoutLoss(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	pool.Limits.MaxInFlight = 4
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	var b strings.Builder
	const n = 500
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "set k%d 0 0 %d\r\n%d\r\n", i, len(fmt.Sprint(i)), i)
	}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "get k%d\r\n", i)
	}
	// A client pipelining far past the limit; the write blocks until the
	// proxy reads on, so it runs beside the reads (errors show as a failed
	// read below).
	go func() { _, _ = c.C.Write([]byte(b.String())) }()
	for i := 0; i < n; i++ {
		c.Expect("STORED\r\n")
	}
	for i := 0; i < n; i++ {
		v := fmt.Sprint(i)
		c.Expect(fmt.Sprintf("VALUE k%d 0 %d\r\n", i, len(v)), v+"\r\n", "END\r\n")
	}
}

func TestMemcacheFlushAllReachesEveryServer(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	for i := 0; i < 30; i++ {
		c.Send(fmt.Sprintf("set f%d 0 0 1\r\nx\r\n", i))
		c.Expect("STORED\r\n")
	}
	c.Send("flush_all\r\n")
	c.Expect("OK\r\n")
	c.Send("flush_all noreply\r\nmn\r\n")
	c.Expect("MN\r\n")
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("f%d", i)
		for s, m := range mcs {
			if _, ok := directGet(t, m.Addr, k); ok {
				t.Fatalf("%s still on server %d after flush_all", k, s)
			}
		}
	}
}

func TestMemcacheQuitClosesAfterOwedReplies(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("set q 0 0 1\r\nx\r\nget q\r\nquit\r\nget q\r\n")
	c.Expect("STORED\r\n", "VALUE q 0 1\r\n", "x\r\n", "END\r\n")
	_ = c.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := c.R.ReadString('\n'); err != io.EOF {
		t.Fatalf("after quit: got %q, %v; want EOF", l, err)
	}
}

// TestMemcacheLargeValuesAcrossReads moves values far larger than one read
// through the proxy in both directions, pipelined.
func TestMemcacheLargeValuesAcrossReads(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	vals := map[string]string{}
	var keys []string
	for i := 0; i < 6; i++ {
		k := fmt.Sprintf("big%d", i)
		v := strings.Repeat(string(rune('a'+i)), 900_000+i*1000)
		vals[k] = v
		keys = append(keys, k)
		c.Send(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(v), v))
	}
	for range keys {
		c.Expect("STORED\r\n")
	}
	c.Send("get " + strings.Join(keys, " ") + "\r\n")
	order, got := c.ReadGet()
	if strings.Join(order, " ") != strings.Join(keys, " ") {
		t.Fatalf("order %v; want %v", order, keys)
	}
	for k, v := range vals {
		if got[k] != v {
			t.Fatalf("%s: got %d bytes; want %d", k, len(got[k]), len(v))
		}
	}
}

func TestMemcacheClientLimits(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	pool.Limits.MaxClients = 1
	pool.Limits.MaxClientBuffer = 1 << 20 // must hold the largest request: value + key + 1 KiB
	pool.Limits.MaxValueSize = 1<<20 - 2048
	p := proxytest.Start(t, proxy.Options{}, pool)
	first := proxytest.Dial(t, pool.Listen)
	first.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	// A second client is refused with an error and closed.
	second := proxytest.Dial(t, pool.Listen)
	if got := second.Line(); got != "ERROR Too many open connections\r\n" {
		t.Fatalf("client over max_clients: got %q", got)
	}
	_ = second.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.R.ReadString('\n'); err == nil {
		t.Fatal("client over max_clients not closed")
	}
	if got := p.Stats()[0].Rejected[proxy.RejectMaxClients]; got != 1 {
		t.Fatalf("rejected max_clients = %d; want 1", got)
	}
}

// TestMemcacheClientBufferLimit: a client that pipelines more unparsed input
// than max_client_buffer allows (here: stuck behind max_in_flight on a
// server that never answers) is closed at once; other clients are not
// disturbed.
func TestMemcacheClientBufferLimit(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Limits.MaxInFlight = 1
	pool.Limits.MaxValueSize = 1024
	pool.Limits.MaxClientBuffer = 64 << 10
	pool.Servers = []config.Server{{Name: "stall", Addr: stallServer(t), Network: "tcp", Weight: 1}}
	p := proxytest.Start(t, proxy.Options{}, pool)
	other := proxytest.Dial(t, pool.Listen)
	c := proxytest.Dial(t, pool.Listen)
	go func() {
		// Far past the limit; the write may fail once the proxy closes.
		_, _ = c.C.Write([]byte(strings.Repeat("get k\r\n", 40000)))
	}()
	// One get is owed (the server never answers it), so no error reply:
	// the client would take it for that get's reply. The connection closes.
	_ = c.C.SetReadDeadline(time.Now().Add(15 * time.Second))
	if got, err := c.R.ReadString('\n'); err == nil {
		t.Fatalf("over max_client_buffer: got %q; want the connection closed", got)
	}
	other.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	if n := p.Stats()[0].Rejected[proxy.RejectBuffer]; n != 1 {
		t.Fatalf("rejected buffer = %d; want 1", n)
	}
}
