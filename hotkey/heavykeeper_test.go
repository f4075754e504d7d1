package hotkey

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// zipfStream returns a shuffled stream in which key i (of n) appears
// round(total * p_i) times for Zipf(s) probabilities p_i.
func zipfStream(n int, s float64, total int, seed uint64) [][]byte {
	var norm float64
	for i := 1; i <= n; i++ {
		norm += 1 / math.Pow(float64(i), s)
	}
	var out [][]byte
	for i := 0; i < n; i++ {
		c := int(math.Round(float64(total) / math.Pow(float64(i+1), s) / norm))
		k := []byte(fmt.Sprintf("key:%d", i))
		for j := 0; j < c; j++ {
			out = append(out, k)
		}
	}
	r := rand.New(rand.NewPCG(seed, 1))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestTopKFindsTheHottestKeys(t *testing.T) {
	for _, s := range []float64{0.99, 1.2} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			d := New(Options{K: 32, Seed: 7})
			for _, k := range zipfStream(20000, s, 400000, 3) {
				d.Observe(k)
			}
			top := d.Top()
			if len(top) != 32 {
				t.Fatalf("top has %d entries; want 32", len(top))
			}
			// The 10 hottest keys are found, in order.
			for i := 0; i < 10; i++ {
				if want := fmt.Sprintf("key:%d", i); top[i].Key != want {
					t.Fatalf("top[%d] = %q (%d); want %q; top: %v", i, top[i].Key, top[i].Count, want, top[:12])
				}
			}
			// HeavyKeeper never over-counts: key 0's estimate is at most
			// its true count and within 5% of it.
			var norm float64
			for i := 1; i <= 20000; i++ {
				norm += 1 / math.Pow(float64(i), s)
			}
			want := math.Round(400000 / norm)
			if got := float64(top[0].Count); got > want || got < 0.95*want {
				t.Fatalf("key:0 count %v; want within 5%% below %v", got, want)
			}
		})
	}
}

func TestTickHalvesAndFollowsANewHotSet(t *testing.T) {
	d := New(Options{K: 8, Seed: 1, HalfLife: time.Second})
	start := time.Unix(1000, 0)
	d.Tick(start)
	for i := 0; i < 1000; i++ {
		d.Observe([]byte("old"))
	}
	if got := d.Top()[0]; got.Key != "old" || got.Count != 1000 {
		t.Fatalf("before decay: %+v; want old 1000", got)
	}
	d.Tick(start.Add(999 * time.Millisecond))
	if got := d.Top()[0].Count; got != 1000 {
		t.Fatalf("before a half-life passed: count %d; want 1000", got)
	}
	d.Tick(start.Add(time.Second))
	if got := d.Top()[0].Count; got != 500 {
		t.Fatalf("after one half-life: count %d; want 500", got)
	}
	// A new hot key overtakes the old one within a few half-lives, and the
	// old one leaves once its count reaches zero.
	now := start.Add(time.Second)
	for step := 0; step < 12; step++ {
		for i := 0; i < 200; i++ {
			d.Observe([]byte("new"))
		}
		now = now.Add(time.Second)
		d.Tick(now)
	}
	top := d.Top()
	if top[0].Key != "new" {
		t.Fatalf("after the hot set moved: top %v; want new first", top)
	}
	for _, e := range top {
		if e.Key == "old" {
			t.Fatalf("old key still in the top after 12 half-lives: %v", top)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	d := New(Options{K: 256, Seed: 1})
	stream := zipfStream(100000, 0.99, 1<<20, 9)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Observe(stream[i%len(stream)])
		i++
	}
}
