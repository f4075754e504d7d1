package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// uniformKeys is the key count of BenchmarkHotKeysUniform: uniform draws
// over it stay far below any promotion threshold, so the hot-key tier only
// counts (its steady state on a workload without hot keys).
const uniformKeys = 10000

// BenchmarkHotKeysUniform is the hot-key tier's cost per request on a
// uniform workload (issue 13: 0 allocations per request in steady state):
// gets over 10,000 stored keys drawn uniformly, through one memcached pool
// with hot_keys off and one with them on, at depth 1 and 16. Allocations
// are the whole process's per request (the client allocates none), so they
// bound the proxy's; the time per request is reported, not asserted.
// cmd/benchrun's hotkeys-cost rounds measure throughput and CPU with 32
// connections.
func BenchmarkHotKeysUniform(b *testing.B) {
	for _, on := range []bool{false, true} {
		for _, depth := range []int{1, 16} {
			name := fmt.Sprintf("off/P%d", depth)
			if on {
				name = fmt.Sprintf("on/P%d", depth)
			}
			b.Run(name, func(b *testing.B) { benchUniform(b, on, depth) })
		}
	}
}

func benchUniform(b *testing.B, on bool, depth int) {
	mc := testserver.Memcached(b)
	pool := proxytest.MemcachePool(b, "mc", mc)
	pool.HotKeys.Enabled = on
	proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
	c, err := net.Dial("tcp", mc.Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var sets []byte
	for k := range uniformKeys {
		sets = append(sets, "set u"...)
		sets = strconv.AppendInt(sets, int64(k), 10)
		sets = append(sets, " 0 0 32 noreply\r\n"...)
		sets = append(sets, bytes.Repeat([]byte("v"), 32)...)
		sets = append(sets, "\r\n"...)
	}
	sets = append(sets, "mn\r\n"...)
	if _, err := c.Write(sets); err != nil {
		b.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "MN\r\n" {
		b.Fatalf("storing the keys: %q, %v", line, err)
	}
	// 4096 batches of depth gets, keys drawn uniformly, built beforehand.
	rng := rand.New(rand.NewPCG(1, 2))
	batches := make([][]byte, 4096)
	for i := range batches {
		for range depth {
			batches[i] = append(batches[i], "get u"...)
			batches[i] = strconv.AppendInt(batches[i], int64(rng.IntN(uniformKeys)), 10)
			batches[i] = append(batches[i], "\r\n"...)
		}
	}
	pc, err := net.Dial("tcp", pool.Listen)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	r := bufio.NewReaderSize(pc, 64<<10)
	round := func(batch []byte) {
		if _, err := pc.Write(batch); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < depth; {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if bytes.Equal(line, []byte("END\r\n")) {
				got++
			}
		}
	}
	// Warm up: every batch once, so connections and buffers are grown.
	for _, batch := range batches {
		round(batch)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, done := 0, 0; done < b.N; i, done = i+1, done+depth {
		round(batches[i%len(batches)])
	}
}
