package hotkey

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Settings' zero values.
const (
	DefaultTTL       = time.Second
	DefaultCacheSize = 64 << 20
	DefaultMinRate   = 100
	DefaultTheta     = 0.01
	DefaultMaxValue  = 64 << 10
)

// Tuning of detection; see docs/hotkeys.md.
const (
	// minReadShare is the share of a key's operations that must be reads
	// for it to be promoted (and to stay promoted).
	minReadShare = 0.9
	// rateHalfLife is the half-life of the rate table's exponential
	// decay: with merges every 100 ms a new key reaches half its rate
	// after one merge and three quarters after two.
	rateHalfLife = 100 * time.Millisecond
	// staleAfter is how old a recorder's published top may be and still
	// count (a loop that stopped publishing stops counting).
	staleAfter = time.Second
	// demoteWindows is how many merges in a row a promoted key's read rate
	// must stay below half the promotion rate before it is demoted.
	demoteWindows = 2
	// forgetRate is the rate (ops/s) below which an unpromoted key is
	// dropped from the rate table.
	forgetRate = 0.5
	// recorderDepth is the rows of each recorder's HeavyKeeper: two rows
	// of 8*K buckets find the few hot keys the shield needs at about half
	// the cost of four.
	recorderDepth = 2
)

// Settings are a pool's hot-key settings (from config hot_keys; zero values
// = documented defaults).
type Settings struct {
	TTL       time.Duration // longest a cached reply is served; default 1s
	CacheSize int64         // bytes bound of the pool's near cache; default 64 MiB
	MinRate   float64       // reads/s below which no key is promoted; default 100
	Theta     float64       // share of the pool's request rate (divided by servers) to promote; default 0.01
	MaxValue  int           // largest reply cached; default 64 KiB
	Servers   int           // servers in the pool (for theta*rate/n and K = 4*n*ln n clamped [64,1024]); default 1
}

// withDefaults returns s with its zero (or negative) values replaced by the
// defaults.
func (s Settings) withDefaults() Settings {
	if s.TTL <= 0 {
		s.TTL = DefaultTTL
	}
	if s.CacheSize <= 0 {
		s.CacheSize = DefaultCacheSize
	}
	if s.MinRate <= 0 {
		s.MinRate = DefaultMinRate
	}
	if s.Theta <= 0 {
		s.Theta = DefaultTheta
	}
	if s.MaxValue <= 0 {
		s.MaxValue = DefaultMaxValue
	}
	if s.Servers <= 0 {
		s.Servers = 1
	}
	return s
}

// topK is the size of each recorder's top-K for n servers: 4*n*ln(n),
// clamped to [64, 1024].
func topK(n int) int {
	k := int(math.Ceil(4 * float64(n) * math.Log(float64(n))))
	return min(max(k, 64), 1024)
}

// HotKey is one promoted key in a Snapshot.
type HotKey struct {
	Key       string
	Rate      float64 // reads+writes per second, proxy-wide, decayed estimate
	ReadShare float64 // reads / (reads+writes), 0..1
	Cached    bool    // the near cache holds the key now
}

// TrackerStats are a Tracker's counters.
type TrackerStats struct {
	Promotions uint64 // keys promoted, monotonic
	Demotions  uint64 // keys demoted, monotonic
	Bytes      int64  // near cache size now (weighted bytes)
	Recorders  int    // recorders registered now (one per loop that counts the pool)
}

// keyRate is one key's row in the rate table.
type keyRate struct {
	rate, writeRate float64 // decayed ops/s and writes/s
	promoted        bool
	below           int // merges in a row below half the promotion rate
}

// Tracker is one pool's hot-key state, shared by all event loops. Safe for
// concurrent use: Observe runs on the loops' Recorders without locks, Merge
// on one goroutine, Hot and Cache from anywhere.
type Tracker struct {
	cache *Cache

	hot  atomic.Pointer[map[string]struct{}] // promoted set, immutable
	snap atomic.Pointer[[]HotKey]            // promoted keys, hottest first, immutable
	k    atomic.Int64                        // top-K size recorders should use

	promotions, demotions atomic.Uint64

	recMu     sync.Mutex // guards recorders and recSeq (Recorder, Close, and Merge's copy)
	recorders []*Recorder
	recSeq    uint64 // recorders ever made: each gets its own seed

	mu        sync.Mutex // guards the fields below (Merge, Update)
	settings  Settings
	table     map[string]*keyRate
	poolRate  float64
	lastMerge time.Time
	halfLife  time.Duration
}

// NewTracker returns a pool's Tracker with settings s (zero values take the
// defaults).
func NewTracker(s Settings) *Tracker {
	s = s.withDefaults()
	t := &Tracker{
		cache:    newCache(s, nil),
		settings: s,
		table:    make(map[string]*keyRate),
		halfLife: rateHalfLife,
	}
	t.k.Store(int64(topK(s.Servers)))
	empty := map[string]struct{}{}
	t.hot.Store(&empty)
	var none []HotKey
	t.snap.Store(&none)
	return t
}

// Recorder returns a new per-loop recorder (owned by one goroutine, no
// locks). Each event loop takes one and keeps it for the Tracker's life.
func (t *Tracker) Recorder() *Recorder {
	k := int(t.k.Load())
	t.recMu.Lock()
	defer t.recMu.Unlock()
	seed := t.recSeq*0x9e3779b97f4a7c15 + 1
	t.recSeq++
	r := &Recorder{t: t, k: k, d: New(Options{K: k, Depth: recorderDepth, Seed: seed})}
	t.recorders = append(t.recorders, r)
	return r
}

// Close unregisters r from its tracker: its counts stop being merged. The
// loop that owns r calls it when it stops using r (hot keys turned off by a
// reload, or a new tracker); r must not be used afterwards.
func (r *Recorder) Close() {
	t := r.t
	t.recMu.Lock()
	defer t.recMu.Unlock()
	if i := slices.Index(t.recorders, r); i >= 0 {
		t.recorders = slices.Delete(t.recorders, i, i+1)
	}
}

// published is a recorder's view of one window, immutable once stored.
type published struct {
	at       time.Time
	poolRate float64 // all requests the recorder saw, per second
	top      []Entry // Ops and Writes counted over the window
	dt       float64 // window length, seconds
}

// Recorder counts one event loop's requests. It is owned by one goroutine
// (its loop); Observe and Publish take no locks.
type Recorder struct {
	t    *Tracker
	d    *Detector
	k    int
	ops  uint64
	last time.Time
	pub  atomic.Pointer[published]
}

// Observe counts one read (write=false) or write of key. No allocation in
// steady state (only when a key enters the recorder's top-K).
func (r *Recorder) Observe(key []byte, write bool) {
	r.ops++
	r.d.ObserveOp(key, write)
}

// Publish hands the recorder's current top-K and counts to the tracker; the
// loop calls it from its periodic tick (about every 100 ms). It is cheap
// (one copy of the top-K) and never blocks on other loops. The first call
// only starts the window.
func (r *Recorder) Publish(now time.Time) {
	if !r.last.IsZero() && !now.After(r.last) {
		return // no time passed: keep counting into this window
	}
	r.d.Tick(now)
	if !r.last.IsZero() {
		dt := now.Sub(r.last).Seconds()
		p := &published{at: now, dt: dt, poolRate: float64(r.ops) / dt,
			top: r.d.AppendTop(make([]Entry, 0, len(r.d.top.e)))}
		r.pub.Store(p)
	}
	r.ops = 0
	r.d.ResetOps()
	r.last = now
	// A reload that changed the pool's size changes K: start over.
	if k := int(r.t.k.Load()); k != r.k {
		r.k = k
		r.d = New(Options{K: k, Depth: recorderDepth, Seed: r.d.seed})
	}
}

// Merge folds the recorders' published tops into the proxy-wide rate table,
// decays, and promotes / demotes (hysteresis: demote below half the
// promotion rate for two windows in a row, a key in no fresh top-K counting
// as zero reads in the window, or reads < 90% of ops). One goroutine calls it about every 100 ms. Demoted keys are dropped
// from the near cache (their memory released).
func (t *Tracker) Merge(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.settings

	// The instantaneous rates: the sum of every recorder's latest window.
	t.recMu.Lock()
	recorders := slices.Clone(t.recorders)
	t.recMu.Unlock()
	inst := make(map[string]*keyRate)
	var poolInst float64
	for _, r := range recorders {
		p := r.pub.Load()
		if p == nil || now.Sub(p.at) > staleAfter {
			continue
		}
		poolInst += p.poolRate
		for _, e := range p.top {
			kr := inst[e.Key]
			if kr == nil {
				kr = &keyRate{}
				inst[e.Key] = kr
			}
			kr.rate += float64(e.Ops) / p.dt
			kr.writeRate += float64(e.Writes) / p.dt
		}
	}

	// Exponential decay: weight w for the new window, 1-w for the past.
	w := 1.0
	if !t.lastMerge.IsZero() {
		dt := now.Sub(t.lastMerge)
		if dt <= 0 {
			return
		}
		w = 1 - math.Exp2(-float64(dt)/float64(t.halfLife))
	}
	t.lastMerge = now
	t.poolRate = t.poolRate*(1-w) + poolInst*w
	threshold := max(s.Theta*t.poolRate/float64(s.Servers), s.MinRate)

	for key := range inst {
		if _, ok := t.table[key]; !ok {
			t.table[key] = &keyRate{}
		}
	}
	changed := false
	var demoted []string
	for key, kr := range t.table {
		in := inst[key]
		var rate, writeRate float64
		if in != nil {
			rate, writeRate = in.rate, in.writeRate
		}
		kr.rate = kr.rate*(1-w) + rate*w
		kr.writeRate = kr.writeRate*(1-w) + writeRate*w
		readRate := kr.rate - kr.writeRate
		readShare := 0.0
		if kr.rate > 0 {
			readShare = readRate / kr.rate
		}
		switch {
		case !kr.promoted && in != nil && readRate >= threshold && readShare >= minReadShare:
			kr.promoted, kr.below = true, 0
			changed = true
			t.promotions.Add(1)
		case kr.promoted:
			if readRate < threshold/2 {
				kr.below++
			} else {
				kr.below = 0
			}
			// A key in no fresh top decays like any other (its window
			// counts as zero reads), so a pause in its traffic or in a
			// loop's publishing demotes it only through the hysteresis.
			if readShare < minReadShare || kr.below >= demoteWindows {
				kr.promoted = false
				changed = true
				demoted = append(demoted, key)
				t.demotions.Add(1)
			}
		}
		if !kr.promoted && (in == nil || kr.rate < forgetRate) {
			delete(t.table, key)
		}
	}

	snap := make([]HotKey, 0, len(t.table))
	for key, kr := range t.table {
		if kr.promoted {
			h := HotKey{Key: key, Rate: kr.rate}
			if kr.rate > 0 {
				h.ReadShare = (kr.rate - kr.writeRate) / kr.rate
			}
			snap = append(snap, h)
		}
	}
	slices.SortFunc(snap, func(a, b HotKey) int {
		switch {
		case a.Rate > b.Rate:
			return -1
		case a.Rate < b.Rate:
			return 1
		}
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	if changed {
		hot := make(map[string]struct{}, len(snap))
		for _, h := range snap {
			hot[h.Key] = struct{}{}
		}
		t.hot.Store(&hot)
	}
	t.snap.Store(&snap)
	// The key is no longer Hot: drop its entry (and any fill in flight).
	for _, key := range demoted {
		t.cache.invalidateString(key)
	}
	if len(demoted) > 0 {
		// Settle otter's accounting now, so Bytes shows the release.
		t.cache.c.CleanUp()
	}
}

// Hot reports whether key is promoted now (lock-free; no allocation).
func (t *Tracker) Hot(key []byte) bool {
	_, ok := (*t.hot.Load())[string(key)]
	return ok
}

// Cache is the pool's near cache.
func (t *Tracker) Cache() *Cache { return t.cache }

// Snapshot lists the hot (promoted) keys, hottest first, as of the last
// Merge: key, rate (reads+writes per second), reads share, cached (the near
// cache holds it now). The slice is the caller's.
func (t *Tracker) Snapshot() []HotKey {
	out := slices.Clone(*t.snap.Load())
	for i := range out {
		out[i].Cached = t.cache.has(out[i].Key)
	}
	return out
}

// Stats returns counters: Promotions, Demotions (monotonic), Bytes (near
// cache size now), Recorders (registered now).
func (t *Tracker) Stats() TrackerStats {
	t.recMu.Lock()
	recorders := len(t.recorders)
	t.recMu.Unlock()
	return TrackerStats{
		Promotions: t.promotions.Load(),
		Demotions:  t.demotions.Load(),
		Bytes:      t.cache.Bytes(),
		Recorders:  recorders,
	}
}

// Update applies new Settings (reload); keeps what it can: the rate table,
// the promoted set and the cached entries stay (a smaller CacheSize evicts at
// once, a new TTL applies to later fills); a new Servers changes each
// recorder's K at its next Publish, which starts its counts over.
func (t *Tracker) Update(s Settings) {
	s = s.withDefaults()
	t.mu.Lock()
	t.settings = s
	t.mu.Unlock()
	t.k.Store(int64(topK(s.Servers)))
	t.cache.update(s)
}
