package hotkey

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// cpuLoop runs f under b.Loop on a locked thread and reports the thread's
// CPU time per op as cpu-ns/op (Linux), a steadier figure than ns/op on a
// shared machine.
func cpuLoop(b *testing.B, f func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start, ok := threadCPU()
	i := 0
	for b.Loop() {
		f(i)
		i++
	}
	if end, ok2 := threadCPU(); ok && ok2 && i > 0 {
		b.ReportMetric(float64(end-start)/float64(i), "cpu-ns/op")
	}
}

// uniformStream returns total keys drawn round-robin from n distinct keys,
// shuffled by a fixed stride.
func uniformStream(n, total int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%d", i))
	}
	out := make([][]byte, total)
	for i := range out {
		out[i] = keys[(i*7919)%n]
	}
	return out
}

// packedStream returns n distinct keys in order, their bytes packed one
// after another in a single array.
func packedStream(n int) [][]byte {
	var buf []byte
	var ends []int
	for i := range n {
		buf = fmt.Appendf(buf, "key:%d", i)
		ends = append(ends, len(buf))
	}
	out := make([][]byte, n)
	start := 0
	for i, end := range ends {
		out[i] = buf[start:end:end]
		start = end
	}
	return out
}

// benchObserve runs Recorder.Observe over stream, publishing every 100k
// observations (the loop's 100 ms tick at 1M requests/s), one write in 20.
func benchObserve(b *testing.B, stream [][]byte) {
	t := NewTracker(Settings{Servers: 8})
	r := t.Recorder()
	now := time.Unix(1000, 0)
	r.Publish(now)
	// Warm up: the top-K fills, as on a loop that has run a while.
	for i := range 4 * len(stream) {
		r.Observe(stream[i%len(stream)], i%20 == 0)
	}
	cpuLoop(b, func(i int) {
		r.Observe(stream[i%len(stream)], i%20 == 0)
		if i%100000 == 99999 {
			now = now.Add(100 * time.Millisecond)
			r.Publish(now)
		}
	})
}

func BenchmarkRecorderObserve(b *testing.B) {
	b.Run("zipf1.1", func(b *testing.B) { benchObserve(b, zipfStream(100000, 1.1, 1<<20, 9)) })
	b.Run("uniform", func(b *testing.B) { benchObserve(b, uniformStream(100000, 1<<20)) })
	// The same keys in order, packed in one array: the key bytes are in
	// the CPU cache, as a key just parsed from a read buffer is, so this
	// is Observe's own cost without the benchmark's cache misses.
	b.Run("uniform-cached", func(b *testing.B) { benchObserve(b, packedStream(100000)) })
}

func BenchmarkHot(b *testing.B) {
	t := NewTracker(Settings{})
	hot := map[string]struct{}{}
	for i := range 100 {
		hot[fmt.Sprintf("key:%d", i)] = struct{}{}
	}
	t.hot.Store(&hot)
	stream := uniformStream(200, 1<<16)
	cpuLoop(b, func(i int) { t.Hot(stream[i%len(stream)]) }) // half hot
}

func BenchmarkCacheGet(b *testing.B) {
	c := NewTracker(Settings{TTL: time.Hour}).Cache()
	stream := uniformStream(200, 1<<16)
	val := make([]byte, 100)
	for i := range 100 {
		k := []byte(fmt.Sprintf("key:%d", i))
		c.Fill(k, c.Begin(k), val)
	}
	cpuLoop(b, func(i int) { c.Get(stream[i%len(stream)]) }) // half hits
}
