package proxy_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestSlowClientDoesNotTimeOutHealthyServers: one client pipelines gets of
// 256 KiB values on three memcached servers and never reads its replies.
// The servers answer at once; the proxy must not count their replies'
// wait behind that client as server timeouts, nor eject them.
func TestSlowClientDoesNotTimeOutHealthyServers(t *testing.T) {
	mcs := threeMemcached(t)
	pc := proxytest.MemcachePool(t, "mc", mcs...)
	pc.Timeout = 300 * time.Millisecond
	pc.AutoEjectHosts = true
	pc.ServerFailureLimit = 2
	p := proxytest.Start(t, proxy.Options{}, pc)

	val := strings.Repeat("v", 256<<10)
	setter := proxytest.Dial(t, pc.Listen)
	for i := 0; i < 9; i++ {
		setter.RoundTrip(fmt.Sprintf("set big%d 0 0 %d\r\n%s\r\n", i, len(val), val), "STORED\r\n")
	}

	slow := proxytest.Dial(t, pc.Listen)
	var req strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&req, "get big%d\r\n", i%9)
	}
	go func() { _, _ = slow.C.Write([]byte(req.String())) }()

	// Another client keeps working meanwhile.
	deadline := time.Now().Add(1500 * time.Millisecond) // five times the timeout
	for time.Now().Before(deadline) {
		setter.RoundTrip("get nokey\r\n", "END\r\n")
		time.Sleep(20 * time.Millisecond) // pacing the probe, not synchronisation
	}
	var timeouts, failures int64
	for _, s := range p.Stats()[0].Servers {
		timeouts += s.Timeouts
		failures += s.Failures
		t.Logf("server %s: state %v timeouts %d failures %d ejections %d", s.Name, s.State, s.Timeouts, s.Failures, s.Ejections)
	}
	if timeouts != 0 || failures != 0 {
		t.Errorf("got %d timeouts and %d failures counted against healthy servers; want 0 and 0", timeouts, failures)
	}
	for _, s := range p.Stats()[0].Servers {
		if s.State != pool.StateUp {
			t.Errorf("server %s: got state %v; want %v", s.Name, s.State, pool.StateUp)
		}
	}
}

// bigValue is n bytes that name key and their own offset, so a reply cut,
// shifted or swapped with another key's shows in a comparison.
func bigValue(key string, n int) string {
	var b strings.Builder
	for b.Len() < n {
		fmt.Fprintf(&b, "%s@%d;", key, b.Len())
	}
	return b.String()[:n]
}

// expectBytes reads len(want) bytes and compares them with want, naming the
// first difference.
func expectBytes(t *testing.T, c *proxytest.Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	if n, err := io.ReadFull(c.R, got); err != nil {
		t.Fatalf("read %d bytes: got %d: %v (first bytes %q)", len(want), n, err, clipStr(string(got[:n]), 0))
	}
	if string(got) != want {
		i := 0
		for i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("reply differs at byte %d of %d: got %q; want %q", i, len(want), clipStr(string(got), i), clipStr(want, i))
	}
}

func clipStr(s string, at int) string {
	lo, hi := max(at-40, 0), min(at+40, len(s))
	return s[lo:hi]
}

func mcValue(key, val string) string {
	return fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\n", key, len(val), val)
}

// TestMemcacheBigValues: values of several MiB, alone, pipelined between
// small replies and merged from several servers, reach the client exactly.
func TestMemcacheBigValues(t *testing.T) {
	mcs := []*testserver.Process{
		testserver.Memcached(t, "-I", "2m"), testserver.Memcached(t, "-I", "2m"), testserver.Memcached(t, "-I", "2m"),
	}
	pc := proxytest.MemcachePool(t, "mc", mcs...)
	pc.Limits.MaxValueSize = 2 << 20
	p := proxytest.Start(t, proxy.Options{}, pc)
	c := proxytest.Dial(t, pc.Listen)
	vals := map[string]string{}
	for i := 0; i < 6; i++ {
		k := fmt.Sprintf("big%d", i)
		vals[k] = bigValue(k, 1<<20+i) // well over streamMin
		c.RoundTrip(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(vals[k]), vals[k]), "STORED\r\n")
	}
	c.RoundTrip("set small 0 0 2\r\nhi\r\n", "STORED\r\n")
	for round := 0; round < 2; round++ {
		c.Send("get big0\r\nget small\r\nget big1 big2 big3 big4 nokey big5\r\nget small big0\r\nget big5\r\n")
		var want strings.Builder
		want.WriteString(mcValue("big0", vals["big0"]) + "END\r\n")
		want.WriteString(mcValue("small", "hi") + "END\r\n")
		for _, k := range []string{"big1", "big2", "big3", "big4", "big5"} {
			want.WriteString(mcValue(k, vals[k]))
		}
		want.WriteString("END\r\n")
		want.WriteString(mcValue("small", "hi") + mcValue("big0", vals["big0"]) + "END\r\n")
		want.WriteString(mcValue("big5", vals["big5"]) + "END\r\n")
		expectBytes(t, c, want.String())
	}
	c.RoundTrip("get small\r\n", "VALUE small 0 2\r\n", "hi\r\n", "END\r\n")
	if n := p.MemoryRefused(); n != 0 {
		t.Errorf("got %d replies refused for max_memory; want 0", n)
	}
	waitHeld(t, p, 0)
}

// waitHeld polls until the proxy holds at most n reply bytes.
func waitHeld(t *testing.T, p *proxy.Proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Timeout)
	for p.MemoryHeld() > n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy holds %d reply bytes; want at most %d", p.MemoryHeld(), n)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func respBulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

// TestRedisBigValues: big values through GET and a multi-server MGET (merged
// without copying them) reach the client exactly, pipelined with small
// replies.
func TestRedisBigValues(t *testing.T) {
	rs := []*testserver.Process{testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)}
	pc := proxytest.RedisPool(t, "r", rs...)
	p := proxytest.Start(t, proxy.Options{}, pc)
	c := proxytest.Dial(t, pc.Listen)
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	vals := map[string]string{}
	for i, k := range keys {
		vals[k] = bigValue(k, 1<<20+i)
		c.RoundTrip(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s", len(k), k, respBulk(vals[k])), "+OK\r\n")
	}
	ring, err := pc.Ring()
	if err != nil {
		t.Fatal(err)
	}
	servers := map[int]bool{}
	for _, k := range keys {
		servers[ring.Pick([]byte(k))] = true
	}
	if len(servers) < 2 {
		t.Fatalf("keys %v all on one server; want a split MGET", keys)
	}
	mget := "*7\r\n$4\r\nMGET\r\n"
	for _, k := range append(keys, "nokey") {
		mget += respBulk(k)
	}
	mget += respBulk("k0")
	mget = strings.Replace(mget, "*7", "*8", 1)
	for round := 0; round < 2; round++ {
		c.Send("*2\r\n$3\r\nGET\r\n$2\r\nk3\r\n" + "*1\r\n$4\r\nPING\r\n" + mget + "*1\r\n$4\r\nPING\r\n")
		want := respBulk(vals["k3"]) + "+PONG\r\n*7\r\n"
		for _, k := range keys {
			want += respBulk(vals[k])
		}
		want += "$-1\r\n" + respBulk(vals["k0"]) + "+PONG\r\n"
		expectBytes(t, c, want)
	}
	waitHeld(t, p, 0)
}

// TestMemcacheAmplificationBoundedByMaxMemory: one 2.8 KB request asks for
// one 1 MiB value 400 times, twice, and its client does not read. The proxy
// cuts the first reply where memcached would (between values, with
// SERVER_ERROR out of memory) once it holds max_memory, refuses the second
// with the same error, and serves other clients.
func TestMemcacheAmplificationBoundedByMaxMemory(t *testing.T) {
	mc := testserver.Memcached(t, "-I", "2m")
	pc := proxytest.MemcachePool(t, "mc", mc)
	const limit = 16 << 20
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{MaxMemory: limit, Pools: []config.Pool{pc}})
	c := proxytest.Dial(t, pc.Listen)
	val := bigValue("k", 1<<20)
	c.RoundTrip(fmt.Sprintf("set k 0 0 %d\r\n%s\r\n", len(val), val), "STORED\r\n")
	req := "get" + strings.Repeat(" k", 400) + "\r\n"
	c.Send(req + req)
	deadline := time.Now().Add(proxytest.Timeout)
	peak := int64(0)
	for p.MemoryRefused() < 2 {
		peak = max(peak, p.MemoryHeld())
		if time.Now().After(deadline) {
			t.Fatalf("refused %d replies for max_memory; want 2", p.MemoryRefused())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	peak = max(peak, p.MemoryHeld())
	if peak > limit+2<<20 {
		t.Errorf("proxy held %d reply bytes; want at most max_memory %d + one value", peak, limit)
	}
	values := readCutGet(t, c, "k", val)
	if values == 0 || values >= 400 {
		t.Errorf("got %d values before the error; want some, not all 400", values)
	}
	c.Expect(oomReply)
	t.Logf("first reply cut after %d values; peak held %d", values, peak)
	if got := p.Stats()[0].Rejected[proxy.RejectMemory]; got != 2 {
		t.Errorf("rejected memory = %d; want 2", got)
	}
	waitHeld(t, p, 0)
	other := proxytest.Dial(t, pc.Listen)
	other.Send("get k\r\n")
	expectBytes(t, other, mcValue("k", val)+"END\r\n")
	c.Send("get k\r\n")
	expectBytes(t, c, mcValue("k", val)+"END\r\n")
}

// TestRedisMaxMemoryRefusesBigRepliesToAClientThatDoesNotRead: a client
// pipelines GETs of a 16 MiB value and reads nothing. The first is written
// through to it; the next ones would take the proxy over max_memory while
// it has not read the first, so they are answered with the error, in order,
// and the connection stays in step.
func TestRedisMaxMemoryRefusesBigRepliesToAClientThatDoesNotRead(t *testing.T) {
	r := testserver.Redis(t)
	pc := proxytest.RedisPool(t, "r", r)
	const limit = 16 << 20
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{MaxMemory: limit, Pools: []config.Pool{pc}})
	val := bigValue("v", 16<<20)
	setter := proxytest.Dial(t, pc.Listen)
	setter.RoundTrip("*3\r\n$3\r\nSET\r\n$1\r\nv\r\n"+respBulk(val), "+OK\r\n")
	c := proxytest.Dial(t, pc.Listen)
	c.Send(strings.Repeat("*2\r\n$3\r\nGET\r\n$1\r\nv\r\n", 4) + "*1\r\n$4\r\nPING\r\n")
	deadline := time.Now().Add(proxytest.Timeout)
	for p.MemoryRefused() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("refused %d replies for max_memory; want 3", p.MemoryRefused())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	const oom = "-ERR out of memory: reply over the proxy's max_memory\r\n"
	expectBytes(t, c, respBulk(val)+oom+oom+oom+"+PONG\r\n")
	waitHeld(t, p, 0)
	c.Send("*2\r\n$3\r\nGET\r\n$1\r\nv\r\n")
	expectBytes(t, c, respBulk(val))
}

// TestClientNotReadingIsPausedNotBuffered: a client that pipelines 2000
// gets of a 256 KiB value (500 MB) and reads nothing has its requests
// parsed only while its unsent output is small (and max_in_flight allows);
// what the proxy holds for it stays within max_memory, the replies past that
// being errors. Once it reads, every reply arrives, in order.
func TestClientNotReadingIsPausedNotBuffered(t *testing.T) {
	mc := testserver.Memcached(t)
	pc := proxytest.MemcachePool(t, "mc", mc)
	const limit = 32 << 20
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{MaxMemory: limit, Pools: []config.Pool{pc}})
	val := bigValue("v", 256<<10)
	c := proxytest.Dial(t, pc.Listen)
	c.RoundTrip(fmt.Sprintf("set v 0 0 %d\r\n%s\r\n", len(val), val), "STORED\r\n")
	const n = 2000
	go func() {
		for i := 0; i < n; i++ {
			if _, err := c.C.Write([]byte("get v\r\n")); err != nil {
				return
			}
		}
	}()
	// Wait until the proxy stops taking requests: the server's counts
	// stand still while the client reads nothing.
	deadline := time.Now().Add(proxytest.Timeout)
	last, still, peak := int64(-1), 0, int64(0)
	for still < 5 {
		ss := p.Stats()[0].Servers[0]
		if got := ss.Requests + ss.Responses; got == last {
			still++
		} else {
			last, still = got, 0
		}
		peak = max(peak, p.MemoryHeld())
		if time.Now().After(deadline) {
			t.Fatalf("requests forwarded still growing: %d", ss.Requests)
		}
		time.Sleep(50 * time.Millisecond) // sampling the counters
	}
	ss := p.Stats()[0].Servers[0]
	t.Logf("paused after %d requests forwarded, %d answered; peak held %d bytes", ss.Requests, ss.Responses, peak)
	if ss.Requests >= n+1 { // the set counts too
		t.Errorf("forwarded %d requests of a client that reads nothing; want it paused before %d", ss.Requests, n)
	}
	if peak > limit+1<<20 {
		t.Errorf("held %d bytes; want at most max_memory %d and one reply", peak, limit)
	}
	values, errs := 0, 0
	for i := 0; i < n; i++ {
		switch l := c.Line(); l {
		case oomReply:
			errs++
		case fmt.Sprintf("VALUE v 0 %d\r\n", len(val)):
			expectBytes(t, c, val+"\r\nEND\r\n")
			values++
		default:
			t.Fatalf("reply %d: got %q; want the value or %q", i, l, oomReply)
		}
	}
	t.Logf("%d values, %d refused for max_memory", values, errs)
	if values == 0 {
		t.Error("no value served")
	}
	c.RoundTrip("get nokey\r\n", "END\r\n")
}

// TestRedisReplyOverMaxMemoryToAClientNotReadingClosesIt: a RESP reply can't
// be cut, so a client that does not read a reply bigger than max_memory is
// closed once the proxy holds more than max_memory for it; the proxy then
// holds nothing and serves other clients.
func TestRedisReplyOverMaxMemoryToAClientNotReadingClosesIt(t *testing.T) {
	r := testserver.Redis(t)
	pc := proxytest.RedisPool(t, "r", r)
	const limit = 2 << 20
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{MaxMemory: limit, Pools: []config.Pool{pc}})
	val := bigValue("v", 16<<20)       // more than the kernel's buffers take, and than limit
	other := proxytest.Dial(t, r.Addr) // set on the server itself
	other.RoundTrip("*3\r\n$3\r\nSET\r\n$1\r\nv\r\n"+respBulk(val), "+OK\r\n")
	c := proxytest.Dial(t, pc.Listen)
	c.Send("*2\r\n$3\r\nGET\r\n$1\r\nv\r\n")
	deadline := time.Now().Add(proxytest.Timeout)
	for p.MemoryRefused() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("reply never refused for max_memory")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	n, err := io.Copy(io.Discard, c.R)
	if err != nil {
		t.Fatalf("after %d bytes: %v; want the connection closed", n, err)
	}
	if n >= int64(len(respBulk(val))) {
		t.Fatalf("got %d bytes, the whole reply; want it cut short by a close", n)
	}
	waitHeld(t, p, 0)
	d := proxytest.Dial(t, pc.Listen)
	d.RoundTrip("*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
	if got := p.Stats()[0].Rejected[proxy.RejectMemory]; got != 1 {
		t.Errorf("rejected memory = %d; want 1", got)
	}
}

// oomReply ends a memcached get reply cut for max_memory, and answers a
// request refused for it.
const oomReply = "SERVER_ERROR out of memory: reply over the proxy's max_memory\r\n"

// readCutGet reads the values of key (each val) of a get reply until the
// out-of-memory line that cut it, and returns how many came.
func readCutGet(t *testing.T, c *proxytest.Conn, key, val string) int {
	t.Helper()
	values := 0
	for {
		l := c.Line()
		if l == oomReply {
			return values
		}
		if l != fmt.Sprintf("VALUE %s 0 %d\r\n", key, len(val)) {
			t.Fatalf("got %q; want a VALUE line or %q", l, oomReply)
		}
		expectBytes(t, c, val+"\r\n")
		values++
	}
}
