package proxy_test

import (
	"context"
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

// The "replicas" here are independent servers holding different values for
// the same key, so a reply shows which one answered.

func TestReadPolicyMemcache(t *testing.T) {
	primary, replica := testserver.Memcached(t), testserver.Memcached(t)
	for _, tc := range []struct{ addr, val string }{{primary.Addr, "P"}, {replica.Addr, "R"}} {
		c := proxytest.Dial(t, tc.addr)
		c.Send("set k 0 0 1\r\n" + tc.val + "\r\n")
		c.Expect("STORED\r\n")
	}
	for _, tc := range []struct{ policy, want string }{
		{config.ReadPrimary, "P"}, {config.ReadReplica, "R"}, {config.ReadPreferReplica, "R"}, {config.ReadPreferPrimary, "P"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			pool := proxytest.MemcachePool(t, "mc", primary)
			pool.Servers[0].Replicas = []config.Replica{config.NewReplica(replica.Addr)}
			pool.ReadPolicy = tc.policy
			proxytest.Start(t, proxy.Options{}, pool)
			c := proxytest.Dial(t, pool.Listen)
			c.Send("get k\r\n")
			c.Expect("VALUE k 0 1\r\n", tc.want+"\r\n", "END\r\n")
			// Writes and gets (CAS tokens) always go to the primary.
			c.Send("gets k\r\n")
			if l := c.Line(); l[:10] != "VALUE k 0 " {
				t.Fatalf("gets: got %q", l)
			}
			c.Expect("P\r\n", "END\r\n")
		})
	}
	// prefer_replica falls back to the primary while the replica is down.
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{config.NewReplica(replica.Addr)}
	pool.ReadPolicy = config.ReadPreferReplica
	proxytest.Start(t, proxy.Options{}, pool)
	replica.Kill()
	c := proxytest.Dial(t, pool.Listen)
	got := ""
	for i := 0; i < 50 && got != "P\r\n"; i++ {
		c.Send("get k\r\n")
		first := c.Line()
		if first == "VALUE k 0 1\r\n" {
			got = c.Line()
			c.Expect("END\r\n")
		}
	}
	if got != "P\r\n" {
		t.Fatalf("prefer_replica with the replica down: got %q; want the primary's value", got)
	}
}

func TestReadPolicyRedis(t *testing.T) {
	primary, replica := testserver.Redis(t), testserver.Redis(t)
	ctx := context.Background()
	for _, tc := range []struct{ addr, val string }{{primary.Addr, "P"}, {replica.Addr, "R"}} {
		if err := goRedis(t, tc.addr).Set(ctx, "k", tc.val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pool := proxytest.RedisPool(t, "r", primary)
	pool.Servers[0].Replicas = []config.Replica{config.NewReplica(replica.Addr)}
	pool.ReadPolicy = config.ReadReplica
	proxytest.Start(t, proxy.Options{}, pool)
	c := goRedis(t, pool.Listen)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "R" {
		t.Fatalf("GET with read_policy replica: %q, %v; want R", v, err)
	}
	if err := c.Set(ctx, "k", "W", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := goRedis(t, primary.Addr).Get(ctx, "k").Result(); err != nil || v != "W" {
		t.Fatalf("SET went to %q (%v); want the primary to hold W", v, err)
	}
	if v, err := c.Incr(ctx, "n").Result(); err != nil || v != 1 {
		t.Fatalf("INCR: %d, %v", v, err)
	}
}

// mcGet reads key k through c: its value, or the error line the proxy
// answered instead ("" value and "" error: a miss).
func mcGet(c *proxytest.Conn, k string) (val, errLine string) {
	c.Send("get " + k + "\r\n")
	first := c.Line()
	if !strings.HasPrefix(first, "VALUE ") {
		if first == "END\r\n" {
			return "", ""
		}
		return "", first
	}
	val = strings.TrimSuffix(c.Line(), "\r\n")
	c.Expect("END\r\n")
	return val, ""
}

// serverStats returns pool name's server (or replica) called server.
func serverStats(t *testing.T, p *proxy.Proxy, name, server string) proxy.ServerStats {
	t.Helper()
	for _, ps := range p.Stats() {
		if ps.Name != name {
			continue
		}
		for _, ss := range ps.Servers {
			if ss.Name == server {
				return ss
			}
		}
	}
	t.Fatalf("pool %s has no server %s", name, server)
	return proxy.ServerStats{}
}

// A dead replica is ejected after server_failure_limit failures, probed
// every server_retry_timeout while it stays dead, and re-admitted once it
// answers; prefer_replica reads go to the primary meanwhile (no error once
// it is ejected), and back to the replica after. Its failures never count
// against the primary.
func TestReplicaEjectedProbedReadmitted(t *testing.T) {
	primary, replica := testserver.Memcached(t), testserver.Memcached(t)
	for _, tc := range []struct{ addr, val string }{{primary.Addr, "P"}, {replica.Addr, "R"}} {
		proxytest.Dial(t, tc.addr).RoundTrip("set k 0 0 1\r\n"+tc.val+"\r\n", "STORED\r\n")
	}
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
	pool.ReadPolicy = config.ReadPreferReplica
	pool.ServerFailureLimit = 2
	pool.ServerRetryTimeout = 200 * time.Millisecond
	pool.Preconnect = true
	logs := &testserver.SyncBuffer{}
	p := proxytest.Start(t, proxy.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, pool)
	const rname = "mc1/r1"

	// preconnect dials the replica too, as the client's loop starts,
	// before any request.
	c := proxytest.Dial(t, pool.Listen)
	waitFor(t, "preconnect to dial the replica", func() bool { return serverStats(t, p, "mc", rname).Connections > 0 })
	rs := serverStats(t, p, "mc", rname)
	if rs.Role != proxy.RoleReplica || rs.Addr != replica.Addr || rs.State != cpool.StateUp || rs.Requests != 0 {
		t.Fatalf("replica stats %+v; want role replica, addr %s, up, no request yet", rs, replica.Addr)
	}
	if v, e := mcGet(c, "k"); v != "R" {
		t.Fatalf("prefer_replica read: %q %q; want the replica's R", v, e)
	}
	if n := serverStats(t, p, "mc", rname).Requests; n < 1 {
		t.Fatalf("replica requests %d; want the read counted on it", n)
	}

	replica.Kill()
	// Reads fail over to the primary; until the replica is ejected one may
	// still see its connection fail.
	waitFor(t, "the replica to be ejected", func() bool {
		if v, e := mcGet(c, "k"); v != "P" && e == "" {
			t.Fatalf("read with the replica dying: %q; want P or an error", v)
		}
		return serverStats(t, p, "mc", rname).State == cpool.StateEjected
	})
	for i := 0; i < 20; i++ {
		if v, e := mcGet(c, "k"); v != "P" {
			t.Fatalf("read %d with the replica ejected: %q %q; want the primary's P", i, v, e)
		}
	}
	ps := serverStats(t, p, "mc", "mc1")
	if ps.Role != proxy.RolePrimary || ps.State != cpool.StateUp || ps.Failures != 0 || ps.Ejections != 0 {
		t.Fatalf("primary stats %+v; want up, no failures: a replica's failures are its own", ps)
	}
	rs = serverStats(t, p, "mc", rname)
	if rs.Ejections != 1 || rs.Failures < 2 {
		t.Fatalf("replica ejections %d failures %d; want 1 and >= 2", rs.Ejections, rs.Failures)
	}
	// Still dead: each retry time its probe fails and it stays out.
	waitFor(t, "a failed probe of the dead replica", func() bool {
		return strings.Contains(logs.String(), "server probe failed") && strings.Contains(logs.String(), rname)
	})
	if st := serverStats(t, p, "mc", rname).State; st != cpool.StateEjected {
		t.Fatalf("dead replica after a probe: %v; want still ejected", st)
	}

	replica.Restart() // empty: a restarted memcached holds nothing
	proxytest.Dial(t, replica.Addr).RoundTrip("set k 0 0 2\r\nR2\r\n", "STORED\r\n")
	waitFor(t, "the replica to be re-admitted", func() bool { return serverStats(t, p, "mc", rname).State == cpool.StateUp })
	if !strings.Contains(logs.String(), "server re-admitted") {
		t.Fatalf("no re-admission logged:\n%s", logs.String())
	}
	waitFor(t, "reads back on the replica", func() bool {
		v, e := mcGet(c, "k")
		if v != "P" && v != "R2" {
			t.Fatalf("read after re-admission: %q %q; want P, then R2", v, e)
		}
		return v == "R2"
	})
}

// Meta gets are reads (read_policy sends them to a replica) unless a flag
// writes (N, T, R, E) or asks for the CAS value (c): those go to the
// primary, as gets does.
func TestReadPolicyMetaGet(t *testing.T) {
	primary, replica := testserver.Memcached(t), testserver.Memcached(t)
	for _, tc := range []struct{ addr, val string }{{primary.Addr, "P"}, {replica.Addr, "R"}} {
		proxytest.Dial(t, tc.addr).RoundTrip("set k 0 0 1\r\n"+tc.val+"\r\n", "STORED\r\n")
	}
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{config.NewReplica(replica.Addr)}
	pool.ReadPolicy = config.ReadReplica
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	for _, tc := range []struct{ req, want string }{
		{"mg k v", "R"}, {"mg k v f t s", "R"}, {"mg k v q", "R"},
		{"mg k v T0", "P"}, {"mg k v N0", "P"}, {"mg k v R30", "P"},
	} {
		c.Send(tc.req + "\r\n")
		if l := c.Line(); !strings.HasPrefix(l, "VA 1") {
			t.Fatalf("%s: %q", tc.req, l)
		}
		if v := c.Line(); v != tc.want+"\r\n" {
			t.Fatalf("%s: value %q; want %s's", tc.req, v, tc.want)
		}
	}
	c.Send("mg k v c\r\n")
	if l := c.Line(); !strings.HasPrefix(l, "VA 1 c") {
		t.Fatalf("mg k v c: %q", l)
	}
	c.Expect("P\r\n")
}

// The same for Redis: a dead replica is ejected, reads under
// prefer_replica go to the primary meanwhile, and it is probed (PING) and
// re-admitted when it is back.
func TestReplicaEjectedProbedReadmittedRedis(t *testing.T) {
	primary, replica := testserver.Redis(t), testserver.Redis(t)
	ctx := context.Background()
	for _, tc := range []struct{ addr, val string }{{primary.Addr, "P"}, {replica.Addr, "R"}} {
		if err := goRedis(t, tc.addr).Set(ctx, "k", tc.val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pool := proxytest.RedisPool(t, "r", primary)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: replica.Addr, Network: "tcp"}}
	pool.ReadPolicy = config.ReadPreferReplica
	pool.ServerFailureLimit = 2
	pool.ServerRetryTimeout = 200 * time.Millisecond
	p := proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	get := func() string {
		c.Send("GET k\r\n")
		l := c.Line()
		if l[0] == '$' {
			return strings.TrimSuffix(c.Line(), "\r\n")
		}
		return l
	}
	if v := get(); v != "R" {
		t.Fatalf("prefer_replica GET: %q; want R", v)
	}
	replica.Kill()
	waitFor(t, "the replica to be ejected", func() bool {
		if v := get(); v != "P" && v[0] != '-' {
			t.Fatalf("GET with the replica dying: %q; want P or an error", v)
		}
		return serverStats(t, p, "r", "r1/r1").State == cpool.StateEjected
	})
	for i := 0; i < 20; i++ {
		if v := get(); v != "P" {
			t.Fatalf("GET %d with the replica ejected: %q; want P", i, v)
		}
	}
	if ps := serverStats(t, p, "r", "r1"); ps.State != cpool.StateUp || ps.Failures != 0 {
		t.Fatalf("primary %+v; want up with no failures", ps)
	}
	replica.Restart()
	if err := goRedis(t, replica.Addr).Set(ctx, "k", "R2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to be re-admitted", func() bool { return serverStats(t, p, "r", "r1/r1").State == cpool.StateUp })
	waitFor(t, "reads back on the replica", func() bool { return get() == "R2" })
}
