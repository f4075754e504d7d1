package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// Client libraries that speak RESP3 run a suite of operations through a
// proxy over three redis-servers: go-redis with Protocol 3, rueidis with
// client-side caching off (the proxy refuses CLIENT TRACKING, and rueidis's
// default options need it: see TestRESP3RueidisDefaultRefused).

// resp3Keys are spread over the three servers by the pool's hash.
var resp3Keys = []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"}

func TestRESP3GoRedis(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", threeRedis(t)...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.Timeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: pool.Listen, Protocol: 3, PoolSize: 2})
	defer c.Close()
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v; want %v", what, got, want)
		}
	}
	// It really negotiated RESP3: the proxy says so, and a hash comes as a
	// map (in RESP2 Do gives a flat []interface{}).
	info, err := c.Do(ctx, "CLIENT", "INFO").Text()
	if err != nil || !strings.Contains(info, " resp=3\n") {
		t.Fatalf("CLIENT INFO: %q, %v; want resp=3", info, err)
	}
	check("HSET", c.HSet(ctx, "h", "f1", "v1", "f2", "v2").Val(), 2)
	raw, err := c.Do(ctx, "HGETALL", "h").Result()
	if _, ok := raw.(map[interface{}]interface{}); !ok || err != nil {
		t.Fatalf("HGETALL through Do: %T %v, %v; want a RESP3 map", raw, raw, err)
	}
	check("HGETALL", c.HGetAll(ctx, "h").Val(), map[string]string{"f1": "v1", "f2": "v2"})
	// strings
	check("SET", c.Set(ctx, "s", "v", 0).Val(), "OK")
	check("GET", c.Get(ctx, "s").Val(), "v")
	if err := c.Get(ctx, "nosuch").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET missing: %v; want redis.Nil", err)
	}
	check("INCR", c.Incr(ctx, "n").Val(), 1)
	check("INCRBYFLOAT", c.IncrByFloat(ctx, "fl", 1.25).Val(), 1.25)
	check("APPEND", c.Append(ctx, "s", "w").Val(), 2)
	// MSET and MGET across servers, missing keys as nil
	var kv []any
	for i, k := range resp3Keys {
		if i%2 == 0 {
			kv = append(kv, k, "v"+k)
		}
	}
	check("MSET", c.MSet(ctx, kv...).Val(), "OK")
	check("MGET", c.MGet(ctx, resp3Keys...).Val(), []any{"vk1", nil, "vk3", nil, "vk5", nil, "vk7", nil})
	check("EXISTS", c.Exists(ctx, resp3Keys...).Val(), 4)
	// sets
	check("SADD", c.SAdd(ctx, "set", "b", "a", "c").Val(), 3)
	members := c.SMembers(ctx, "set").Val()
	slices.Sort(members)
	check("SMEMBERS", members, []string{"a", "b", "c"})
	check("SISMEMBER", c.SIsMember(ctx, "set", "a").Val(), true)
	// sorted sets with scores
	check("ZADD", c.ZAdd(ctx, "z", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: 2, Member: "b"}).Val(), 2)
	check("ZSCORE", c.ZScore(ctx, "z", "a").Val(), 1.5)
	check("ZINCRBY", c.ZIncrBy(ctx, "z", 1, "a").Val(), 2.5)
	check("ZRANGE WITHSCORES", c.ZRangeWithScores(ctx, "z", 0, -1).Val(), []redis.Z{{Score: 2, Member: "b"}, {Score: 2.5, Member: "a"}})
	// lists
	check("RPUSH", c.RPush(ctx, "l", "a", "b", "c").Val(), 3)
	check("LRANGE", c.LRange(ctx, "l", 0, -1).Val(), []string{"a", "b", "c"})
	check("LPOP", c.LPop(ctx, "l").Val(), "a")
	if err := c.LPos(ctx, "l", "zz", redis.LPosArgs{}).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("LPOS missing: %v; want redis.Nil", err)
	}
	// expiry
	check("EXPIRE", c.Expire(ctx, "s", time.Hour).Val(), true)
	if ttl := c.TTL(ctx, "s").Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL: %v; want about an hour", ttl)
	}
	// streams
	check("XADD", c.XAdd(ctx, &redis.XAddArgs{Stream: "x", ID: "1-1", Values: []string{"f", "v"}}).Val(), "1-1")
	check("XRANGE", c.XRange(ctx, "x", "-", "+").Val(), []redis.XMessage{{ID: "1-1", Values: map[string]any{"f": "v"}}})
	// pipeline
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "p1", "1", 0)
		p.Incr(ctx, "p1")
		p.Get(ctx, "p1")
		p.HGet(ctx, "h", "f2")
		return nil
	})
	if err != nil || len(cmds) != 4 {
		t.Fatalf("pipeline: %v", err)
	}
	check("pipeline GET", cmds[2].(*redis.StringCmd).Val(), "2")
	check("pipeline HGET", cmds[3].(*redis.StringCmd).Val(), "v2")
	// a transaction on one server (hash tag)
	var incr *redis.IntCmd
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{t}a", "1", 0)
		incr = p.Incr(ctx, "{t}b")
		return nil
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	check("transaction INCR", incr.Val(), 1)
	// SCAN through the proxy: every key once
	var all []string
	iter := c.Scan(ctx, 0, "k*", 3).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	slices.Sort(all)
	check("SCAN", all, []string{"k1", "k3", "k5", "k7"})
	check("DBSIZE", c.DBSize(ctx).Val(), 15)
	check("DEL", c.Del(ctx, resp3Keys...).Val(), 4)
	// pub/sub: a message arrives
	sub := c.Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	check("PUBLISH", c.Publish(ctx, "news", "hello").Val(), 1)
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Channel != "news" || msg.Payload != "hello" {
		t.Fatalf("message: %+v, %v", msg, err)
	}
}

func TestRESP3Rueidis(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", threeRedis(t)...)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.Timeout)
	defer cancel()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{pool.Listen}, DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis: %v", err)
	}
	defer c.Close()
	b := c.B
	check := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v; want %v", what, got, want)
		}
	}
	// rueidis speaks RESP3 only (it would fall back to RESP2 only on
	// "unknown command 'HELLO'"): its HELLO said proto 3.
	info, err := c.Do(ctx, b().ClientInfo().Build()).ToString()
	check("CLIENT INFO resp=3", strings.Contains(info, " resp=3\n"), true, err)
	m, err := c.Do(ctx, b().Hset().Key("h").FieldValue().FieldValue("f1", "v1").FieldValue("f2", "v2").Build()).AsInt64()
	check("HSET", m, 2, err)
	hm, err := c.Do(ctx, b().Hgetall().Key("h").Build()).AsStrMap()
	check("HGETALL", hm, map[string]string{"f1": "v1", "f2": "v2"}, err)
	msg, err := c.Do(ctx, b().Hgetall().Key("h").Build()).ToMessage()
	check("HGETALL is a map", msg.IsMap(), true, err)
	s, err := c.Do(ctx, b().Set().Key("s").Value("v").Build()).ToString()
	check("SET", s, "OK", err)
	s, err = c.Do(ctx, b().Get().Key("s").Build()).ToString()
	check("GET", s, "v", err)
	if err := c.Do(ctx, b().Get().Key("nosuch").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Errorf("GET missing: %v; want a nil", err)
	}
	n, err := c.Do(ctx, b().Incr().Key("n").Build()).AsInt64()
	check("INCR", n, 1, err)
	f, err := c.Do(ctx, b().Incrbyfloat().Key("fl").Increment(1.25).Build()).AsFloat64()
	check("INCRBYFLOAT", f, 1.25, err)
	mset := b().Mset().KeyValue()
	for i, k := range resp3Keys {
		if i%2 == 0 {
			mset = mset.KeyValue(k, "v"+k)
		}
	}
	check("MSET", c.Do(ctx, mset.Build()).Error(), nil, nil)
	vals, err := c.Do(ctx, b().Mget().Key(resp3Keys...).Build()).ToArray()
	var got []string
	for _, v := range vals {
		if v.IsNil() {
			got = append(got, "nil")
		} else {
			s, _ := v.ToString()
			got = append(got, s)
		}
	}
	check("MGET", got, []string{"vk1", "nil", "vk3", "nil", "vk5", "nil", "vk7", "nil"}, err)
	n, err = c.Do(ctx, b().Exists().Key(resp3Keys...).Build()).AsInt64()
	check("EXISTS", n, 4, err)
	n, err = c.Do(ctx, b().Sadd().Key("set").Member("b", "a", "c").Build()).AsInt64()
	check("SADD", n, 3, err)
	setMsg, err := c.Do(ctx, b().Smembers().Key("set").Build()).ToMessage()
	check("SMEMBERS is an aggregate", setMsg.IsArray(), true, err)
	members, err := setMsg.AsStrSlice()
	slices.Sort(members)
	check("SMEMBERS", members, []string{"a", "b", "c"}, err)
	n, err = c.Do(ctx, b().Zadd().Key("z").ScoreMember().ScoreMember(1.5, "a").ScoreMember(2, "b").Build()).AsInt64()
	check("ZADD", n, 2, err)
	f, err = c.Do(ctx, b().Zscore().Key("z").Member("a").Build()).AsFloat64()
	check("ZSCORE", f, 1.5, err)
	zmsg, err := c.Do(ctx, b().Zscore().Key("z").Member("a").Build()).ToMessage()
	check("ZSCORE is a double", zmsg.IsFloat64(), true, err)
	zs, err := c.Do(ctx, b().Zrange().Key("z").Min("0").Max("-1").Withscores().Build()).AsZScores()
	check("ZRANGE WITHSCORES", zs, []rueidis.ZScore{{Member: "a", Score: 1.5}, {Member: "b", Score: 2}}, err)
	n, err = c.Do(ctx, b().Rpush().Key("l").Element("a", "b", "c").Build()).AsInt64()
	check("RPUSH", n, 3, err)
	ls, err := c.Do(ctx, b().Lrange().Key("l").Start(0).Stop(-1).Build()).AsStrSlice()
	check("LRANGE", ls, []string{"a", "b", "c"}, err)
	ok, err := c.Do(ctx, b().Expire().Key("s").Seconds(3600).Build()).AsBool()
	check("EXPIRE", ok, true, err)
	n, err = c.Do(ctx, b().Ttl().Key("s").Build()).AsInt64()
	check("TTL", n > 3500 && n <= 3600, true, err)
	// pipeline
	res := c.DoMulti(ctx, b().Set().Key("p1").Value("1").Build(), b().Incr().Key("p1").Build(), b().Get().Key("p1").Build())
	s, err = res[2].ToString()
	check("pipeline GET", s, "2", err)
	// a transaction on one server (hash tag)
	res = c.DoMulti(ctx, b().Multi().Build(), b().Set().Key("{t}a").Value("1").Build(), b().Incr().Key("{t}b").Build(), b().Exec().Build())
	ex, err := res[3].ToArray()
	if err == nil && len(ex) == 2 {
		n, err = ex[1].AsInt64()
	}
	check("transaction INCR", n, 1, err)
	// SCAN through the proxy
	var all []string
	var cursor uint64
	for {
		e, err := c.Do(ctx, b().Scan().Cursor(cursor).Match("k*").Count(3).Build()).AsScanEntry()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		all = append(all, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	slices.Sort(all)
	check("SCAN", all, []string{"k1", "k3", "k5", "k7"}, nil)
	n, err = c.Do(ctx, b().Dbsize().Build()).AsInt64()
	check("DBSIZE", n, 14, err)
	// pub/sub: rueidis subscribes on its main connection and goes on
	// running commands there, which RESP3 allows.
	got2 := make(chan rueidis.PubSubMessage, 1)
	subErr := make(chan error, 1)
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	c2, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{pool.Listen}, DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis: %v", err)
	}
	defer c2.Close()
	go func() {
		subErr <- c2.Receive(subCtx, c2.B().Subscribe().Channel("news").Build(), func(m rueidis.PubSubMessage) {
			select {
			case got2 <- m:
			default:
			}
		})
	}()
	// Subscribed once a PUBLISH reaches a receiver (polled, with a deadline).
	for {
		n, err = c.Do(ctx, b().Publish().Channel("news").Message("hello").Build()).AsInt64()
		if err != nil {
			t.Fatalf("PUBLISH: %v", err)
		}
		if n == 1 {
			break
		}
		select {
		case err := <-subErr:
			t.Fatalf("subscribe: %v", err)
		case <-ctx.Done():
			t.Fatal("the subscription never took effect")
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case m := <-got2:
		check("message", m.Channel+" "+m.Message, "news hello", nil)
	case err := <-subErr:
		t.Fatalf("receive: %v", err)
	case <-ctx.Done():
		t.Fatal("no message")
	}
	s, err = c2.Do(ctx, c2.B().Get().Key("p1").Build()).ToString()
	check("GET while subscribed", s, "2", err)
}

// rueidis's default options turn on client-side caching (CLIENT TRACKING
// ON OPTIN at connect): the proxy refuses it with an error that says what
// to do, and rueidis reports it.
func TestRESP3RueidisDefaultRefused(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", threeRedis(t)...)
	proxytest.Start(t, proxy.Options{}, pool)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{pool.Listen}})
	if err == nil {
		c.Close()
		t.Fatal("rueidis with client-side caching connected; want the proxy's refusal of CLIENT TRACKING")
	}
	if !strings.Contains(err.Error(), "CLIENT TRACKING is not supported by the proxy yet") ||
		!strings.Contains(err.Error(), "DisableCache: true") {
		t.Fatalf("rueidis default options: %v; want the proxy's CLIENT TRACKING refusal", err)
	}
}
