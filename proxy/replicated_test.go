package proxy_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	cpool "github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// holds reports whether the memcached at c holds key k with value v ("":
// must not hold it), failing the test on anything else.
func holds(t *testing.T, c *proxytest.Conn, k string) string {
	t.Helper()
	v, e := mcGet(c, k)
	if e != "" {
		t.Fatalf("get %s directly: %q", k, e)
	}
	return v
}

// Done-when test of issue 14 (replicated memcached): two shards of primary
// + replica with write_policy all (the default with replicas), timeout
// 500ms. Every key set through the proxy is on both copies of exactly one
// shard; after a primary is killed (kill -9) and the failure is detected,
// every key it held reads through the proxy with no miss and no error, and
// new writes succeed and read back; restarted, it is probed and re-admitted
// (and, empty, its misses are counted).
func TestReplicatedMemcacheFailover(t *testing.T) {
	p1, r1, p2, r2 := testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", p1, p2)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: r1.Addr, Network: "tcp"}}
	pool.Servers[1].Replicas = []config.Replica{{Name: "r1", Addr: r2.Addr, Network: "tcp"}}
	pool.Timeout = 500 * time.Millisecond
	pool.ServerFailureLimit = 2
	pool.ServerRetryTimeout = 300 * time.Millisecond
	if w := pool.Writes(); w != config.WriteAll {
		t.Fatalf("default write_policy with replicas: %q; want all", w)
	}
	logs := &testserver.SyncBuffer{}
	p := proxytest.Start(t, proxy.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, pool)
	c := proxytest.Dial(t, pool.Listen)

	const n = 200
	key := func(i int) string { return fmt.Sprintf("key:%d", i) }
	for i := 0; i < n; i++ {
		c.RoundTrip(fmt.Sprintf("set %s 0 0 %d\r\nv%d\r\n", key(i), len(fmt.Sprint(i))+1, i), "STORED\r\n")
	}
	direct := map[string]*proxytest.Conn{}
	for name, b := range map[string]*testserver.Process{"p1": p1, "r1": r1, "p2": p2, "r2": r2} {
		direct[name] = proxytest.Dial(t, b.Addr)
	}
	var shard1 []int // keys of the first shard
	for i := 0; i < n; i++ {
		want := fmt.Sprintf("v%d", i)
		in := map[string]bool{}
		for name, dc := range direct {
			switch v := holds(t, dc, key(i)); v {
			case want:
				in[name] = true
			case "":
			default:
				t.Fatalf("%s holds %s=%q; want %q or nothing", name, key(i), v, want)
			}
		}
		switch {
		case len(in) == 2 && in["p1"] && in["r1"]:
			shard1 = append(shard1, i)
		case len(in) == 2 && in["p2"] && in["r2"]:
		default:
			t.Fatalf("%s is on %v; want both copies of exactly one shard", key(i), in)
		}
	}
	if len(shard1) == 0 || len(shard1) == n {
		t.Fatalf("%d of %d keys on shard 1: want both shards used", len(shard1), n)
	}

	p1.Kill()
	killed := time.Now()
	// Failure detection: reads of shard 1's keys find the primary gone
	// (those in flight, or that dial it, fail until then).
	waitFor(t, "the failure of mc1 to be detected", func() bool {
		mcGet(c, key(shard1[0]))
		return serverStats(t, p, "mc", "mc1").State != cpool.StateUp
	})
	// The bound is 1 s with timeout 500ms; a killed memcached is
	// found at the next request (connection refused), so allow 1 s more
	// for a loaded 2-core box, not for the proxy.
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("failure detected after %v; want <= 1s (+1s slack)", d)
	}
	for i := 0; i < n; i++ {
		if v, e := mcGet(c, key(i)); v != fmt.Sprintf("v%d", i) {
			t.Fatalf("after the kill, %s: %q %q; want v%d, no miss, no error", key(i), v, e, i)
		}
	}
	for i := n; i < n+50; i++ {
		c.RoundTrip(fmt.Sprintf("set %s 0 0 %d\r\nv%d\r\n", key(i), len(fmt.Sprint(i))+1, i), "STORED\r\n")
	}
	for i := 0; i < n+50; i++ {
		if v, e := mcGet(c, key(i)); v != fmt.Sprintf("v%d", i) {
			t.Fatalf("after the kill and new writes, %s: %q %q; want v%d", key(i), v, e, i)
		}
	}
	waitFor(t, "mc1 to be ejected", func() bool {
		c.RoundTrip("set probe-write 0 0 1\r\nx\r\n", "STORED\r\n") // writes still try every copy
		return serverStats(t, p, "mc", "mc1").State == cpool.StateEjected
	})
	if st := serverStats(t, p, "mc", "mc1/r1").State; st != cpool.StateUp {
		t.Fatalf("mc1's replica: %v; want up", st)
	}

	p1.Restart() // empty
	waitFor(t, "mc1 to be probed and re-admitted", func() bool {
		return serverStats(t, p, "mc", "mc1").State == cpool.StateUp
	})
	if !strings.Contains(logs.String(), `msg="server re-admitted" pool=mc server=mc1`) {
		t.Fatalf("no re-admission of mc1 logged:\n%s", logs.String())
	}
	// Re-admitted, it answers its old keys with misses: counted.
	waitFor(t, "a miss on the re-admitted mc1 to be counted", func() bool {
		mcGet(c, key(shard1[0]))
		return serverStats(t, p, "mc", "mc1").ReadmittedMisses > 0
	})
	// New writes reach it again: a shard-1 key lands on both its copies.
	direct["p1"] = proxytest.Dial(t, p1.Addr)
	k := key(shard1[0])
	c.RoundTrip("set "+k+" 0 0 3\r\nnew\r\n", "STORED\r\n")
	for _, name := range []string{"p1", "r1"} {
		if v := holds(t, direct[name], k); v != "new" {
			t.Fatalf("after re-admission %s holds %s=%q; want new", name, k, v)
		}
	}
}

// A replicated write goes to every copy: the client gets the primary's
// reply (all) and a copy that answered otherwise is counted; noreply
// writes, deletes and flush_all reach every copy too. all_async answers
// with the first copy's reply and still writes the others.
func TestReplicatedMemcacheWrites(t *testing.T) {
	for _, policy := range []string{config.WriteAll, config.WriteAllAsync} {
		t.Run(policy, func(t *testing.T) {
			primary, replica := testserver.Memcached(t), testserver.Memcached(t)
			pool := proxytest.MemcachePool(t, "mc", primary)
			pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
			pool.WritePolicy = policy
			p := proxytest.Start(t, proxy.Options{}, pool)
			c := proxytest.Dial(t, pool.Listen)
			dp, dr := proxytest.Dial(t, primary.Addr), proxytest.Dial(t, replica.Addr)
			both := func(k, want string) {
				t.Helper()
				waitFor(t, k+" on both copies", func() bool { // all_async: the replica's write may still be on its way
					return holds(t, dp, k) == want && holds(t, dr, k) == want
				})
			}

			c.RoundTrip("set a 0 0 1\r\n1\r\n", "STORED\r\n")
			both("a", "1")
			c.Send("set b 0 0 1 noreply\r\n2\r\n")
			c.Send("ms c 1 q\r\n3\r\n")
			c.RoundTrip("mn\r\n", "MN\r\n")
			both("b", "2")
			both("c", "3")
			c.RoundTrip("delete a\r\n", "DELETED\r\n")
			both("a", "")
			c.RoundTrip("incr n 1\r\n", "NOT_FOUND\r\n")

			if policy == config.WriteAll {
				// The replica already holds d: add is refused there only.
				// The client gets the primary's STORED; the disagreement
				// is counted against the replica.
				dr.RoundTrip("set d 0 0 1\r\nR\r\n", "STORED\r\n")
				c.RoundTrip("add d 0 0 1\r\nP\r\n", "STORED\r\n")
				if ss := serverStats(t, p, "mc", "mc1/r1"); ss.Disagreements != 1 {
					t.Fatalf("replica disagreements %d; want 1", ss.Disagreements)
				}
				if ss := serverStats(t, p, "mc", "mc1"); ss.Disagreements != 0 {
					t.Fatalf("primary disagreements %d; want 0", ss.Disagreements)
				}
			}
			c.RoundTrip("flush_all\r\n", "OK\r\n")
			both("b", "")
			both("c", "")
		})
	}
}

// read_repair: a copy re-admitted after an ejection came back empty; a
// read that misses on it is asked once more of another live copy, which
// answers it. Without read_repair the miss is the client's.
func TestReplicatedMemcacheReadRepair(t *testing.T) {
	for _, repair := range []bool{true, false} {
		t.Run(fmt.Sprintf("read_repair=%v", repair), func(t *testing.T) {
			primary, replica := testserver.Memcached(t), testserver.Memcached(t)
			pool := proxytest.MemcachePool(t, "mc", primary)
			pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
			pool.ReadRepair = repair
			pool.ServerFailureLimit = 1
			pool.ServerRetryTimeout = 200 * time.Millisecond
			p := proxytest.Start(t, proxy.Options{}, pool)
			c := proxytest.Dial(t, pool.Listen)
			c.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")

			primary.Kill()
			waitFor(t, "the primary to be ejected", func() bool {
				c.Send("set w 0 0 1\r\nx\r\n") // the replica takes it
				c.Expect("STORED\r\n")
				return serverStats(t, p, "mc", "mc1").State == cpool.StateEjected
			})
			if !p.Ready() {
				t.Fatalf("not ready with the only primary ejected; its replica serves the shard")
			}
			primary.Restart()
			waitFor(t, "the primary to be re-admitted", func() bool {
				return serverStats(t, p, "mc", "mc1").State == cpool.StateUp
			})
			v, e := mcGet(c, "k") // the primary is read first, and is empty
			want := ""
			if repair {
				want = "v"
			}
			if v != want || e != "" {
				t.Fatalf("get k from the re-admitted primary: %q %q; want %q", v, e, want)
			}
			ss := serverStats(t, p, "mc", "mc1")
			if ss.ReadmittedMisses != 1 || (ss.ReadRepairs == 1) != repair {
				t.Fatalf("re-admitted misses %d, read repairs %d; want 1 and %v", ss.ReadmittedMisses, ss.ReadRepairs, repair)
			}
		})
	}
}

// With hot_keys.ttl_jitter a replicated write's copies get one expiry: the
// jitter is drawn once per write, not per copy.
func TestReplicatedMemcacheJitterSameExpiry(t *testing.T) {
	primary, replica := testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
	pool.HotKeys = config.HotKeys{Enabled: true, TTLJitter: 0.5}
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	dp, dr := proxytest.Dial(t, primary.Addr), proxytest.Dial(t, replica.Addr)
	ttl := func(dc *proxytest.Conn, k string) int {
		t.Helper()
		dc.Send("mg " + k + " t\r\n")
		var n int
		if _, err := fmt.Sscanf(dc.Line(), "HD t%d", &n); err != nil {
			t.Fatalf("mg %s t: %v", k, err)
		}
		return n
	}
	jittered := false
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("j%d", i)
		c.RoundTrip("set "+k+" 0 10000 1\r\nv\r\n", "STORED\r\n")
		tp, tr := ttl(dp, k), ttl(dr, k)
		if d := tp - tr; d < -1 || d > 1 { // one second may tick between the two reads
			t.Fatalf("%s: primary ttl %d, replica ttl %d; want the same expiry", k, tp, tr)
		}
		jittered = jittered || tp < 9990 || tp > 10001
	}
	if !jittered {
		t.Fatalf("no expiry was spread by a 50%% jitter in 20 writes")
	}
}
