package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// benchRoundTrips sends b.N requests through one connection, depth at a
// time, and reads the replies (each ends with end). Allocations reported
// are the whole process's per request: the proxy's plus this client's
// (which allocates nothing per request), so the figure bounds the proxy's.
func benchRoundTrips(b *testing.B, addr string, req []byte, end []byte, depth int) {
	benchRoundTripsAfter(b, addr, "", "", req, end, depth)
}

// benchRoundTripsAfter is benchRoundTrips on a connection that first sent
// hello and read the line helloReply (an AUTH, say), before the timer.
func benchRoundTripsAfter(b *testing.B, addr, hello, helloReply string, req []byte, end []byte, depth int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchConnRoundTrips(b, c, hello, helloReply, req, end, depth)
}

// benchConnRoundTrips is benchRoundTripsAfter over a connection already
// open (a TLS one, say); hello "" sends nothing first.
func benchConnRoundTrips(b *testing.B, c net.Conn, hello, helloReply string, req []byte, end []byte, depth int) {
	batch := bytes.Repeat(req, depth)
	r := bufio.NewReaderSize(c, 64<<10)
	buf := make([]byte, 0, 64<<10)
	if hello != "" {
		if _, err := io.WriteString(c, hello); err != nil {
			b.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != helloReply {
			b.Fatalf("%q: got %q, %v; want %q", hello, line, err, helloReply)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += depth {
		if _, err := c.Write(batch); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < depth; {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf[:0], line...)
			if bytes.HasSuffix(buf, end) {
				got++
			}
		}
	}
}

func benchProxy(b *testing.B, flush proxy.FlushMode) string {
	mc := testserver.Memcached(b)
	pool := proxytest.MemcachePool(b, "mc", mc)
	proxytest.Start(b, proxy.Options{FlushMode: flush, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
	c := proxytest.Dial(b, mc.Addr)
	c.Send("set k 0 0 32\r\n" + string(bytes.Repeat([]byte("v"), 32)) + "\r\n")
	c.Expect("STORED\r\n")
	return pool.Listen
}

func BenchmarkProxyGet(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			addr := benchProxy(b, proxy.FlushPerIteration)
			benchRoundTrips(b, addr, []byte("get k\r\n"), []byte("END\r\n"), depth)
		})
	}
}

func BenchmarkProxySet(b *testing.B) {
	addr := benchProxy(b, proxy.FlushPerIteration)
	benchRoundTrips(b, addr, []byte("set s 0 0 8\r\n12345678\r\n"), []byte("STORED\r\n"), 16)
}

func BenchmarkDirectGet(b *testing.B) {
	mc := testserver.Memcached(b)
	c := proxytest.Dial(b, mc.Addr)
	c.Send("set k 0 0 32\r\n" + string(bytes.Repeat([]byte("v"), 32)) + "\r\n")
	c.Expect("STORED\r\n")
	benchRoundTrips(b, mc.Addr, []byte("get k\r\n"), []byte("END\r\n"), 16)
}

// BenchmarkProxyRedisGet: GET through a Redis pool, 16 in flight; with
// "acl" the client is an ACL user whose rules are checked on every
// command (a bitmap lookup: the same allocations, none, per request).
func BenchmarkProxyRedisGet(b *testing.B) {
	for _, acl := range []bool{false, true} {
		name := "open"
		if acl {
			name = "acl"
		}
		b.Run(name, func(b *testing.B) {
			rd := testserver.Redis(b)
			pool := proxytest.RedisPool(b, "r", rd)
			hello, helloReply := "", ""
			if acl {
				pool.Users = []config.RedisUser{{Name: "app", Password: "pw", Commands: []string{"+@read", "+@write", "-@dangerous"}}}
				hello, helloReply = "AUTH app pw\r\n", "+OK\r\n"
			}
			proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
			c := proxytest.Dial(b, rd.Addr)
			c.RoundTrip("SET k v\r\n", "+OK\r\n")
			benchRoundTripsAfter(b, pool.Listen, hello, helloReply, []byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), []byte("v\r\n"), 16)
		})
	}
}

// BenchmarkProxySetExpiry: sets with an expiry (memcached exptime 3600,
// Redis SET EX 3600) through a pool with hot keys on, without jitter and
// with hot_keys.ttl_jitter 10% (every expiry rewritten), 16 in flight.
func BenchmarkProxySetExpiry(b *testing.B) {
	for _, redis := range []bool{false, true} {
		for _, j := range []float64{0, 0.1} {
			name := fmt.Sprintf("memcache/jitter%v", j*100)
			if redis {
				name = fmt.Sprintf("redis/jitter%v", j*100)
			}
			b.Run(name, func(b *testing.B) {
				var pool config.Pool
				req, end := "set s 0 3600 8\r\n12345678\r\n", "STORED\r\n"
				if redis {
					pool = proxytest.RedisPool(b, "r", testserver.Redis(b))
					req, end = "*5\r\n$3\r\nSET\r\n$1\r\ns\r\n$8\r\n12345678\r\n$2\r\nEX\r\n$4\r\n3600\r\n", "+OK\r\n"
				} else {
					pool = proxytest.MemcachePool(b, "mc", testserver.Memcached(b))
				}
				pool.HotKeys = config.HotKeys{Enabled: true, TTLJitter: j}
				proxytest.Start(b, proxy.Options{FlushMode: proxy.FlushPerIteration, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
				benchRoundTrips(b, pool.Listen, []byte(req), []byte(end), 16)
			})
		}
	}
}

// BenchmarkProxySetReplicated is BenchmarkProxySet on a replicated pool:
// each set goes to the primary and its replica (write_policy all, or
// all_async).
func BenchmarkProxySetReplicated(b *testing.B) {
	for _, policy := range []string{config.WriteAll, config.WriteAllAsync} {
		b.Run(policy, func(b *testing.B) {
			mc, rep := testserver.Memcached(b), testserver.Memcached(b)
			pool := proxytest.MemcachePool(b, "mc", mc)
			pool.Servers[0].Replicas = []config.Replica{config.NewReplica(rep.Addr)}
			pool.WritePolicy = policy
			proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
			benchRoundTrips(b, pool.Listen, []byte("set s 0 0 8\r\n12345678\r\n"), []byte("STORED\r\n"), 16)
		})
	}
}
