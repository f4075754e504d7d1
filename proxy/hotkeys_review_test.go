package proxy_test

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// A review of the near cache found each of these reads older than a write
// made through the same proxy.

// reviewHotPool is a one-server pool with hot keys on and a long TTL.
func reviewHotPool(t *testing.T, redis bool, srv *testserver.Process) config.Pool {
	var p config.Pool
	if redis {
		p = proxytest.RedisPool(t, "hk", srv)
	} else {
		p = proxytest.MemcachePool(t, "hk", srv)
	}
	p.HotKeys = config.HotKeys{Enabled: true, MinRate: 20, TTL: time.Minute}
	return p
}

// TestHotKeysMetaBase64Write: a meta write with a base64 key (b flag)
// drops the decoded key from the near cache.
func TestHotKeysMetaBase64Write(t *testing.T) {
	for _, cmd := range []struct{ req, rep, want string }{
		{"ms aG90 3 b\r\nv11\r\n", "HD\r\n", "VALUE hot 0 3\r\n"},
		{"md aG90 b\r\n", "HD\r\n", "END\r\n"},
	} {
		pool := reviewHotPool(t, false, testserver.Memcached(t))
		p := proxytest.Start(t, proxy.Options{}, pool)
		h := hkDial(t, pool.Listen, false)
		if err := h.set("hot", "v0"); err != nil {
			t.Fatal(err)
		}
		warm(t, p, h, "hot")
		c := proxytest.Dial(t, pool.Listen)
		c.RoundTrip(cmd.req, cmd.rep)
		c.Send("get hot\r\n")
		if l := c.Line(); l != cmd.want {
			t.Errorf("after %q: get hot: got %q; want %q", cmd.req, l, cmd.want)
		}
	}
}

// TestHotKeysFlushAllDelay: flush_all with a delay: once the delay has
// passed the server has nothing, and the proxy does not serve the value.
func TestHotKeysFlushAllDelay(t *testing.T) {
	srv := testserver.Memcached(t)
	pool := reviewHotPool(t, false, srv)
	p := proxytest.Start(t, proxy.Options{}, pool)
	h := hkDial(t, pool.Listen, false)
	if err := h.set("hot", "v0"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, h, "hot") // served from the near cache
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("flush_all 2\r\n", "OK\r\n")
	direct := proxytest.Dial(t, srv.Addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Reads through the proxy meanwhile (which, filling the cache
		// before the server drops the value, would keep it there).
		c.Send("get hot\r\n")
		if l := c.Line(); l != "END\r\n" {
			c.Expect("v0\r\n", "END\r\n")
		}
		direct.Send("get hot\r\n")
		if l := direct.Line(); l == "END\r\n" {
			break
		}
		direct.Line()
		direct.Line()
		if time.Now().After(deadline) {
			t.Fatal("flush_all 2 never took effect on the server")
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	c.Send("get hot\r\n")
	if l := c.Line(); l != "END\r\n" {
		t.Errorf("after flush_all 2 took effect: get hot through the proxy: got %q; want %q", l, "END\r\n")
	}
}

// TestHotKeysReloadRedisDB: after a reload that moves redis_db, the value
// cached from db 0 does not answer for db 1.
func TestHotKeysReloadRedisDB(t *testing.T) {
	srv := testserver.Redis(t)
	pool := reviewHotPool(t, true, srv)
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{pool}})
	h := hkDial(t, pool.Listen, true)
	if err := h.set("hot", "db0"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, h, "hot")
	direct := proxytest.Dial(t, srv.Addr)
	direct.RoundTrip("*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n", "+OK\r\n")
	direct.RoundTrip("*3\r\n$3\r\nSET\r\n$3\r\nhot\r\n$3\r\ndb1\r\n", "+OK\r\n")
	pc := pool
	pc.RedisDB = 1
	if err := p.Reload(&config.Config{Pools: []config.Pool{pc}}); err != nil {
		t.Fatal(err)
	}
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("*2\r\n$3\r\nGET\r\n$3\r\nhot\r\n", "$3\r\n", "db1\r\n")
}

// TestHotKeysPipelinedReadYourWrite: a client pipelines SET then GET of a
// hot key (not waiting for SET's reply) while 6 connections read the key:
// its GET sees its SET, and the near cache did serve the readers.
func TestHotKeysPipelinedReadYourWrite(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			pool := hotPool(t, redis, true)
			p := proxytest.Start(t, proxy.Options{}, pool)
			w := hkDial(t, pool.Listen, redis)
			if err := w.set("hot", "v0"); err != nil {
				t.Fatal(err)
			}
			warm(t, p, w, "hot")
			hits := nearStats(p, "hk").Hits
			startReaders(t, pool.Listen, redis, 6, func() string { return "hot" }, nil)
			stale := 0
			for i := 1; i <= 1000; i++ {
				val := "v" + strconv.Itoa(i)
				set, want := fmt.Sprintf("set hot 0 0 %d\r\n%s\r\n", len(val), val), "STORED\r\n"
				if redis {
					set, want = fmt.Sprintf("*3\r\n$3\r\nSET\r\n$3\r\nhot\r\n$%d\r\n%s\r\n", len(val), val), "+OK\r\n"
				}
				if _, err := io.WriteString(w.c, set); err != nil {
					t.Fatal(err)
				}
				for d := time.Now().Add(200 * time.Microsecond); time.Now().Before(d); {
					// let the readers race the write (not synchronisation)
				}
				get := "get hot\r\n"
				if redis {
					get = "*2\r\n$3\r\nGET\r\n$3\r\nhot\r\n"
				}
				if _, err := io.WriteString(w.c, get); err != nil {
					t.Fatal(err)
				}
				if l, err := w.r.ReadString('\n'); err != nil || l != want {
					t.Fatalf("set: got %q, %v; want %q", l, err, want)
				}
				h, _ := w.r.ReadString('\n')
				v, _ := w.r.ReadString('\n')
				if !redis {
					if e, _ := w.r.ReadString('\n'); e != "END\r\n" {
						t.Fatalf("get: got %q after the value", e)
					}
				}
				if v != val+"\r\n" {
					stale++
					if stale < 4 {
						t.Errorf("pipelined set %s; get: got %q %q; want %q", val, h, v, val)
					}
				}
			}
			if stale > 0 {
				t.Errorf("%d stale reads of 1000; near cache %+v", stale, nearStats(p, "hk"))
			}
			if st := nearStats(p, "hk"); st.Hits <= hits {
				t.Errorf("near-cache hits %d -> %d: the cache never served, so the test proves nothing", hits, st.Hits)
			}
		})
	}
}

// TestHotKeysMultiGetBigValue: a multi-get mixing a cached hot key, a big
// (streamed) value, a repeated and a missing key keeps its order and bytes.
func TestHotKeysMultiGetBigValue(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			pool := hotPool(t, redis, true)
			p := proxytest.Start(t, proxy.Options{}, pool)
			h := hkDial(t, pool.Listen, redis)
			big := strings.Repeat("B", 200<<10)
			for _, k := range []string{"a", "b", "c", "d"} {
				if err := h.set(k, "val-"+k); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.set("big", big); err != nil {
				t.Fatal(err)
			}
			warm(t, p, h, "c")
			c := proxytest.Dial(t, pool.Listen)
			for range 3 {
				if redis {
					c.Send("*6\r\n$4\r\nMGET\r\n$1\r\nc\r\n$3\r\nbig\r\n$1\r\na\r\n$1\r\nc\r\n$1\r\nb\r\n")
					c.Expect("*5\r\n", "$5\r\n", "val-c\r\n", fmt.Sprintf("$%d\r\n", len(big)))
					if got := c.ReadN(len(big) + 2); got != big+"\r\n" {
						t.Fatalf("big value corrupted")
					}
					c.Expect("$5\r\n", "val-a\r\n", "$5\r\n", "val-c\r\n", "$5\r\n", "val-b\r\n")
				} else {
					c.Send("get c big a c b\r\n")
					c.Expect("VALUE c 0 5\r\n", "val-c\r\n", fmt.Sprintf("VALUE big 0 %d\r\n", len(big)))
					if got := c.ReadN(len(big) + 2); got != big+"\r\n" {
						t.Fatalf("big value corrupted")
					}
					c.Expect("VALUE a 0 5\r\n", "val-a\r\n", "VALUE c 0 5\r\n", "val-c\r\n", "VALUE b 0 5\r\n", "val-b\r\n", "END\r\n")
				}
			}
		})
	}
}
