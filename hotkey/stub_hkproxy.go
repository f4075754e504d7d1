package hotkey

// THROWAWAY STUB (branch hkproxy only): the contract's API, so proxy/ builds
// until hkcore's package is merged. Deleted at that merge.

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Settings are a pool's hot-key settings.
type Settings struct {
	TTL       time.Duration
	CacheSize int64
	MinRate   float64
	Theta     float64
	MaxValue  int
	Servers   int
}

// HotKey is one hot key.
type HotKey struct {
	Key       string
	Rate      float64
	ReadShare float64
	Cached    bool
}

// TrackerStats are a tracker's counters.
type TrackerStats struct{ Promotions, Demotions, Bytes int64 }

// Gen is a fill token.
type Gen uint64

// Tracker is one pool's hot-key state.
type Tracker struct {
	mu     sync.Mutex
	s      Settings
	counts map[string][2]int64
	last   time.Time
	hot    atomic.Pointer[map[string]HotKey]
	cache  *Cache
	promos atomic.Int64
	demos  atomic.Int64
}

// NewTracker returns a tracker.
func NewTracker(s Settings) *Tracker {
	if s.TTL <= 0 {
		s.TTL = time.Second
	}
	if s.MinRate <= 0 {
		s.MinRate = 100
	}
	if s.MaxValue <= 0 {
		s.MaxValue = 64 << 10
	}
	t := &Tracker{s: s, counts: map[string][2]int64{}, cache: &Cache{m: map[string]entry{}, ttl: s.TTL}}
	m := map[string]HotKey{}
	t.hot.Store(&m)
	return t
}

// Recorder is a per-loop recorder.
type Recorder struct {
	t *Tracker
	c map[string][2]int64
}

// Recorder returns a recorder.
func (t *Tracker) Recorder() *Recorder { return &Recorder{t: t, c: map[string][2]int64{}} }

// Observe counts one op.
func (r *Recorder) Observe(key []byte, write bool) {
	v := r.c[string(key)]
	if write {
		v[1]++
	} else {
		v[0]++
	}
	r.c[string(key)] = v
}

// Publish hands counts to the tracker.
func (r *Recorder) Publish(time.Time) {
	r.t.mu.Lock()
	for k, v := range r.c {
		w := r.t.counts[k]
		w[0] += v[0]
		w[1] += v[1]
		r.t.counts[k] = w
	}
	r.t.mu.Unlock()
	clear(r.c)
}

// Merge promotes and demotes.
func (t *Tracker) Merge(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last.IsZero() {
		t.last = now
		return
	}
	d := now.Sub(t.last).Seconds()
	if d < 0.05 {
		return
	}
	t.last = now
	old := *t.hot.Load()
	m := map[string]HotKey{}
	for k, v := range t.counts {
		rate := float64(v[0]+v[1]) / d
		if float64(v[0])/d >= t.s.MinRate && v[0]*10 >= 9*(v[0]+v[1]) {
			m[k] = HotKey{Key: k, Rate: rate, ReadShare: float64(v[0]) / float64(v[0]+v[1])}
			if _, ok := old[k]; !ok {
				t.promos.Add(1)
			}
		}
	}
	for k := range old {
		if _, ok := m[k]; !ok {
			t.demos.Add(1)
			t.cache.Invalidate([]byte(k))
		}
	}
	clear(t.counts)
	t.hot.Store(&m)
}

// Hot reports whether key is promoted.
func (t *Tracker) Hot(key []byte) bool { _, ok := (*t.hot.Load())[string(key)]; return ok }

// Cache is the near cache.
func (t *Tracker) Cache() *Cache { return t.cache }

// Snapshot lists hot keys.
func (t *Tracker) Snapshot() []HotKey {
	var out []HotKey
	for _, h := range *t.hot.Load() {
		_, h.Cached = t.cache.Get([]byte(h.Key))
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rate > out[j].Rate })
	return out
}

// Stats returns counters.
func (t *Tracker) Stats() TrackerStats {
	t.cache.mu.Lock()
	b := t.cache.bytes
	t.cache.mu.Unlock()
	return TrackerStats{Promotions: t.promos.Load(), Demotions: t.demos.Load(), Bytes: b}
}

// Update applies settings.
func (t *Tracker) Update(s Settings) {}

type entry struct {
	v   []byte
	exp time.Time
}

// Cache is a near cache.
type Cache struct {
	mu    sync.Mutex
	m     map[string]entry
	gens  [256]uint64
	all   uint64
	ttl   time.Duration
	bytes int64
}

func stripe(key []byte) int {
	h := uint32(2166136261)
	for _, c := range key {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h & 255)
}

// Get returns a cached value.
func (c *Cache) Get(key []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[string(key)]
	if !ok || time.Now().After(e.exp) {
		return nil, false
	}
	return e.v, true
}

// Begin returns a fill token.
func (c *Cache) Begin(key []byte) Gen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Gen(c.gens[stripe(key)] + c.all<<32)
}

// Fill stores val unless invalidated since Begin.
func (c *Cache) Fill(key []byte, gen Gen, val []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if Gen(c.gens[stripe(key)]+c.all<<32) != gen {
		return false
	}
	if old, ok := c.m[string(key)]; ok {
		c.bytes -= int64(len(key) + len(old.v))
	}
	c.m[string(key)] = entry{v: append([]byte(nil), val...), exp: time.Now().Add(c.ttl)}
	c.bytes += int64(len(key) + len(val))
	return true
}

// Invalidate drops key.
func (c *Cache) Invalidate(key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[stripe(key)]++
	if old, ok := c.m[string(key)]; ok {
		c.bytes -= int64(len(key) + len(old.v))
		delete(c.m, string(key))
	}
}

// InvalidateAll drops everything.
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all++
	clear(c.m)
	c.bytes = 0
}

// Expiring reports whether key is near expiry.
func (c *Cache) Expiring(key []byte) bool { return false }
