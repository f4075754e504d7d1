package proxy_test

import (
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestHotKeysRefreshAhead: a key read steadily by 4 connections on one
// loop over 8 TTLs of 300 ms is refreshed before it expires: its servers
// count fewer than 2 gets per TTL (plus a small constant), the near cache
// hardly ever misses it (fewer than 2 misses per TTL: without refresh
// ahead every expiry is a miss of each reader), refresh reads were sent, hits rise in
// every TTL, and every read gets the value.
func TestHotKeysRefreshAhead(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			ss, gets := hkServers(t, redis)
			pool := hkPoolOver(t, redis, ss)
			const ttl = 300 * time.Millisecond
			pool.HotKeys.TTL = ttl
			p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
			w := hkDial(t, pool.Listen, redis)
			if err := w.set("hot", "steady"); err != nil {
				t.Fatal(err)
			}
			rd := startReaders(t, pool.Listen, redis, 4, func() string { return "hot" }, value("steady"))
			warm(t, p, w, "hot")
			// Let the first fills settle, then measure over whole TTLs.
			time.Sleep(ttl)
			const ttls = 8
			before, st := gets(), nearStats(p, "hk")
			prev := st.Hits
			flat := 0
			for range ttls {
				time.Sleep(ttl) // sampling only: nothing asserts a time
				h := nearStats(p, "hk").Hits
				if h == prev {
					flat++
				}
				prev = h
			}
			after, st2 := gets(), nearStats(p, "hk")
			rd.Stop(t)
			reads, misses, refreshes := after-before, st2.Misses-st.Misses, st2.Refreshes-st.Refreshes
			t.Logf("%d TTLs: %d server gets, %d near-cache hits, %d misses, %d refreshes, %d coalesced",
				ttls, reads, st2.Hits-st.Hits, misses, refreshes, st2.Coalesced-st.Coalesced)
			if reads >= 2*ttls+3 {
				t.Errorf("server gets over %d TTLs: got %d; want fewer than %d", ttls, reads, 2*ttls+3)
			}
			// Without refresh ahead every expiry is a miss of each reader
			// (about 4 per TTL here: 28 in a run with it disabled); with it
			// 0 on an idle box, and about one per TTL on a loaded one where
			// the refresh's reply comes after the entry expired (the misses
			// then wait for that refresh). Fewer than two per TTL separates
			// the two without depending on the box's load.
			if misses >= 2*ttls {
				t.Errorf("near-cache misses over %d TTLs: got %d; want fewer than %d (refreshed ahead)", ttls, misses, 2*ttls)
			}
			if refreshes == 0 {
				t.Errorf("no refresh read sent over %d TTLs", ttls)
			}
			if flat > 0 {
				t.Errorf("near-cache hits did not rise in %d of %d TTLs", flat, ttls)
			}
		})
	}
}
