package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
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

// hkConn is a client usable from any goroutine: errors are returned, not
// fatal.
type hkConn struct {
	c     net.Conn
	r     *bufio.Reader
	redis bool
}

func hkDial(t *testing.T, addr string, redis bool) *hkConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &hkConn{c: c, r: bufio.NewReader(c), redis: redis}
}

// set stores key=val and checks the reply.
func (h *hkConn) set(key, val string) error {
	_ = h.c.SetDeadline(time.Now().Add(proxytest.Timeout))
	req, want := fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(val), val), "STORED\r\n"
	if h.redis {
		req, want = fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(val), val), "+OK\r\n"
	}
	if _, err := io.WriteString(h.c, req); err != nil {
		return err
	}
	l, err := h.r.ReadString('\n')
	if err != nil {
		return err
	}
	if l != want {
		return fmt.Errorf("set %s: got %q; want %q", key, l, want)
	}
	return nil
}

// get returns key's value ("" and false for a miss).
func (h *hkConn) get(key string) (string, bool, error) {
	_ = h.c.SetDeadline(time.Now().Add(proxytest.Timeout))
	req := "get " + key + "\r\n"
	if h.redis {
		req = fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
	}
	if _, err := io.WriteString(h.c, req); err != nil {
		return "", false, err
	}
	l, err := h.r.ReadString('\n')
	if err != nil {
		return "", false, err
	}
	var n int
	switch {
	case h.redis && l == "$-1\r\n", !h.redis && l == "END\r\n":
		return "", false, nil
	case h.redis && strings.HasPrefix(l, "$"):
		n, err = strconv.Atoi(strings.TrimSpace(l[1:]))
	case !h.redis && strings.HasPrefix(l, "VALUE "+key+" "):
		f := strings.Fields(l)
		n, err = strconv.Atoi(f[len(f)-1])
	default:
		return "", false, fmt.Errorf("get %s: got %q", key, l)
	}
	if err != nil {
		return "", false, fmt.Errorf("get %s: got %q", key, l)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(h.r, buf); err != nil {
		return "", false, err
	}
	if !h.redis {
		if end, err := h.r.ReadString('\n'); err != nil || end != "END\r\n" {
			return "", false, fmt.Errorf("get %s: got %q after the value; want END", key, end)
		}
	}
	return string(buf[:n]), true, nil
}

// nearStats returns pool's near-cache counters.
func nearStats(p *proxy.Proxy, pool string) proxy.NearCacheStats {
	for _, ps := range p.Stats() {
		if ps.Name == pool {
			return ps.NearCache
		}
	}
	return proxy.NearCacheStats{}
}

// hotPool returns a pool of protocol proto over two fresh servers, with hot
// keys on (a low promotion floor, so a test's few thousand reads/s make a
// key hot).
func hotPool(t *testing.T, redis bool, on bool) config.Pool {
	var p config.Pool
	if redis {
		p = proxytest.RedisPool(t, "hk", testserver.Redis(t), testserver.Redis(t))
		p.AllowCommands = []string{"flushdb"}
	} else {
		p = proxytest.MemcachePool(t, "hk", testserver.Memcached(t), testserver.Memcached(t))
	}
	p.ServerConnections = 2
	if on {
		p.HotKeys = config.HotKeys{Enabled: true, MinRate: 20}
	}
	return p
}

// warm reads key on c until the near cache serves it (hits rise), or fails
// the test after a deadline.
func warm(t *testing.T, p *proxy.Proxy, c *hkConn, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	start := nearStats(p, "hk").Hits
	for nearStats(p, "hk").Hits == start {
		if time.Now().After(deadline) {
			t.Fatalf("key %q never served from the near cache: %+v", key, nearStats(p, "hk"))
		}
		if _, _, err := c.get(key); err != nil {
			t.Fatal(err)
		}
	}
}

// hkReaders are connections reading keys in a loop until stopped, for
// tests that need a key kept hot while they act.
type hkReaders struct {
	stop  atomic.Bool
	wg    sync.WaitGroup
	errs  chan error
	reads atomic.Int64
	once  sync.Once
}

// startReaders starts n connections to addr, each reading key() over and
// over; check (nil: any reply) judges each reply, and a reader stops at its
// first error. The readers are stopped in t's cleanup if not before.
func startReaders(t *testing.T, addr string, redis bool, n int, key func() string, check func(key, v string, hit bool) error) *hkReaders {
	t.Helper()
	r := &hkReaders{errs: make(chan error, n)}
	for range n {
		c := hkDial(t, addr, redis)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for !r.stop.Load() {
				k := key()
				v, hit, err := c.get(k)
				if err == nil && check != nil {
					err = check(k, v, hit)
				}
				if err != nil {
					r.errs <- err
					return
				}
				r.reads.Add(1)
			}
		}()
	}
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Err returns a reader's error if one has stopped on one (nil otherwise);
// it does not wait.
func (r *hkReaders) Err() error {
	select {
	case err := <-r.errs:
		return err
	default:
		return nil
	}
}

// Stop stops the readers, waits for them and reports their errors on t. It
// returns the reads they made; calls after the first only return that.
func (r *hkReaders) Stop(t *testing.T) int64 {
	t.Helper()
	r.once.Do(func() {
		r.stop.Store(true)
		r.wg.Wait()
		close(r.errs)
		for err := range r.errs {
			t.Error(err)
		}
	})
	return r.reads.Load()
}

// value checks that a reader got want for every key.
func value(want string) func(key, v string, hit bool) error {
	return func(key, v string, hit bool) error {
		if !hit || v != want {
			return fmt.Errorf("get %s: got %q (hit %v); want %q", key, v, hit, want)
		}
		return nil
	}
}

// TestHotKeysNoStaleReadAfterWrite: a hot key read by 6 connections while
// another sets it and a third reads it back after each set: the read back
// always sees the value just written, and the near cache is serving
// (hits rise during the writes).
func TestHotKeysNoStaleReadAfterWrite(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			pool := hotPool(t, redis, true)
			p := proxytest.Start(t, proxy.Options{}, pool)
			w, check := hkDial(t, pool.Listen, redis), hkDial(t, pool.Listen, redis)
			if err := w.set("hot", "v0"); err != nil {
				t.Fatal(err)
			}
			warm(t, p, check, "hot")
			rd := startReaders(t, pool.Listen, redis, 6, func() string { return "hot" }, func(key, v string, hit bool) error {
				if !hit || !strings.HasPrefix(v, "v") {
					return fmt.Errorf("reader: got %q (hit %v); want a value written", v, hit)
				}
				return nil
			})
			before := nearStats(p, "hk").Hits
			const n = 1000
			stale := 0
			for i := 1; i <= n; i++ {
				want := "v" + strconv.Itoa(i)
				if err := w.set("hot", want); err != nil {
					t.Fatal(err)
				}
				got, ok, err := check.get("hot")
				if err != nil {
					t.Fatal(err)
				}
				if got != want || !ok {
					stale++
					if stale < 5 {
						t.Errorf("after set %d: got %q (hit %v); want %q", i, got, ok, want)
					}
				}
			}
			reads := rd.Stop(t)
			after := nearStats(p, "hk")
			if stale > 0 {
				t.Errorf("%d stale reads of %d", stale, n)
			}
			if after.Hits <= before {
				t.Errorf("near-cache hits: %d before the writes, %d after; want them to rise (%d reads)", before, after.Hits, reads)
			}
			t.Logf("%d sets, %d concurrent reads, near cache %+v", n, reads, after)
		})
	}
}

// TestHotKeysMultiGetInOrder: a multi-get mixing a cached hot key with
// uncached keys (one missing) gets every value in the order asked, exact
// bytes; memcached get and Redis MGET.
func TestHotKeysMultiGetInOrder(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			pool := hotPool(t, redis, true)
			p := proxytest.Start(t, proxy.Options{}, pool)
			h := hkDial(t, pool.Listen, redis)
			for _, k := range []string{"a", "b", "c", "d", "e"} {
				if err := h.set(k, "val-"+k); err != nil {
					t.Fatal(err)
				}
			}
			warm(t, p, h, "c")
			hits := nearStats(p, "hk").Hits
			c := proxytest.Dial(t, pool.Listen)
			// The hot key is listed: stats hotkeys / CACHEPROXY HOTKEYS.
			ring, err := pool.Ring()
			if err != nil {
				t.Fatal(err)
			}
			server := pool.Servers[ring.Pick([]byte("c"))].Name
			if redis {
				c.Send("*2\r\n$10\r\ncacheproxy\r\n$7\r\nHOTKEYS\r\n")
				c.Expect("*1\r\n", "*4\r\n", "$1\r\n", "c\r\n")
				c.Line() // the rate's length
				if rate := c.Line(); !regexp.MustCompile(`^[0-9]+\.[0-9]\r\n$`).MatchString(rate) {
					t.Errorf("rate: got %q; want a number", rate)
				}
				c.Expect(fmt.Sprintf("$%d\r\n", len(server)), server+"\r\n", ":1\r\n")
			} else {
				c.Send("stats hotkeys\r\n")
				if l := c.Line(); !regexp.MustCompile(`^STAT c rate=[0-9]+\.[0-9] server=` + server + ` cached=1\r\n$`).MatchString(l) {
					t.Errorf("stats hotkeys: got %q; want STAT c rate=<n> server=%s cached=1", l, server)
				}
				c.Expect("END\r\n")
			}
			if got := p.HotKeys()["hk"]; len(got) != 1 || got[0].Key != "c" || got[0].Server != server || !got[0].Cached {
				t.Errorf("HotKeys: got %+v; want c on %s, cached", got, server)
			}
			if redis {
				c.Send("*7\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nc\r\n$7\r\nmissing\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\ne\r\n")
				c.Expect("*6\r\n", "$5\r\n", "val-a\r\n", "$5\r\n", "val-c\r\n", "$-1\r\n", "$5\r\n", "val-b\r\n",
					"$5\r\n", "val-c\r\n", "$5\r\n", "val-e\r\n")
			} else {
				c.Send("get a c missing b c e\r\n")
				c.Expect("VALUE a 0 5\r\n", "val-a\r\n", "VALUE c 0 5\r\n", "val-c\r\n", "VALUE b 0 5\r\n", "val-b\r\n",
					"VALUE c 0 5\r\n", "val-c\r\n", "VALUE e 0 5\r\n", "val-e\r\n", "END\r\n")
			}
			if got := nearStats(p, "hk").Hits; got < hits+2 {
				t.Errorf("near-cache hits: %d before the multi-get, %d after; want 2 more (c twice)", hits, got)
			}
		})
	}
}

// TestHotKeysFlushDropsCache: flush_all / FLUSHDB through the proxy drop a
// cached hot key: the next read misses.
func TestHotKeysFlushDropsCache(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			pool := hotPool(t, redis, true)
			p := proxytest.Start(t, proxy.Options{}, pool)
			h := hkDial(t, pool.Listen, redis)
			if err := h.set("hot", "before"); err != nil {
				t.Fatal(err)
			}
			warm(t, p, h, "hot")
			c := proxytest.Dial(t, pool.Listen)
			if redis {
				c.RoundTrip("*1\r\n$7\r\nFLUSHDB\r\n", "+OK\r\n")
				c.RoundTrip("*2\r\n$3\r\nGET\r\n$3\r\nhot\r\n", "$-1\r\n")
			} else {
				c.RoundTrip("flush_all\r\n", "OK\r\n")
				c.RoundTrip("get hot\r\n", "END\r\n")
			}
			if st := nearStats(p, "hk"); st.Invalidations[2] == 0 {
				t.Errorf("flush invalidations: got %+v; want some", st)
			}
		})
	}
}

// TestHotKeysOffByDefault: without hot_keys the same reads count no
// near-cache hits.
func TestHotKeysOffByDefault(t *testing.T) {
	pool := hotPool(t, false, false)
	p := proxytest.Start(t, proxy.Options{}, pool)
	h := hkDial(t, pool.Listen, false)
	if err := h.set("hot", "x"); err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		if _, _, err := h.get("hot"); err != nil {
			t.Fatal(err)
		}
	}
	if st := nearStats(p, "hk"); st != (proxy.NearCacheStats{}) {
		t.Errorf("near cache with hot_keys absent: got %+v; want all zero", st)
	}
}

func TestDisplayKey(t *testing.T) {
	long := strings.Repeat("x", 70)
	for _, c := range []struct{ in, want string }{
		{"user:1", "user:1"},
		{"a b\x00\xff\\", `a\x20b\x00\xff\x5c`},
		{long, long[:64]},
	} {
		if got := proxy.DisplayKey(c.in); got != c.want {
			t.Errorf("DisplayKey(%q): got %q; want %q", c.in, got, c.want)
		}
	}
}

// TestHotKeysReload: hot_keys turned on by a reload starts serving; a
// reload that changes its settings keeps the tracker (the key stays hot,
// promotions are not counted again); turning it off stops serving, and a
// write made while it is off is seen once it is back on (the cache was
// emptied, not served stale).
func TestHotKeysReload(t *testing.T) {
	pool := hotPool(t, false, false)
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{pool}})
	reload := func(h config.HotKeys) {
		t.Helper()
		pc := pool
		pc.HotKeys = h
		if err := p.Reload(&config.Config{Pools: []config.Pool{pc}}); err != nil {
			t.Fatalf("reload %+v: %v", h, err)
		}
	}
	h := hkDial(t, pool.Listen, false)
	if err := h.set("hot", "one"); err != nil {
		t.Fatal(err)
	}
	on := config.HotKeys{Enabled: true, MinRate: 20, TTL: time.Minute}
	reload(on)
	warm(t, p, h, "hot")
	promotions := nearStats(p, "hk").Promotions
	on.CacheSize = 8 << 20
	reload(on)
	if got := p.HotKeys()["hk"]; len(got) != 1 || got[0].Key != "hot" {
		t.Errorf("after a settings reload: hot keys %+v; want hot still listed", got)
	}
	hits := nearStats(p, "hk").Hits
	for range 200 {
		if v, _, err := h.get("hot"); err != nil || v != "one" {
			t.Fatalf("get: %q, %v; want one", v, err)
		}
	}
	if st := nearStats(p, "hk"); st.Hits <= hits || st.Promotions != promotions {
		t.Errorf("after a settings reload: %+v; want hits above %d and promotions still %d", st, hits, promotions)
	}
	reload(config.HotKeys{})
	if err := h.set("hot", "two"); err != nil { // not seen by the (off) near cache
		t.Fatal(err)
	}
	if st := nearStats(p, "hk"); st.Enabled {
		t.Errorf("hot keys off: stats %+v; want disabled", st)
	}
	reload(on)
	for range 200 {
		if v, _, err := h.get("hot"); err != nil || v != "two" {
			t.Fatalf("hot keys back on: get %q, %v; want two (the write made while off)", v, err)
		}
	}
	// Each off/on leaves no recorder behind: a loop that stops counting the
	// pool unregisters its recorder (on its next publish tick).
	recorders := func(want int) {
		t.Helper()
		deadline := time.Now().Add(proxytest.Timeout)
		for nearStats(p, "hk").Recorders != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d recorders registered; want %d", nearStats(p, "hk").Recorders, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range 3 {
		recorders(1) // h's loop
		reload(config.HotKeys{})
		recorders(0)
		reload(on)
		if v, _, err := h.get("hot"); err != nil || v != "two" {
			t.Fatalf("get %q, %v; want two", v, err)
		}
	}
}

func TestHotKeysRedisWritesInvalidate(t *testing.T) {
	pool := hotPool(t, true, true)
	p := proxytest.Start(t, proxy.Options{}, pool)
	h := hkDial(t, pool.Listen, true)
	c := proxytest.Dial(t, pool.Listen)
	get := func(want ...string) {
		t.Helper()
		c.RoundTrip("*2\r\n$3\r\nGET\r\n$3\r\nhot\r\n", want...)
	}
	if err := h.set("hot", "v0"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, h, "hot")
	// Other keys spread the MSET and DEL over both servers.
	c.RoundTrip("*7\r\n$4\r\nMSET\r\n$3\r\nhot\r\n$2\r\nv1\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n", "+OK\r\n")
	get("$2\r\n", "v1\r\n")
	warm(t, p, h, "hot")
	c.RoundTrip("*4\r\n$4\r\nEVAL\r\n$39\r\nreturn redis.call('SET', KEYS[1], 'v2')\r\n$1\r\n1\r\n$3\r\nhot\r\n", "+OK\r\n")
	get("$2\r\n", "v2\r\n")
	warm(t, p, h, "hot")
	c.RoundTrip("*1\r\n$5\r\nMULTI\r\n", "+OK\r\n")
	c.RoundTrip("*3\r\n$3\r\nSET\r\n$3\r\nhot\r\n$2\r\nv3\r\n", "+QUEUED\r\n")
	get("+QUEUED\r\n")
	c.RoundTrip("*1\r\n$4\r\nEXEC\r\n", "*2\r\n", "+OK\r\n", "$2\r\n", "v3\r\n")
	get("$2\r\n", "v3\r\n")
	warm(t, p, h, "hot")
	c.RoundTrip("*4\r\n$3\r\nDEL\r\n$3\r\nhot\r\n$1\r\na\r\n$1\r\nb\r\n", ":3\r\n")
	get("$-1\r\n")
}
