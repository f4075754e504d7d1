package proxy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The tests below send megabytes of pipelined requests to a pool whose
// max_in_flight is 4, so the proxy is paused with far more than stashAbove
// (256 KiB) of the client's input unparsed, and that input goes through
// the client's stash (stash.go): requests of random sizes fall across its
// 64 KiB chunks at every offset. Every reply must come back, in order.

// stashWorkload builds n pipelined memcache requests (sets of values of
// 1 to 3,000 bytes, each followed by a get of the key before it) and the
// exact replies memcached gives them.
func stashWorkload(prefix string, n int, rng *rand.Rand) (req, want string) {
	var rq, wt strings.Builder
	vals := map[string]string{}
	for i := range n {
		k := fmt.Sprintf("%s-%d", prefix, i%500)
		if i%2 == 0 {
			v := strings.Repeat(string(rune('a'+i%26)), 1+rng.IntN(3000))
			fmt.Fprintf(&rq, "set %s 0 0 %d\r\n%s\r\n", k, len(v), v)
			wt.WriteString("STORED\r\n")
			vals[k] = v
			continue
		}
		prev := fmt.Sprintf("%s-%d", prefix, (i-1)%500)
		fmt.Fprintf(&rq, "get %s\r\n", prev)
		fmt.Fprintf(&wt, "VALUE %s 0 %d\r\n%s\r\nEND\r\n", prev, len(vals[prev]), vals[prev])
	}
	return rq.String(), wt.String()
}

// pipelineAll writes req on a new connection to addr while reading len(want)
// bytes of replies, and compares them.
func pipelineAll(t *testing.T, addr, req, want string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, proxytest.Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * proxytest.Timeout)); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		werr <- err
	}()
	got := make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil {
		t.Fatalf("read %d of %d reply bytes: %v", n, len(want), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != want {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		lo := max(i-80, 0)
		t.Fatalf("replies differ from byte %d of %d: got %q; want %q", i, len(want), got[lo:min(i+80, len(got))], want[lo:min(i+80, len(want))])
	}
}

func TestStashedInputMemcache(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc1, mc2)
	pool.Limits.MaxInFlight = 4
	p := proxytest.Start(t, proxy.Options{}, pool)
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 3 {
		req, want := stashWorkload(fmt.Sprintf("st%d", run), 6000, rng)
		if len(req) < 4<<20 {
			t.Fatalf("workload of %d bytes; want at least 4 MiB to stash", len(req))
		}
		pipelineAll(t, pool.Listen, req, want)
	}
	// The same input, shut down after it: what is stashed when the EOF
	// arrives is carried over (halfclose.go) and answered.
	req, want := stashWorkload("sthc", 6000, rng)
	if got := halfCloseExchange(t, pool.Listen, req); got != want {
		t.Fatalf("pipelined then shutdown: got %d bytes; want %d", len(got), len(want))
	}
	waitClients(t, p, 0)
}

func TestStashedInputRedis(t *testing.T) {
	r1, r2 := testserver.Redis(t), testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r1, r2)
	pool.Limits.MaxInFlight = 4
	proxytest.Start(t, proxy.Options{}, pool)
	rng := rand.New(rand.NewPCG(3, 4))
	var req, want strings.Builder
	vals := map[string]string{}
	for i := range 9000 {
		k := fmt.Sprintf("rst-%d", (i-i%3)%300) // the key the last SET wrote
		switch i % 3 {
		case 0:
			v := strings.Repeat(string(rune('A'+i%26)), 1+rng.IntN(3000))
			fmt.Fprintf(&req, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
			want.WriteString("+OK\r\n")
			vals[k] = v
		case 1:
			fmt.Fprintf(&req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
			fmt.Fprintf(&want, "$%d\r\n%s\r\n", len(vals[k]), vals[k])
		case 2:
			// Inline, as redis-cli and nc users type them.
			fmt.Fprintf(&req, "STRLEN %s\r\n", k)
			fmt.Fprintf(&want, ":%d\r\n", len(vals[k]))
		}
	}
	if req.Len() < 4<<20 {
		t.Fatalf("workload of %d bytes; want at least 4 MiB to stash", req.Len())
	}
	pipelineAll(t, pool.Listen, req.String(), want.String())
}

// TestMcDiffStashed is the memcached differential fuzz (mcdiff_test.go)
// over one stream of megabytes: the generator's streams, mutations
// included (NULs, control bytes, bad lengths, truncated blocks), joined
// and sent at once on one connection to a memcached directly and through
// a proxy whose max_in_flight is 4, so most of the stream waits in the
// client's stash and every request and data block falls across its
// chunks somewhere. The reply bytes must be identical.
func TestMcDiffStashed(t *testing.T) {
	d := testserver.Memcached(t, "-m", "512")
	b := testserver.Memcached(t, "-m", "512")
	pool := proxytest.MemcachePool(t, "mc", b)
	pool.Timeout = 10 * time.Second
	pool.Limits.MaxInFlight = 4
	proxytest.Start(t, proxy.Options{}, pool)
	p := mcdiffPair{direct: d.Addr, proxied: pool.Listen}

	var pieces []string
	joined := 0
	for s := uint64(1000); len(pieces) == 0 || joined < 1<<20; s++ {
		next := append(pieces[:len(pieces):len(pieces)], newMcdiffGen(s).stream()...)
		stream, why := mcdiffStreamWhy(next)
		if why != "" {
			continue // as TestMcDiffFuzz skips it
		}
		pieces, joined = next, len(stream)
	}
	stream, _ := mcdiffStream(pieces)
	direct, proxied, err := p.compareWithin(stream, "stash", 2*time.Minute)
	if err != nil {
		t.Fatalf("%d-byte stream: %v", len(stream), err)
	}
	if direct != proxied {
		i := 0
		for i < len(direct) && i < len(proxied) && direct[i] == proxied[i] {
			i++
		}
		lo := max(i-120, 0)
		t.Fatalf("%d-byte stream: replies differ from byte %d (direct %d bytes, proxied %d):\n direct:  %q\n proxied: %q",
			len(stream), i, len(direct), len(proxied), direct[lo:min(i+120, len(direct))], proxied[lo:min(i+120, len(proxied))])
	}
	if strings.HasSuffix(direct, "<EOF>") && len(direct) < 256<<10 {
		t.Fatalf("memcached closed the connection after %d reply bytes: the stream compared too little", len(direct))
	}
	t.Logf("%d-byte stream, %d reply bytes identical", len(stream), len(direct))
}
