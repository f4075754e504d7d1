package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The peak-memory tests run the cacheproxy binary as a subprocess, built
// without the race detector (which multiplies memory), and read its peak
// resident set (VmHWM in /proc/<pid>/status): what an operator sees, GC
// slack and gnet's buffers included, which runtime/metrics in the test
// process could not give (it would count the test client too). The test
// client never holds a reply whole: it checks it as it reads.

// proxyProc is a cacheproxy subprocess.
type proxyProc struct {
	p *testserver.Process
}

// runProxy starts bin with the configuration conf and waits until every
// address in listen accepts connections (testserver.Cacheproxy).
func runProxy(t *testing.T, bin, conf string, listen ...string) *proxyProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cacheproxy.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return &proxyProc{p: testserver.Cacheproxy(t, bin, path, listen)}
}

// peakRSS returns the process's peak resident set size in bytes.
func (p *proxyProc) peakRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// poolConf is a one-pool native configuration.
func poolConf(maxMemory, name, listen, protocol string, servers ...*testserver.Process) string {
	var b strings.Builder
	if maxMemory != "" {
		fmt.Fprintf(&b, "max_memory: %s\n", maxMemory)
	}
	fmt.Fprintf(&b, "pools:\n  %s:\n    listen: %s\n    protocol: %s\n    hash: murmur\n    timeout: 10s\n    servers:\n", name, listen, protocol)
	for _, s := range servers {
		fmt.Fprintf(&b, "      - %s:1\n", s.Addr)
	}
	return b.String()
}

// spreadKeys picks n keys that the ring of conf's pool places on its
// servers at most per to a server, so an MGET of them is split in
// fragments of several values each.
func spreadKeys(t *testing.T, conf string, n, per int) []string {
	t.Helper()
	cfg, _, err := config.Parse("rss.yaml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := cfg.Pools[0].Ring()
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	var keys []string
	for i := 0; len(keys) < n && i < 10000; i++ {
		k := fmt.Sprintf("a%d", i)
		if s := ring.Pick([]byte(k)); count[s] < per {
			count[s]++
			keys = append(keys, k)
		}
	}
	if len(keys) < n {
		t.Fatalf("found %d keys of %d spread over the servers", len(keys), n)
	}
	return keys
}

// patternReader yields n bytes of the repeating pattern.
type patternReader struct {
	pat string
	n   int
	off int
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	i := 0
	for i < len(p) && r.off < r.n {
		k := copy(p[i:min(len(p), i+r.n-r.off)], r.pat[r.off%len(r.pat):])
		i += k
		r.off += k
	}
	return i, nil
}

// expectStream reads len(want) bytes from r and compares them with want,
// chunk by chunk, holding neither whole.
func expectStream(t *testing.T, c net.Conn, r *bufio.Reader, want io.Reader, n int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, 64<<10)
	exp := make([]byte, 64<<10)
	for off := 0; off < n; {
		k := min(len(got), n-off)
		if _, err := io.ReadFull(r, got[:k]); err != nil {
			t.Fatalf("read at %d of %d: %v", off, n, err)
		}
		if _, err := io.ReadFull(want, exp[:k]); err != nil {
			t.Fatalf("expected stream at %d: %v", off, err)
		}
		if !bytes.Equal(got[:k], exp[:k]) {
			i := 0
			for got[i] == exp[i] {
				i++
			}
			t.Fatalf("reply differs at byte %d: got %q; want %q", off+i, got[i:min(i+40, k)], exp[i:min(i+40, k)])
		}
		off += k
	}
}

const mib = 1 << 20

// TestBigReplyPeakRSS measures the proxy's peak RSS against the bytes in
// flight: a 5 x 16 MiB Redis MGET split over three servers and a 64 MiB
// memcached value, each read by a client that reads normally, must stay
// below 2x; 400 x 1 MiB asked in one request by a client that does not read
// is bounded by max_memory with an error.
func TestBigReplyPeakRSS(t *testing.T) {
	bin := testserver.BuildCacheproxy(t)

	t.Run("RedisMGET5x16MiB", func(t *testing.T) {
		rs := []*testserver.Process{testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)}
		listen := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		conf := poolConf("", "r", listen, "redis", rs...)
		pp := runProxy(t, bin, conf, listen)
		const size = 16 * mib
		keys := spreadKeys(t, conf, 5, 2)
		// Each value is made on every server (SETRANGE pads with zeros), so
		// wherever the ring puts a key, the server has it; nothing big goes
		// through the proxy before the measurement.
		for _, r := range rs {
			d := proxytest.Dial(t, r.Addr)
			for _, k := range keys {
				d.RoundTrip(fmt.Sprintf("SETRANGE %s %d %s\r\n", k, size-len(k), k), fmt.Sprintf(":%d\r\n", size))
				d.RoundTrip(fmt.Sprintf("SETRANGE %s 0 %s\r\n", k, k), fmt.Sprintf(":%d\r\n", size))
			}
		}
		c := proxytest.Dial(t, listen)
		c.RoundTrip("PING\r\n", "+PONG\r\n")
		before := pp.peakRSS(t)
		c.Send("MGET " + strings.Join(keys, " ") + "\r\n")
		var want []io.Reader
		want = append(want, strings.NewReader("*5\r\n"))
		for _, k := range keys {
			want = append(want, strings.NewReader(fmt.Sprintf("$%d\r\n%s", size, k)),
				&patternReader{pat: "\x00", n: size - 2*len(k)}, strings.NewReader(k+"\r\n"))
		}
		n := 4 + 5*(len(fmt.Sprintf("$%d\r\n", size))+size+2)
		expectStream(t, c.C, c.R, io.MultiReader(want...), n)
		c.RoundTrip("PING\r\n", "+PONG\r\n")
		peak := pp.peakRSS(t)
		inFlight := int64(5 * size)
		t.Logf("MGET 5 x 16 MiB: peak RSS %.1f MiB (%.1f MiB before the MGET), %.2fx the %d MiB in flight",
			float64(peak)/mib, float64(before)/mib, float64(peak)/float64(inFlight), inFlight/mib)
		if peak >= 2*inFlight {
			t.Errorf("peak RSS %d bytes; want below 2x the %d bytes in flight", peak, inFlight)
		}
	})

	t.Run("Memcache64MiBValue", func(t *testing.T) {
		mc := testserver.Memcached(t, "-I", "128m", "-m", "256")
		listen := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		pp := runProxy(t, bin, poolConf("", "mc", listen, "memcache", mc), listen)
		const size = 64 * mib
		pat := "0123456789abcdefghijklmnopqrstuvwxyz"
		d := proxytest.Dial(t, mc.Addr)
		d.Send(fmt.Sprintf("set v64 0 0 %d\r\n", size))
		if _, err := io.Copy(d.C, &patternReader{pat: pat, n: size}); err != nil {
			t.Fatal(err)
		}
		d.RoundTrip("\r\n", "STORED\r\n")
		c := proxytest.Dial(t, listen)
		c.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
		before := pp.peakRSS(t)
		for i := 0; i < 2; i++ {
			c.Send("get v64\r\n")
			c.Expect(fmt.Sprintf("VALUE v64 0 %d\r\n", size))
			expectStream(t, c.C, c.R, io.MultiReader(&patternReader{pat: pat, n: size}, strings.NewReader("\r\nEND\r\n")), size+7)
		}
		peak := pp.peakRSS(t)
		t.Logf("get of a 64 MiB value (twice): peak RSS %.1f MiB (%.1f MiB before), %.2fx the 64 MiB in flight",
			float64(peak)/mib, float64(before)/mib, float64(peak)/float64(size))
		if peak >= 2*size {
			t.Errorf("peak RSS %d bytes; want below 2x the %d bytes in flight", peak, size)
		}
	})

	t.Run("Memcache400x1MiBRead", func(t *testing.T) {
		// A client that reads as fast as the server sends holds next to
		// nothing in the proxy; one slower (a loaded box, -race) holds
		// what it lags behind, up to max_memory, past which its reply is
		// cut with the error. Either way the bytes it gets are right and
		// the peak is bounded.
		mc := testserver.Memcached(t, "-I", "2m")
		listen := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		const limit = 128 * mib
		pp := runProxy(t, bin, poolConf("128MiB", "mc", listen, "memcache", mc), listen)
		val := bigValue("k", mib)
		c := proxytest.Dial(t, listen)
		c.RoundTrip(fmt.Sprintf("set k 0 0 %d\r\n%s\r\n", len(val), val), "STORED\r\n")
		before := pp.peakRSS(t)
		c.Send("get" + strings.Repeat(" k", 400) + "\r\n")
		values := 0
		for {
			l := c.Line()
			if l == "END\r\n" || l == oomReply {
				break
			}
			if l != fmt.Sprintf("VALUE k 0 %d\r\n", len(val)) {
				t.Fatalf("got %q; want a VALUE line, END or %q", l, oomReply)
			}
			expectStream(t, c.C, c.R, strings.NewReader(val+"\r\n"), len(val)+2)
			values++
		}
		peak := pp.peakRSS(t)
		t.Logf("get k x 400 (1 MiB), read: %d values, peak RSS %.1f MiB (%.1f MiB before) for a 400 MiB reply, max_memory %d MiB",
			values, float64(peak)/mib, float64(before)/mib, limit/mib)
		if peak >= 2*limit {
			t.Errorf("peak RSS %d bytes; want below 2x max_memory %d", peak, limit)
		}
	})

	t.Run("Memcache400x1MiBNotRead", func(t *testing.T) {
		mc := testserver.Memcached(t, "-I", "2m")
		listen := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		const limit = 64 * mib
		admin := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
		conf := "admin:\n  listen: " + admin + "\n" + poolConf("64MiB", "mc", listen, "memcache", mc)
		pp := runProxy(t, bin, conf, listen)
		val := bigValue("k", mib)
		c := proxytest.Dial(t, listen)
		c.RoundTrip(fmt.Sprintf("set k 0 0 %d\r\n%s\r\n", len(val), val), "STORED\r\n")
		before := pp.peakRSS(t)
		req := "get" + strings.Repeat(" k", 400) + "\r\n"
		c.Send(strings.Repeat(req, 3)) // 1.2 GB asked for; the client reads nothing yet
		// Wait until the proxy has cut the first reply and refused the
		// other two: their error replies are queued behind the first.
		deadline := time.Now().Add(proxytest.Timeout)
		for n := 0; n < 3; n = memoryRejections(t, admin, "mc") {
			if time.Now().After(deadline) {
				t.Fatalf("refused %d replies for max_memory; want 3", n)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		other := proxytest.Dial(t, listen)
		peak := pp.peakRSS(t)
		// The other client is still served.
		other.Send("get k\r\n")
		expectBytes(t, other, mcValue("k", val)+"END\r\n")
		values := readCutGet(t, c, "k", val)
		c.Expect(oomReply, oomReply)
		t.Logf("3 x (400 x 1 MiB), not read: first reply cut after %d values, peak RSS %.1f MiB (%.1f MiB before), max_memory %d MiB",
			values, float64(peak)/mib, float64(before)/mib, limit/mib)
		if peak > 2*limit {
			t.Errorf("peak RSS %d bytes; want at most 2x max_memory %d", peak, limit)
		}
	})
}

// memoryRejections reads the proxy's count of replies refused for
// max_memory from its /metrics.
func memoryRejections(t *testing.T, admin, pool string) int {
	t.Helper()
	return int(metricValue(t, admin, "cacheproxy_rejected_total", `pool="`+pool+`",reason="memory"`))
}
