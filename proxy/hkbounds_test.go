package proxy_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestHotKeysMemcacheWriteBehindProxy: a memcached pool has no way to hear
// of a write made directly on a server, so a cached hot key may be served
// stale, but for at most its TTL: once TTL (plus a slack for a loaded box)
// has passed since the direct write, every read through the proxy returns
// the new value. The near cache must be serving meanwhile (hits rise), or
// the test proves nothing.
func TestHotKeysMemcacheWriteBehindProxy(t *testing.T) {
	pool := hotPool(t, false, true)
	const ttl = time.Second
	// The bound is TTL + 100 ms; the slack covers a CI box whose
	// loop is delayed between a fill read's reply and its processing.
	const slack = 500 * time.Millisecond
	pool.HotKeys.TTL = ttl
	p := proxytest.Start(t, proxy.Options{}, pool)
	c := hkDial(t, pool.Listen, false)
	if err := c.set("hot", "old"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, c, "hot")

	// Write the new value on every server directly (the key lives on one).
	for _, s := range pool.Servers {
		if err := hkDial(t, s.Addr, false).set("hot", "new"); err != nil {
			t.Fatal(err)
		}
	}
	w := time.Now()
	hits := nearStats(p, "hk").Hits
	var stale int
	var lastStale time.Duration
	for {
		start := time.Since(w)
		v, ok, err := c.get("hot")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ok && v == "new":
		case ok && v == "old":
			stale++
			lastStale = start
			if start > ttl+slack {
				t.Fatalf("read started %v after the direct write got the old value; want the new one after TTL %v (+%v)", start, ttl, slack)
			}
			continue
		default:
			t.Fatalf("get hot: %q (hit %v); want new or old", v, ok)
		}
		break
	}
	// The new value stays: it is what the near cache holds now.
	for range 200 {
		if v, ok, err := c.get("hot"); err != nil || !ok || v != "new" {
			t.Fatalf("after the new value was seen: get %q (hit %v), %v; want new", v, ok, err)
		}
	}
	if st := nearStats(p, "hk"); st.Hits <= hits {
		t.Fatalf("near-cache hits %d, %d before the direct write: the near cache was not serving", st.Hits, hits)
	}
	t.Logf("%d stale reads, the last started %v after the direct write (TTL %v)", stale, lastStale, ttl)
}

// TestHotKeysFollowAMovingHotSet: when the hot key changes, the new one is
// promoted and served from the near cache, the old one is demoted and its
// entry's memory released (the cache then holds exactly one entry of the
// same size as before).
func TestHotKeysFollowAMovingHotSet(t *testing.T) {
	pool := hotPool(t, false, true)
	pool.HotKeys.TTL = time.Minute // entries go only by demotion
	p := proxytest.Start(t, proxy.Options{}, pool)
	w := hkDial(t, pool.Listen, false)
	for _, k := range []string{"hot:a", "hot:b"} {
		if err := w.set(k, "value-of-"+k[4:]); err != nil {
			t.Fatal(err)
		}
	}
	listed := func() (cached map[string]bool) {
		cached = map[string]bool{}
		for _, h := range p.HotKeys()["hk"] {
			cached[h.Key] = h.Cached
		}
		return cached
	}
	// Four readers hammer one key at a time.
	var cur atomic.Value
	cur.Store("hot:a")
	rd := startReaders(t, pool.Listen, false, 4, func() string { return cur.Load().(string) },
		func(key, v string, hit bool) error { return value("value-of-"+key[4:])(key, v, hit) })
	until := func(what string, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(proxytest.Timeout)
		for !cond() {
			if err := rd.Err(); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v; hot keys %v, stats %+v", what, proxytest.Timeout, listed(), nearStats(p, "hk"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	// The cache's weighted size is updated by otter's maintenance, which
	// may trail the entry itself: wait for both.
	var bytes int64
	until("hot:a promoted and cached", func() bool {
		l := listed()
		bytes = nearStats(p, "hk").Bytes
		return len(l) == 1 && l["hot:a"] && bytes > 0
	})
	cur.Store("hot:b")
	promote := until("hot:b promoted and cached", func() bool { return listed()["hot:b"] })
	demote := until("hot:a demoted", func() bool { _, ok := listed()["hot:a"]; return !ok })
	// The old entry's memory is released: one entry of the same size.
	until("near cache back to one entry", func() bool { return nearStats(p, "hk").Bytes == bytes })
	rd.Stop(t)
	st := nearStats(p, "hk")
	if st.Promotions != 2 || st.Demotions != 1 {
		t.Errorf("promotions %d, demotions %d; want 2 and 1", st.Promotions, st.Demotions)
	}
	t.Logf("hot:b promoted and cached %v after the switch, hot:a demoted %v after that", promote, demote)
}
