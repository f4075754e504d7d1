package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// jitterPools returns three pools of the protocol over the same backends:
// "on" with hot keys and ttl_jitter 10%, "zero" with hot keys and no
// jitter, "off" with ttl_jitter 10% but hot keys disabled (accepted with a
// warning, not applied). Tests keep the pools apart by key prefix.
func jitterPools(t *testing.T, redis bool, backends []*testserver.Process) []config.Pool {
	mk := func(name string, h config.HotKeys) config.Pool {
		var p config.Pool
		if redis {
			p = proxytest.RedisPool(t, name, backends...)
		} else {
			p = proxytest.MemcachePool(t, name, backends...)
		}
		p.HotKeys = h
		return p
	}
	return []config.Pool{
		mk("on", config.HotKeys{Enabled: true, TTLJitter: 0.1}),
		mk("zero", config.HotKeys{Enabled: true}),
		mk("off", config.HotKeys{TTLJitter: 0.1}),
	}
}

// checkSpread checks ttls (the remaining TTLs read back just after the
// sets) against a jitter of 10% around base: every one within [0.9, 1.1]
// times base (less slack below, for the time passed since the set), not
// all equal, and covering most of the range: with 200 uniform draws the
// chance that none falls in the lowest (or highest) tenth is 0.9^200, about
// 1e-9.
func checkSpread(t *testing.T, what string, ttls []int64, base, slack int64) {
	t.Helper()
	lo, hi := base*9/10, base*11/10
	distinct := map[int64]bool{}
	for i, v := range ttls {
		if v < lo-slack || v > hi {
			t.Errorf("%s: key %d: TTL %d outside [%d, %d] (-%d for the time since the set)", what, i, v, lo, hi, slack)
		}
		distinct[v] = true
	}
	mn, mx := slices.Min(ttls), slices.Max(ttls)
	if mn > lo+base/50+slack || mx < hi-base/50 {
		t.Errorf("%s: TTLs span [%d, %d]; want most of [%d, %d]", what, mn, mx, lo, hi)
	}
	if len(distinct) < len(ttls)/4 {
		t.Errorf("%s: %d distinct TTLs of %d; want them spread", what, len(distinct), len(ttls))
	}
}

// mcTTL reads key's remaining TTL in seconds from whichever of the
// memcached backends holds it ("mg key t", straight to the server): -1 for
// no expiry, -2 when no server has the key.
func mcTTL(t *testing.T, backends []*proxytest.Conn, key string) int64 {
	t.Helper()
	found := int64(-2)
	for _, b := range backends {
		l := roundLine(b, "mg "+key+" t\r\n")
		if l == "EN\r\n" {
			continue
		}
		var v int64
		if _, err := fmt.Sscanf(l, "HD t%d\r\n", &v); err != nil || found != -2 {
			t.Fatalf("mg %s t: got %q (found before: %d)", key, l, found)
		}
		found = v
	}
	return found
}

func roundLine(c *proxytest.Conn, req string) string {
	c.T.Helper()
	c.Send(req)
	return c.Line()
}

// TestTTLJitterMemcache: through a pool with ttl_jitter 10%, sets, cas and
// ms with exptime 1000 land on real memcached with TTLs spread over
// [900, 1100]; exptime 0, negative and absolute exptimes, append and touch
// are unchanged; with jitter 0 or hot keys off nothing changes; and the
// client sees memcached's own replies throughout.
func TestTTLJitterMemcache(t *testing.T) {
	servers := []*testserver.Process{testserver.Memcached(t), testserver.Memcached(t)}
	pools := jitterPools(t, false, servers)
	proxytest.Start(t, proxy.Options{}, pools...)
	var backends []*proxytest.Conn
	for _, s := range servers {
		backends = append(backends, proxytest.Dial(t, s.Addr))
	}
	const n = 200
	// mg t reads whole seconds left: a second (two on a loaded machine)
	// may pass between a set and the read back.
	const slack = 2

	on := proxytest.Dial(t, pools[0].Listen)
	var ttls []int64
	for i := range n {
		key := "on:set:" + strconv.Itoa(i)
		switch i % 4 {
		case 0, 1:
			on.RoundTrip("set "+key+" 0 1000 1\r\nx\r\n", "STORED\r\n")
		case 2:
			on.RoundTrip("ms "+key+" 1 T1000 F7\r\nx\r\n", "HD\r\n")
		case 3:
			on.Send("set " + key + " 0 0 1 noreply\r\nq\r\nmg " + key + " c\r\n")
			l := on.Line()
			cas := strings.TrimSuffix(strings.TrimPrefix(l, "HD c"), "\r\n")
			if _, err := strconv.ParseUint(cas, 10, 64); err != nil {
				t.Fatalf("mg %s c: got %q", key, l)
			}
			on.RoundTrip("cas "+key+" 0 1000 1 "+cas+"\r\nx\r\n", "STORED\r\n")
		}
	}
	for i := range n {
		ttls = append(ttls, mcTTL(t, backends, "on:set:"+strconv.Itoa(i)))
	}
	checkSpread(t, "ttl_jitter 10%", ttls, 1000, slack)
	// What a client reads back is what it wrote.
	on.RoundTrip("get on:set:0 on:set:2\r\n", "VALUE on:set:0 0 1\r\n", "x\r\n", "VALUE on:set:2 7 1\r\n", "x\r\n", "END\r\n")

	// Not jittered, even with jitter on.
	abs := time.Now().Add(time.Hour).Unix()
	on.RoundTrip("set on:never 0 0 1\r\nx\r\n", "STORED\r\n")
	on.RoundTrip("ms on:never2 1 T0\r\nx\r\n", "HD\r\n")
	on.RoundTrip(fmt.Sprintf("set on:abs 0 %d 1\r\nx\r\n", abs), "STORED\r\n")
	on.RoundTrip("set on:past 0 2592001 1\r\nx\r\n", "STORED\r\n") // a unix time in 1970: gone at once
	on.RoundTrip("set on:neg 0 -1 1\r\nx\r\n", "STORED\r\n")
	on.RoundTrip("set on:app 0 0 1\r\nx\r\n", "STORED\r\n")
	on.RoundTrip("append on:app 0 1000 1\r\ny\r\n", "STORED\r\n")
	on.RoundTrip("set on:touch 0 0 1\r\nx\r\n", "STORED\r\n")
	on.RoundTrip("touch on:touch 1000\r\n", "TOUCHED\r\n")
	for key, want := range map[string]int64{"on:never": -1, "on:never2": -1, "on:past": -2, "on:neg": -2, "on:app": -1} {
		if got := mcTTL(t, backends, key); got != want {
			t.Errorf("%s: TTL %d; want %d (unchanged)", key, got, want)
		}
	}
	// memcached's clock ticks once a second, so a unix time can read one
	// second more than our own clock says.
	if got := mcTTL(t, backends, "on:abs"); got > 3601 || got < 3600-slack {
		t.Errorf("absolute exptime: TTL %d; want 3600 (unchanged; +1 for memcached's clock)", got)
	}
	if got := mcTTL(t, backends, "on:touch"); got > 1000 || got < 1000-slack {
		t.Errorf("touch 1000: TTL %d; want 1000 (touch is not jittered)", got)
	}

	// Jitter 0 and hot keys off: every TTL as sent.
	for _, p := range pools[1:] {
		c := proxytest.Dial(t, p.Listen)
		for i := range 20 {
			key := p.Name + ":" + strconv.Itoa(i)
			c.RoundTrip("set "+key+" 0 1000 1\r\nx\r\n", "STORED\r\n")
			c.RoundTrip("ms "+key+"m 1 T1000\r\nx\r\n", "HD\r\n")
			for _, k := range []string{key, key + "m"} {
				if got := mcTTL(t, backends, k); got > 1000 || got < 1000-slack {
					t.Errorf("pool %s: %s: TTL %d; want 1000 (no jitter)", p.Name, k, got)
				}
			}
		}
	}
}

// respReply reads one reply from c, arrays whole, and returns its bytes.
func respReply(c *proxytest.Conn) string {
	c.T.Helper()
	l := c.Line()
	switch l[0] {
	case '$':
		n, err := strconv.Atoi(strings.TrimSpace(l[1:]))
		if err != nil {
			c.T.Fatalf("bad bulk header %q", l)
		}
		if n >= 0 {
			l += c.ReadN(n + 2)
		}
	case '*':
		n, err := strconv.Atoi(strings.TrimSpace(l[1:]))
		if err != nil {
			c.T.Fatalf("bad array header %q", l)
		}
		for range max(n, 0) {
			l += respReply(c)
		}
	}
	return l
}

// respDo sends args as a multibulk request and returns the reply.
func respDo(c *proxytest.Conn, args ...string) string {
	c.T.Helper()
	var bs [][]byte
	for _, a := range args {
		bs = append(bs, []byte(a))
	}
	c.Send(string(resp.AppendCommand(nil, bs...)))
	return respReply(c)
}

// redisPTTL reads key's PTTL from whichever backend holds it, straight to
// the server: -1 for no expiry, -2 when none has the key.
func redisPTTL(t *testing.T, backends []*proxytest.Conn, key string) int64 {
	t.Helper()
	found := int64(-2)
	for _, b := range backends {
		l := respDo(b, "PTTL", key)
		v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(l, ":")), 10, 64)
		if err != nil || l[0] != ':' {
			t.Fatalf("PTTL %s: got %q", key, l)
		}
		if v == -2 {
			continue
		}
		if found != -2 {
			t.Fatalf("PTTL %s: on two servers", key)
		}
		found = v
	}
	return found
}

// TestTTLJitterRedis: through a pool with ttl_jitter 10%, SET EX/PX (alone
// and with NX, XX, GET), SETEX, PSETEX and the inline form with 1000 s land
// on real Redis with TTLs spread over [900, 1100] s; KEEPTTL, EXAT,
// EXPIRE, GETEX and a SET inside MULTI are unchanged; with jitter 0 or hot
// keys off nothing changes; the replies are Redis's own.
func TestTTLJitterRedis(t *testing.T) {
	servers := []*testserver.Process{testserver.Redis(t), testserver.Redis(t)}
	pools := jitterPools(t, true, servers)
	proxytest.Start(t, proxy.Options{}, pools...)
	var backends []*proxytest.Conn
	for _, s := range servers {
		backends = append(backends, proxytest.Dial(t, s.Addr))
	}
	const n = 200
	// PTTL counts down from the set: allow 5 s for a loaded machine.
	const slack = 5000

	on := proxytest.Dial(t, pools[0].Listen)
	expect := func(got, want, what string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: got %q; want %q", what, got, want)
		}
	}
	var ttls []int64
	for i := range n {
		key := "on:{" + strconv.Itoa(i) + "}"
		var got string
		switch i % 8 {
		case 0:
			got = respDo(on, "SET", key, "v", "EX", "1000")
		case 1:
			got = respDo(on, "set", key, "v", "px", "1000000")
		case 2:
			got = respDo(on, "SET", key, "v", "NX", "EX", "1000")
		case 3:
			expect(respDo(on, "SET", key, "old"), "+OK\r\n", "SET")
			got = respDo(on, "SET", key, "v", "XX", "GET", "EX", "1000")
			expect(got, "$3\r\nold\r\n", "SET XX GET EX")
			got = "+OK\r\n"
		case 4:
			got = respDo(on, "SETEX", key, "1000", "v")
		case 5:
			got = respDo(on, "PSETEX", key, "1000000", "v")
		case 6:
			on.Send("SET " + key + " v EX 1000\r\n") // inline
			got = respReply(on)
		case 7:
			got = respDo(on, "SET", key, "v", "EX", "10", "EX", "1000")
		}
		expect(got, "+OK\r\n", "set "+key)
	}
	for i := range n {
		ttls = append(ttls, redisPTTL(t, backends, "on:{"+strconv.Itoa(i)+"}"))
	}
	checkSpread(t, "ttl_jitter 10%", ttls, 1000000, slack)
	expect(respDo(on, "GET", "on:{3}"), "$1\r\nv\r\n", "GET")

	// A client library as applications use it: go-redis (RESP3) sends
	// SET k v EX 1000 for a 1000 s expiration.
	lib := goRedis(t, pools[0].Listen)
	ctx := context.Background()
	for i := range n {
		if err := lib.Set(ctx, "lib:{"+strconv.Itoa(i)+"}", "v", 1000*time.Second).Err(); err != nil {
			t.Fatalf("go-redis Set: %v", err)
		}
	}
	ttls = ttls[:0]
	for i := range n {
		ttls = append(ttls, redisPTTL(t, backends, "lib:{"+strconv.Itoa(i)+"}"))
	}
	checkSpread(t, "go-redis Set with 1000s", ttls, 1000000, slack)
	if v, err := lib.Get(ctx, "lib:{0}").Result(); err != nil || v != "v" {
		t.Errorf("go-redis Get: %q, %v; want \"v\"", v, err)
	}

	// Not jittered, even with jitter on.
	at := time.Now().Add(time.Hour)
	expect(respDo(on, "SET", "on:keep", "v", "EX", "1000"), "+OK\r\n", "SET")
	before := redisPTTL(t, backends, "on:keep")
	expect(respDo(on, "SET", "on:keep", "w", "KEEPTTL"), "+OK\r\n", "SET KEEPTTL")
	if got := redisPTTL(t, backends, "on:keep"); got > before || got < before-slack {
		t.Errorf("KEEPTTL: PTTL %d; want %d kept", got, before)
	}
	expect(respDo(on, "SET", "on:exat", "v", "EXAT", strconv.FormatInt(at.Unix(), 10)), "+OK\r\n", "SET EXAT")
	expect(respDo(on, "SET", "on:pxat", "v", "PXAT", strconv.FormatInt(at.UnixMilli(), 10)), "+OK\r\n", "SET PXAT")
	expect(respDo(on, "SET", "on:expire", "v"), "+OK\r\n", "SET")
	expect(respDo(on, "EXPIRE", "on:expire", "1000"), ":1\r\n", "EXPIRE")
	expect(respDo(on, "SET", "on:getex", "v"), "+OK\r\n", "SET")
	expect(respDo(on, "GETEX", "on:getex", "EX", "1000"), "$1\r\nv\r\n", "GETEX")
	expect(respDo(on, "SET", "on:never", "v"), "+OK\r\n", "SET")
	expect(respDo(on, "MULTI"), "+OK\r\n", "MULTI")
	expect(respDo(on, "SET", "on:{m}1", "v", "EX", "1000"), "+QUEUED\r\n", "SET in MULTI")
	expect(respDo(on, "SETEX", "on:{m}2", "1000", "v"), "+QUEUED\r\n", "SETEX in MULTI")
	expect(respDo(on, "EXEC"), "*2\r\n+OK\r\n+OK\r\n", "EXEC")
	expect(respDo(on, "SET", "on:bad", "v", "EX", "0"), "-ERR invalid expire time in 'set' command\r\n", "SET EX 0")
	for key, want := range map[string]int64{
		"on:exat": 3600000, "on:pxat": 3600000, "on:expire": 1000000, "on:getex": 1000000,
		"on:{m}1": 1000000, "on:{m}2": 1000000,
	} {
		if got := redisPTTL(t, backends, key); got > want || got < want-slack {
			t.Errorf("%s: PTTL %d; want %d (unchanged)", key, got, want)
		}
	}
	if got := redisPTTL(t, backends, "on:never"); got != -1 {
		t.Errorf("SET without expiry: PTTL %d; want -1", got)
	}

	// Jitter 0 and hot keys off: every TTL as sent.
	for _, p := range pools[1:] {
		c := proxytest.Dial(t, p.Listen)
		for i := range 20 {
			key := p.Name + ":{" + strconv.Itoa(i) + "}"
			expect(respDo(c, "SET", key, "v", "EX", "1000"), "+OK\r\n", "SET")
			expect(respDo(c, "PSETEX", key+"p", "1000000", "v"), "+OK\r\n", "PSETEX")
			for _, k := range []string{key, key + "p"} {
				if got := redisPTTL(t, backends, k); got > 1000000 || got < 1000000-slack {
					t.Errorf("pool %s: %s: PTTL %d; want 1000000 (no jitter)", p.Name, k, got)
				}
			}
		}
	}
}

// TestTTLJitterReload: ttl_jitter follows reloads on a connection that
// stays open: off, then 10%, then hot keys disabled (off again).
func TestTTLJitterReload(t *testing.T) {
	server := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", server)
	pool.HotKeys = config.HotKeys{Enabled: true}
	p := proxytest.Start(t, proxy.Options{}, pool)
	backends := []*proxytest.Conn{proxytest.Dial(t, server.Addr)}
	c := proxytest.Dial(t, pool.Listen)
	const slack = 2 // seconds that may pass between a set and the read back
	setAll := func(prefix string, n int) []int64 {
		var ttls []int64
		for i := range n {
			c.RoundTrip("set "+prefix+strconv.Itoa(i)+" 0 1000 1\r\nx\r\n", "STORED\r\n")
		}
		for i := range n {
			ttls = append(ttls, mcTTL(t, backends, prefix+strconv.Itoa(i)))
		}
		return ttls
	}
	unchanged := func(what string, ttls []int64) {
		t.Helper()
		for i, v := range ttls {
			if v > 1000 || v < 1000-slack {
				t.Errorf("%s: key %d: TTL %d; want 1000 (no jitter)", what, i, v)
			}
		}
	}
	reload := func(h config.HotKeys) {
		t.Helper()
		next := pool
		next.HotKeys = h
		if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
			t.Fatalf("Reload: %v", err)
		}
	}
	unchanged("jitter 0", setAll("a", 20))
	reload(config.HotKeys{Enabled: true, TTLJitter: 0.1})
	checkSpread(t, "after a reload to 10%", setAll("b", 200), 1000, slack)
	reload(config.HotKeys{TTLJitter: 0.1})
	unchanged("after a reload to hot keys off", setAll("c", 20))
}
