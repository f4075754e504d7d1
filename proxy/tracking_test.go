package proxy_test

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// trackTTL is the near-cache TTL of the tracking tests: long, so that a
// new value served well before it proves tracking (not expiry) did it.
const trackTTL = 10 * time.Second

// trackPool is a Redis pool over servers with hot keys on and a 10 s TTL.
func trackPool(t *testing.T, servers ...*testserver.Process) config.Pool {
	p := proxytest.RedisPool(t, "hk", servers...)
	p.ServerConnections = 2
	p.HotKeys = config.HotKeys{Enabled: true, MinRate: 20, TTL: trackTTL}
	return p
}

// clientList returns the CLIENT LIST lines of the server at addr.
func clientList(t *testing.T, addr string) []string {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.C.Close()
	c.Send("*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
	l := c.Line()
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "$")))
	if !strings.HasPrefix(l, "$") || err != nil {
		t.Fatalf("CLIENT LIST: got %q; want a bulk", l)
	}
	return strings.Split(strings.TrimSpace(c.ReadN(n+2)), "\n")
}

// trackingIDs returns the ids of the connections of the server at addr
// with broadcast tracking on (CLIENT LIST flags t and B).
func trackingIDs(t *testing.T, addr string) []string {
	t.Helper()
	var ids []string
	for _, l := range clientList(t, addr) {
		var id, flags string
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "flags="); ok {
				flags = v
			}
		}
		if strings.Contains(flags, "t") && strings.Contains(flags, "B") {
			ids = append(ids, id)
		}
	}
	return ids
}

// waitFor polls cond until it holds, or fails the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// trackingUp reports, by server name, whether pool hk's tracking
// connections are up.
func trackingUp(p *proxy.Proxy) map[string]bool {
	m := map[string]bool{}
	for _, ps := range p.Stats() {
		if ps.Name == "hk" {
			for _, s := range ps.Servers {
				m[s.Name] = s.TrackingUp
			}
		}
	}
	return m
}

func allUp(m map[string]bool, n int) bool {
	if len(m) != n {
		return false
	}
	for _, up := range m {
		if !up {
			return false
		}
	}
	return true
}

// ownerOf returns the index of the server among addrs that holds key.
func ownerOf(t *testing.T, key string, addrs []string) int {
	t.Helper()
	for i, a := range addrs {
		if _, ok, err := hkDial(t, a, true).get(key); err != nil {
			t.Fatal(err)
		} else if ok {
			return i
		}
	}
	t.Fatalf("no server holds %q", key)
	return -1
}

// TestTrackingWriteBehindProxy: a hot key served from the near cache, then
// SET directly on its redis-server: the proxy serves the new value long
// before the 10 s TTL, because the server's tracking connection pushed the
// key. Over 50 trials it reports the delay distribution.
func TestTrackingWriteBehindProxy(t *testing.T) {
	pool := trackPool(t, testserver.Redis(t), testserver.Redis(t))
	p := proxytest.Start(t, proxy.Options{}, pool)
	waitFor(t, "tracking connections up", func() bool { return allUp(trackingUp(p), 2) })
	addrs := []string{pool.Servers[0].Addr, pool.Servers[1].Addr}
	h := hkDial(t, pool.Listen, true)
	if err := h.set("hot", "v0"); err != nil {
		t.Fatal(err)
	}
	direct := hkDial(t, addrs[ownerOf(t, "hot", addrs)], true)
	const trials = 50
	var delays []time.Duration
	for i := 1; i <= trials; i++ {
		warm(t, p, h, "hot")
		want := fmt.Sprintf("v%d", i)
		start := time.Now()
		if err := direct.set("hot", want); err != nil {
			t.Fatal(err)
		}
		for {
			v, _, err := h.get("hot")
			if err != nil {
				t.Fatal(err)
			}
			if v == want {
				break
			}
			if d := time.Since(start); d > trackTTL-time.Second {
				t.Fatalf("trial %d: still %q %v after a write behind the proxy; want %q (tracking did nothing)", i, v, d, want)
			}
		}
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	t.Logf("write behind the proxy -> new value served, %d trials: p50 %v, p90 %v, max %v",
		trials, delays[trials/2], delays[trials*9/10], delays[trials-1])
	if st := nearStats(p, "hk"); st.Invalidations[proxy.InvalTracking] < trials {
		t.Errorf("tracking invalidations %d; want at least %d", st.Invalidations[proxy.InvalTracking], trials)
	}
}

// TestTrackingConnectionKilled: the tracking connection is killed and the
// key SET on the server right after, so no push can tell the proxy: the
// loss itself empties the near cache, the new value is served (not the
// cached one for the 10 s TTL), and once the connection is back (a new
// one on the server) the near cache serves again.
func TestTrackingConnectionKilled(t *testing.T) {
	pool := trackPool(t, testserver.Redis(t), testserver.Redis(t))
	p := proxytest.Start(t, proxy.Options{}, pool)
	waitFor(t, "tracking connections up", func() bool { return allUp(trackingUp(p), 2) })
	addrs := []string{pool.Servers[0].Addr, pool.Servers[1].Addr}
	h := hkDial(t, pool.Listen, true)
	if err := h.set("hot", "old"); err != nil {
		t.Fatal(err)
	}
	owner := addrs[ownerOf(t, "hot", addrs)]
	ids := trackingIDs(t, owner)
	if len(ids) != 1 {
		t.Fatalf("tracking connections on %s: %v; want exactly one", owner, ids)
	}
	warm(t, p, h, "hot")
	before := nearStats(p, "hk").Invalidations[proxy.InvalTracking]

	c := proxytest.Dial(t, owner)
	kill := "*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$2\r\nID\r\n$" + strconv.Itoa(len(ids[0])) + "\r\n" + ids[0] + "\r\n"
	c.RoundTrip(kill+"*3\r\n$3\r\nSET\r\n$3\r\nhot\r\n$3\r\nnew\r\n", ":1\r\n", "+OK\r\n")
	start := time.Now()
	for {
		v, _, err := h.get("hot")
		if err != nil {
			t.Fatal(err)
		}
		if v == "new" {
			break
		}
		if v != "old" {
			t.Fatalf("got %q; want old or new", v)
		}
		if d := time.Since(start); d > trackTTL-time.Second {
			t.Fatalf("tracking connection killed: the stale value is still served after %v", d)
		}
	}
	t.Logf("tracking connection killed: new value served after %v", time.Since(start))
	if got := nearStats(p, "hk").Invalidations[proxy.InvalTracking]; got <= before {
		t.Errorf("tracking invalidations %d after the loss; want above %d", got, before)
	}
	waitFor(t, "a new tracking connection", func() bool {
		now := trackingIDs(t, owner)
		return len(now) == 1 && now[0] != ids[0] && allUp(trackingUp(p), 2)
	})
	warm(t, p, h, "hot")
	if v, _, err := h.get("hot"); err != nil || v != "new" {
		t.Fatalf("after reconnecting: got %q, %v; want new", v, err)
	}
}

// TestTrackingFollowsReload: a reload that adds a server starts its
// tracking connection; turning hot keys off closes every one (and their
// goroutines end); a memcached pool never has any.
func TestTrackingFollowsReload(t *testing.T) {
	r1, r2 := testserver.Redis(t), testserver.Redis(t)
	one := proxytest.RedisPool(t, "hk", r1)
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{one}})
	reload := func(pc config.Pool) {
		t.Helper()
		if err := p.Reload(&config.Config{Pools: []config.Pool{pc}}); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	if ids := trackingIDs(t, r1.Addr); len(ids) != 0 {
		t.Fatalf("hot keys off: tracking connections %v; want none", ids)
	}
	on := one
	on.HotKeys = config.HotKeys{Enabled: true, MinRate: 20, TTL: trackTTL}
	reload(on)
	waitFor(t, "the first server's tracking connection", func() bool {
		return len(trackingIDs(t, r1.Addr)) == 1 && allUp(trackingUp(p), 1)
	})
	if n := trackingGoroutines(); n != 1 {
		t.Errorf("tracking goroutines running: %d; want 1", n)
	}
	two := on
	two.Servers = append(slices.Clone(on.Servers), config.Server{Name: "r2", Addr: r2.Addr, Network: "tcp", Weight: 1})
	reload(two)
	waitFor(t, "the added server's tracking connection", func() bool {
		return len(trackingIDs(t, r2.Addr)) == 1 && allUp(trackingUp(p), 2)
	})
	if ids := trackingIDs(t, r1.Addr); len(ids) != 1 {
		t.Errorf("after adding a server: tracking connections on the first %v; want one (kept)", ids)
	}
	off := two
	off.HotKeys = config.HotKeys{}
	reload(off)
	waitFor(t, "tracking connections closed", func() bool {
		return len(trackingIDs(t, r1.Addr)) == 0 && len(trackingIDs(t, r2.Addr)) == 0
	})
	waitFor(t, "the tracking goroutines to end", func() bool { return trackingGoroutines() == 0 })
	if m := trackingUp(p); m["r2"] || len(m) != 2 {
		t.Errorf("hot keys off: tracking up %v; want every server down", m)
	}
}

// trackingGoroutines counts the goroutines running a tracking connection
// (runTracker; its pinger runs only while runTracker is in a session).
func trackingGoroutines() int {
	buf := make([]byte, 4<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "proxy.(*poolLive).runTracker(")
}

// TestTrackingRefusedNoNearCache: servers that refuse CLIENT TRACKING (the
// command disabled) never get a tracking connection up, so the near cache
// never serves their keys: every read goes to the server and a write made
// behind the proxy is seen at once.
func TestTrackingRefusedNoNearCache(t *testing.T) {
	pool := trackPool(t, testserver.Redis(t, "--rename-command", "CLIENT", ""), testserver.Redis(t, "--rename-command", "CLIENT", ""))
	p := proxytest.Start(t, proxy.Options{}, pool)
	addrs := []string{pool.Servers[0].Addr, pool.Servers[1].Addr}
	h := hkDial(t, pool.Listen, true)
	if err := h.set("hot", "v0"); err != nil {
		t.Fatal(err)
	}
	direct := hkDial(t, addrs[ownerOf(t, "hot", addrs)], true)
	deadline := time.Now().Add(time.Second) // long enough to be promoted (merges every 100 ms)
	for i := 1; time.Now().Before(deadline); i++ {
		want := fmt.Sprintf("v%d", i)
		if err := direct.set("hot", want); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if v, _, err := h.get("hot"); err != nil || v != want {
				t.Fatalf("get through the proxy: %q, %v; want %q (no tracking: must not be cached)", v, err, want)
			}
		}
	}
	if hk := p.HotKeys()["hk"]; len(hk) == 0 || hk[0].Key != "hot" {
		t.Fatalf("hot keys %+v; want hot promoted (else the test proves nothing)", hk)
	}
	if st := nearStats(p, "hk"); st.Hits != 0 || st.Fills != 0 {
		t.Errorf("near cache without tracking: %+v; want no hits and no fills", st)
	}
	if m := trackingUp(p); len(m) != 2 || m["r1"] || m["r2"] {
		t.Errorf("tracking up %v; want both servers down", m)
	}
}
