package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func threeRedis(t *testing.T) []*testserver.Process {
	return []*testserver.Process{testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)}
}

// goRedis returns a go-redis client with its default options (it sends
// HELLO 3 and CLIENT SETINFO on connect).
func goRedis(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisWorkloadsThroughProxy(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c := goRedis(t, pool.Listen)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Strings and counters.
	must(c.Set(ctx, "greeting", "hello", 0).Err())
	if v, err := c.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("GET greeting: %q, %v; want hello", v, err)
	}
	if _, err := c.Get(ctx, "nope").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET nope: %v; want redis.Nil", err)
	}
	for i := 1; i <= 5; i++ {
		if n, err := c.Incr(ctx, "counter").Result(); err != nil || n != int64(i) {
			t.Fatalf("INCR: %d, %v; want %d", n, err, i)
		}
	}
	// Hashes (sessions).
	must(c.HSet(ctx, "session:1", "user", "ann", "cart", "3").Err())
	if m, err := c.HGetAll(ctx, "session:1").Result(); err != nil || m["user"] != "ann" || m["cart"] != "3" {
		t.Fatalf("HGETALL: %v, %v", m, err)
	}
	// Lists as queues, with LMOVE between tagged keys.
	must(c.RPush(ctx, "{q}:in", "a", "b", "c").Err())
	if v, err := c.LMove(ctx, "{q}:in", "{q}:work", "LEFT", "RIGHT").Result(); err != nil || v != "a" {
		t.Fatalf("LMOVE: %q, %v; want a", v, err)
	}
	if n, err := c.LLen(ctx, "{q}:work").Result(); err != nil || n != 1 {
		t.Fatalf("LLEN work: %d, %v; want 1", n, err)
	}
	// Sorted-set leaderboard.
	must(c.ZAdd(ctx, "board", redis.Z{Score: 10, Member: "ann"}, redis.Z{Score: 30, Member: "bob"}, redis.Z{Score: 20, Member: "cy"}).Err())
	if top, err := c.Do(ctx, "ZREVRANGE", "board", 0, -1).StringSlice(); err != nil || strings.Join(top, ",") != "bob,cy,ann" {
		t.Fatalf("ZREVRANGE: %v, %v", top, err)
	}
	if r, err := c.ZRevRank(ctx, "board", "cy").Result(); err != nil || r != 1 {
		t.Fatalf("ZREVRANK: %d, %v; want 1", r, err)
	}
	// Multi-key commands across servers.
	var keys []string
	var kv []any
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("mk:%d", i)
		keys = append(keys, k)
		kv = append(kv, k, "v"+strconv.Itoa(i))
	}
	must(c.MSet(ctx, kv...).Err())
	vals, err := c.MGet(ctx, append(keys, "absent")...).Result()
	must(err)
	for i, v := range vals[:30] {
		if v != "v"+strconv.Itoa(i) {
			t.Fatalf("MGET[%d] = %v; want v%d", i, v, i)
		}
	}
	if vals[30] != nil {
		t.Fatalf("MGET absent = %v; want nil", vals[30])
	}
	if n, err := c.Exists(ctx, "mk:1", "mk:2", "mk:1", "absent").Result(); err != nil || n != 3 {
		t.Fatalf("EXISTS: %d, %v; want 3 (repeats count)", n, err)
	}
	if n, err := c.Del(ctx, keys[:10]...).Result(); err != nil || n != 10 {
		t.Fatalf("DEL: %d, %v; want 10", n, err)
	}
	// Scripts: keys on one server work, keys on two are refused.
	if v, err := c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"greeting"}).Result(); err != nil || v != "hello" {
		t.Fatalf("EVAL: %v, %v; want hello", v, err)
	}
	var a, b string
	for i := 0; b == ""; i++ {
		k := "x" + strconv.Itoa(i)
		if pick(t, pool, "mk:20") != pick(t, pool, k) {
			a, b = "mk:20", k
		}
	}
	if _, err := c.Eval(ctx, "return 1", []string{a, b}).Result(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("EVAL across servers: %v; want CROSSSLOT", err)
	}
	// The connection stays usable after the error.
	if v, err := c.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("GET after CROSSSLOT: %q, %v", v, err)
	}
	// A transaction.
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "{acct}:a")
		p.IncrBy(ctx, "{acct}:b", 5)
		return nil
	})
	must(err)
	if len(cmds) != 2 || cmds[1].(*redis.IntCmd).Val() != 5 {
		t.Fatalf("transaction: %v", cmds)
	}
	// A 1,000-command pipeline answered in order.
	pipe := c.Pipeline()
	var gets []*redis.StringCmd
	for i := 0; i < 500; i++ {
		pipe.Set(ctx, "p:"+strconv.Itoa(i), i, 0)
		gets = append(gets, pipe.Get(ctx, "p:"+strconv.Itoa(i)))
	}
	_, err = pipe.Exec(ctx)
	must(err)
	for i, g := range gets {
		if g.Val() != strconv.Itoa(i) {
			t.Fatalf("pipeline GET p:%d = %q", i, g.Val())
		}
	}
}

// pick returns the server index a key goes to in pool.
func pick(t *testing.T, pool config.Pool, key string) int {
	t.Helper()
	r, err := pool.Ring()
	if err != nil {
		t.Fatal(err)
	}
	return r.Pick([]byte(key))
}

func TestRedisPubSubAndBlocking(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pubc, subc := goRedis(t, pool.Listen), goRedis(t, pool.Listen)

	sub := subc.Subscribe(ctx, "news", "sports")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // first confirmation
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	psub := subc.PSubscribe(ctx, "chat.*")
	defer psub.Close()
	if _, err := psub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ ch, msg string }{{"news", "n1"}, {"sports", "s1"}} {
		if n, err := pubc.Publish(ctx, m.ch, m.msg).Result(); err != nil || n != 1 {
			t.Fatalf("PUBLISH %s: %d, %v; want 1 receiver", m.ch, n, err)
		}
	}
	got := map[string]string{}
	for len(got) < 2 {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Channel] = msg.Payload
	}
	if got["news"] != "n1" || got["sports"] != "s1" {
		t.Fatalf("received %v", got)
	}
	if err := pubc.Publish(ctx, "chat.room1", "hi").Err(); err != nil {
		t.Fatal(err)
	}
	pm, err := psub.ReceiveMessage(ctx)
	if err != nil || pm.Channel != "chat.room1" || pm.Pattern != "chat.*" || pm.Payload != "hi" {
		t.Fatalf("pmessage: %+v, %v", pm, err)
	}

	// BLPOP is woken by an RPUSH from another client.
	res := make(chan []string, 1)
	errc := make(chan error, 1)
	go func() {
		v, err := subc.BLPop(ctx, 20*time.Second, "jobs").Result()
		errc <- err
		res <- v
	}()
	// Push until the blocked pop takes the item (it may not be blocked yet).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := pubc.RPush(ctx, "jobs", "job1").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			v := <-res
			if err != nil || len(v) != 2 || v[0] != "jobs" || v[1] != "job1" {
				t.Fatalf("BLPOP: %v, %v", v, err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("BLPOP never returned")
		}
		_ = pubc.Del(ctx, "jobs") // keep at most one job queued
	}
}

func TestRedisScanVisitsEveryKeyOnce(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c := goRedis(t, pool.Listen)
	want := map[string]bool{}
	for i := 0; i < 500; i++ {
		k := "scan:" + strconv.Itoa(i)
		want[k] = true
		if err := c.Set(ctx, k, "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	var cursor uint64
	for rounds := 0; ; rounds++ {
		keys, next, err := c.Scan(ctx, cursor, "scan:*", 50).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k]++
		}
		cursor = next
		if cursor == 0 {
			break
		}
		if rounds > 10000 {
			t.Fatal("SCAN did not finish")
		}
	}
	var dup []string
	for k, n := range seen {
		if n != 1 {
			dup = append(dup, k)
		}
	}
	sort.Strings(dup)
	if len(seen) != len(want) || len(dup) > 0 {
		t.Fatalf("SCAN saw %d distinct keys (want %d), repeated: %v", len(seen), len(want), dup)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 500 {
		t.Fatalf("DBSIZE: %d, %v; want 500", n, err)
	}
	keys, err := c.Keys(ctx, "scan:1*").Result()
	if err != nil || len(keys) != 111 {
		t.Fatalf("KEYS scan:1*: %d keys, %v; want 111", len(keys), err)
	}
}

func TestRedisRefusedAndMalformed(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	steps := []struct{ send, want string }{
		{"FLUSHALL\r\n", "-ERR command 'flushall' is not allowed through the proxy\r\n"},
		{"PING\r\n", "+PONG\r\n"},
		{"NOSUCH a b\r\n", "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"},
		{"GET\r\n", "-ERR wrong number of arguments for 'get' command\r\n"},
		{"HELLO 4\r\n", "-NOPROTO unsupported protocol version\r\n"},
		{"SET k v\r\nGET k\r\n", "+OK\r\n$1\r\nv\r\n"},
		{"*1\r\n$4\r\nPING\r\n", "+PONG\r\n"},
	}
	for _, st := range steps {
		c.Send(st.send)
		if got := c.ReadN(len(st.want)); got != st.want {
			t.Fatalf("after %q: got %q; want %q", st.send, got, st.want)
		}
	}
	// An unresynchronisable multibulk closes the connection after the error,
	// as Redis does; another client sees nothing.
	other := goRedis(t, pool.Listen)
	c.Send("*1\r\n$x\r\n")
	if got := c.Line(); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Fatalf("bad bulk length: got %q", got)
	}
	if v, err := other.Get(context.Background(), "k").Result(); err != nil || v != "v" {
		t.Fatalf("other client: %q, %v", v, err)
	}
}

func TestRedisManyClientsPipelined(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for ci := 0; ci < 8; ci++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: pool.Listen})
			defer c.Close()
			for round := 0; round < 20; round++ {
				pipe := c.Pipeline()
				var gets []*redis.StringCmd
				for i := 0; i < 50; i++ {
					k := fmt.Sprintf("c%d:%d", ci, i)
					pipe.Set(ctx, k, fmt.Sprintf("%s@%d", k, round), 0)
					gets = append(gets, pipe.Get(ctx, k))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					errs <- err
					return
				}
				for i, g := range gets {
					if want := fmt.Sprintf("c%d:%d@%d", ci, i, round); g.Val() != want {
						errs <- fmt.Errorf("client %d: got %q; want %q", ci, g.Val(), want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestRedisAllowCommandsOpensRefusedCommand(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	pool.AllowCommands = []string{"flushdb", "config|get"}
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c := goRedis(t, pool.Listen)
	for i := 0; i < 30; i++ {
		if err := c.Set(ctx, "f"+strconv.Itoa(i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("FLUSHDB (allowed): %v", err)
	}
	for i, r := range rs {
		d := goRedis(t, r.Addr)
		if n, err := d.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Fatalf("server %d after FLUSHDB: %d keys, %v; want 0", i, n, err)
		}
	}
	if v, err := c.ConfigGet(ctx, "maxmemory").Result(); err != nil || len(v) != 1 {
		t.Fatalf("CONFIG GET (allowed): %v, %v", v, err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("CONFIG SET (not allowed): %v; want not allowed", err)
	}
	if err := c.FlushAll(ctx).Err(); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("FLUSHALL (not allowed): %v; want not allowed", err)
	}
}

// TestRedisBenchmarkDefaultSet runs redis-benchmark's default test set
// through the proxy (with and without pipelining) and requires every test to
// report a result and no error reply.
func TestRedisBenchmarkDefaultSet(t *testing.T) {
	bin := testserver.Require(t, "redis-benchmark")
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	_, port, _ := net.SplitHostPort(pool.Listen)
	for _, pipeline := range []string{"1", "16"} {
		cmd := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-q", "-n", "2000", "-c", "10", "-P", pipeline)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", pipeline, err, out)
		}
		text := string(out)
		// The CONFIG warning is expected: CONFIG is refused by default.
		text = strings.ReplaceAll(text, "WARNING: Could not fetch server CONFIG", "")
		if strings.Contains(text, "ERR") || strings.Contains(strings.ToLower(text), "error") {
			t.Fatalf("redis-benchmark -P %s reported errors:\n%s", pipeline, out)
		}
		for _, test := range []string{"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP",
			"RPOP", "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN", "LRANGE_100 (first 100 elements)", "LRANGE_600 (first 600 elements)", "MSET (10 keys)"} {
			if !strings.Contains(text, test+": ") {
				t.Fatalf("redis-benchmark -P %s: no result for %s:\n%s", pipeline, test, out)
			}
		}
	}
}

func TestRedisAuthAndDBOnBackendConnections(t *testing.T) {
	r := testserver.Redis(t, "--requirepass", "s3cret")
	pool := proxytest.RedisPool(t, "r", r)
	pool.RedisAuth = "s3cret"
	pool.RedisDB = 3
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()

	// Clients must authenticate to the proxy with the pool's password.
	anon := redis.NewClient(&redis.Options{Addr: pool.Listen, DB: 3})
	defer anon.Close()
	if err := anon.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("SET without AUTH: %v; want NOAUTH", err)
	}
	c := redis.NewClient(&redis.Options{Addr: pool.Listen, Password: "s3cret", DB: 3})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET after AUTH: %v", err)
	}
	// The backend connection authenticated and selected db 3.
	d := redis.NewClient(&redis.Options{Addr: r.Addr, Password: "s3cret", DB: 3})
	defer d.Close()
	if v, err := d.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("backend db 3: %q, %v; want v", v, err)
	}
	d0 := redis.NewClient(&redis.Options{Addr: r.Addr, Password: "s3cret"})
	defer d0.Close()
	if n, err := d0.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("backend db 0 has the key (%d, %v); want it only in db 3", n, err)
	}
	wrong := redis.NewClient(&redis.Options{Addr: pool.Listen, Password: "nope"})
	defer wrong.Close()
	if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v; want WRONGPASS", err)
	}
}

func TestRedisNutcrackerInterop(t *testing.T) {
	rs := threeRedis(t)
	ncPort := testserver.FreePort(t)
	var servers strings.Builder
	for i, r := range rs {
		fmt.Fprintf(&servers, "   - %s:1 server%d\n", r.Addr, i+1)
	}
	conf := fmt.Sprintf("beta:\n  listen: 127.0.0.1:%d\n  redis: true\n  hash: fnv1a_64\n  hash_tag: \"{}\"\n  distribution: ketama\n  servers:\n%s", ncPort, servers.String())
	ncAddr, pool := nutcrackerTwin(t, conf, ncPort)
	// nutcracker closes on HELLO and CLIENT SETINFO, which go-redis sends:
	// talk plain RESP2 to both.
	a, b := proxytest.Dial(t, ncAddr), proxytest.Dial(t, pool.Listen)
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("nc:%d", i)
		if i%7 == 0 {
			k = fmt.Sprintf("{user%d}:profile", i)
		}
		w, r := a, b
		if i%2 == 1 {
			w, r = b, a
		}
		w.Send(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(k), k))
		w.Expect("+OK\r\n")
		r.Send(fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k))
		r.Expect(fmt.Sprintf("$%d\r\n", len(k)), k+"\r\n")
	}
}

func TestRedisKeyLengthLimit(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	pool.Limits.MaxKeyLength = 16
	proxytest.Start(t, proxy.Options{}, pool)
	c := goRedis(t, pool.Listen)
	ctx := context.Background()
	long := strings.Repeat("k", 17)
	if err := c.Set(ctx, long, "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "key too long") {
		t.Fatalf("SET with a 17-byte key: %v; want key too long", err)
	}
	if err := c.MGet(ctx, "ok", long).Err(); err == nil || !strings.Contains(err.Error(), "key too long") {
		t.Fatalf("MGET with a 17-byte key: %v; want key too long", err)
	}
	if err := c.Set(ctx, strings.Repeat("k", 16), "v", 0).Err(); err != nil {
		t.Fatalf("SET with a 16-byte key: %v", err)
	}
}

func TestRedisInfoSumsKeyspace(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c := goRedis(t, pool.Listen)
	for i := 0; i < 30; i++ {
		if err := c.Set(ctx, "ks:"+strconv.Itoa(i), "x", time.Duration(0)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, "ttl", "x", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Server\r\n", "redis_version:", "loading:0\r\n", "# Proxy\r\n", "# Keyspace\r\ndb0:keys=31,expires=1,"} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO lacks %q:\n%s", want, info)
		}
	}
	ks, err := c.Info(ctx, "keyspace").Result()
	if err != nil || strings.Contains(ks, "# Server") || !strings.Contains(ks, "db0:keys=31,") {
		t.Fatalf("INFO keyspace: %v\n%s", err, ks)
	}
	srv, err := c.Info(ctx, "server").Result()
	if err != nil || strings.Contains(srv, "# Keyspace") || !strings.Contains(srv, "redis_version:") {
		t.Fatalf("INFO server: %v\n%s", err, srv)
	}
}

// TestRedisWatchOptimisticLocking runs go-redis's WATCH/MULTI/EXEC helper:
// the transaction commits when nobody touched the key, and fails when
// another client changed it in between.
func TestRedisWatchOptimisticLocking(t *testing.T) {
	rs := threeRedis(t)
	pool := proxytest.RedisPool(t, "r", rs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c, other := goRedis(t, pool.Listen), goRedis(t, pool.Listen)
	if err := c.Set(ctx, "balance", "10", 0).Err(); err != nil {
		t.Fatal(err)
	}
	incr := func(interfere bool) error {
		return c.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, "balance").Int()
			if err != nil {
				return err
			}
			if interfere {
				if err := other.Set(ctx, "balance", "100", 0).Err(); err != nil {
					return err
				}
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "balance", n+1, 0)
				return nil
			})
			return err
		}, "balance")
	}
	if err := incr(false); err != nil {
		t.Fatalf("WATCH transaction without interference: %v", err)
	}
	if v, _ := c.Get(ctx, "balance").Result(); v != "11" {
		t.Fatalf("balance after commit: %q; want 11", v)
	}
	if err := incr(true); !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("WATCH transaction with interference: %v; want redis.TxFailedErr", err)
	}
	if v, _ := c.Get(ctx, "balance").Result(); v != "100" {
		t.Fatalf("balance after aborted transaction: %q; want 100 (the other client's write)", v)
	}
}

// TestRedisLargeArrayReply moves a 200,000-element LRANGE reply (several MB,
// many reads) through the proxy intact.
func TestRedisLargeArrayReply(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()
	c := goRedis(t, pool.Listen)
	const n = 200_000
	items := make([]any, 0, 1000)
	for i := 0; i < n; i += 1000 {
		items = items[:0]
		for j := i; j < i+1000; j++ {
			items = append(items, fmt.Sprintf("item-%06d", j))
		}
		if err := c.RPush(ctx, "big", items...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.LRange(ctx, "big", 0, -1).Result()
	if err != nil || len(got) != n {
		t.Fatalf("LRANGE: %d items, %v; want %d", len(got), err, n)
	}
	for i := 0; i < n; i += 9973 {
		if want := fmt.Sprintf("item-%06d", i); got[i] != want {
			t.Fatalf("item %d: %q; want %q", i, got[i], want)
		}
	}
}
