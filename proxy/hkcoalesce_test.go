package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// backendGets returns the gets a backend has served: memcached's cmd_get,
// Redis's calls of get (INFO commandstats).
func backendGets(t *testing.T, addr string, redis bool) int64 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
	r := bufio.NewReader(c)
	if !redis {
		io.WriteString(c, "stats\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stats from %s: %v", addr, err)
			}
			if f := strings.Fields(l); len(f) == 3 && f[1] == "cmd_get" {
				n, _ := strconv.ParseInt(f[2], 10, 64)
				return n
			}
			if l == "END\r\n" {
				t.Fatalf("stats from %s: no cmd_get", addr)
			}
		}
	}
	io.WriteString(c, "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "$") {
		t.Fatalf("INFO from %s: %q %v", addr, l, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(buf), "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return v
		}
	}
	return 0
}

// hkServers returns a hot-key pool over fresh servers, and the servers.
func hkServers(t *testing.T, redis bool) ([]*testserver.Process, func() int64) {
	var ss []*testserver.Process
	for range 2 {
		if redis {
			ss = append(ss, testserver.Redis(t))
		} else {
			ss = append(ss, testserver.Memcached(t))
		}
	}
	gets := func() int64 {
		var n int64
		for _, s := range ss {
			n += backendGets(t, s.Addr, redis)
		}
		return n
	}
	return ss, gets
}

// stopServers SIGSTOPs ss (so the reads sent to them wait) and returns
// what resumes them; the cleanup resumes them too.
func stopServers(t *testing.T, ss []*testserver.Process) func() {
	var once sync.Once
	resume := func() {
		once.Do(func() {
			for _, s := range ss {
				_ = syscall.Kill(s.Pid(), syscall.SIGCONT)
			}
		})
	}
	t.Cleanup(resume)
	for _, s := range ss {
		if err := syscall.Kill(s.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatalf("stop %s: %v", s.Addr, err)
		}
	}
	for _, s := range ss {
		waitStopped(t, s.Pid())
	}
	return resume
}

// waitStopped polls until every thread of process pid is stopped: kill
// returns once SIGSTOP is queued, and a thread running on another CPU may
// still answer a request before it stops.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped := true
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			// The state follows the command name in parentheses.
			if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && i+2 < len(b) && b[i+2] != 'T' && b[i+2] != 't' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not stop", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitCoalesced polls the proxy until n misses have been coalesced in
// all, or fails the test after a deadline.
func waitCoalesced(t *testing.T, p *proxy.Proxy, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for nearStats(p, "hk").Coalesced < n {
		if time.Now().After(deadline) {
			t.Fatalf("coalesced misses: got %d; want %d (%+v)", nearStats(p, "hk").Coalesced, n, nearStats(p, "hk"))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHotKeysCoalesceMisses: 16 clients on one loop miss the same hot key
// while its servers are stopped: the proxy sends one read, the 15 others
// wait for it (the coalesced counter says so before the servers resume),
// the servers count exactly one more get, and every client gets the value.
func TestHotKeysCoalesceMisses(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			ss, gets := hkServers(t, redis)
			pool := hkPoolOver(t, redis, ss)
			p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
			w := hkDial(t, pool.Listen, redis)
			if err := w.set("hot", "v0"); err != nil {
				t.Fatal(err)
			}
			warm(t, p, w, "hot")
			if err := w.set("hot", "v1"); err != nil { // drops it from the near cache
				t.Fatal(err)
			}
			const n = 16
			conns := make([]*hkConn, n)
			for i := range conns {
				conns[i] = hkDial(t, pool.Listen, redis)
			}
			before := gets()
			st0 := nearStats(p, "hk")
			c0 := st0.Coalesced
			resume := stopServers(t, ss)
			type res struct {
				v   string
				ok  bool
				err error
			}
			out := make(chan res, n)
			for i, c := range conns {
				go func() {
					v, ok, err := c.get("hot")
					out <- res{v, ok, err}
				}()
				if i == 0 { // the leader's read is queued before the others come
					waitMisses(t, p, st0.Misses+1)
				}
			}
			waitCoalesced(t, p, c0+n-1)
			resume()
			for range n {
				r := <-out
				if r.err != nil || !r.ok || r.v != "v1" {
					t.Errorf("get hot: got %q (hit %v, err %v); want %q", r.v, r.ok, r.err, "v1")
				}
			}
			if got := gets() - before; got != 1 {
				t.Errorf("server gets for %d coalesced misses: got %d; want 1", n, got)
			}
		})
	}
}

// waitMisses polls the proxy until its near-cache misses reach n, or
// fails the test after a deadline.
func waitMisses(t *testing.T, p *proxy.Proxy, n int64) {
	t.Helper()
	start := int64(0)
	deadline := time.Now().Add(10 * time.Second)
	for nearStats(p, "hk").Misses < start+n {
		if time.Now().After(deadline) {
			t.Fatalf("near-cache misses did not grow by %d: %+v", n, nearStats(p, "hk"))
		}
		time.Sleep(time.Millisecond)
	}
}

// hkPoolOver is hotPool over the servers ss.
func hkPoolOver(t *testing.T, redis bool, ss []*testserver.Process) config.Pool {
	var p config.Pool
	if redis {
		p = proxytest.RedisPool(t, "hk", ss...)
	} else {
		p = proxytest.MemcachePool(t, "hk", ss...)
	}
	p.ServerConnections = 2
	p.HotKeys = config.HotKeys{Enabled: true, MinRate: 20}
	return p
}

// TestHotKeysCoalesceNotAcrossWrite: with the servers stopped, a miss of a
// hot key is in flight when a set of the key goes through the proxy. While
// the set is in flight no later miss waits for another read (neither for
// the one sent before the set, nor for one sent after it, which may travel
// on another connection and reach the server first): the coalesced counter
// stays. Once the set is answered, misses coalesce again, and read its
// value. The servers count exactly four gets.
//
// The scenario needs the key promoted and (Redis) its tracking connection
// up throughout; a stop of the servers that lasts long enough on a loaded
// box can demote the key (its reads stall) or time the tracking connection
// out. Such a round proves nothing either way and is run again, at most
// five times in all.
func TestHotKeysCoalesceNotAcrossWrite(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memcache", true: "redis"}[redis], func(t *testing.T) {
			for try := 1; ; try++ {
				err := coalesceAcrossWriteRound(t, redis)
				if !errors.Is(err, errRoundVoid) {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				t.Logf("round %d: %v", try, err)
				if try == 5 {
					t.Fatalf("the key never stayed hot through a round (%d rounds)", try)
				}
			}
		})
	}
}

// errRoundVoid says a test round lost a precondition (the key demoted, a
// tracking connection lost) and must be run again.
var errRoundVoid = errors.New("precondition lost")

// coalesceAcrossWriteRound is one round of TestHotKeysCoalesceNotAcrossWrite
// on fresh servers and proxy.
func coalesceAcrossWriteRound(t *testing.T, redis bool) error {
	ss, gets := hkServers(t, redis)
	pool := hkPoolOver(t, redis, ss)
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	w := hkDial(t, pool.Listen, redis)
	if err := w.set("hot", "v0"); err != nil {
		return err
	}
	warm(t, p, w, "hot")
	if err := w.set("hot", "v1"); err != nil {
		return err
	}
	conns := make([]*hkConn, 5)
	for i := range conns {
		conns[i] = hkDial(t, pool.Listen, redis)
	}
	before := gets()
	st := nearStats(p, "hk")
	// wait polls until ok holds, failing the round as void when the key
	// was demoted or a tracking connection reported a loss meanwhile.
	wait := func(what string, ok func(proxy.NearCacheStats) bool) error {
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := nearStats(p, "hk")
			switch {
			case ok(now):
				return nil
			case now.Demotions != st.Demotions || (redis && !allUp(trackingUp(p), len(ss))):
				return fmt.Errorf("%w: waiting for %s: %+v", errRoundVoid, what, now)
			case time.Now().After(deadline):
				return fmt.Errorf("waiting for %s: %+v", what, now)
			}
			time.Sleep(time.Millisecond)
		}
	}
	type res struct {
		v   string
		err error
	}
	get := func(h *hkConn) chan res {
		ch := make(chan res, 1)
		go func() {
			v, ok, err := h.get("hot")
			if err == nil && !ok {
				err = fmt.Errorf("miss")
			}
			ch <- res{v, err}
		}()
		return ch
	}
	check := func(chs []chan res, want ...string) error {
		for _, ch := range chs {
			r := <-ch
			if r.err != nil || !slices.Contains(want, r.v) {
				return fmt.Errorf("get hot: got %q (%v); want one of %q", r.v, r.err, want)
			}
		}
		return nil
	}
	misses := func(n int64) func(proxy.NearCacheStats) bool {
		return func(s proxy.NearCacheStats) bool { return s.Misses >= st.Misses+n }
	}

	resume := stopServers(t, ss)
	ra := get(conns[0])
	if err := wait("the first miss", misses(1)); err != nil {
		resume()
		return err
	}
	setDone := make(chan error, 1)
	go func() { setDone <- w.set("hot", "v2") }()
	if err := wait("the set", func(s proxy.NearCacheStats) bool {
		return s.Invalidations[proxy.InvalWrite] > st.Invalidations[proxy.InvalWrite]
	}); err != nil {
		resume()
		return err
	}
	rc := get(conns[1])
	if err := wait("a miss during the set", misses(2)); err != nil {
		resume()
		return err
	}
	rd := get(conns[2])
	if err := wait("a second miss during the set", misses(3)); err != nil {
		resume()
		return err
	}
	coalesced := nearStats(p, "hk").Coalesced
	resume()
	if err := check([]chan res{ra, rc, rd}, "v1", "v2"); err != nil {
		return err
	}
	if err := <-setDone; err != nil {
		return err
	}
	if coalesced != st.Coalesced {
		return fmt.Errorf("a miss during a write in flight waited for another read: coalesced %d; want %d", coalesced, st.Coalesced)
	}

	// The set is answered: misses share one read again, and see v2.
	resume = stopServers(t, ss)
	re := get(conns[3])
	if err := wait("a miss after the set", misses(4)); err != nil {
		resume()
		return err
	}
	rf := get(conns[4])
	if err := wait("a coalesced miss after the set", func(s proxy.NearCacheStats) bool { return s.Coalesced > st.Coalesced }); err != nil {
		resume()
		return err
	}
	resume()
	if err := check([]chan res{re, rf}, "v2"); err != nil {
		return err
	}
	if got := gets() - before; got != 4 {
		return fmt.Errorf("server gets: got %d; want 4 (three during the set, one shared after it)", got)
	}
	return nil
}
