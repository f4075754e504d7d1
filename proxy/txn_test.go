package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// txnPool is a Redis pool over two real servers (r1, r2), with the hash tag
// given, and two keys user:1 and user:N that go to different servers.
func txnPool(t *testing.T, hashTag string) (pool config.Pool, k1, k2 string, s1, s2 string) {
	t.Helper()
	pool = proxytest.RedisPool(t, "r", testserver.Redis(t), testserver.Redis(t))
	pool.HashTag = hashTag
	k1 = "user:1"
	for i := 2; ; i++ {
		k2 = "user:" + strconv.Itoa(i)
		if pick(t, pool, k2) != pick(t, pool, k1) {
			break
		}
	}
	return pool, k1, k2, pool.Servers[pick(t, pool, k1)].Name, pool.Servers[pick(t, pool, k2)].Name
}

// TestTxnAcrossServersRaw: inside MULTI a command whose key goes to another
// server than the transaction's first key is refused at queue time with an
// error naming the key, both servers and the hash tag fix, which dooms the
// transaction: EXEC answers EXECABORT (Redis's sentence) with the same
// explanation. WATCH on keys of different servers is refused the same way
// without dooming anything, as a failed WATCH in Redis.
func TestTxnAcrossServersRaw(t *testing.T) {
	for _, tc := range []struct {
		name, tag, where string
	}{
		{"hash tag", "{}", `this pool's hash_tag is "{}"`},
		{"no hash tag", "", `this pool has no hash_tag; set hash_tag: "{}"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, k1, k2, s1, s2 := txnPool(t, tc.tag)
			proxytest.Start(t, proxy.Options{}, pool)
			c := proxytest.Dial(t, pool.Listen)
			n := k2[len("user:"):]
			hint := "put keys that must change together under one hash tag, e.g. {user}:1 and {user}:" + n + " (" + tc.where + ")"
			away := fmt.Sprintf("key '%s' goes to server %s but this transaction runs on %s (its first key '%s')", k2, s2, s1, k1)

			c.RoundTrip(respCmd("MULTI")+respCmd("SET", k1, "a")+respCmd("SET", k2, "b")+respCmd("EXEC"),
				"+OK\r\n",
				"+QUEUED\r\n",
				"-CROSSSLOT "+away+"; "+hint+"\r\n",
				"-EXECABORT Transaction discarded because of previous errors: "+away+"; "+hint+"\r\n")
			// Discarded: nothing was written.
			c.RoundTrip(respCmd("GET", k1), "$-1\r\n")

			// A command whose own keys span servers, first in the transaction.
			span := fmt.Sprintf("keys of 'mset' go to different servers: '%s' to %s, '%s' to %s, and a transaction runs on one server", k1, s1, k2, s2)
			c.RoundTrip(respCmd("MULTI")+respCmd("MSET", k1, "a", k2, "b")+respCmd("EXEC"),
				"+OK\r\n",
				"-CROSSSLOT "+span+"; "+hint+"\r\n",
				"-EXECABORT Transaction discarded because of previous errors: "+span+"; "+hint+"\r\n")

			// DISCARD after a refusal ends the transaction as usual.
			c.RoundTrip(respCmd("MULTI")+respCmd("SET", k1, "a")+respCmd("SET", k2, "b")+respCmd("DISCARD"),
				"+OK\r\n",
				"+QUEUED\r\n",
				"-CROSSSLOT "+away+"; "+hint+"\r\n",
				"+OK\r\n")

			// Every refusal is in EXEC's answer: keys sent elsewhere, listed
			// once each, then the commands the proxy does not run in one.
			c.RoundTrip(respCmd("MULTI")+respCmd("SET", k1, "a")+respCmd("SET", k2, "b")+respCmd("GET", k2)+
				respCmd("KEYS", "*")+respCmd("EXEC"),
				"+OK\r\n",
				"+QUEUED\r\n",
				"-CROSSSLOT "+away+"; "+hint+"\r\n",
				"-CROSSSLOT "+away+"; "+hint+"\r\n",
				"-ERR command 'keys' can not be used in a transaction through the proxy\r\n",
				"-EXECABORT Transaction discarded because of previous errors: "+away+"; "+hint+
					"; command 'keys' can not be used in a transaction through the proxy\r\n")

			// A command the proxy answers itself and cannot queue dooms the
			// transaction too (Redis would queue it).
			c.RoundTrip(respCmd("MULTI")+respCmd("SET", k1, "a")+respCmd("CLIENT", "SETNAME", "x")+respCmd("EXEC"),
				"+OK\r\n",
				"+QUEUED\r\n",
				"-ERR command 'client|setname' can not be used in a transaction through the proxy\r\n",
				"-EXECABORT Transaction discarded because of previous errors: command 'client|setname' can not be used in a transaction through the proxy\r\n")
			c.RoundTrip(respCmd("GET", k1), "$-1\r\n")

			// WATCH: refused across servers, the transaction goes on.
			watchSpan := fmt.Sprintf("keys of 'watch' go to different servers: '%s' to %s, '%s' to %s, and a transaction runs on one server", k1, s1, k2, s2)
			c.RoundTrip(respCmd("WATCH", k1, k2), "-CROSSSLOT "+watchSpan+"; "+hint+"\r\n")
			c.RoundTrip(respCmd("WATCH", k1)+respCmd("WATCH", k2)+respCmd("MULTI")+respCmd("SET", k1, "w")+respCmd("EXEC"),
				"+OK\r\n",
				"-CROSSSLOT "+away+"; "+hint+"\r\n",
				"+OK\r\n",
				"+QUEUED\r\n",
				"*1\r\n",
				"+OK\r\n")
			c.RoundTrip(respCmd("GET", k1), "$1\r\n", "w\r\n")
		})
	}
}

// TestTxnAcrossServersGoRedis: go-redis's TxPipelined (MULTI ... EXEC) with
// keys on two servers fails with EXEC's error, which says which key went
// where and how to fix it; the command refused while queueing carries the
// CROSSSLOT explanation. The same transaction with hash-tagged keys runs,
// on one server.
func TestTxnAcrossServersGoRedis(t *testing.T) {
	pool, k1, k2, s1, s2 := txnPool(t, "{}")
	proxytest.Start(t, proxy.Options{}, pool)
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.Timeout)
	defer cancel()
	c := goRedis(t, pool.Listen)

	var second *redis.StatusCmd
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, k1, "a", 0)
		second = p.Set(ctx, k2, "b", 0)
		return nil
	})
	n := k2[len("user:"):]
	explain := fmt.Sprintf("key '%s' goes to server %s but this transaction runs on %s (its first key '%s'); "+
		"put keys that must change together under one hash tag, e.g. {user}:1 and {user}:%s (this pool's hash_tag is \"{}\")",
		k2, s2, s1, k1, n)
	if want := "EXECABORT Transaction discarded because of previous errors: " + explain; err == nil || err.Error() != want {
		t.Fatalf("TxPipelined across servers: got %v; want %q", err, want)
	}
	if want := "CROSSSLOT " + explain; second.Err() == nil || second.Err().Error() != want {
		t.Fatalf("queued SET %s: got %v; want %q", k2, second.Err(), want)
	}
	if err := c.Get(ctx, k1).Err(); err != redis.Nil {
		t.Fatalf("GET %s after the discarded transaction: %v; want redis.Nil", k1, err)
	}

	t1, t2 := "{user}:1", "{user}:"+n
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, t1, "a", 0)
		p.Set(ctx, t2, "b", 0)
		p.MGet(ctx, t1, t2)
		return nil
	})
	if err != nil {
		t.Fatalf("TxPipelined with hash-tagged keys: %v", err)
	}
	if got := fmt.Sprint(cmds[2].(*redis.SliceCmd).Val()); got != "[a b]" {
		t.Fatalf("MGET in the transaction: got %s; want [a b]", got)
	}
	// Both keys live on one server.
	srv := pick(t, pool, t1)
	if pick(t, pool, t2) != srv {
		t.Fatalf("%s and %s on different servers", t1, t2)
	}
	d := redis.NewClient(&redis.Options{Addr: pool.Servers[srv].Addr, Protocol: 2})
	defer d.Close()
	if got, err := d.MGet(ctx, t1, t2).Result(); err != nil || fmt.Sprint(got) != "[a b]" {
		t.Fatalf("MGET on %s itself: %v, %v; want [a b]", pool.Servers[srv].Name, got, err)
	}
}
