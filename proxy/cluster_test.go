package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/loadgen"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// clusterPool is a cluster pool whose one seed is the cluster's first node.
func clusterPool(t *testing.T, c *testserver.Cluster) config.Pool {
	t.Helper()
	p := proxytest.RedisPool(t, "rc")
	p.HashTag = ""
	p.Cluster = true
	// Long: the map changes only on the kicks of redirects and lost
	// connections, so the redirect counts below are exact.
	p.ClusterRefresh = time.Minute
	p.Timeout = 2 * time.Second
	p.Servers = []config.Server{{Name: "seed", Addr: c.Nodes[0].Addr, Network: "tcp", Weight: 1}}
	return p
}

// clusterStats returns the cluster stats of pool rc.
func clusterStats(p *proxy.Proxy) (proxy.ClusterStats, []string) {
	for _, ps := range p.Stats() {
		if ps.Name == "rc" {
			var masters []string
			for _, s := range ps.Servers {
				if s.Role == "" || s.Role == proxy.RolePrimary {
					masters = append(masters, s.Addr)
				}
			}
			slices.Sort(masters)
			return ps.Cluster, masters
		}
	}
	return proxy.ClusterStats{}, nil
}

// waitClusterMap waits until the proxy's pool has the cluster's masters (as
// node addr sees them) owning every slot.
func waitClusterMap(t *testing.T, p *proxy.Proxy, c *testserver.Cluster, addr string) {
	t.Helper()
	testserver.WaitFor(t, testserver.ClusterTimeout, "the proxy's slot map", func() error {
		var want []string
		for _, m := range c.Masters(addr) {
			want = append(want, m.Addr)
		}
		st, got := clusterStats(p)
		if st.Covered != 16384 || !slices.Equal(got, want) {
			return fmt.Errorf("proxy has masters %v covering %d slots; cluster has %v", got, st.Covered, want)
		}
		return nil
	})
}

// TestRedisClusterBackend runs one 3-master, 3-replica cluster through a
// cluster pool: routing by slot without redirects, CLUSTER KEYSLOT against
// the real one, MGET across slots in order, CROSSSLOT in Redis's words, the
// CLUSTER answers that let go-redis's ClusterClient work through the
// proxy, a verifying load and redis-benchmark with zero errors, a 1000-slot
// reshard under load with zero errors, and a master's kill -9 followed.
func TestRedisClusterBackend(t *testing.T) {
	c := testserver.RedisCluster(t, 3, 1)
	pool := clusterPool(t, c)
	p := proxytest.Start(t, proxy.Options{}, pool)
	waitClusterMap(t, p, c, c.Nodes[0].Addr)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: pool.Listen, MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })

	t.Run("routing", func(t *testing.T) {
		before, _ := clusterStats(p)
		for i := range 300 {
			k := "route:" + strconv.Itoa(i)
			if err := rc.Set(ctx, k, "v"+strconv.Itoa(i), 0).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
		}
		for i := range 300 {
			k := "route:" + strconv.Itoa(i)
			if got, err := rc.Get(ctx, k).Result(); err != nil || got != "v"+strconv.Itoa(i) {
				t.Fatalf("GET %s = %q, %v; want %q", k, got, err, "v"+strconv.Itoa(i))
			}
		}
		// Each key is on the master owning its slot: that master answers
		// it directly, without a redirect.
		for i := range 300 {
			k := "route:" + strconv.Itoa(i)
			slot, err := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
			if err != nil {
				t.Fatal(err)
			}
			owner := slotOwner(t, c, int(slot.(int64)))
			if v, err := testserver.Do(owner, "GET", k); err != nil || v != "v"+strconv.Itoa(i) {
				t.Fatalf("GET %s on its master %s = %v, %v", k, owner, v, err)
			}
		}
		after, _ := clusterStats(p)
		if d := after.Moved + after.Ask - before.Moved - before.Ask; d != 0 {
			t.Errorf("%d redirects with a current slot map; want 0", d)
		}
	})

	t.Run("keyslot", func(t *testing.T) {
		keys := []string{"", "foo", "bar", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
			"foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}", "a{b", "123456789", "\xff\x00\x80"}
		for i := range 300 {
			keys = append(keys, "k"+strconv.Itoa(i*7919), "{t"+strconv.Itoa(i)+"}x")
		}
		for _, k := range keys {
			want, err := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rc.ClusterKeySlot(ctx, k).Result()
			if err != nil || got != want.(int64) {
				t.Fatalf("CLUSTER KEYSLOT %q through the proxy = %d, %v; the cluster says %d", k, got, err, want)
			}
		}
	})

	t.Run("mget", func(t *testing.T) {
		var keys []string
		var want []any
		for i := range 40 {
			k := "mget:" + strconv.Itoa(i)
			keys = append(keys, k)
			if i%3 == 2 {
				want = append(want, nil)
				continue
			}
			if err := rc.Set(ctx, k, "m"+strconv.Itoa(i), 0).Err(); err != nil {
				t.Fatal(err)
			}
			want = append(want, "m"+strconv.Itoa(i))
		}
		got, err := rc.MGet(ctx, keys...).Result()
		if err != nil {
			t.Fatalf("MGET: %v", err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("MGET = %v; want %v", got, want)
		}
		if n, err := rc.Exists(ctx, keys...).Result(); err != nil || n != 27 {
			t.Fatalf("EXISTS = %d, %v; want 27", n, err)
		}
		if n, err := rc.Del(ctx, keys...).Result(); err != nil || n != 27 {
			t.Fatalf("DEL = %d, %v; want 27", n, err)
		}
	})

	t.Run("crossslot", func(t *testing.T) {
		// The real cluster's words, from a node that owns the first key.
		slot, _ := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", "a")
		_, want := testserver.Do(slotOwner(t, c, int(slot.(int64))), "SUNIONSTORE", "a", "b", "c")
		if want == nil {
			t.Fatal("the cluster took SUNIONSTORE a b c")
		}
		for _, args := range [][]any{{"SUNIONSTORE", "a", "b", "c"}, {"RENAME", "a", "b"}, {"SMOVE", "a", "b", "x"},
			{"EVAL", "return 1", "2", "a", "b"}} {
			err := rc.Do(ctx, args...).Err()
			if err == nil || err.Error() != want.Error() {
				t.Errorf("%v through the proxy: %v; the cluster says %q", args, err, want)
			}
		}
		if want.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Errorf("the cluster says %q", want)
		}
		// One slot by hash tag: fine.
		if err := rc.Do(ctx, "SUNIONSTORE", "{s}a", "{s}b", "{s}c").Err(); err != nil {
			t.Errorf("SUNIONSTORE in one slot: %v", err)
		}
	})

	t.Run("ask", func(t *testing.T) {
		// A slot half-way through a migration: a key the source does not
		// have gets -ASK, which the proxy follows with ASKING + the
		// request on the target, changing no map.
		const k = "askkey"
		slot, _ := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
		src := slotOwner(t, c, int(slot.(int64)))
		var srcID, dst, dstID string
		for _, m := range c.Masters(c.Nodes[0].Addr) {
			if m.Addr == src {
				srcID = m.ID
			} else if dst == "" {
				dst, dstID = m.Addr, m.ID
			}
		}
		sl := strconv.FormatInt(slot.(int64), 10)
		mustDo(t, dst, "CLUSTER", "SETSLOT", sl, "IMPORTING", srcID)
		mustDo(t, src, "CLUSTER", "SETSLOT", sl, "MIGRATING", dstID)
		before, _ := clusterStats(p)
		if err := rc.Set(ctx, k, "asked", 0).Err(); err != nil {
			t.Fatalf("SET during the migration: %v", err)
		}
		if got, err := rc.Get(ctx, k).Result(); err != nil || got != "asked" {
			t.Fatalf("GET during the migration = %q, %v", got, err)
		}
		after, _ := clusterStats(p)
		if d := after.Ask - before.Ask; d != 2 {
			t.Errorf("%d ASK redirects followed; want 2", d)
		}
		if d := after.Moved - before.Moved; d != 0 {
			t.Errorf("%d MOVED redirects followed; want 0", d)
		}
		// The key went to the target, and the source does not have it.
		if v := askingGet(t, dst, k); v != "asked" {
			t.Errorf("target has %q; want asked", v)
		}
		// Finish the migration of this (otherwise empty) slot: the
		// target owns it, the proxy learns it from the MOVED it gets.
		mustDo(t, dst, "CLUSTER", "SETSLOT", sl, "NODE", dstID)
		mustDo(t, src, "CLUSTER", "SETSLOT", sl, "NODE", dstID)
		if got, err := rc.Get(ctx, k).Result(); err != nil || got != "asked" {
			t.Fatalf("GET after the migration = %q, %v", got, err)
		}
		moved, _ := clusterStats(p)
		if d := moved.Moved - after.Moved; d != 1 {
			t.Errorf("%d MOVED redirects followed; want 1", d)
		}
		waitClusterMap(t, p, c, c.Nodes[0].Addr)
		if o := slotOwner(t, c, int(slot.(int64))); o != dst {
			t.Fatalf("slot %s owned by %s; want %s", sl, o, dst)
		}
	})

	t.Run("second redirect", func(t *testing.T) {
		// The source says ASK, the target (not importing) says MOVED back:
		// a request is redirected once, so the client gets the second.
		const k = "twice"
		slot, _ := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
		src := slotOwner(t, c, int(slot.(int64)))
		var dstID string
		for _, m := range c.Masters(c.Nodes[0].Addr) {
			if m.Addr != src && dstID == "" {
				dstID = m.ID
			}
		}
		sl := strconv.FormatInt(slot.(int64), 10)
		mustDo(t, src, "CLUSTER", "SETSLOT", sl, "MIGRATING", dstID)
		err := rc.Get(ctx, k).Err()
		mustDo(t, src, "CLUSTER", "SETSLOT", sl, "STABLE")
		if want := "MOVED " + sl + " " + src; err == nil || err.Error() != want {
			t.Fatalf("GET after two redirects: %v; want %q", err, want)
		}
		if err := rc.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET once the slot is stable again: %v", err)
		}
	})

	t.Run("scan", func(t *testing.T) {
		// SCAN visits every master: all 300 keys of the routing test.
		seen := map[string]bool{}
		var cursor uint64
		for {
			keys, next, err := rc.Scan(ctx, cursor, "route:*", 100).Result()
			if err != nil {
				t.Fatalf("SCAN: %v", err)
			}
			for _, k := range keys {
				seen[k] = true
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if len(seen) != 300 {
			t.Fatalf("SCAN found %d route:* keys; want 300", len(seen))
		}
		if n, err := rc.DBSize(ctx).Result(); err != nil || n < 300 {
			t.Fatalf("DBSIZE = %d, %v; want at least 300", n, err)
		}
	})

	t.Run("cluster client", func(t *testing.T) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{pool.Listen}, MaxRedirects: 0})
		defer cc.Close()
		for i := range 50 {
			k := "cc:" + strconv.Itoa(i)
			if err := cc.Set(ctx, k, k, 0).Err(); err != nil {
				t.Fatalf("ClusterClient SET %s: %v", k, err)
			}
			if got, err := cc.Get(ctx, k).Result(); err != nil || got != k {
				t.Fatalf("ClusterClient GET %s = %q, %v", k, got, err)
			}
		}
		if got, err := cc.MGet(ctx, "{cc}1", "{cc}2").Result(); err != nil || len(got) != 2 {
			t.Fatalf("ClusterClient MGET = %v, %v", got, err)
		}
		nodes, err := cc.ClusterNodes(ctx).Result()
		if err != nil || !strings.Contains(nodes, pool.Listen+"@0 myself,master") {
			t.Fatalf("CLUSTER NODES = %q, %v; want the proxy as the one master", nodes, err)
		}
	})

	t.Run("reload", func(t *testing.T) {
		// A reload that changes the seeds and the refresh keeps the map it
		// has (the servers stay the masters, not the new seed) and
		// restarts the watcher.
		next := pool
		next.Servers = []config.Server{{Name: "seed2", Addr: c.Nodes[1].Addr, Network: "tcp", Weight: 1}}
		next.ClusterRefresh = 30 * time.Second
		cs, before := clusterStats(p)
		if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
			t.Fatal(err)
		}
		if _, after := clusterStats(p); !slices.Equal(after, before) {
			t.Fatalf("servers after the reload %v; want the masters %v", after, before)
		}
		// The new watcher asks at once (the next periodic ask is 30s off).
		testserver.WaitFor(t, proxytest.Timeout, "the restarted watcher's first ask", func() error {
			if now, _ := clusterStats(p); now.Refreshes <= cs.Refreshes {
				return fmt.Errorf("%d maps read, %d before the reload", now.Refreshes, cs.Refreshes)
			}
			return nil
		})
		for i := range 50 {
			k := "reload:" + strconv.Itoa(i)
			if err := rc.Set(ctx, k, k, 0).Err(); err != nil {
				t.Fatalf("SET %s after the reload: %v", k, err)
			}
		}
		pool = next
	})

	t.Run("replica reads", func(t *testing.T) {
		// read_policy replica: reads go to the masters' replicas, on
		// connections that said READONLY (else a replica redirects them).
		rpool := clusterPool(t, c)
		rpool.ReadPolicy = config.ReadReplica
		rpool.ClusterRefresh = 200 * time.Millisecond // replicas join the map once in sync
		rp := proxytest.Start(t, proxy.Options{}, rpool)
		testserver.WaitFor(t, testserver.ClusterTimeout, "a map with the replicas", func() error {
			_, _, reps := responses(rp)
			if reps != 3 {
				return fmt.Errorf("%d replicas", reps)
			}
			return nil
		})
		const k = "{r}replicated"
		if err := rc.Set(ctx, k, "rv", 0).Err(); err != nil {
			t.Fatal(err)
		}
		// Replication is asynchronous: wait until the slot's replica has it.
		slot, _ := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
		owner := slotOwner(t, c, int(slot.(int64)))
		var replica string
		for _, n := range c.NodesOf(c.Nodes[0].Addr) {
			if m := c.NodesOf(c.Nodes[0].Addr); n.Master != "-" && slices.ContainsFunc(m, func(o testserver.ClusterNode) bool { return o.ID == n.Master && o.Addr == owner }) {
				replica = n.Addr
			}
		}
		testserver.WaitFor(t, 10*time.Second, "the replica to have the key", func() error {
			cn := dialRedis(t, replica, "")
			if _, err := cn.Do("READONLY"); err != nil {
				return err
			}
			if v, err := cn.Do("GET", k); err != nil || v != "rv" {
				return fmt.Errorf("replica %s: %v, %v", replica, v, err)
			}
			return nil
		})
		rrc := redis.NewClient(&redis.Options{Addr: rpool.Listen, MaxRetries: -1})
		defer rrc.Close()
		if err := rrc.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		m0, r0, _ := responses(rp)
		for range 20 {
			if got, err := rrc.Get(ctx, k).Result(); err != nil || got != "rv" {
				t.Fatalf("GET through the replica-reading pool = %q, %v", got, err)
			}
		}
		m1, r1, _ := responses(rp)
		// A replica connection's handshake (READONLY) adds one response
		// per connection: at least the 20 reads, and none on a master.
		if r1-r0 < 20 || m1 != m0 {
			t.Fatalf("replicas answered %d, masters %d; want the 20 reads on replicas only", r1-r0, m1-m0)
		}
		st, _ := clusterStats(rp)
		if st.Moved+st.Ask != 0 {
			t.Errorf("%d redirects: a replica redirected reads", st.Moved+st.Ask)
		}
	})

	t.Run("loader", func(t *testing.T) {
		res, err := loadgen.Run(ctx, loadgen.Config{Addr: pool.Listen, Protocol: loadgen.Redis, Conns: 8, Pipeline: 8,
			GetRatio: 0.8, ValueSize: 64, Keys: 5000, KeyPrefix: "load:", Duration: 2 * time.Second,
			Verify: true, Preload: true, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("loader: %d requests, %.0f/s, p99 %.0fus", res.Requests, res.Throughput, res.Latency.P99)
		if res.Requests == 0 || res.Errors+res.Misrouted+res.Misordered+res.Corrupt+res.Lost+res.ConnFailures != 0 {
			t.Fatalf("loader: %+v", res)
		}
	})

	t.Run("redis-benchmark", func(t *testing.T) {
		bin := testserver.Require(t, "redis-benchmark")
		host, port, _ := strings.Cut(pool.Listen, ":")
		out, err := exec.Command(bin, "-h", host, "-p", port, "-n", "20000", "-c", "16", "-P", "8",
			"-r", "100000", "-t", "set,get,incr,mset", "-q", "--csv").CombinedOutput()
		t.Logf("redis-benchmark through the proxy:\n%s", out)
		if err != nil {
			t.Fatalf("redis-benchmark: %v", err)
		}
		if s := strings.ToLower(string(out)); strings.Contains(s, "err") || strings.Count(s, "\n") < 5 {
			t.Fatalf("redis-benchmark reported errors or too few tests")
		}
	})

	t.Run("reshard", func(t *testing.T) {
		masters := c.Masters(c.Nodes[0].Addr)
		from, to := masters[0], masters[1]
		loadCtx, stop := context.WithCancel(ctx)
		var res *loadgen.Result
		var lerr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, lerr = loadgen.Run(loadCtx, loadgen.Config{Addr: pool.Listen, Protocol: loadgen.Redis, Conns: 4, Pipeline: 4,
				GetRatio: 0.5, ValueSize: 32, Keys: 20000, KeyPrefix: "reshard:", Duration: time.Hour,
				Verify: true, Preload: true, Seed: 2, Timeout: 5 * time.Second})
		}()
		cli := testserver.Require(t, "redis-cli")
		before, _ := clusterStats(p)
		out, err := exec.Command(cli, "--cluster", "reshard", from.Addr, "--cluster-from", from.ID, "--cluster-to", to.ID,
			"--cluster-slots", "1000", "--cluster-yes", "--cluster-pipeline", "100").CombinedOutput()
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
		}
		waitClusterMap(t, p, c, to.Addr)
		stop()
		wg.Wait()
		after, _ := clusterStats(p)
		t.Logf("reshard: %d MOVED and %d ASK followed; load %+v", after.Moved-before.Moved, after.Ask-before.Ask, res)
		if lerr != nil && lerr != context.Canceled {
			t.Fatalf("loader: %v", lerr)
		}
		if res == nil || res.Requests == 0 || res.Errors+res.Misrouted+res.Misordered+res.Corrupt+res.Lost+res.ConnFailures != 0 {
			t.Fatalf("loader during the reshard: %+v", res)
		}
	})

	t.Run("failover", func(t *testing.T) {
		// The master owning slot 0's key, its replica and keys in its slots.
		masters := c.Masters(c.Nodes[0].Addr)
		victim := masters[0]
		var keys []string
		for i := 0; len(keys) < 20; i++ {
			k := "fo:" + strconv.Itoa(i)
			slot, _ := testserver.Do(victim.Addr, "CLUSTER", "KEYSLOT", k)
			if slotOwner(t, c, int(slot.(int64))) == victim.Addr {
				keys = append(keys, k)
			}
		}
		var survivor string
		for _, m := range masters[1:] {
			survivor = m.Addr
		}
		// Writes through the proxy, every 20ms, recording when each
		// succeeded.
		var mu sync.Mutex
		var oks []time.Time
		var fails atomic.Int64
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := redis.NewClient(&redis.Options{Addr: pool.Listen, MaxRetries: -1})
			defer wc.Close()
			for i := 0; wctx.Err() == nil; i++ {
				err := wc.Set(wctx, keys[i%len(keys)], i, 0).Err()
				mu.Lock()
				if err == nil {
					oks = append(oks, time.Now())
				} else {
					fails.Add(1)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // the write rate, not synchronisation
			}
		}()
		c.Node(victim.Addr).Kill()
		killed := time.Now()
		// Promotion: a surviving node lists a new master for the victim's
		// slots.
		var promoted time.Time
		testserver.WaitFor(t, testserver.ClusterTimeout, "a replica promoted", func() error {
			for _, m := range c.Masters(survivor) {
				if m.Addr != victim.Addr && !slices.ContainsFunc(masters, func(o testserver.ClusterNode) bool { return o.Addr == m.Addr }) {
					promoted = time.Now()
					return nil
				}
			}
			return fmt.Errorf("no new master yet")
		})
		// Writes to its slots succeed through the proxy within 5s of the
		// promotion (the bound). The promotion is seen by polling
		// every 20ms, so it happened up to 20ms (plus one CLUSTER NODES)
		// before `promoted`; 5s leaves the proxy's refresh (kicked by
		// every refused write, at most every 100ms) ample room on a loaded
		// box.
		var firstOK time.Time
		testserver.WaitFor(t, 10*time.Second, "a write after the promotion", func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, at := range oks {
				if at.After(promoted) {
					firstOK = at
					return nil
				}
			}
			return fmt.Errorf("none yet")
		})
		stop()
		wg.Wait()
		lag := firstOK.Sub(promoted)
		if lag < 0 {
			lag = 0
		}
		t.Logf("failover: promotion %v after kill -9; first write through the proxy %v after the promotion; %d writes failed meanwhile",
			promoted.Sub(killed).Round(time.Millisecond), lag.Round(time.Millisecond), fails.Load())
		if lag > 5*time.Second {
			t.Fatalf("writes succeeded %v after the promotion; want within 5s", lag)
		}
		// And every key of the failed master's slots takes writes now.
		for _, k := range keys {
			if err := rc.Set(ctx, k, "after", 0).Err(); err != nil {
				t.Fatalf("SET %s after the failover: %v", k, err)
			}
		}
	})
}

// slotOwner returns the address of the master owning slot, as the cluster's
// first node sees it.
func slotOwner(t *testing.T, c *testserver.Cluster, slot int) string {
	t.Helper()
	for _, m := range c.Masters(c.Nodes[0].Addr) {
		for _, r := range m.Slots {
			if strings.HasPrefix(r, "[") {
				continue // a migrating or importing slot
			}
			a, b, ok := strings.Cut(r, "-")
			if !ok {
				b = a
			}
			lo, _ := strconv.Atoi(a)
			hi, _ := strconv.Atoi(b)
			if slot >= lo && slot <= hi {
				return m.Addr
			}
		}
	}
	t.Fatalf("no master owns slot %d", slot)
	return ""
}

// mustDo sends one command to the node at addr, failing the test on an
// error.
func mustDo(t *testing.T, addr string, args ...string) any {
	t.Helper()
	v, err := testserver.Do(addr, args...)
	if err != nil {
		t.Fatalf("%s on %s: %v", strings.Join(args, " "), addr, err)
	}
	return v
}

// askingGet reads key on the node at addr after ASKING (a slot it is
// importing).
func askingGet(t *testing.T, addr, key string) any {
	t.Helper()
	cn := dialRedis(t, addr, "")
	if _, err := cn.Do("ASKING"); err != nil {
		t.Fatal(err)
	}
	v, err := cn.Do("GET", key)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", key, addr, err)
	}
	return v
}

// responses sums the responses of pool rc's masters and of its replicas,
// and counts the replicas.
func responses(p *proxy.Proxy) (masters, replicas int64, nReplicas int) {
	for _, ps := range p.Stats() {
		if ps.Name != "rc" {
			continue
		}
		for _, s := range ps.Servers {
			if s.Role == proxy.RoleReplica {
				replicas += s.Responses
				nReplicas++
			} else {
				masters += s.Responses
			}
		}
	}
	return masters, replicas, nReplicas
}

// BenchmarkProxyCluster: one client through a cluster pool (3 masters) to
// a real Redis Cluster, 16 requests in flight: SET and GET of one key. The
// request's bytes are kept for a redirect in its own reused buffer, so
// steady state allocates nothing.
func BenchmarkProxyCluster(b *testing.B) {
	c := testserver.RedisCluster(b, 3, 0)
	pool := proxytest.RedisPool(b, "rc")
	pool.HashTag = ""
	pool.Cluster = true
	pool.Servers = []config.Server{{Name: "seed", Addr: c.Nodes[0].Addr, Network: "tcp", Weight: 1}}
	p := proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
	testserver.WaitFor(b, testserver.ClusterTimeout, "the slot map", func() error {
		if st, _ := clusterStats(p); st.Covered != 16384 {
			return fmt.Errorf("%d slots", st.Covered)
		}
		return nil
	})
	val := strings.Repeat("v", 32)
	b.Run("SET", func(b *testing.B) {
		benchRoundTrips(b, pool.Listen, []byte("*3\r\n$3\r\nSET\r\n$4\r\nbkey\r\n$32\r\n"+val+"\r\n"), []byte("+OK\r\n"), 16)
	})
	b.Run("GET", func(b *testing.B) {
		benchRoundTrips(b, pool.Listen, []byte("*2\r\n$3\r\nGET\r\n$4\r\nbkey\r\n"), []byte(val+"\r\n"), 16)
	})
}

// TestRedisClusterNewMaster: a master added to the cluster owns no slot
// yet, but the proxy knows it, so the ASK redirects of a slot migrating to
// it are followed (the scale-out case: the first slots move to a node no
// slot map named before).
func TestRedisClusterNewMaster(t *testing.T) {
	c := testserver.RedisCluster(t, 3, 0)
	pool := clusterPool(t, c)
	pool.ClusterRefresh = 200 * time.Millisecond // learns the new node without a redirect
	p := proxytest.Start(t, proxy.Options{}, pool)
	waitClusterMap(t, p, c, c.Nodes[0].Addr)
	nn := c.AddMaster()
	testserver.WaitFor(t, testserver.ClusterTimeout, "the proxy knowing the new master", func() error {
		if _, masters := clusterStats(p); !slices.Contains(masters, nn.Addr) {
			return fmt.Errorf("masters %v", masters)
		}
		return nil
	})
	var nnID string
	for _, n := range c.NodesOf(nn.Addr) {
		if n.Addr == nn.Addr {
			nnID = n.ID
		}
	}
	const k = "scaleout"
	slot, _ := testserver.Do(c.Nodes[0].Addr, "CLUSTER", "KEYSLOT", k)
	sl := strconv.FormatInt(slot.(int64), 10)
	src := slotOwner(t, c, int(slot.(int64)))
	var srcID string
	for _, m := range c.Masters(c.Nodes[0].Addr) {
		if m.Addr == src {
			srcID = m.ID
		}
	}
	mustDo(t, nn.Addr, "CLUSTER", "SETSLOT", sl, "IMPORTING", srcID)
	mustDo(t, src, "CLUSTER", "SETSLOT", sl, "MIGRATING", nnID)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: pool.Listen, MaxRetries: -1})
	defer rc.Close()
	before, _ := clusterStats(p)
	if err := rc.Set(ctx, k, "new", 0).Err(); err != nil {
		t.Fatalf("SET of a key migrating to the new master: %v", err)
	}
	after, _ := clusterStats(p)
	if d := after.Ask - before.Ask; d != 1 {
		t.Errorf("%d ASK redirects followed; want 1", d)
	}
	if v := askingGet(t, nn.Addr, k); v != "new" {
		t.Fatalf("the new master has %v; want new", v)
	}
	// The slot moves: the proxy follows (MOVED, or the map first).
	mustDo(t, nn.Addr, "CLUSTER", "SETSLOT", sl, "NODE", nnID)
	mustDo(t, src, "CLUSTER", "SETSLOT", sl, "NODE", nnID)
	if got, err := rc.Get(ctx, k).Result(); err != nil || got != "new" {
		t.Fatalf("GET once the slot moved = %q, %v", got, err)
	}
}
