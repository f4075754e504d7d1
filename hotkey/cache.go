package hotkey

import (
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// entryOverhead is the weight charged per entry on top of its key and
// value: otter's node (key and value headers, expiry and policy links), its
// hash table slot and allocation rounding. Measured (Go heap after 100k
// fills, 12-byte keys): 167, 263 and 1175 bytes per entry for 16, 100 and
// 1000-byte values, i.e. about 140-160 bytes over key and value.
const entryOverhead = 160

// genStripes is the number of generation counters (a power of two).
const genStripes = 1024

// Gen is a fill token from Cache.Begin.
type Gen uint64

// cached is one near-cache entry: the exact reply bytes and the TTL it was
// filled with.
type cached struct {
	val   []byte
	ttl   time.Duration
	epoch uint64 // Cache.epoch when filled
}

// Cache is a pool's near cache: exact reply bytes of hot keys, bounded in
// bytes (weight = len(key)+len(val)+overhead), each entry living at most its
// TTL from its fill. Safe for concurrent use.
//
// Fills race with invalidations: a reader takes a token with Begin before it
// sends the backend read, and Fill stores the reply only if no Invalidate of
// the key (or InvalidateAll) came in between. Tokens are generation counters
// striped by key hash, so an invalidation of another key in the same stripe
// may drop a fill too (only a lost fill, never a stale value).
//
// A write through the proxy is in flight from WriteBegin (before it is
// sent) to WriteEnd (its reply came, or it failed): meanwhile its key's
// stripe is neither served nor filled, so a client that pipelines a read
// behind its own write reads the server (after the write), and a read by
// anyone that reached the server before the write cannot fill. A flush in
// flight (FlushBegin..FlushEnd) does the same for every key, and a delayed
// flush (FlushAt) empties the cache when its time comes.
type Cache struct {
	c        *otter.Cache[string, cached]
	gens     [genStripes]atomic.Uint64
	writing  [genStripes]atomic.Int32 // writes in flight, by stripe
	flushing atomic.Int32             // flushes in flight
	closedTo atomic.Int64             // a delayed flush: nothing served or filled before (unix ns); 0: none
	epoch    atomic.Uint64            // InvalidateAll calls; older entries are misses
	ttl      atomic.Int64             // time.Duration of later fills
	maxValue atomic.Int64
}

// newCache returns a Cache for settings s (defaults applied); clock nil is
// the wall clock.
func newCache(s Settings, clock otter.Clock) *Cache {
	c := &Cache{}
	c.ttl.Store(int64(s.TTL))
	c.maxValue.Store(int64(s.MaxValue))
	c.c = otter.Must(&otter.Options[string, cached]{
		MaximumWeight: uint64(s.CacheSize),
		Weigher: func(key string, v cached) uint32 {
			return uint32(len(key) + len(v.val) + entryOverhead)
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, cached]) time.Duration {
			return e.Value.ttl
		}),
		Clock: clock,
	})
	return c
}

// update applies reloaded settings: the byte bound at once, TTL and
// MaxValue to later fills.
func (c *Cache) update(s Settings) {
	c.ttl.Store(int64(s.TTL))
	c.maxValue.Store(int64(s.MaxValue))
	c.c.SetMaximum(uint64(s.CacheSize))
}

func (c *Cache) stripe(key []byte) *atomic.Uint64 {
	return &c.gens[c.stripeOf(key)]
}

func (c *Cache) stripeOf(key []byte) uint64 { return hash64(key, 0) & (genStripes - 1) }

// lookupKey views key as a string for a lookup that does not keep it.
func lookupKey(key []byte) string { return unsafe.String(unsafe.SliceData(key), len(key)) }

// closed reports whether key may be neither served nor filled now: a write
// of its stripe or a flush is in flight, or a delayed flush is pending.
func (c *Cache) closed(key []byte) bool {
	if to := c.closedTo.Load(); to != 0 {
		if time.Now().UnixNano() < to {
			return true
		}
		if c.closedTo.CompareAndSwap(to, 0) {
			c.InvalidateAll()
		}
	}
	return c.flushing.Load() > 0 || c.writing[c.stripeOf(key)].Load() > 0
}

// Closed reports whether key may be neither served nor filled now: a write
// of its stripe or a flush through the proxy is in flight, or a delayed
// flush is pending. A read of key that misses then must not share another
// reader's backend read either: that read may have been sent after the
// write but on another connection, and reach the server before it.
func (c *Cache) Closed(key []byte) bool { return c.closed(key) }

// Get returns key's cached reply bytes. The slice is shared: callers must
// not modify it. No allocation on hit or miss.
func (c *Cache) Get(key []byte) ([]byte, bool) {
	if c.closed(key) {
		return nil, false
	}
	v, ok := c.c.GetIfPresent(lookupKey(key))
	if !ok || v.epoch != c.epoch.Load() {
		return nil, false
	}
	return v.val, true
}

// has reports whether the cache holds key, without touching its policy.
func (c *Cache) has(key string) bool {
	e, ok := c.c.GetEntryQuietly(key)
	return ok && e.Value.epoch == c.epoch.Load()
}

// Begin returns a fill token for key; take it BEFORE the backend read is
// sent.
func (c *Cache) Begin(key []byte) Gen {
	return Gen(c.stripe(key).Load())
}

// Fill stores a copy of val for key with the TTL unless key was invalidated
// since Begin (then drops it and returns false). It also drops (returns
// false) a val longer than Settings.MaxValue. A Fill of a key not Hot is
// allowed (the caller decides). val is copied: the caller keeps its buffer.
func (c *Cache) Fill(key []byte, gen Gen, val []byte) bool {
	st := c.stripe(key)
	if Gen(st.Load()) != gen || int64(len(val)) > c.maxValue.Load() || c.closed(key) {
		return false
	}
	w := &c.writing[c.stripeOf(key)]
	v := cached{val: append([]byte(nil), val...), ttl: time.Duration(c.ttl.Load())}
	// The check runs under the entry's bucket lock: an Invalidate that
	// bumped the generation after it removes the entry after this write.
	stored := false
	c.c.Compute(string(key), func(old cached, found bool) (cached, otter.ComputeOp) {
		// The epoch is read before the check: an InvalidateAll that bumps
		// the stripes after the check bumps the epoch later still, so
		// this entry is a miss from then on even if otter's InvalidateAll
		// (which does not wait for bucket locks) misses it.
		v.epoch = c.epoch.Load()
		if Gen(st.Load()) != gen || w.Load() > 0 || c.flushing.Load() > 0 {
			return old, otter.CancelOp
		}
		stored = true
		return v, otter.WriteOp
	})
	return stored
}

// Invalidate drops key and makes every earlier Begin token for it stale.
func (c *Cache) Invalidate(key []byte) {
	c.stripe(key).Add(1)
	c.c.Invalidate(lookupKey(key))
}

// WriteBegin says a write of key is about to be sent: key is dropped, and
// until the matching WriteEnd it is neither served nor filled (nor are the
// keys that share its stripe).
func (c *Cache) WriteBegin(key []byte) {
	c.writing[c.stripeOf(key)].Add(1)
	c.Invalidate(key)
}

// WriteEnd says the write WriteBegin announced is answered (or failed, its
// effect unknown): key is dropped again, then may be filled by reads sent
// from now on. Every WriteBegin needs exactly one WriteEnd.
func (c *Cache) WriteEnd(key []byte) {
	c.Invalidate(key)
	c.writing[c.stripeOf(key)].Add(-1)
}

// FlushBegin and FlushEnd are WriteBegin and WriteEnd for every key (a
// flush sent to a server).
func (c *Cache) FlushBegin() {
	c.flushing.Add(1)
	c.InvalidateAll()
}

// FlushEnd: see FlushBegin.
func (c *Cache) FlushEnd() {
	c.InvalidateAll()
	c.flushing.Add(-1)
}

// FlushAt is memcached's flush_all with a delay: the servers drop their
// items at about t (their clocks tick in seconds), so the cache serves and
// fills nothing until a second after t, and is emptied then.
func (c *Cache) FlushAt(t time.Time) {
	to := t.Add(time.Second).UnixNano()
	for {
		cur := c.closedTo.Load()
		if cur >= to || c.closedTo.CompareAndSwap(cur, to) {
			return
		}
	}
}

// invalidateString is Invalidate for a string key.
func (c *Cache) invalidateString(key string) {
	c.gens[hash64([]byte(key), 0)&(genStripes-1)].Add(1)
	c.c.Invalidate(key)
}

// InvalidateAll drops everything and makes every earlier token stale
// (flush_all / FLUSHDB, a lost tracking connection).
func (c *Cache) InvalidateAll() {
	for i := range c.gens {
		c.gens[i].Add(1)
	}
	c.epoch.Add(1)
	c.c.InvalidateAll()
}

// Expiring reports whether key's entry is within the last quarter of its TTL
// (refresh ahead); the caller then sends one refresh read (at most one in
// flight per key per loop). It is false when the key is not cached.
func (c *Cache) Expiring(key []byte) bool {
	e, ok := c.c.GetEntryQuietly(string(key))
	if !ok || e.Value.epoch != c.epoch.Load() {
		return false
	}
	return e.ExpiresAtNano-e.SnapshotAtNano <= int64(e.Value.ttl/4)
}

// Bytes is the cache's weighted size now (keys, values and per-entry
// overhead).
func (c *Cache) Bytes() int64 { return int64(c.c.WeightedSize()) }
