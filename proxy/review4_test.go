package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// Fourth review: what a review of the RESP3 and reload merge found, each
// with the sequence that showed it.

// TestReloadRenamePoolSameListen: renaming a pool in place is a remove plus
// an add on the same address, which cannot bind while the old one listens:
// refused with the reason, and the old pool keeps serving.
func TestReloadRenamePoolSameListen(t *testing.T) {
	mc := testserver.Memcached(t)
	a := proxytest.MemcachePool(t, "a", mc)
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{a}})
	b := a
	b.Name = "b"
	err := p.Reload(&config.Config{Pools: []config.Pool{b}})
	want := "pool b: listen " + a.Listen + " is that of pool a, which this configuration removes"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("rename pool a->b on the same listen: %v; want an error starting %q", err, want)
	}
	c := proxytest.Dial(t, a.Listen)
	c.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
}

// TestInfoThenHello3: a pipelined INFO keyspace then HELLO 3 on a RESP2
// connection: the INFO reply belongs to the RESP2 request and is a bulk
// string (HELLO waits until the replies owed are out).
func TestInfoThenHello3(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send("*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
	line := c.Line()
	if line[0] != '$' {
		t.Errorf("INFO sent before HELLO 3: reply starts %q; want a RESP2 bulk ($)", line)
	}
}

// TestBlpopHello3Blpop: BLPOP in flight, HELLO 3, BLPOP again: the second
// BLPOP's timeout is the RESP3 null, as redis-server answers.
func TestBlpopHello3Blpop(t *testing.T) {
	r := testserver.Redis(t)
	req := "*3\r\n$5\r\nBLPOP\r\n$2\r\nnk\r\n$3\r\n0.2\r\n*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*3\r\n$5\r\nBLPOP\r\n$2\r\nnk\r\n$3\r\n0.2\r\n"
	read := func(addr string) string {
		c := proxytest.Dial(t, addr)
		c.Send(req)
		out := c.Line() // *-1
		// HELLO: map/array; skip until we see the 3rd reply: read lines until "modules"
		for {
			l := c.Line()
			if strings.HasPrefix(l, "modules") {
				c.Line() // *0
				break
			}
		}
		return out + "|" + c.Line()
	}
	want := read(r.Addr)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	got := read(pool.Listen)
	if got != want {
		t.Errorf("got %q; want %q (redis-server)", got, want)
	}
}

// TestReloadRESP3InFlightRemoved: a RESP3 client has a GET in flight to a
// server that a reload removes: it gets its reply, and the next request goes
// to the new server.
func TestReloadRESP3InFlightRemoved(t *testing.T) {
	got := make(chan string, 4)
	release := make(chan struct{})
	fake := proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			// read one RESP command: *N then 2N lines
			h, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var n int
			fmt.Sscanf(h, "*%d", &n)
			var args []string
			for i := 0; i < n; i++ {
				r.ReadString('\n')
				a, _ := r.ReadString('\n')
				args = append(args, strings.TrimSpace(a))
			}
			switch strings.ToUpper(args[0]) {
			case "HELLO":
				io.WriteString(c, "%1\r\n$5\r\nproto\r\n:3\r\n")
			case "PING":
				io.WriteString(c, "+PONG\r\n")
			case "GET":
				got <- strings.Join(args, " ")
				<-release
				io.WriteString(c, "$3\r\nold\r\n")
			default:
				io.WriteString(c, "-ERR fake\r\n")
			}
		}
	})
	rd := testserver.Redis(t)
	pc := proxytest.RedisPool(t, "r", rd)
	pc.Servers = []config.Server{{Name: "fake", Addr: fake, Network: "tcp", Weight: 1}}
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pc}})
	c := proxytest.Dial(t, pc.Listen)
	c.Send("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
	for {
		if l := c.Line(); strings.HasPrefix(l, "modules") {
			c.Line()
			break
		}
	}
	c.Send("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	select {
	case <-got:
	case <-time.After(proxytest.Timeout):
		t.Fatal("GET never reached the fake")
	}
	next := proxytest.RedisPool(t, "r", rd)
	next.Listen = pc.Listen
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	// another client makes the loop adopt (and a second RESP3 client request)
	c2 := proxytest.Dial(t, pc.Listen)
	c2.Send("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
	for {
		if l := c2.Line(); strings.HasPrefix(l, "modules") {
			c2.Line()
			break
		}
	}
	c2.RoundTrip("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nnew\r\n", "+OK\r\n")
	close(release)
	c.Expect("$3\r\n", "old\r\n")
	c.RoundTrip("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$3\r\n", "new\r\n")
}

// TestReloadGoRedisRESP3Flip: go-redis with Protocol 3 (its default, checked
// to be negotiated) under load while the pool flips between 3 and 4 redis
// servers, with Stats read concurrently: no error, no wrong value.
func TestReloadGoRedisRESP3Flip(t *testing.T) {
	var rs []*testserver.Process
	for range 4 {
		rs = append(rs, testserver.Redis(t))
	}
	base := proxytest.RedisPool(t, "r", rs...)
	all := base.Servers
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, withServers(base, all, 3))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops, errs, wrong atomic.Int64
	var firstMu sync.Mutex
	var first []string
	note := func(s string) {
		firstMu.Lock()
		if len(first) < 5 {
			first = append(first, s)
		}
		firstMu.Unlock()
	}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: base.Listen, PoolSize: 2})
			defer c.Close()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("g%d-%d", g, i)
				if err := c.Set(ctx, k, k, 0).Err(); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						note("set: " + err.Error())
					}
					continue
				}
				v, err := c.Get(ctx, k).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					if ctx.Err() == nil {
						errs.Add(1)
						note("get: " + err.Error())
					}
					continue
				}
				if err == nil && v != k {
					wrong.Add(1)
					note("wrong " + k + " " + v)
				}
				mv, err := c.MGet(ctx, k, k+"x", "{"+k+"}y").Result()
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						note("mget: " + err.Error())
					}
				} else if len(mv) != 3 {
					wrong.Add(1)
				}
				ops.Add(1)
			}
		}()
	}
	waitN := func(n int64) {
		target := ops.Load() + n
		deadline := time.Now().Add(proxytest.Timeout)
		for ops.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("stalled at %d ops (want %d); %q", ops.Load(), target, first)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitN(200)
	wg.Add(1)
	go func() { // Stats racing adopt
		defer wg.Done()
		for ctx.Err() == nil {
			_ = p.Stats()
		}
	}()
	{
		c := redis.NewClient(&redis.Options{Addr: base.Listen})
		info, err := c.Do(context.Background(), "CLIENT", "INFO").Text()
		c.Close()
		if err != nil || !strings.Contains(info, " resp=3") {
			t.Fatalf("go-redis default did not negotiate RESP3: %q %v", info, err)
		}
	}
	for i := range 20 {
		n := 4
		if i%2 == 1 {
			n = 3
		}
		if err := p.Reload(withServers(base, all, n)); err != nil {
			t.Fatalf("reload: %v", err)
		}
		_ = p.Stats()
		waitN(50)
	}
	cancel()
	wg.Wait()
	t.Logf("ops %d errs %d wrong %d first %q", ops.Load(), errs.Load(), wrong.Load(), first)
	if errs.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("errs %d wrong %d: %q", errs.Load(), wrong.Load(), first)
	}
}

// TestReloadWhileStarting: reloads that add and remove pools while Run starts
// and stops (a pool added after the listeners opened but before the loops
// ran got no listener, and its accept loop panicked).
func TestReloadWhileStarting(t *testing.T) {
	mc := testserver.Memcached(t)
	a := proxytest.MemcachePool(t, "a", mc)
	for round := range 5 {
		cfg := &config.Config{Pools: []config.Pool{a}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		p, err := proxy.New(cfg, proxy.Options{Logger: proxytest.Logger(), Loops: 2, DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		proxytest.WaitAccept(t, a.Listen, done)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var reloads atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := proxytest.MemcachePool(t, fmt.Sprintf("b%d", i), mc)
				_ = p.Reload(&config.Config{Pools: []config.Pool{a, b}})
				_ = p.Reload(&config.Config{Pools: []config.Pool{a}})
				reloads.Add(1)
			}
		}()
		deadline := time.Now().Add(proxytest.Timeout)
		for reloads.Load() < 20 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // poll interval
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: Run: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run did not return", round)
		}
		close(stop)
		wg.Wait()
	}
}

// TestSubscribeInMultiRefused: SUBSCRIBE inside MULTI is refused (queued,
// its confirmation would come in EXEC's array and its messages would be
// lost), and the transaction is doomed, in both protocol versions.
func TestSubscribeInMultiRefused(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	refused := "-ERR command 'subscribe' can not be used in a transaction through the proxy\r\n"
	for _, hello := range []string{"2", "3"} {
		c := proxytest.Dial(t, pool.Listen)
		c.Send(respCmd("HELLO", hello))
		for {
			if l := c.Line(); strings.HasPrefix(l, "modules") {
				c.Line()
				break
			}
		}
		c.RoundTrip(respCmd("MULTI"), "+OK\r\n")
		c.RoundTrip(respCmd("SUBSCRIBE", "ch"), refused)
		c.RoundTrip(respCmd("EXEC"), "-EXECABORT Transaction discarded because of previous errors: command 'subscribe' can not be used in a transaction through the proxy\r\n")
		c.RoundTrip(respCmd("PING"), "+PONG\r\n")
	}
}

// TestReloadReplicasBothProtocols: RESP3 and RESP2 clients reading via
// replicas while reloads change the replica lists and remove and add servers.
func TestReloadReplicasBothProtocols(t *testing.T) {
	var rs []*testserver.Process
	for range 4 {
		rs = append(rs, testserver.Redis(t))
	}
	base := proxytest.RedisPool(t, "r", rs[0], rs[1])
	base.ReadPolicy = config.ReadPreferReplica
	mk := func(i int) *config.Config {
		pc := base
		pc.Servers = append([]config.Server(nil), base.Servers...)
		switch i % 3 {
		case 0:
			pc.Servers[0].Replicas = []config.Replica{config.NewReplica(rs[2].Addr)}
		case 1:
			pc.Servers[0].Replicas = []config.Replica{config.NewReplica(rs[3].Addr), config.NewReplica(rs[2].Addr)}
			pc.Servers = pc.Servers[:1]
		case 2:
			pc.Servers[1].Replicas = []config.Replica{config.NewReplica(rs[3].Addr)}
		}
		return &config.Config{Pools: []config.Pool{pc}}
	}
	p := proxytest.StartConfig(t, proxy.Options{Loops: 2}, mk(0))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: base.Listen, PoolSize: 2, Protocol: 2 + g%2})
			defer c.Close()
			for i := 0; ctx.Err() == nil; i++ {
				_, err := c.Get(ctx, fmt.Sprintf("k%d", i%50)).Result()
				if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				_, err = c.MGet(ctx, "a", "b", "c", "d").Result()
				if err != nil && ctx.Err() == nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				ops.Add(1)
			}
		}()
	}
	for i := 1; i <= 30; i++ {
		if err := p.Reload(mk(i)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		target := ops.Load() + 20
		deadline := time.Now().Add(proxytest.Timeout)
		for ops.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("stalled")
			}
			time.Sleep(time.Millisecond)
		}
		_ = p.Stats()
	}
	cancel()
	wg.Wait()
	t.Logf("ops %d errs %d first %v", ops.Load(), errs.Load(), firstErr.Load())
	if errs.Load() > 0 {
		t.Errorf("errors: %d, first %v", errs.Load(), firstErr.Load())
	}
}

// TestHelloKeepsOrder: SET (RESP2 connection), HELLO 3, STRLEN (RESP3
// connection), HELLO 2, pipelined: the STRLEN
// sees the SET (HELLO waits until the replies owed are out).
func TestHelloKeepsOrder(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	bad := 0
	skipHello := func() {
		for {
			if l := c.Line(); strings.HasPrefix(l, "modules") {
				c.Line()
				return
			}
		}
	}
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("k%d", i)
		big := strings.Repeat("x", 200000)
		c.Send(respCmd("SET", k, big) + respCmd("HELLO", "3") + respCmd("STRLEN", k) + respCmd("HELLO", "2"))
		if l := c.Line(); l != "+OK\r\n" {
			t.Fatalf("SET: %q", l)
		}
		skipHello()
		if l := c.Line(); l != ":200000\r\n" {
			bad++
			if bad < 5 {
				t.Logf("iteration %d: STRLEN after SET: %q", i, l)
			}
		}
		skipHello()
	}
	if bad > 0 {
		t.Errorf("%d of 300 reads overtook the write before them", bad)
	}
}

// TestReloadDedicatedNewAuth: redis_auth rotated by a reload: a client's
// existing dedicated connection, once it has to reconnect, uses the new
// password, as the shared ones do.
func TestReloadDedicatedNewAuth(t *testing.T) {
	r := testserver.Redis(t, "--requirepass", "old")
	pool := proxytest.RedisPool(t, "r", r)
	pool.RedisAuth = "old"
	p := proxytest.StartConfig(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pool}})
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip(respCmd("AUTH", "old"), "+OK\r\n")
	c.RoundTrip(respCmd("BLPOP", "lk", "0.1"), "*-1\r\n")
	c.RoundTrip(respCmd("GET", "x"), "$-1\r\n")
	adm := proxytest.Dial(t, r.Addr)
	adm.RoundTrip(respCmd("AUTH", "old"), "+OK\r\n")
	adm.RoundTrip(respCmd("CONFIG", "SET", "requirepass", "new"), "+OK\r\n")
	next := pool
	next.RedisAuth = "new"
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatal(err)
	}
	adm.Send(respCmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
	t.Logf("killed: %q", adm.Line())
	got := ""
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.Send(respCmd("GET", "x"))
		if got = c.Line(); got == "$-1\r\n" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("GET after rotation: %q", got)
	for time.Now().Before(deadline) {
		c.Send(respCmd("BLPOP", "lk", "0.1"))
		if got = c.Line(); got == "*-1\r\n" {
			break
		}
		t.Logf("BLPOP: %q", got)
		time.Sleep(200 * time.Millisecond)
	}
	if got != "*-1\r\n" {
		t.Errorf("BLPOP on the client's dedicated connection after a redis_auth rotation: %q; want *-1", got)
	}
}
