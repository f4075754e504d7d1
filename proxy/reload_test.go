package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// loadStats counts what the load clients of a reload test saw.
type loadStats struct {
	ops, hits, misses atomic.Int64
	errs, wrong       atomic.Int64 // error replies, values that are not the one set
	closed            atomic.Int64 // connections that failed or were closed
	mu                sync.Mutex
	first             []string // the first few problems, for the failure message
}

func (s *loadStats) problem(n *atomic.Int64, format string, args ...any) {
	n.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.first) < 5 {
		s.first = append(s.first, fmt.Sprintf(format, args...))
	}
}

// check fails t if the clients saw an error, a wrong value or a closed
// connection, or did no work.
func (s *loadStats) check(t *testing.T) {
	t.Helper()
	t.Logf("load: %d set-then-get pairs, %d hits, %d misses", s.ops.Load(), s.hits.Load(), s.misses.Load())
	if s.errs.Load() != 0 || s.wrong.Load() != 0 || s.closed.Load() != 0 {
		t.Errorf("load clients: %d error replies, %d wrong values, %d closed connections; want none; first: %q",
			s.errs.Load(), s.wrong.Load(), s.closed.Load(), s.first)
	}
	if s.hits.Load() == 0 {
		t.Errorf("load clients: no get hit in %d pairs", s.ops.Load())
	}
}

// waitOps polls until the clients have done n more pairs.
func (s *loadStats) waitOps(t *testing.T, n int64) {
	t.Helper()
	target := s.ops.Load() + n
	deadline := time.Now().Add(proxytest.Timeout)
	for s.ops.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load clients did %d pairs, want %d within %v; problems: %q", s.ops.Load(), target,
				proxytest.Timeout, s.first)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// startLoad runs n clients of addr, each setting fresh keys of its own and
// getting them back at once (a miss is fine: the key may have moved between
// the two), until the returned stop is called.
func startLoad(t *testing.T, addr string, n int, redis bool) (*loadStats, func()) {
	t.Helper()
	st := &loadStats{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("reload:%d:%d", g, i)
				val := fmt.Sprintf("v%d.%d", g, i)
				_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
				var err error
				if redis {
					err = redisPair(r, c, st, key, val)
				} else {
					err = memcachePair(r, c, st, key, val)
				}
				if err != nil {
					if ctx.Err() == nil {
						st.problem(&st.closed, "client %d: %v", g, err)
					}
					return
				}
				st.ops.Add(1)
			}
		}()
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return st, stop
}

func memcachePair(r *bufio.Reader, w io.Writer, st *loadStats, key, val string) error {
	if _, err := fmt.Fprintf(w, "set %s 0 0 %d\r\n%s\r\nget %s\r\n", key, len(val), val, key); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "STORED\r\n" {
		st.problem(&st.errs, "set %s: got %q; want %q", key, line, "STORED\r\n")
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	switch {
	case line == "END\r\n":
		st.misses.Add(1)
	case strings.HasPrefix(line, "VALUE "+key+" "):
		data, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		end, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if data != val+"\r\n" || end != "END\r\n" {
			st.problem(&st.wrong, "get %s: got %q %q; want %q", key, data, end, val+"\r\n")
		} else {
			st.hits.Add(1)
		}
	default:
		st.problem(&st.errs, "get %s: got %q", key, line)
	}
	return nil
}

func redisPair(r *bufio.Reader, w io.Writer, st *loadStats, key, val string) error {
	if _, err := fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n",
		len(key), key, len(val), val, len(key), key); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+OK\r\n" {
		st.problem(&st.errs, "SET %s: got %q; want %q", key, line, "+OK\r\n")
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	switch {
	case line == "$-1\r\n":
		st.misses.Add(1)
	case line == "$"+strconv.Itoa(len(val))+"\r\n":
		data, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if data != val+"\r\n" {
			st.problem(&st.wrong, "GET %s: got %q; want %q", key, data, val+"\r\n")
		} else {
			st.hits.Add(1)
		}
	default:
		st.problem(&st.errs, "GET %s: got %q", key, line)
	}
	return nil
}

// dials returns the connection attempts per server name of the pool.
func dials(p *proxy.Proxy, pool string) map[string]int64 {
	out := map[string]int64{}
	for _, ps := range p.Stats() {
		if ps.Name == pool {
			for _, s := range ps.Servers {
				out[s.Name] = s.Dials
			}
		}
	}
	return out
}

// withServers returns cfg with pool 0's servers cut to the first n of all.
func withServers(base config.Pool, all []config.Server, n int) *config.Config {
	pc := base
	pc.Servers = append([]config.Server(nil), all[:n]...)
	return &config.Config{Pools: []config.Pool{pc}}
}

// statValue reads one "STAT name value" of a memcached's stats.
func statValue(t *testing.T, addr, name string) int64 {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.C.Close()
	c.Send("stats\r\n")
	for {
		line := c.Line()
		if line == "END\r\n" {
			t.Fatalf("stats of %s: no %s", addr, name)
		}
		if f := strings.Fields(line); len(f) == 3 && f[1] == name {
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				t.Fatalf("stats of %s: %q", addr, line)
			}
			return n
		}
	}
}

// TestReloadMemcacheFlip: under load (16 clients setting and getting keys of
// their own), the pool flips 20 times between 3 and 4 memcached servers by
// Reload. No client sees an error, a wrong value or a closed connection; the
// fourth server takes keys while it is listed; connections to the three
// servers listed throughout are never re-dialed.
func TestReloadMemcacheFlip(t *testing.T) {
	var mcs []*testserver.Process
	for range 4 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	base := proxytest.MemcachePool(t, "mc", mcs...)
	all := base.Servers
	cfg3 := withServers(base, all, 3)
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, cfg3)
	idle := statValue(t, mcs[3].Addr, "curr_connections") // the fourth server before it is listed
	st, stop := startLoad(t, base.Listen, 16, false)
	st.waitOps(t, 500) // every loop has dialed every server by now
	before := dials(p, "mc")
	for i := range 20 {
		n := 4
		if i%2 == 1 {
			n = 3
		}
		if err := p.Reload(withServers(base, all, n)); err != nil {
			t.Fatalf("reload %d (%d servers): %v", i, n, err)
		}
		st.waitOps(t, 100)
		if n == 4 {
			if got := len(p.Stats()[0].Servers); got != 4 {
				t.Fatalf("reload %d: %d servers in stats; want 4", i, got)
			}
		}
	}
	stop()
	st.check(t)
	after := dials(p, "mc")
	for _, name := range []string{"mc1", "mc2", "mc3"} {
		if before[name] == 0 || after[name] != before[name] {
			t.Errorf("dials to %s: %d before the reloads, %d after; want the same, not 0", name, before[name], after[name])
		}
	}
	if items, hits := statValue(t, mcs[3].Addr, "curr_items"), statValue(t, mcs[3].Addr, "get_hits"); items == 0 || hits == 0 {
		t.Errorf("fourth server: curr_items %d, get_hits %d; want both > 0", items, hits)
	}
	// The last reload took the fourth server out: the proxy's connections
	// to it close (their replies were all in).
	deadline := time.Now().Add(proxytest.Timeout)
	for n := statValue(t, mcs[3].Addr, "curr_connections"); n != idle; n = statValue(t, mcs[3].Addr, "curr_connections") {
		if time.Now().After(deadline) {
			t.Fatalf("fourth server, removed: %d connections; want %d as before it was listed", n, idle)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// expectClosed fails unless the proxy closes c (after the lines want).
func expectClosed(t *testing.T, c *proxytest.Conn) {
	t.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	if line, err := c.R.ReadString('\n'); err != io.EOF {
		t.Fatalf("got %q, %v; want the connection closed (EOF)", line, err)
	}
}

// TestReloadPools: a reload adds a pool (it listens and serves), removes one
// (it stops accepting, its idle clients are closed), moves one to another
// listen address (remove plus add), and refuses, changing nothing, what
// cannot change live.
func TestReloadPools(t *testing.T) {
	mc := testserver.Memcached(t)
	a := proxytest.MemcachePool(t, "a", mc)
	b := proxytest.MemcachePool(t, "b", mc)
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, &config.Config{Pools: []config.Pool{a, b}})
	ca := proxytest.Dial(t, a.Listen)
	ca.RoundTrip("set k 0 0 1\r\nx\r\n", "STORED\r\n")
	cb := proxytest.Dial(t, b.Listen)
	cb.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")

	// b goes, c comes.
	c := proxytest.MemcachePool(t, "c", mc)
	if err := p.Reload(&config.Config{Pools: []config.Pool{a, c}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	expectClosed(t, cb)
	if conn, err := net.DialTimeout("tcp", b.Listen, time.Second); err == nil {
		conn.Close()
		t.Errorf("removed pool b still accepts on %s", b.Listen)
	}
	cc := proxytest.Dial(t, c.Listen)
	cc.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")
	ca.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")
	if got, want := strings.Join(p.Pools(), ","), "a,c"; got != want {
		t.Errorf("pools %q; want %q", got, want)
	}

	// a moves: its clients are drained, the new address serves.
	moved := proxytest.MemcachePool(t, "a", mc)
	if err := p.Reload(&config.Config{Pools: []config.Pool{moved, c}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	expectClosed(t, ca)
	proxytest.Dial(t, moved.Listen).RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")

	// Refused, and nothing applied: a protocol change, a port in use, a
	// server_connections change.
	redisC := c
	redisC.Protocol = config.ProtocolRedis
	redisC.Limits = config.DefaultLimits(config.ProtocolRedis)
	busy := proxytest.MemcachePool(t, "d", mc)
	busy.Listen = moved.Listen
	conns := c
	conns.ServerConnections = 2
	for _, tc := range []struct {
		cfg  *config.Config
		want string
	}{
		{&config.Config{Pools: []config.Pool{moved, redisC}}, "pool c: protocol cannot change live"},
		{&config.Config{Pools: []config.Pool{proxytest.MemcachePool(t, "a", mc), busy, c}}, "listen"},
		{&config.Config{Pools: []config.Pool{moved, conns}}, "pool c: server_connections cannot change live"},
	} {
		err := p.Reload(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reload: got %v; want an error with %q", err, tc.want)
		}
	}
	if got, want := strings.Join(p.Pools(), ","), "a,c"; got != want {
		t.Errorf("after refused reloads: pools %q; want %q", got, want)
	}
	cc.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")
	proxytest.Dial(t, moved.Listen).RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "x\r\n", "END\r\n")
}

// TestReloadConcurrent: Reload calls from many goroutines are serialised
// while clients are served.
func TestReloadConcurrent(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	base := proxytest.MemcachePool(t, "mc", mc1, mc2)
	all := base.Servers
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, withServers(base, all, 2))
	st, stop := startLoad(t, base.Listen, 4, false)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				if err := p.Reload(withServers(base, all, 1+(g+i)%2)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("reload: %v", err)
	}
	st.waitOps(t, 50)
	stop()
	st.check(t)
}

// liveHeap is the heap still in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is the test process's resident set size.
func rssBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestReloadRedis: the same flips for a Redis pool, with a client inside
// MULTI and a subscribed client across a reload.
func TestReloadRedis(t *testing.T) {
	var rs []*testserver.Process
	for range 4 {
		rs = append(rs, testserver.Redis(t))
	}
	base := proxytest.RedisPool(t, "r", rs...)
	all := base.Servers
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, withServers(base, all, 3))

	// A channel that lives on the same server with 3 and 4 servers, so
	// PUBLISH finds the subscription after the reload too.
	ring3, err := withServers(base, all, 3).Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	ring4, err := withServers(base, all, 4).Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	stays := func(prefix string) string {
		for i := 0; ; i++ {
			if k := prefix + strconv.Itoa(i); ring3.Pick([]byte(k)) == ring4.Pick([]byte(k)) {
				return k
			}
		}
	}
	channel := stays("news")
	// The transaction's hash tag stays put too: keys that move to another
	// server during a transaction abort it (CROSSSLOT, then EXECABORT).
	tag := "{" + stays("t") + "}"
	ka, kb := tag+"a", tag+"b"
	sub := proxytest.Dial(t, base.Listen)
	sub.RoundTrip(respCmd("SUBSCRIBE", channel), "*3\r\n", "$9\r\n", "subscribe\r\n", "$"+strconv.Itoa(len(channel))+"\r\n",
		channel+"\r\n", ":1\r\n")
	txn := proxytest.Dial(t, base.Listen)
	txn.RoundTrip(respCmd("MULTI"), "+OK\r\n")
	txn.RoundTrip(respCmd("SET", ka, "1"), "+QUEUED\r\n")

	st, stop := startLoad(t, base.Listen, 16, true)
	st.waitOps(t, 500)
	before := dials(p, "r")
	for i := range 20 {
		n := 4
		if i%2 == 1 {
			n = 3
		}
		if err := p.Reload(withServers(base, all, n)); err != nil {
			t.Fatalf("reload %d (%d servers): %v", i, n, err)
		}
		st.waitOps(t, 100)
		if i == 0 {
			// Across the first reload: the transaction goes on and
			// commits; the subscription still delivers.
			txn.RoundTrip(respCmd("SET", kb, "2"), "+QUEUED\r\n")
			txn.RoundTrip(respCmd("EXEC"), "*2\r\n", "+OK\r\n", "+OK\r\n")
			txn.RoundTrip(respCmd("MGET", ka, kb), "*2\r\n", "$1\r\n", "1\r\n", "$1\r\n", "2\r\n")
			pub := proxytest.Dial(t, base.Listen)
			pub.RoundTrip(respCmd("PUBLISH", channel, "hello"), ":1\r\n")
			sub.Expect("*3\r\n", "$7\r\n", "message\r\n", "$"+strconv.Itoa(len(channel))+"\r\n", channel+"\r\n",
				"$5\r\n", "hello\r\n")
		}
	}
	stop()
	st.check(t)
	after := dials(p, "r")
	for _, name := range []string{"r1", "r2", "r3"} {
		if before[name] == 0 || after[name] != before[name] {
			t.Errorf("dials to %s: %d before the reloads, %d after; want the same, not 0", name, before[name], after[name])
		}
	}
	c := proxytest.Dial(t, rs[3].Addr)
	c.Send(respCmd("DBSIZE"))
	if line := c.Line(); line == ":0\r\n" || !strings.HasPrefix(line, ":") {
		t.Errorf("fourth server DBSIZE: got %q; want keys", line)
	}
	// The subscriber is still subscribed after every reload.
	pub := proxytest.Dial(t, base.Listen)
	pub.RoundTrip(respCmd("PUBLISH", channel, "bye"), ":1\r\n")
	sub.Expect("*3\r\n", "$7\r\n", "message\r\n", "$"+strconv.Itoa(len(channel))+"\r\n", channel+"\r\n",
		"$3\r\n", "bye\r\n")
}

// TestReloadNoLeak: 100 reloads in a row under load leave goroutines, open
// descriptors and memory (the live heap after a collection, and RSS) where
// they were.
func TestReloadNoLeak(t *testing.T) {
	var mcs []*testserver.Process
	for range 4 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	base := proxytest.MemcachePool(t, "mc", mcs...)
	all := base.Servers
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, withServers(base, all, 3))
	st, stop := startLoad(t, base.Listen, 4, false)
	st.waitOps(t, 200)
	goroutines, fds := runtime.NumGoroutine(), len(openFDs(t))
	heap, rss := liveHeap(), rssBytes(t)
	for i := range 100 {
		if err := p.Reload(withServers(base, all, 3+(i+1)%2)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		st.waitOps(t, 10)
	}
	// The last reload listed 3 servers: the fourth's connections close,
	// the old versions' health goroutines end.
	deadline := time.Now().Add(proxytest.Timeout)
	const slack = 4
	for {
		g, f := runtime.NumGoroutine(), len(openFDs(t))
		if g <= goroutines+slack && f <= fds+slack {
			t.Logf("goroutines %d -> %d, descriptors %d -> %d", goroutines, g, fds, f)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 100 reloads: %d goroutines (%d before), %d descriptors (%d before); want at most %d more",
				g, goroutines, f, fds, slack)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	// Each version holds its own copy of the pool's settings, ring and
	// health: kept versions would show as heap that stays live.
	const memSlack = 4 << 20
	if h, r := liveHeap(), rssBytes(t); h > heap+memSlack || r > rss+16*memSlack {
		t.Errorf("after 100 reloads: live heap %d MiB (%d before), RSS %d MiB (%d before); want at most %d and %d MiB more",
			h>>20, heap>>20, r>>20, rss>>20, memSlack>>20, 16*memSlack>>20)
	} else {
		t.Logf("live heap %d -> %d KiB, RSS %d -> %d MiB", heap>>10, h>>10, rss>>20, r>>20)
	}
	stop()
	st.check(t)
}

// TestReloadKeepsHealth: a server ejected before a reload stays ejected
// after it (health carries over by server name) while its keys are served
// by the others, and the reload's other change (a timeout) applies.
func TestReloadKeepsHealth(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	pc := proxytest.MemcachePool(t, "mc", mc1, mc2)
	pc.AutoEjectHosts = true
	pc.ServerFailureLimit = 1
	pc.ServerRetryTimeout = time.Hour // no re-admission during the test
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pc}})
	ring, err := pc.Ring()
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	for i := 0; key == ""; i++ {
		if k := "h" + strconv.Itoa(i); ring.Pick([]byte(k)) == 0 {
			key = k
		}
	}
	c := proxytest.Dial(t, pc.Listen)
	mc1.Kill()
	deadline := time.Now().Add(proxytest.Timeout)
	for {
		c.Send("set " + key + " 0 0 1\r\nx\r\n")
		if c.Line() == "STORED\r\n" {
			break // ejected: the key went to mc2
		}
		if time.Now().After(deadline) {
			t.Fatal("dead server never ejected")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	state := func() string {
		s := p.Stats()[0].Servers[0]
		return fmt.Sprintf("%s %v ejections %d", s.Name, s.State, s.Ejections)
	}
	before := state()
	next := pc
	next.Timeout = 3 * time.Second
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := state(); got != before || !strings.Contains(got, "ejected ejections 1") {
		t.Errorf("after reload: %q; want %q, ejected once", got, before)
	}
	c.RoundTrip("get "+key+"\r\n", "VALUE "+key+" 0 1\r\n", "x\r\n", "END\r\n")
}

// TestReloadBeforeRun: a Reload before Run replaces what Run will serve.
func TestReloadBeforeRun(t *testing.T) {
	mc := testserver.Memcached(t)
	a := proxytest.MemcachePool(t, "a", mc)
	b := proxytest.MemcachePool(t, "b", mc)
	p, err := proxy.New(&config.Config{Pools: []config.Pool{a}}, proxy.Options{Loops: 1, Logger: proxytest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(&config.Config{Pools: []config.Pool{b}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	proxytest.WaitAccept(t, b.Listen, done)
	proxytest.Dial(t, b.Listen).RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	if conn, err := net.DialTimeout("tcp", a.Listen, time.Second); err == nil {
		conn.Close()
		t.Errorf("pool a, removed before Run, accepts on %s", a.Listen)
	}
	if got := strings.Join(p.Pools(), ","); got != "b" {
		t.Errorf("pools %q; want %q", got, "b")
	}
}

// TestReloadInFlightFinishes: a request in flight to a server that a reload
// removes gets that server's reply; then the connection to it closes, and
// the next request goes to the new server. (The old server is a fake that
// answers when told to.)
func TestReloadInFlightFinishes(t *testing.T) {
	got := make(chan string, 1)
	release := make(chan struct{})
	closed := make(chan struct{})
	fake := proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		got <- line
		<-release
		_, _ = io.WriteString(c, "VALUE k 0 3\r\nold\r\nEND\r\n")
		if _, err := r.ReadString('\n'); err == io.EOF {
			close(closed)
		}
	})
	mc := testserver.Memcached(t)
	pc := proxytest.MemcachePool(t, "mc", mc)
	pc.Servers = []config.Server{{Name: "fake", Addr: fake, Network: "tcp", Weight: 1}}
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pc}})
	c := proxytest.Dial(t, pc.Listen)
	c.Send("get k\r\n")
	select {
	case line := <-got:
		if line != "get k\r\n" {
			t.Fatalf("fake server got %q; want %q", line, "get k\r\n")
		}
	case <-time.After(proxytest.Timeout):
		t.Fatal("request never reached the fake server")
	}
	next := proxytest.MemcachePool(t, "mc", mc)
	next.Listen = pc.Listen
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	close(release)
	c.Expect("VALUE k 0 3\r\n", "old\r\n", "END\r\n")
	select {
	case <-closed:
	case <-time.After(proxytest.Timeout):
		t.Fatal("connection to the removed server not closed")
	}
	c.RoundTrip("get k\r\n", "END\r\n")
}

// TestReloadRemovedPoolDrainTimeout: a client of a removed pool that is owed
// a reply that never comes is closed after Options.DrainTimeout.
func TestReloadRemovedPoolDrainTimeout(t *testing.T) {
	held := make(chan struct{})
	fake := proxytest.FakeServer(t, func(c net.Conn) {
		_, _ = bufio.NewReader(c).ReadString('\n')
		close(held)
		_, _ = io.Copy(io.Discard, c) // never answers
	})
	gone := proxytest.MemcachePool(t, "gone", testserver.Memcached(t))
	gone.Timeout = 0 // wait forever
	gone.Servers = []config.Server{{Name: "silent", Addr: fake, Network: "tcp", Weight: 1}}
	stays := proxytest.MemcachePool(t, "stays", testserver.Memcached(t))
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1, DrainTimeout: 200 * time.Millisecond},
		&config.Config{Pools: []config.Pool{gone, stays}})
	c := proxytest.Dial(t, gone.Listen)
	c.Send("get k\r\n")
	select {
	case <-held:
	case <-time.After(proxytest.Timeout):
		t.Fatal("request never reached the silent server")
	}
	if err := p.Reload(&config.Config{Pools: []config.Pool{stays}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	expectClosed(t, c)
	proxytest.Dial(t, stays.Listen).RoundTrip("get k\r\n", "END\r\n")
}

// TestReloadRedisDBReplacesConnections: a reload that changes redis_db (and
// adds a server) replaces the pool's backend connections, so that every
// request parsed after it travels in the new database: the kept server r1
// gets its key in database 5 as the new r2 does (not in 3); the client
// stays connected; what was written before stays in database 3.
func TestReloadRedisDBReplacesConnections(t *testing.T) {
	r1, r2 := testserver.Redis(t), testserver.Redis(t)
	base := proxytest.RedisPool(t, "r", r1, r2)
	all := base.Servers
	base.RedisDB = 3
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, withServers(base, all, 1))
	c := proxytest.Dial(t, base.Listen)
	c.RoundTrip(respCmd("SET", "first", "1"), "+OK\r\n")

	next := withServers(base, all, 2)
	next.Pools[0].RedisDB = 5
	if err := p.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	ring, err := next.Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[int]string{}
	for i := 0; len(keys) < 2; i++ {
		k := "k" + strconv.Itoa(i)
		if _, ok := keys[ring.Pick([]byte(k))]; !ok {
			keys[ring.Pick([]byte(k))] = k
		}
	}
	for _, k := range keys {
		c.RoundTrip(respCmd("SET", k, "v"), "+OK\r\n")
	}
	for _, tc := range []struct {
		srv *testserver.Process
		key string
	}{{r1, keys[0]}, {r2, keys[1]}} {
		d := proxytest.Dial(t, tc.srv.Addr)
		d.RoundTrip(respCmd("SELECT", "5"), "+OK\r\n")
		d.RoundTrip(respCmd("GET", tc.key), "$1\r\n", "v\r\n")
		d.RoundTrip(respCmd("SELECT", "3"), "+OK\r\n")
		d.RoundTrip(respCmd("GET", tc.key), "$-1\r\n")
	}
	// "first" was written in database 3 on whichever server owned it.
	found := 0
	for _, srv := range []*testserver.Process{r1, r2} {
		d := proxytest.Dial(t, srv.Addr)
		d.RoundTrip(respCmd("SELECT", "3"), "+OK\r\n")
		d.Send(respCmd("EXISTS", "first"))
		if d.Line() == ":1\r\n" {
			found++
		}
	}
	if found != 1 {
		t.Errorf("\"first\" is in database 3 on %d servers; want 1", found)
	}
}

// TestReloadKeepsServerCounters: a reload that replaces a server's
// connections (redis_db changed) keeps its counters: they are the
// server's, not the connection's, and a counter that went back to zero
// would read as a restart in Prometheus.
func TestReloadKeepsServerCounters(t *testing.T) {
	r1 := testserver.Redis(t)
	base := proxytest.RedisPool(t, "r", r1)
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, withServers(base, base.Servers, 1))
	c := proxytest.Dial(t, base.Listen)
	for i := range 10 {
		c.RoundTrip(respCmd("SET", "k"+strconv.Itoa(i), "v"), "+OK\r\n")
	}
	name := base.Servers[0].Name
	pre := serverStats(t, p, "r", name)
	if pre.Requests != 10 || pre.Responses != 10 || pre.Dials != 1 {
		t.Fatalf("before the reload: %d requests, %d responses, %d dials; want 10, 10, 1", pre.Requests, pre.Responses, pre.Dials)
	}
	next := withServers(base, base.Servers, 1)
	next.Pools[0].RedisDB = 2
	if err := p.Reload(next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for i := range 5 {
		c.RoundTrip(respCmd("SET", "k"+strconv.Itoa(i), "v"), "+OK\r\n")
	}
	post := serverStats(t, p, "r", name)
	// 10 + 5 SETs and the new connection's SELECT 2.
	if post.Requests != 16 || post.Responses != 16 || post.Dials != 2 {
		t.Errorf("after the reload: %d requests, %d responses, %d dials; want 16, 16, 2 (the connection was replaced, the counters kept)",
			post.Requests, post.Responses, post.Dials)
	}
}
