package proxy_test

import (
	"context"
	"testing"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
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
