package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
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

// mcHostile is input that once desynchronised the shared backend
// connection, or whose reply count depends on reading the line exactly as
// memcached does. Each entry is followed by "mn\r\n" on the wire, so the
// replies of every entry can be told apart.
var mcHostile = []string{
	"incr zz 1 noreply\x00\r\n",                   // noreply ends at the NUL for memcached
	"incr zz 1 noreply\x00junk\r\n",               // everything after a NUL is ignored
	"decr zz 1\tx noreply\r\n",                    // strtoull stops at the tab
	"incr zz x noreply\r\n",                       // a refused noreply command is silent
	"set zz 0 0 abc noreply\r\n",                  // silent, and there is no data block
	"set zz 0 0 2 noreply\r\nabcd\r\n",            // bad chunk: silent, block skipped
	"set zz 0 0 2\r\nabcd\r\n",                    // bad chunk: CLIENT_ERROR, block skipped
	"set zz 0 0 4294967297\r\nx\r\n",              // 32-bit truncation: a 1-byte block
	"set zz 0 0 1 noreply\r\nx\r\n",               // plain noreply
	"delete zz 5 noreply\r\n",                     // usage error, silent
	"touch zz x noreply\r\n",                      // silent
	"flush_all noreply noreply\r\n",               // silent error, nothing flushed
	"mg zz q q v\r\n",                             // duplicate flag: memcached's error
	"mg zz q v\r\n",                               // quiet miss: nothing
	"ms zz 1 q q\r\nx\r\n",                        // duplicate flag, block swallowed
	"ms zz 1 q\r\nxyz",                            // bad chunk in quiet mode: an error
	"md zz q\r\n",                                 // quiet: nothing
	"ma zz q N0 J5\r\n",                           // quiet success: nothing
	"mg zz " + strings.Repeat("v ", 20) + "q\r\n", // too many flags
	"get \x10zz \x01\x02\r\n",                     // control bytes are key bytes
	"gat 10\r\n",                                  // no keys: END
	"\r\n",                                        // ERROR
	"get " + strings.Repeat("k", 251) + "\r\n",
}

// TestMcHostileInputKeepsOtherClientsRight: while one client sends the
// hostile lines above on the same backend connection, another client's
// incr sees exactly its own values, and the hostile client gets exactly
// what memcached itself answers.
func TestMcHostileInputKeepsOtherClientsRight(t *testing.T) {
	mc := testserver.Memcached(t)
	direct := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool) // one loop, one backend connection

	a := proxytest.Dial(t, pool.Listen)
	a.RoundTrip("set ctrA 0 0 1\r\n0\r\n", "STORED\r\n")
	b := proxytest.Dial(t, pool.Listen)

	const rounds = 300
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := bufio.NewReader(a.C)
		for i := 1; i <= rounds; i++ {
			if _, err := io.WriteString(a.C, "incr ctrA 1\r\n"); err != nil {
				errs <- err
				return
			}
			_ = a.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
			got, err := r.ReadString('\n')
			if want := strconv.Itoa(i) + "\r\n"; err != nil || got != want {
				errs <- fmt.Errorf("incr ctrA #%d: got %q (%v); want %q", i, got, err, want)
				return
			}
		}
	}()
	// The hostile client's replies, compared entry by entry with a
	// memcached reached directly.
	for round := 0; round < 10; round++ {
		for _, in := range mcHostile {
			marker := fmt.Sprintf("h%dx%d", round, len(in))
			got, err := mcdiffRun(pool.Listen, []byte(in+"mn\r\n"), marker)
			if err != nil {
				t.Fatalf("through the proxy, %q: %v", in, err)
			}
			want, err := mcdiffRun(direct.Addr, []byte(in+"mn\r\n"), marker)
			if err != nil {
				t.Fatalf("direct, %q: %v", in, err)
			}
			if got != want {
				t.Fatalf("%q: got %q; want %q (memcached)", in, got, want)
			}
		}
		// and the same bytes pipelined on the long-lived connection
		b.Send(strings.Join(mcHostile, "") + "mn\r\n")
		for {
			if l := b.Line(); l == "MN\r\n" {
				break
			}
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	a.RoundTrip("get ctrA\r\n", "VALUE ctrA 0 3\r\n", strconv.Itoa(rounds)+"\r\n", "END\r\n")
}

// TestMcWrongReplyTypeFailsConnection: a backend reply whose type cannot
// answer the request at the head of the connection's FIFO closes that
// connection and fails every request in flight on it with SERVER_ERROR,
// never a value; the next request gets a new connection.
func TestMcWrongReplyTypeFailsConnection(t *testing.T) {
	wrong := map[string]string{
		"decr": "VALUE k 0 1\r\nx\r\nEND\r\n",
		"incr": "STORED\r\n",
		"get":  "STORED\r\n",
		"set":  "42\r\n",
		"mg":   "STORED\r\n",
	}
	var mu sync.Mutex
	conns, closed := 0, 0
	addr := proxytest.FakeServer(t, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				mu.Lock()
				closed++
				mu.Unlock()
				return
			}
			f := strings.Fields(line)
			switch {
			case len(f) > 0 && f[0] == "version":
				_, _ = io.WriteString(c, "VERSION fake\r\n")
			case len(f) > 1 && f[0] == "get" && f[1] == "good":
				_, _ = io.WriteString(c, "END\r\n")
			case len(f) > 0 && f[0] == "set":
				_, _ = r.ReadString('\n') // the data block
				_, _ = io.WriteString(c, wrong["set"])
			case len(f) > 0:
				// Hold the reply to "hold" so the next request queues
				// behind it, then answer both, the first wrongly.
				if f[0] == "incr" && len(f) > 1 && f[1] == "hold" {
					next, _ := r.ReadString('\n')
					_ = next
					_, _ = io.WriteString(c, wrong["incr"]+"5\r\n")
					continue
				}
				_, _ = io.WriteString(c, wrong[f[0]])
			}
		}
	})
	pool := proxytest.MemcachePool(t, "mc")
	pool.Servers = []config.Server{{Name: "mc1", Addr: addr, Network: "tcp", Weight: 1}}
	pool.ServerFailureLimit = 1000 // stay up: every request must reach the fake
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	const fail = "SERVER_ERROR server mc1 sent a malformed reply\r\n"
	c.RoundTrip("decr k 1\r\n", fail)
	c.RoundTrip("get k\r\n", fail)
	c.RoundTrip("set k 0 0 1\r\nx\r\n", fail)
	c.RoundTrip("mg k v\r\n", fail)
	// Two in flight: the wrong reply to the first fails both, although the
	// second one's reply ("5") would have looked right.
	c.RoundTrip("incr hold 1\r\nincr k 1\r\n", fail, fail)
	c.RoundTrip("get good\r\n", "END\r\n")
	mu.Lock()
	defer mu.Unlock()
	if conns < 6 || closed < 5 {
		t.Fatalf("backend connections: %d opened, %d closed; want one closed per wrong reply", conns, closed)
	}
}

// TestMcMemcaslapThroughProxy: memcaslap prefixes control bytes to every
// key; through the proxy its requests reach the backend (its op count
// equals the backend's cmd_get + cmd_set) and it sees no error.
func TestMcMemcaslapThroughProxy(t *testing.T) {
	bin := testserver.Require(t, "memcaslap")
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	proxytest.Start(t, proxy.Options{}, pool)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ops = 20000
	out, err := exec.CommandContext(ctx, bin, "-s", pool.Listen, "-x", strconv.Itoa(ops), "-T", "2", "-c", "8").CombinedOutput()
	if err != nil {
		t.Fatalf("memcaslap: %v\n%s", err, out)
	}
	field := func(name string) int {
		m := regexp.MustCompile(`(?m)` + name + `:? (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("memcaslap output has no %q:\n%s", name, out)
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v
	}
	if got := field("Ops"); got != ops {
		t.Fatalf("memcaslap ran %d ops; want %d:\n%s", got, ops, out)
	}
	if bytes.Contains(bytes.ToLower(out), []byte("error")) || field("get_misses") != 0 {
		t.Fatalf("memcaslap saw errors or misses:\n%s", out)
	}
	c := proxytest.Dial(t, mc.Addr)
	c.Send("stats\r\n")
	st := map[string]int{}
	for {
		l := c.Line()
		if l == "END\r\n" {
			break
		}
		f := strings.Fields(l)
		if len(f) == 3 {
			st[f[1]], _ = strconv.Atoi(f[2])
		}
	}
	if got := st["cmd_get"] + st["cmd_set"]; got != ops || st["cmd_get"] != field("cmd_get") {
		t.Fatalf("backend cmd_get %d + cmd_set %d = %d; want memcaslap's %d ops (its cmd_get %d)",
			st["cmd_get"], st["cmd_set"], got, ops, field("cmd_get"))
	}
}

// mcDiffRegressions are the minimal inputs the differential fuzz (and the
// issue) found, each compared as the fuzz compares: direct vs through the
// proxy, byte for byte. proxy, when set, is the proxy's documented answer
// where it differs from memcached on purpose (docs/commands.md).
var mcDiffRegressions = []struct {
	name, in, proxy string
}{
	{"noreply ends at NUL", "incr zz 1 noreply\x00\r\nincr zz 1\r\n", ""},
	{"noreply after NUL junk", "set zz 0 0 1\r\n5\r\nincr zz 1 noreply\x00junk\r\nget zz\r\n", ""},
	// seed 6246: "delete noreply" deletes the key "noreply"; it was read as
	// a noreply delete without a key.
	{"delete noreply is a key", "delete noreply\r\n", ""},
	{"refused noreply is silent", "incr zz x noreply\r\nset zz 0 0 abc noreply\r\ntouch zz x noreply\r\nmn\r\n", ""},
	{"storage refusal skips the line only", "set zz 0 0 x\r\nget zz\r\n", ""},
	{"bad chunk skips line and block", "set zz 0 0 2\r\nabcd\r\nget zz\r\n", ""},
	{"bad chunk under noreply", "set zz 0 0 2 noreply\r\nabcdget zz\r\n", ""},
	{"32-bit truncated length", "set zz 0 0 4294967297\r\nx\r\nget zz\r\n", ""},
	{"numbers as strtol reads them", "set zz \t1 +0 1\r\n7\r\nincr zz 1\tx\r\ngets zz\r\n", ""},
	{"control bytes in keys", "set \x10zz 0 0 1\r\nx\r\nget \x10zz \x01\x7f\r\n", ""},
	{"quiet duplicate flag", "mg zz q q v\r\nms zz 1 q q\r\nx\r\nmn\r\n", ""},
	{"quiet with too many flags", "mg zz " + strings.Repeat("v ", 20) + "q\r\nmn\r\n", ""},
	{"quiet ms bad chunk", "ms zz 1 q\r\nxyzmn\r\n", ""},
	{"gat without keys", "gat 10\r\ngats 0\r\n", ""},
	{"HTTP closes", "GET / HTTP/1.1\r\n", ""},
	{"unknown meta", "mx zz\r\nme\r\n", ""},
	// memcached 1.6.18 also drops the unsent EN of the mg before it.
	{"get with a long key", "mg lkmiss h\r\nget " + strings.Repeat("k", 251) + "\r\n", "EN\r\nCLIENT_ERROR bad command line format\r\n"},
}

func TestMcDiffRegressions(t *testing.T) {
	p := newMcdiffPair(t)
	for i, c := range mcDiffRegressions {
		marker := "r" + strconv.Itoa(i)
		d, x, err := p.compare([]byte(c.in), marker)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := d
		if c.proxy != "" {
			want = c.proxy
		}
		if x != want {
			t.Errorf("%s: %q through the proxy: got %q; want %q (memcached: %q)", c.name, c.in, x, want, d)
		}
	}
}

// TestMcRefusedBlockDoesNotStallClient: a data block that arrived in
// pieces and was then refused (bad chunk) left its size as the input the
// client still needed, so the next request, shorter than that, was never
// parsed (found by the differential fuzz, seed 43184).
func TestMcRefusedBlockDoesNotStallClient(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	const size = 5000
	// The MN proves the proxy has read the set line and the start of its
	// block (one small write) before the rest is sent.
	c.Send("mn\r\nset k 0 0 " + strconv.Itoa(size) + "\r\n" + strings.Repeat("v", 100))
	c.Expect("MN\r\n")
	c.Send(strings.Repeat("v", size-100) + "XX")
	c.Expect("CLIENT_ERROR bad data chunk\r\n")
	c.RoundTrip("get k\r\n", "END\r\n")
}

// TestMcControlByteKeysAcrossServers: keys with control bytes, tabs, DEL and
// UTF-8 are stored on the server they hash to and a multi-key get over
// three servers returns every value, in key order.
func TestMcControlByteKeysAcrossServers(t *testing.T) {
	var mcs []*testserver.Process
	for i := 0; i < 3; i++ {
		mcs = append(mcs, testserver.Memcached(t))
	}
	pool := proxytest.MemcachePool(t, "mc", mcs...)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	var keys []string
	for i := 0; i < 24; i++ {
		k := fmt.Sprintf("\x10\x10k%d\x01\t\x7f\xc3\xa9%c", i, 'a'+i)
		keys = append(keys, k)
		c.RoundTrip(fmt.Sprintf("set %s 0 0 %d\r\n%d\r\n", k, len(strconv.Itoa(i)), i), "STORED\r\n")
	}
	c.Send("get " + strings.Join(keys, " ") + "\r\n")
	for i, k := range keys {
		// (proxytest's ReadGet splits keys at tabs; these hold tabs.)
		v := strconv.Itoa(i)
		c.Expect(fmt.Sprintf("VALUE %s 0 %d\r\n", k, len(v)), v+"\r\n")
	}
	c.Expect("END\r\n")
	// Every server got some of them: the keys were routed, not refused.
	for _, mc := range mcs {
		d := proxytest.Dial(t, mc.Addr)
		d.Send("stats\r\n")
		items := -1
		for l := d.Line(); l != "END\r\n"; l = d.Line() {
			if f := strings.Fields(l); len(f) == 3 && f[1] == "curr_items" {
				items, _ = strconv.Atoi(f[2])
			}
		}
		if items <= 0 {
			t.Fatalf("server %s holds %d items; want some of the 24", mc.Addr, items)
		}
	}
}
