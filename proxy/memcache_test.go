package proxy_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func threeMemcached(t *testing.T) []*testserver.Process {
	return []*testserver.Process{testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)}
}

// directGet asks a backend itself for key and returns the value and whether
// it was a hit.
func directGet(t *testing.T, addr, key string) (string, bool) {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.C.Close()
	c.Send("get " + key + "\r\n")
	_, vals := c.ReadGet()
	v, ok := vals[key]
	return v, ok
}

func TestMemcacheStorageCommandsLandOnTheRingServer(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ring, err := pool.Ring()
	if err != nil {
		t.Fatal(err)
	}
	c := proxytest.Dial(t, pool.Listen)
	perServer := make([]int, 3)
	for i := 0; i < 60; i++ {
		key := fmt.Sprintf("key:%d", i)
		val := "value-of-" + key
		c.Send(fmt.Sprintf("set %s 5 0 %d\r\n%s\r\n", key, len(val), val))
		c.Expect("STORED\r\n")
		s := ring.Pick([]byte(key))
		perServer[s]++
		got, ok := directGet(t, mcs[s].Addr, key)
		if !ok || got != val {
			t.Fatalf("key %q on server %d: got %q (hit %v); want %q", key, s, got, ok, val)
		}
		for o := range mcs {
			if o == s {
				continue
			}
			if _, ok := directGet(t, mcs[o].Addr, key); ok {
				t.Fatalf("key %q also found on server %d; want only on %d", key, o, s)
			}
		}
	}
	for s, n := range perServer {
		if n == 0 {
			t.Fatalf("no key of 60 landed on server %d: %v", s, perServer)
		}
	}
	// The rest of the text protocol, through the proxy.
	steps := []struct{ send, want string }{
		{"get key:1\r\n", "VALUE key:1 5 14\r\nvalue-of-key:1\r\nEND\r\n"},
		{"add key:1 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"add new 0 0 1\r\nx\r\n", "STORED\r\n"},
		{"replace new 0 0 2\r\nyy\r\n", "STORED\r\n"},
		{"append new 0 0 1\r\nA\r\n", "STORED\r\n"},
		{"prepend new 0 0 1\r\nP\r\n", "STORED\r\n"},
		{"get new\r\n", "VALUE new 0 4\r\nPyyA\r\nEND\r\n"},
		{"set n 0 0 2\r\n10\r\n", "STORED\r\n"},
		{"incr n 5\r\n", "15\r\n"},
		{"decr n 20\r\n", "0\r\n"},
		{"incr missing 1\r\n", "NOT_FOUND\r\n"},
		{"touch n 100\r\n", "TOUCHED\r\n"},
		{"delete n\r\n", "DELETED\r\n"},
		{"delete n\r\n", "NOT_FOUND\r\n"},
		{"get n\r\n", "END\r\n"},
		{"set k 0 0 1 noreply\r\nz\r\nget k\r\n", "VALUE k 0 1\r\nz\r\nEND\r\n"},
		{"delete k noreply\r\nget k\r\n", "END\r\n"},
		{"version\r\n", "VERSION " + proxy.Version + "\r\n"},
		{"verbosity 1\r\n", "OK\r\n"},
		{"verbosity 1 noreply\r\nmn\r\n", "MN\r\n"},
	}
	for _, st := range steps {
		c.Send(st.send)
		got := c.ReadN(len(st.want))
		if got != st.want {
			t.Fatalf("after %q: got %q; want %q", st.send, got, st.want)
		}
	}
}

func TestMemcacheMultiGetHundredKeysAcrossServers(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	ring, _ := pool.Ring()
	c := proxytest.Dial(t, pool.Listen)
	var keys []string
	want := map[string]string{}
	servers := map[int]bool{}
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("mk:%d", i)
		keys = append(keys, k)
		servers[ring.Pick([]byte(k))] = true
		if i%3 == 0 {
			continue // a miss
		}
		v := strings.Repeat(k, i%5+1)
		want[k] = v
		c.Send(fmt.Sprintf("set %s %d 0 %d\r\n%s\r\n", k, i, len(v), v))
		c.Expect("STORED\r\n")
	}
	if len(servers) != 3 {
		t.Fatalf("keys span %d servers; want 3", len(servers))
	}
	for _, cmd := range []string{"get", "gets"} {
		c.Send(cmd + " " + strings.Join(keys, " ") + "\r\n")
		order, got := c.ReadGet()
		var wantOrder []string
		for _, k := range keys {
			if _, ok := want[k]; ok {
				wantOrder = append(wantOrder, k)
			}
		}
		if strings.Join(order, " ") != strings.Join(wantOrder, " ") {
			t.Fatalf("%s: hits in order %v; want %v", cmd, order, wantOrder)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: %q = %q; want %q", cmd, k, got[k], v)
			}
		}
	}
	// Repeated keys are answered as memcached answers them: once per mention.
	c.Send("get mk:1 mk:2 mk:1 mk:3\r\n")
	order, _ := c.ReadGet()
	if got := strings.Join(order, " "); got != "mk:1 mk:2 mk:1" {
		t.Fatalf("repeated keys: got %q; want %q", got, "mk:1 mk:2 mk:1")
	}
}

// TestMemcachePipelinedConcurrentClients checks that many clients, each
// pipelining mixes of sets, gets, deletes and noreply writes, get the right
// reply for every request and in order. Values encode their keys.
func TestMemcachePipelinedConcurrentClients(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	pool.ServerConnections = 2
	proxytest.Start(t, proxy.Options{}, pool)
	const clients, rounds, depth = 16, 40, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for ci := 0; ci < clients; ci++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pipelineClient(pool.Listen, ci, rounds, depth)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func pipelineClient(addr string, ci, rounds, depth int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	rng := rand.New(rand.NewPCG(uint64(ci), 7))
	type exp struct{ kind, key, val string }
	state := map[string]string{} // this client's own keys: what the cache holds
	for round := 0; round < rounds; round++ {
		var b strings.Builder
		var exps []exp
		for i := 0; i < depth; i++ {
			key := fmt.Sprintf("c%d:k%d", ci, rng.IntN(30))
			val := fmt.Sprintf("%s=r%di%d", key, round, i)
			switch op := rng.IntN(10); {
			case op < 3:
				fmt.Fprintf(&b, "set %s 0 0 %d\r\n%s\r\n", key, len(val), val)
				exps = append(exps, exp{"STORED", key, ""})
				state[key] = val
			case op < 4:
				fmt.Fprintf(&b, "set %s 0 0 %d noreply\r\n%s\r\n", key, len(val), val)
				state[key] = val
			case op < 5:
				fmt.Fprintf(&b, "delete %s\r\n", key)
				if _, ok := state[key]; ok {
					exps = append(exps, exp{"DELETED", key, ""})
				} else {
					exps = append(exps, exp{"NOT_FOUND", key, ""})
				}
				delete(state, key)
			case op < 6:
				k2 := fmt.Sprintf("c%d:k%d", ci, rng.IntN(30))
				fmt.Fprintf(&b, "get %s %s\r\n", key, k2)
				exps = append(exps, exp{"GET", key + " " + k2, state[key] + "\x00" + state[k2]})
			default:
				fmt.Fprintf(&b, "get %s\r\n", key)
				exps = append(exps, exp{"GET", key, state[key]})
			}
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			return err
		}
		for _, e := range exps {
			if e.kind != "GET" {
				l, err := r.ReadString('\n')
				if err != nil {
					return err
				}
				if l != e.kind+"\r\n" {
					return fmt.Errorf("client %d: %s %s: got %q; want %q", ci, e.kind, e.key, l, e.kind)
				}
				continue
			}
			keys := strings.Fields(e.key)
			wantVals := strings.Split(e.val, "\x00")
			var want strings.Builder
			for i, k := range keys {
				if wantVals[i] != "" {
					fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\n", k, len(wantVals[i]), wantVals[i])
				}
			}
			want.WriteString("END\r\n")
			got := make([]byte, want.Len())
			if _, err := ioReadFullR(r, got); err != nil {
				return fmt.Errorf("client %d: get %s: %v (got %q)", ci, e.key, err, got)
			}
			if string(got) != want.String() {
				return fmt.Errorf("client %d: get %s: got %q; want %q", ci, e.key, got, want.String())
			}
		}
	}
	return nil
}

func ioReadFullR(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestMemcacheBackendKilledFailsFastThenRecovers(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	pool.AutoEjectHosts = false
	proxytest.Start(t, proxy.Options{}, pool)
	ring, _ := pool.Ring()
	keyOn := func(s int) string {
		for i := 0; ; i++ {
			k := "kill:" + strconv.Itoa(i)
			if ring.Pick([]byte(k)) == s {
				return k
			}
		}
	}
	dead, live := keyOn(0), keyOn(1)
	c := proxytest.Dial(t, pool.Listen)
	for _, k := range []string{dead, live} {
		c.Send(fmt.Sprintf("set %s 0 0 1\r\nv\r\n", k))
		c.Expect("STORED\r\n")
	}
	mcs[0].Kill()
	// Requests for the dead server's keys fail with SERVER_ERROR; the live
	// server's keys keep working on the same connection, in order.
	for i := 0; i < 5; i++ {
		c.Send("get " + dead + "\r\nget " + live + "\r\n")
		if got := c.Line(); !strings.HasPrefix(got, "SERVER_ERROR ") {
			t.Fatalf("get on killed server: got %q; want SERVER_ERROR", got)
		}
		c.Expect("VALUE "+live+" 0 1\r\n", "v\r\n", "END\r\n")
	}
	mcs[0].Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.Send("set " + dead + " 0 0 1\r\nw\r\n")
		got := c.Line()
		if got == "STORED\r\n" {
			break
		}
		if !strings.HasPrefix(got, "SERVER_ERROR ") {
			t.Fatalf("while server restarts: got %q; want STORED or SERVER_ERROR", got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not used again 20s after restart: last reply %q", got)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if v, ok := directGet(t, mcs[0].Addr, dead); !ok || v != "w" {
		t.Fatalf("after recovery key %q on restarted server: %q %v; want w", dead, v, ok)
	}
}

func TestMemcacheEjectionProbeAndReadmission(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	pool.AutoEjectHosts = true
	pool.ServerFailureLimit = 1
	pool.ServerRetryTimeout = 200 * time.Millisecond
	proxytest.Start(t, proxy.Options{}, pool)
	ring, _ := pool.Ring()
	var onDead []string
	for i := 0; len(onDead) < 5; i++ {
		k := "ej:" + strconv.Itoa(i)
		if ring.Pick([]byte(k)) == 0 {
			onDead = append(onDead, k)
		}
	}
	c := proxytest.Dial(t, pool.Listen)
	mcs[0].Kill()
	// Once ejected, the dead server's keys are served by the others.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.Send("set " + onDead[0] + " 0 0 1\r\nx\r\n")
		if c.Line() == "STORED\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dead server's key never moved to a live server")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	// Restarted, it is probed and takes its keys back.
	mcs[0].Restart()
	deadline = time.Now().Add(20 * time.Second)
	for {
		c.Send("set " + onDead[1] + " 0 0 1\r\ny\r\n")
		c.Expect("STORED\r\n")
		if _, ok := directGet(t, mcs[0].Addr, onDead[1]); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted server never took its keys back")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestMemcacheBadInputIsolated(t *testing.T) {
	mcs := threeMemcached(t)
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	// A well-behaved client runs alongside every bad one.
	good := proxytest.Dial(t, pool.Listen)
	goodCheck := func(i int) {
		t.Helper()
		v := fmt.Sprintf("v%d", i)
		good.Send(fmt.Sprintf("set good 0 0 %d\r\n%s\r\nget good\r\n", len(v), v))
		good.Expect("STORED\r\n", fmt.Sprintf("VALUE good 0 %d\r\n", len(v)), v+"\r\n", "END\r\n")
	}
	cases := []struct {
		name, send string
		want       string // reply prefix
		usable     bool   // connection still answers afterwards
	}{
		{"unknown command", "bogus\r\n", "ERROR\r\n", true},
		{"garbage bytes", "\x01\x02\x03\r\n", "ERROR", true},
		{"key too long", "get " + strings.Repeat("k", 251) + "\r\n", "CLIENT_ERROR", true},
		{"bad data length", "set k 0 0 xx\r\n", "CLIENT_ERROR", true},
		{"value too large", "set big 0 0 2000000\r\n" + strings.Repeat("v", 2000000) + "\r\n", "SERVER_ERROR object too large for cache", true},
		{"missing CRLF after data", "set k 0 0 1\r\nxyz\r\n", "CLIENT_ERROR bad data chunk", false},
		{"binary protocol", "\x80\x00\x00\x00", "", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := proxytest.Dial(t, pool.Listen)
			bad.Send(tc.send)
			if tc.want != "" {
				got := bad.Line()
				if !strings.HasPrefix(got, tc.want) {
					t.Fatalf("got %q; want prefix %q", got, tc.want)
				}
			}
			if tc.usable {
				bad.Send("version\r\n")
				bad.Expect("VERSION " + proxy.Version + "\r\n")
			} else {
				_ = bad.C.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := bad.R.ReadString('\n'); err != nil {
						break // closed, as expected
					}
				}
			}
			goodCheck(i)
		})
	}
	// A client that sends half a request and stalls holds nobody up.
	stall := proxytest.Dial(t, pool.Listen)
	stall.Send("set stall 0 0 100\r\nonly-part")
	goodCheck(100)
	stall.Send(strings.Repeat("x", 100-len("only-part")) + "\r\n")
	stall.Expect("STORED\r\n")
}

func TestMemcapableThroughProxy(t *testing.T) {
	bin := testserver.Require(t, "memccapable")
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d servers", n), func(t *testing.T) {
			var mcs []*testserver.Process
			for i := 0; i < n; i++ {
				mcs = append(mcs, testserver.Memcached(t))
			}
			pool := proxytest.MemcachePool(t, "mc", mcs...)
			proxytest.Start(t, proxy.Options{}, pool)
			host, port, _ := net.SplitHostPort(pool.Listen)
			cmd := exec.Command(bin, "-a", "-h", host, "-p", port, "-t", "10")
			out, err := cmd.CombinedOutput()
			passed := strings.Count(string(out), "[pass]")
			if err != nil || passed != 27 {
				t.Fatalf("memccapable -a: %d of 27 passed, err %v:\n%s", passed, err, out)
			}
		})
	}
}

func TestMemcacheNutcrackerInterop(t *testing.T) {
	mcs := threeMemcached(t)
	ncPort := testserver.FreePort(t)
	var servers strings.Builder
	for i, m := range mcs {
		fmt.Fprintf(&servers, "   - %s:1 server%d\n", m.Addr, i+1)
	}
	conf := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n%s", ncPort, servers.String())
	ncAddr, pool := nutcrackerTwin(t, conf, ncPort)
	a, b := proxytest.Dial(t, ncAddr), proxytest.Dial(t, pool.Listen)
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("nc:%d", i)
		w, r := a, b
		if i%2 == 1 {
			w, r = b, a
		}
		w.Send(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(k), k))
		w.Expect("STORED\r\n")
		r.Send("get " + k + "\r\n")
		r.Expect(fmt.Sprintf("VALUE %s 0 %d\r\n", k, len(k)), k+"\r\n", "END\r\n")
	}
}

// nutcrackerTwin starts nutcracker on conf (whose one pool listens on
// ncPort) and a cacheproxy that loads the very same file, listening on
// another port. It returns nutcracker's address and the proxy's pool.
func nutcrackerTwin(t *testing.T, conf string, ncPort int) (string, config.Pool) {
	t.Helper()
	nc := testserver.Nutcracker(t, conf, fmt.Sprintf("127.0.0.1:%d", ncPort))
	file := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(file)
	if err != nil {
		t.Fatalf("load nutcracker.yml: %v", err)
	}
	pool := cfg.Pools[0]
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	proxytest.Start(t, proxy.Options{}, pool)
	return nc.Addr, pool
}
