// Package hotkey finds a pool's hot keys and keeps their replies in a near
// cache, the hot-key shield of the design notes (hotkey.md, issue 13).
//
// Detection: each event loop owns a Recorder, a HeavyKeeper top-K (Yang et
// al., USENIX ATC 2018; Detector here) with exponential decay in fixed
// arrays, that counts reads and writes without locks or allocation. The
// loop Publishes a copy of its top-K about every 100 ms; one goroutine
// Merges the copies into the Tracker's proxy-wide rate table (decayed with a
// 100 ms half-life), promotes keys whose read rate is at least
// max(Theta*pool rate/Servers, MinRate) with at least 90% reads, and demotes
// them with hysteresis. Hot is a lock-free lookup in the immutable promoted
// set.
//
// Serving: the Cache (otter v2, bounded in bytes, per-entry TTL) holds the
// exact reply bytes of hot keys. Begin/Fill generation tokens drop fills
// that an invalidation overtook.
//
// Time is passed in (Publish, Merge, Tick), so tests are deterministic.
package hotkey

import (
	"container/heap"
	"math"
	"time"
)

// Entry is one key of the top-K with its estimated count.
type Entry struct {
	Key   string
	Count uint32
	// Ops and Writes count the requests (and the writes among them) seen
	// for Key while it was in the top-K, since the last ResetOps; a request
	// whose estimate was below the top's smallest count is not counted.
	Ops, Writes uint32
}

// Options configures a Detector. Zero values take the documented defaults.
type Options struct {
	// K is how many keys the top-K keeps. If zero, 64.
	K int
	// Width is buckets per row; if zero, 8*K rounded up to a power of two.
	Width int
	// Depth is the number of rows; if zero, 4.
	Depth int
	// Decay is the base of HeavyKeeper's probabilistic decay (b > 1): a
	// bucket held by another key with count c is decremented with
	// probability b^-c. If zero, 1.08, the paper's value.
	Decay float64
	// HalfLife is how often every count is halved, so the detector follows a
	// shifting hot set. If zero, 1s.
	HalfLife time.Duration
	// Seed seeds the detector's hash and random number streams.
	Seed uint64
}

type bucket struct {
	fp    uint32 // key fingerprint; 0 with count 0 means empty
	count uint32
}

// Detector is a HeavyKeeper top-K. The zero value is not usable; use New.
type Detector struct {
	k        int
	width    uint64
	rows     [][]bucket
	decay    []uint32 // decay[c]: probability b^-c scaled to 2^32, for c < len
	rng      uint64
	seed     uint64
	halfLife time.Duration
	last     time.Time

	top   topHeap
	index map[string]int // key -> position in top
}

// New returns a Detector.
func New(o Options) *Detector {
	if o.K <= 0 {
		o.K = 64
	}
	if o.Depth <= 0 {
		o.Depth = 4
	}
	if o.Width <= 0 {
		o.Width = 8 * o.K
	}
	w := 1
	for w < o.Width {
		w <<= 1
	}
	if o.Decay <= 1 {
		o.Decay = 1.08
	}
	if o.HalfLife <= 0 {
		o.HalfLife = time.Second
	}
	d := &Detector{k: o.K, width: uint64(w), rng: o.Seed | 1, seed: o.Seed, halfLife: o.HalfLife,
		index: make(map[string]int, o.K)}
	for i := 0; i < o.Depth; i++ {
		d.rows = append(d.rows, make([]bucket, w))
	}
	// Precompute b^-c; past the table the probability is below 2^-32.
	for c := 0; ; c++ {
		p := math.Pow(o.Decay, -float64(c))
		if p*(1<<32) < 1 {
			break
		}
		d.decay = append(d.decay, uint32(min(p*(1<<32), math.MaxUint32)))
	}
	d.top.d = d
	return d
}

// hash64 is FNV-1a 64 with a seed and a splitmix64 finaliser.
func hash64(key []byte, seed uint64) uint64 {
	h := uint64(0xcbf29ce484222325) ^ seed
	for _, c := range key {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

func (d *Detector) rand32() uint32 {
	// xorshift64*
	d.rng ^= d.rng >> 12
	d.rng ^= d.rng << 25
	d.rng ^= d.rng >> 27
	return uint32((d.rng * 2685821657736338717) >> 32)
}

// Observe counts one request for key. It does not allocate unless key
// enters the top-K.
func (d *Detector) Observe(key []byte) { d.ObserveOp(key, false) }

// ObserveOp counts one request for key, a write if write is set; while key
// is in the top-K its Entry's Ops (and Writes) count it. It does not
// allocate unless key enters the top-K.
func (d *Detector) ObserveOp(key []byte, write bool) {
	h := hash64(key, d.seed)
	fp := uint32(h>>32) | 1 // never 0: 0 marks an empty bucket
	var est uint32
	for i, row := range d.rows {
		// Row i's index from the low bits, remixed per row.
		idx := (uint64(uint32(h)) + uint64(i)*(h>>32|1)) & (d.width - 1)
		b := &row[idx]
		switch {
		case b.count == 0:
			b.fp, b.count = fp, 1
		case b.fp == fp:
			b.count++
		default:
			if int(b.count) < len(d.decay) && d.rand32() < d.decay[b.count] {
				b.count--
				if b.count == 0 {
					b.fp, b.count = fp, 1
				}
			}
		}
		if b.fp == fp && b.count > est {
			est = b.count
		}
	}
	d.offer(key, est, write)
}

// offer updates key's place in the top-K with its estimate.
func (d *Detector) offer(key []byte, est uint32, write bool) {
	w := uint32(0)
	if write {
		w = 1
	}
	// Fast path for the many cold keys: with the top full, an estimate
	// below its smallest count neither enters it nor raises a count. (A top
	// key whose estimate fell that low is not counted in Ops this time.)
	if len(d.top.e) == d.k && est < d.top.e[0].Count {
		return
	}
	if i, ok := d.index[string(key)]; ok {
		d.top.e[i].Ops++
		d.top.e[i].Writes += w
		if est > d.top.e[i].Count {
			d.top.e[i].Count = est
			heap.Fix(&d.top, i)
		}
		return
	}
	if len(d.top.e) < d.k {
		heap.Push(&d.top, Entry{Key: string(key), Count: est, Ops: 1, Writes: w})
		return
	}
	if est > d.top.e[0].Count {
		delete(d.index, d.top.e[0].Key)
		d.top.e[0] = Entry{Key: string(key), Count: est, Ops: 1, Writes: w}
		d.index[d.top.e[0].Key] = 0
		heap.Fix(&d.top, 0)
	}
}

// Tick halves every count once per HalfLife passed since the last halving.
// The first call only records the time.
func (d *Detector) Tick(now time.Time) {
	if d.last.IsZero() {
		d.last = now
		return
	}
	for !now.Before(d.last.Add(d.halfLife)) {
		d.halve()
		d.last = d.last.Add(d.halfLife)
	}
}

func (d *Detector) halve() {
	for _, row := range d.rows {
		for i := range row {
			row[i].count >>= 1
		}
	}
	for i := range d.top.e {
		d.top.e[i].Count >>= 1
	}
	// Keys whose count fell to 0 leave the top-K.
	kept := d.top.e[:0]
	clear(d.index)
	for _, e := range d.top.e {
		if e.Count > 0 {
			d.index[e.Key] = len(kept)
			kept = append(kept, e)
		}
	}
	d.top.e = kept
	heap.Init(&d.top)
}

// ResetOps zeroes every top entry's Ops and Writes (a new counting window).
func (d *Detector) ResetOps() {
	for i := range d.top.e {
		d.top.e[i].Ops, d.top.e[i].Writes = 0, 0
	}
}

// AppendTop appends the top-K, in no particular order, to dst.
func (d *Detector) AppendTop(dst []Entry) []Entry { return append(dst, d.top.e...) }

// Top returns the top-K, hottest first.
func (d *Detector) Top() []Entry {
	out := append([]Entry(nil), d.top.e...)
	for i := 1; i < len(out); i++ { // insertion sort: K is small
		for j := i; j > 0 && (out[j].Count > out[j-1].Count ||
			out[j].Count == out[j-1].Count && out[j].Key < out[j-1].Key); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// topHeap is a min-heap of entries by count, keeping Detector.index in step.
type topHeap struct {
	d *Detector
	e []Entry
}

func (h *topHeap) Len() int           { return len(h.e) }
func (h *topHeap) Less(i, j int) bool { return h.e[i].Count < h.e[j].Count }
func (h *topHeap) Swap(i, j int) {
	h.e[i], h.e[j] = h.e[j], h.e[i]
	h.d.index[h.e[i].Key] = i
	h.d.index[h.e[j].Key] = j
}
func (h *topHeap) Push(x any) {
	e := x.(Entry)
	h.d.index[e.Key] = len(h.e)
	h.e = append(h.e, e)
}
func (h *topHeap) Pop() any {
	e := h.e[len(h.e)-1]
	h.e = h.e[:len(h.e)-1]
	delete(h.d.index, e.Key)
	return e
}
