package proxy_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/loadgen"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// warmKeys is how many keys the warm-up tests fill.
const warmKeys = 2000

// warmTTL is the expiry the even keys are set with (the odd ones have
// none).
const warmTTL = 3600

// warmSetup starts 3 memcached, a proxy over the first 2 (warm-up as
// given) filled with warmKeys keys through the proxy, and reloads it to
// all 3. It returns the proxy, the servers, the 3-server configuration
// and, per key, the index of its server before and after.
func warmSetup(t *testing.T, warmup time.Duration) (*proxy.Proxy, []*testserver.Process, *config.Config, []int, []int) {
	t.Helper()
	var mcs []*testserver.Process
	for range 3 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	base := proxytest.MemcachePool(t, "mc", mcs...)
	base.Warmup = warmup
	all := base.Servers
	cfg2, cfg3 := withServers(base, all, 2), withServers(base, all, 3)
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, cfg2)
	c := proxytest.Dial(t, base.Listen)
	var b strings.Builder
	for i := range warmKeys {
		exp := 0
		if i%2 == 0 {
			exp = warmTTL
		}
		v := warmValue(i)
		fmt.Fprintf(&b, "set %s 7 %d %d\r\n%s\r\n", warmKey(i), exp, len(v), v)
	}
	c.Send(b.String())
	for range warmKeys {
		c.Expect("STORED\r\n")
	}
	ring2, err := cfg2.Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	ring3, err := cfg3.Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	before, after := make([]int, warmKeys), make([]int, warmKeys)
	for i := range warmKeys {
		before[i], after[i] = ring2.Pick([]byte(warmKey(i))), ring3.Pick([]byte(warmKey(i)))
	}
	if err := p.Reload(cfg3); err != nil {
		t.Fatalf("reload to 3 servers: %v", err)
	}
	return p, mcs, cfg3, before, after
}

func warmKey(i int) string   { return "wk:" + strconv.Itoa(i) }
func warmValue(i int) string { return "value-" + strconv.Itoa(i*7919) }

// moved returns the keys whose server changed.
func moved(before, after []int) []int {
	var out []int
	for i := range before {
		if before[i] != after[i] {
			out = append(out, i)
		}
	}
	return out
}

// warmStats returns the pool's warm-up counters.
func warmStats(p *proxy.Proxy) proxy.WarmupStats { return p.Stats()[0].Warmup }

// getAll reads every key through c, pipelined 100 at a time, every fifth
// with mg v f, and returns how many missed; a hit with another value or
// flags fails t.
func getAll(t *testing.T, c *proxytest.Conn) int {
	t.Helper()
	misses := 0
	for start := 0; start < warmKeys; start += 100 {
		var b strings.Builder
		for i := start; i < start+100; i++ {
			if i%5 == 0 {
				fmt.Fprintf(&b, "mg %s v f\r\n", warmKey(i))
			} else {
				fmt.Fprintf(&b, "get %s\r\n", warmKey(i))
			}
		}
		c.Send(b.String())
		for i := start; i < start+100; i++ {
			v := warmValue(i)
			if i%5 == 0 {
				switch l := c.Line(); l {
				case "EN\r\n":
					misses++
				case fmt.Sprintf("VA %d f7\r\n", len(v)):
					c.Expect(v + "\r\n")
				default:
					t.Fatalf("mg %s: got %q; want VA %d f7 or EN", warmKey(i), l, len(v))
				}
				continue
			}
			_, vals := c.ReadGet()
			got, ok := vals[warmKey(i)]
			if !ok {
				misses++
			} else if got != v {
				t.Fatalf("get %s: %q; want %q", warmKey(i), got, v)
			}
		}
	}
	return misses
}

// direct reads key from a memcached with mg t v f: its TTL, flags and
// value, ok false on a miss.
func direct(t *testing.T, addr, key string) (ttl int, flags, value string, ok bool) {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.C.Close()
	c.Send("mg " + key + " t v f\r\n")
	l := c.Line()
	if l == "EN\r\n" {
		return 0, "", "", false
	}
	f := strings.Fields(l)
	if len(f) != 4 || f[0] != "VA" || f[2][0] != 't' || f[3][0] != 'f' {
		t.Fatalf("mg %s on %s: %q; want VA <len> t<ttl> f<flags>", key, addr, l)
	}
	n, _ := strconv.Atoi(f[1])
	ttl, _ = strconv.Atoi(f[2][1:])
	value = c.ReadN(n + 2)
	return ttl, f[3][1:], value[:n], true
}

// waitCopies polls until the pool has copied n items (copies follow the
// client's reply).
func waitCopies(t *testing.T, p *proxy.Proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Timeout)
	for warmStats(p).Copies < n {
		if time.Now().After(deadline) {
			t.Fatalf("warm-up copies: %+v; want %d", warmStats(p), n)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestWarmupAfterAddingServer: 2000 keys on 2 servers, a reload to 3 with
// warmup: every key still hits through the proxy, the moved ones are
// answered by their old server and copied to their new one with their
// flags, value and remaining TTL (none stays none).
func TestWarmupAfterAddingServer(t *testing.T) {
	p, mcs, cfg3, before, after := warmSetup(t, time.Minute)
	mv := moved(before, after)
	if len(mv) < warmKeys/5 {
		t.Fatalf("%d of %d keys moved to the third server; want about a third", len(mv), warmKeys)
	}
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	if misses := getAll(t, c); misses != 0 {
		t.Fatalf("%d of %d keys missed through the proxy during warm-up; want 0", misses, warmKeys)
	}
	st := warmStats(p)
	if st.Hits != int64(len(mv)) || st.Misses != 0 || !st.Enabled || !st.Active {
		t.Fatalf("warm-up stats %+v; want %d hits, 0 misses, enabled and active", st, len(mv))
	}
	waitCopies(t, p, int64(len(mv)))
	for _, i := range mv {
		ttl, flags, v, ok := direct(t, mcs[after[i]].Addr, warmKey(i))
		if !ok {
			t.Fatalf("%s: not on its new server %s after warm-up", warmKey(i), mcs[after[i]].Addr)
		}
		if flags != "7" || v != warmValue(i) {
			t.Fatalf("%s on its new server: flags %s value %q; want 7 %q", warmKey(i), flags, v, warmValue(i))
		}
		// The copy's TTL is the old server's remaining one: at most
		// warmTTL, and not more than a minute less on a loaded box.
		if i%2 == 0 && (ttl > warmTTL || ttl < warmTTL-60) {
			t.Fatalf("%s on its new server: TTL %d; want about %d", warmKey(i), ttl, warmTTL)
		}
		if i%2 == 1 && ttl != -1 {
			t.Fatalf("%s on its new server: TTL %d; want -1 (none, as set)", warmKey(i), ttl)
		}
	}
	if n := statValue(t, mcs[2].Addr, "curr_items"); n != int64(len(mv)) {
		t.Fatalf("third server holds %d items; want the %d moved keys", n, len(mv))
	}
	// Now on their new server: read again, they hit there, no new lookup.
	if misses := getAll(t, c); misses != 0 {
		t.Fatalf("second pass: %d misses; want 0", misses)
	}
	if st := warmStats(p); st.Hits != int64(len(mv)) {
		t.Fatalf("second pass asked old servers again: %+v; want %d hits still", st, len(mv))
	}
}

// TestWarmupOff: the same reload without warmup: the moved keys miss
// (what warm-up is for), the others hit.
func TestWarmupOff(t *testing.T) {
	p, _, cfg3, before, after := warmSetup(t, 0)
	mv := moved(before, after)
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	if misses := getAll(t, c); misses != len(mv) || misses == 0 {
		t.Fatalf("without warm-up: %d misses; want the %d moved keys", misses, len(mv))
	}
	if st := warmStats(p); st != (proxy.WarmupStats{}) {
		t.Fatalf("warm-up stats %+v; want zero", st)
	}
}

// TestWarmupWriteWins: during warm-up, a set or delete of a moved key
// through the proxy is never undone by a copy from its old server, even
// pipelined right behind a read whose miss goes to the old server; the
// replies keep their order.
func TestWarmupWriteWins(t *testing.T) {
	p, mcs, cfg3, before, after := warmSetup(t, time.Minute)
	// Three keys moved from the same server: their fetches share one
	// connection, so the third's copy is decided after the first two's.
	var mv []int
	for _, i := range moved(before, after) {
		if before[i] == 0 && len(mv) < 3 {
			mv = append(mv, i)
		}
	}
	if len(mv) < 3 {
		t.Fatalf("%d keys moved from the first server; want 3", len(mv))
	}
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	del, set := mv[0], mv[1]
	dk, sk := warmKey(del), warmKey(set)
	c.Send("get " + dk + "\r\ndelete " + dk + "\r\nget " + sk + "\r\nset " + sk + " 3 0 3\r\nnew\r\nget " + sk + "\r\n")
	// The reads were parsed before the writes: they see the old values.
	c.Expect(fmt.Sprintf("VALUE %s 7 %d\r\n", dk, len(warmValue(del))), warmValue(del)+"\r\n", "END\r\n")
	c.Expect("NOT_FOUND\r\n") // the new server had no copy yet
	c.Expect(fmt.Sprintf("VALUE %s 7 %d\r\n", sk, len(warmValue(set))), warmValue(set)+"\r\n", "END\r\n")
	c.Expect("STORED\r\n")
	c.Expect("VALUE "+sk+" 3 3\r\n", "new\r\n", "END\r\n")
	// Once the third key is copied, the first two's copies were decided.
	c.RoundTrip("get "+warmKey(mv[2])+"\r\n", fmt.Sprintf("VALUE %s 7 %d\r\n", warmKey(mv[2]), len(warmValue(mv[2]))),
		warmValue(mv[2])+"\r\n", "END\r\n")
	waitCopies(t, p, 1)
	if _, _, _, ok := direct(t, mcs[after[del]].Addr, dk); ok {
		t.Fatalf("%s: deleted through the proxy, yet copied to its new server", dk)
	}
	if _, flags, v, ok := direct(t, mcs[after[set]].Addr, sk); !ok || v != "new" || flags != "3" {
		t.Fatalf("%s on its new server: %q flags %s (present %v); want the value set after the reload", sk, v, flags, ok)
	}
	// The deleted key is not asked of its old server again: a miss.
	c.RoundTrip("get "+dk+"\r\n", "END\r\n")
	if st := warmStats(p); st.Copies != 1 || st.Hits != 3 {
		t.Fatalf("warm-up stats %+v; want 3 hits, 1 copy", st)
	}
}

// TestWarmupStopsEarly: when fewer than 1% of the old-server lookups hit
// (1000 reads of moved keys nobody set), the warm-up stops: a moved key
// then misses.
func TestWarmupStopsEarly(t *testing.T) {
	p, _, cfg3, before, after := warmSetup(t, time.Minute)
	mv := moved(before, after)
	ring2cfg := cfg3.Pools[0]
	ring2cfg.Servers = ring2cfg.Servers[:2]
	ring2, err := ring2cfg.Ring()
	if err != nil {
		t.Fatal(err)
	}
	ring3, err := cfg3.Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	var b strings.Builder
	n := 0
	for i := 0; n < 1000; i++ {
		k := []byte("absent:" + strconv.Itoa(i))
		if ring2.Pick(k) != ring3.Pick(k) {
			b.WriteString("get " + string(k) + "\r\n")
			n++
		}
	}
	c.Send(b.String())
	for range n {
		c.Expect("END\r\n")
	}
	st := warmStats(p)
	if st.Misses != 1000 || st.Hits != 0 || st.Active {
		t.Fatalf("after 1000 old-server misses: %+v; want 1000 misses, 0 hits, no longer active", st)
	}
	c.RoundTrip("get "+warmKey(mv[0])+"\r\n", "END\r\n")
	if st := warmStats(p); st.Misses != 1000 {
		t.Fatalf("after the stop: %+v; want no more lookups", st)
	}
}

// TestWarmupWindowEnds: a window of 1ms is over by the time the test
// reads: moved keys miss, nothing is asked of the old servers.
func TestWarmupWindowEnds(t *testing.T) {
	p, _, cfg3, before, after := warmSetup(t, time.Millisecond)
	deadline := time.Now().Add(proxytest.Timeout)
	for warmStats(p).Active {
		if time.Now().After(deadline) {
			t.Fatalf("warm-up of 1ms still active after %v", proxytest.Timeout)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	if misses := getAll(t, c); misses != len(moved(before, after)) {
		t.Fatalf("after the window: %d misses; want the %d moved keys", misses, len(moved(before, after)))
	}
	if st := warmStats(p); st.Hits+st.Misses != 0 || !st.Enabled {
		t.Fatalf("warm-up stats %+v; want no lookups, enabled", st)
	}
}

// TestWarmupOldServerDown: a moved key whose old owner has died gets the
// new server's miss, never an error.
func TestWarmupOldServerDown(t *testing.T) {
	p, mcs, cfg3, before, after := warmSetup(t, time.Minute)
	mcs[0].Kill()
	c := proxytest.Dial(t, cfg3.Pools[0].Listen)
	n := 0
	for _, i := range moved(before, after) {
		if before[i] != 0 {
			continue
		}
		c.RoundTrip("get "+warmKey(i)+"\r\n", "END\r\n")
		c.RoundTrip("mg "+warmKey(i)+" v\r\n", "EN\r\n")
		if n++; n == 20 {
			break
		}
	}
	if n == 0 {
		t.Fatal("no key moved from the first server")
	}
	if st := warmStats(p); st.Hits != 0 || st.Copies != 0 {
		t.Fatalf("warm-up stats %+v; want no hit, no copy", st)
	}
}

// zipfPhase runs n cache-aside reads of keys drawn from z with r through c,
// pipelined 100 at a time: a get, and on a miss a set of the key. It
// returns the hit ratio.
func zipfPhase(t *testing.T, c *proxytest.Conn, prefix string, z *loadgen.Zipf, r *rand.Rand, n int) float64 {
	t.Helper()
	hits := 0
	keys := make([]string, 100)
	for done := 0; done < n; done += len(keys) {
		var b strings.Builder
		for i := range keys {
			keys[i] = prefix + strconv.Itoa(z.Next(r))
			b.WriteString("get " + keys[i] + "\r\n")
		}
		c.Send(b.String())
		b.Reset()
		sets := 0
		for _, k := range keys {
			if _, vals := c.ReadGet(); vals[k] != "" {
				hits++
				continue
			}
			b.WriteString("set " + k + " 0 0 " + strconv.Itoa(len(k)+2) + " noreply\r\nv:" + k + "\r\n")
			sets++
		}
		if sets > 0 {
			c.Send(b.String() + "mn\r\n") // the sets are in before the next batch
			c.Expect("MN\r\n")
		}
	}
	return float64(hits) / float64(n)
}

// TestWarmupZipfHitRatio is the measure: Zipf 1.1 cache-aside
// reads over 3 servers, then a fourth is added; with warm-up the hit ratio
// over the next reads is at least 95% of the one before, while the same
// draws through a pool without warm-up (same servers, same run, keys of
// their own) lose the moved keys. Phases are counts of reads (20000, a few
// seconds at most here) rather than 10 s of wall time, so that a loaded
// box changes nothing.
func TestWarmupZipfHitRatio(t *testing.T) {
	var mcs []*testserver.Process
	for range 4 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	warm := proxytest.MemcachePool(t, "warm", mcs...)
	warm.Warmup = time.Minute
	cold := proxytest.MemcachePool(t, "cold", mcs...)
	three := func(pc config.Pool) config.Pool { pc.Servers = pc.Servers[:3]; return pc }
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, &config.Config{Pools: []config.Pool{three(warm), three(cold)}})
	z, err := loadgen.NewZipf(50000, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	ratios := map[string][2]float64{}
	run := func(phase int) {
		for _, pc := range []config.Pool{warm, cold} {
			c := proxytest.Dial(t, pc.Listen)
			r := rand.New(rand.NewPCG(uint64(phase), 7)) // the same draws for both pools
			got := zipfPhase(t, c, pc.Name+":", z, r, n)
			c.C.Close()
			if phase > 0 {
				v := ratios[pc.Name]
				v[phase-1] = got
				ratios[pc.Name] = v
			}
		}
	}
	run(0) // fill
	run(1) // before
	if err := p.Reload(&config.Config{Pools: []config.Pool{warm, cold}}); err != nil {
		t.Fatalf("reload to 4 servers: %v", err)
	}
	run(2) // after
	w, c := ratios["warm"], ratios["cold"]
	t.Logf("hit ratio before/after the fourth server: with warm-up %.4f/%.4f, without %.4f/%.4f; warm-up %+v",
		w[0], w[1], c[0], c[1], p.Stats()[0].Warmup)
	if w[1] < 0.95*w[0] {
		t.Errorf("with warm-up: hit ratio %.4f after; want >= 95%% of %.4f before", w[1], w[0])
	}
	if c[1] >= w[1] {
		t.Errorf("without warm-up: hit ratio %.4f after; want below the warmed pool's %.4f (the test proves nothing)", c[1], w[1])
	}
}

// TestWarmupDiscovery: ElastiCache discovery adds a node (2 to 3): the
// new version warms up as a reload's does; no key misses through the
// proxy and the moved ones land on the new node.
func TestWarmupDiscovery(t *testing.T) {
	var mcs []*testserver.Process
	for range 3 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	node := func(i int) string { return testserver.Node(fmt.Sprintf("node%d.example", i+1), mcs[i]) }
	server := func(i int) string { return fmt.Sprintf("node%d.example=%s", i+1, mcs[i].Addr) }
	ep := testserver.NewConfigEndpoint(t, false)
	ep.SetNodes(node(0), node(1))
	const interval = time.Second
	const within = interval + 3*time.Second // one interval, plus slack for a loaded box (as TestDiscoveryFollowsNodes)
	pc := discoveryPool(t, ep.Addr, interval)
	pc.Warmup = time.Minute
	p := proxytest.Start(t, proxy.Options{Loops: 2}, pc)
	waitServers(t, p, within, server(0), server(1))
	c := proxytest.Dial(t, pc.Listen)
	const n = 500
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "set %s 7 0 %d\r\n%s\r\n", warmKey(i), len(warmValue(i)), warmValue(i))
	}
	c.Send(b.String())
	for range n {
		c.Expect("STORED\r\n")
	}
	ep.SetNodes(node(0), node(1), node(2))
	waitServers(t, p, within, server(0), server(1), server(2))
	for i := range n {
		c.Send("get " + warmKey(i) + "\r\n")
		if _, vals := c.ReadGet(); vals[warmKey(i)] != warmValue(i) {
			t.Fatalf("get %s after node 3 joined: %q; want %q (warmed from its old node)", warmKey(i), vals[warmKey(i)], warmValue(i))
		}
	}
	st := p.Stats()[0].Warmup
	if st.Hits == 0 || st.Misses != 0 {
		t.Fatalf("warm-up stats %+v; want hits (the keys that moved to node 3), no miss", st)
	}
	waitCopies(t, p, st.Hits)
	if items := statValue(t, mcs[2].Addr, "curr_items"); items != st.Hits {
		t.Fatalf("node 3 holds %d items; want the %d moved keys", items, st.Hits)
	}
}
