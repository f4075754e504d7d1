package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/hotkey"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// Hot keys (docs/hotkeys.md): a pool with hot_keys enabled has one
// hotkey.Tracker for its whole life (poolLive.hk, kept across reloads and
// updated by them); each version that enables it points at it (poolRT.hk,
// nil when off, so a pool without hot_keys pays one nil check). Each loop
// owns a Recorder per such pool, fed on the routing seam (route.go: observe,
// written), published from the loop's tick; one goroutine merges every
// 100 ms. Reads of plain get/GET/MGET (and mg asking only for the value,
// client flags, size, key or opaque) for promoted keys are answered from
// the tracker's near cache; every write through the proxy invalidates its
// keys before it is queued and again when its reply (or failure) comes.

// mergeEvery is how often the trackers merge the loops' recorders, and
// how often a loop publishes its recorder.
const mergeEvery = 100 * time.Millisecond

// Invalidation causes, the label of cacheproxy_near_cache_invalidations_total.
const (
	// InvalWrite is a keyed write through the proxy, before it is queued.
	InvalWrite = iota
	// InvalReply is the same write's reply (or failure) arriving.
	InvalReply
	// InvalFlush is a flush (flush_all, FLUSHDB, FLUSHALL, a transaction's
	// EXEC reply): every key.
	InvalFlush
	// InvalTracking is a Redis tracking connection's push (a key written
	// on its server, or a flush), or that connection's loss (every key).
	InvalTracking
	numInval
)

// InvalCauses names the invalidation causes, indexed like the counters.
var InvalCauses = [numInval]string{"write", "reply", "flush", "tracking"}

// nearCounters are one loop's near-cache counters for one pool.
type nearCounters struct {
	hits, misses, fills counter
	coalesced           counter // misses that waited for another's read
	refreshes           counter // reads sent ahead of an entry's expiry
	inval               [numInval]counter
}

// hotSettings turns a pool's configuration into the tracker's settings.
func hotSettings(c *config.Pool) hotkey.Settings {
	h := c.HotKeys
	return hotkey.Settings{TTL: h.TTL, CacheSize: h.CacheSize, MinRate: h.MinRate, Servers: len(c.Servers)}
}

// hotMaxValue is the largest reply cached (the hotkey package's default).
const hotMaxValue = 64 << 10

// hotKeys attaches the pool's tracker to version pr when it enables hot
// keys: the pool's own (kept across reloads), or a new one for its first
// such version. It changes nothing shared: a reload may still be refused
// (publishHot applies it). Called with Proxy.reloadMu held (or before Run).
func (live *poolLive) hotKeys(pr *poolRT) {
	if !pr.cfg.HotKeys.Enabled {
		return
	}
	t := live.hk.Load()
	if t == nil {
		t = hotkey.NewTracker(hotSettings(pr.cfg))
	}
	pr.hk = t
	pr.hc = t.Cache()
}

// publishHot applies version pr's hot-key settings as it is published: the
// tracker is kept (and updated) or made; a version that turns hot keys off
// empties the cache, and one that turns them back on starts from an empty
// one (writes forwarded while they were off did not invalidate). Called
// with Proxy.reloadMu held (or before Run), just before live.cur.Store(pr).
func (live *poolLive) publishHot(pr *poolRT) {
	t := live.hk.Load()
	prev := live.cur.Load()
	switch {
	case pr.hk == nil:
		if t != nil && prev != nil && prev.hk != nil {
			t.Cache().InvalidateAll()
		}
	case t == nil:
		live.hk.Store(pr.hk)
	default:
		t.Update(hotSettings(pr.cfg)) // keeps what it can
		// Empty it on every new version: a cached reply may belong to a
		// server, database (redis_db) or placement the new one no longer
		// reads, and a version that turns hot keys back on follows writes
		// that did not invalidate.
		t.Cache().InvalidateAll()
	}
}

// loopHot is a loop's recorder for one pool's tracker.
type loopHot struct {
	t   *hotkey.Tracker
	rec *hotkey.Recorder
	// flights are the loop's reads of hot keys in flight, by key.
	flights map[string]*flight
	// block is scratch for the get reply block made from an mg reply.
	block []byte
}

// recorder returns the loop's recorder for pr's tracker (pr.hk not nil).
func (l *loop) recorder(pr *poolRT) *hotkey.Recorder {
	for len(l.hot) <= pr.idx {
		l.hot = append(l.hot, loopHot{})
	}
	h := &l.hot[pr.idx]
	if h.t != pr.hk {
		if h.rec != nil {
			h.rec.Close()
		}
		h.t, h.rec = pr.hk, pr.hk.Recorder()
	}
	return h.rec
}

// publish hands each recorder's counts to its tracker, at most every
// mergeEvery (called from the loop's sweep).
func (l *loop) publish() {
	if len(l.hot) == 0 || l.clock-l.published < int64(mergeEvery) {
		return
	}
	l.published = l.clock
	now := time.Now()
	for i := range l.hot {
		if h := &l.hot[i]; h.rec != nil {
			if i < len(l.vers) && l.vers[i] != nil && l.vers[i].hk == h.t {
				h.rec.Publish(now)
			} else {
				h.rec.Close()
				*h = loopHot{} // hot keys went off (or the pool went)
			}
		}
	}
}

// mergeLoop merges every hot-key pool's recorders until ctx ends.
func (p *Proxy) mergeLoop(ctx context.Context) {
	t := time.NewTicker(mergeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, live := range p.activePools() {
				if pr := live.cur.Load(); pr.hk != nil {
					pr.hk.Merge(now)
				}
			}
		}
	}
}

// near returns the loop's near-cache counters for pr.
func (l *loop) near(pr *poolRT) *nearCounters { return &l.counters(pr.idx).near }

// lookup is the read side of the seam for a plain get/GET/MGET (or mg) key of a
// hot-key pool (pr.hk not nil; the key has been observed): cached is the
// reply bytes the near cache holds for it, hot whether the key is promoted
// (a miss of a hot key should fill).
func (pr *poolRT) lookup(l *loop, key []byte) (cached []byte, hot bool) {
	if !pr.hk.Hot(key) {
		return nil, false
	}
	if pr.cfg.Protocol == config.ProtocolRedis && !pr.live.trackedUp(pr.pick(key)) {
		return nil, false // no tracking connection: neither serve nor fill
	}
	if v, ok := pr.hc.Get(key); ok {
		l.near(pr).hits.Add(1)
		return v, true
	}
	l.near(pr).misses.Add(1)
	// A replica may lag its primary: its answer, cached, would be served
	// to every client for up to the TTL, not just for the lag.
	return nil, !pr.replicaReads
}

// replicaReads reports whether the reads of pool c may go to replicas.
func replicaReads(c *config.Pool) bool {
	if c.ReadPolicy == config.ReadPrimary {
		return false
	}
	for _, s := range c.Servers {
		if len(s.Replicas) > 0 {
			return true
		}
	}
	return false
}

// fill stores a hot key's reply block, taken with token gen before its read
// was queued.
func (pr *poolRT) fill(l *loop, c *hotkey.Cache, key []byte, gen hotkey.Gen, val []byte) {
	if len(val) > hotMaxValue {
		return
	}
	if c.Fill(key, gen, val) {
		l.near(pr).fills.Add(1)
	}
}

// fillMeta fills the cache for key from reply, a server's VA reply to an
// mg that asked for the value and client flags, stored as the get reply
// block memcached would have sent (so get and mg are both answered from
// it); a reply without them fills nothing.
func (pr *poolRT) fillMeta(l *loop, c *hotkey.Cache, key []byte, gen hotkey.Gen, reply []byte) {
	l.recorder(pr) // sizes l.hot
	h := &l.hot[pr.idx]
	blk, ok := memcache.AppendValueBlock(h.block[:0], key, reply)
	h.block = blk[:0]
	if ok {
		pr.fill(l, c, key, gen, blk)
	}
}

// markFill makes r (a single-key read of a hot key) fill the cache from its
// reply: the token is taken now, before r is queued.
func (pr *poolRT) markFill(r *request, key []byte) {
	r.hkc = pr.hc
	r.hkFill = true
	r.hkGen = pr.hc.Begin(key)
	r.keys = append(r.keys[:0], key...)
}

// markWrite makes r a write of key in flight (hotkey.Cache.WriteBegin):
// key is dropped now and neither served nor filled until r's reply comes
// (or r fails), when it is dropped again (rewritten).
func (pr *poolRT) markWrite(r *request, key []byte) {
	r.hkc = pr.hc
	r.hkWrite = true
	r.keys = append(r.keys, key...)
	r.keyEnds = append(r.keyEnds, len(r.keys))
	pr.hc.WriteBegin(key)
}

// markFlush makes r (a flush fragment, an EXEC) a flush in flight: the
// cache is emptied now and again when its reply comes, and serves nothing
// meanwhile.
func (pr *poolRT) markFlush(r *request) {
	if r.hkFlush {
		return
	}
	r.hkc = pr.hc
	r.hkWrite = true
	r.hkFlush = true
	pr.hc.FlushBegin()
}

// rewritten is the reply side of a write's invalidation: called when r's
// reply arrives or r fails (its effect unknown), before r is released.
func rewritten(l *loop, pr *poolRT, r *request) {
	if !r.hkWrite {
		return
	}
	n := r.endWrites()
	if r.hkFlush {
		l.near(pr).inval[InvalFlush].Add(1)
		return
	}
	l.near(pr).inval[InvalReply].Add(int64(n))
}

// endWrites ends r's writes in flight (each WriteBegin or FlushBegin once)
// and reports how many keys they were. release calls it for a write that
// never got a reply or a failure (refused before it was sent).
func (r *request) endWrites() int {
	if !r.hkWrite {
		return 0
	}
	r.hkWrite = false
	if r.hkFlush {
		r.hkc.FlushEnd()
		return 0
	}
	for i := range r.keyEnds {
		r.hkc.WriteEnd(r.key(i))
	}
	return len(r.keyEnds)
}

// HotKeys lists the hot keys of every pool with hot_keys enabled, by pool
// name, hottest first, with the server each key maps to now.
func (p *Proxy) HotKeys() map[string][]HotKeyStats {
	out := map[string][]HotKeyStats{}
	for _, live := range p.activePools() {
		if live.cur.Load().hk != nil {
			out[live.name] = p.poolHotKeys(live)
		}
	}
	return out
}

// poolHotKeys lists one pool's hot keys (empty when it has hot keys off).
func (p *Proxy) poolHotKeys(live *poolLive) []HotKeyStats {
	pr := live.cur.Load()
	list := []HotKeyStats{}
	if pr.hk == nil {
		return list
	}
	for _, h := range pr.hk.Snapshot() {
		server := ""
		if s := pr.pick([]byte(h.Key)); s >= 0 {
			server = pr.serverName(s)
		}
		list = append(list, HotKeyStats{Key: h.Key, Rate: h.Rate, ReadShare: h.ReadShare, Server: server, Cached: h.Cached})
	}
	return list
}

// DisplayKey is how a key is shown by /hotkeys, stats hotkeys and
// CACHEPROXY HOTKEYS: its first 64 bytes, every byte other than printable
// ASCII (and the backslash) escaped as \xNN.
func DisplayKey(key string) string {
	if len(key) > 64 {
		key = key[:64]
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c > ' ' && c < 0x7f && c != '\\' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	return b.String()
}

// HotKeyStats describes one hot key of a pool.
type HotKeyStats struct {
	Key       string  // the whole key (cut for display by the caller)
	Rate      float64 // reads and writes per second, estimated
	ReadShare float64 // share of its operations that are reads
	Server    string  // the server it maps to now
	Cached    bool    // the near cache holds its reply now
}

// NearCacheStats are a pool's near-cache and hot-key counters.
type NearCacheStats struct {
	Enabled               bool
	Hits, Misses, Fills   int64
	Coalesced             int64           // misses that waited for another read of their key
	Refreshes             int64           // reads sent to refresh an entry before it expires
	Invalidations         [numInval]int64 // by cause, indexed like InvalCauses
	Bytes                 int64
	Promotions, Demotions int64
	Recorders             int // event loops counting the pool's keys now (their recorders are released a tick after hot keys go off)
}

// Coalescing (docs/hotkeys.md): on each loop, a miss of a hot key that
// fills the near cache (a plain single-key get/GET) leads a flight; later
// misses of the same key on the same loop, while it is in flight, wait for
// its reply instead of sending their own read. A miss joins only if no
// invalidation of the key (a write through the proxy on any loop, a flush)
// came since the leader took its fill token, so a read sent before the
// latest write is never shared with a reader that comes after it; and no
// miss joins or leads while a write of the key (or a flush) is in flight,
// since a read led then may travel on another connection than the write's
// and reach the server first.

// flight is a backend read of a hot key that later misses wait for.
type flight struct {
	l       *loop
	pr      *poolRT
	s       int        // the server read
	gen     hotkey.Gen // the leader's fill token
	proto   int8       // Redis: the leader client's protocol (2, 3); memcached 0
	waiters []*request
}

// flights returns the loop's in-flight reads of pr's hot keys.
func (l *loop) flights(pr *poolRT) map[string]*flight {
	l.recorder(pr) // sizes l.hot and resets it when the tracker changed
	h := &l.hot[pr.idx]
	if h.flights == nil {
		h.flights = map[string]*flight{}
	}
	return h.flights
}

// coalesce is called for r, a plain read of hot key for server s that
// missed the near cache, just after r was pushed on its client's FIFO.
// When a read of key is in flight on this loop with a token still valid, r
// waits for its reply (coalesce returns true: r must not be sent);
// otherwise r leads a new flight and is marked to fill the cache. While a
// write of key or a flush is in flight (Cache.Closed) r does neither: it
// is sent on its own, on its client's connection, behind that client's
// own writes.
func (pr *poolRT) coalesce(l *loop, r *request, key []byte, s int, proto int8) bool {
	if pr.hc.Closed(key) {
		// A write of key (or a flush) is in flight: a flight led since
		// it was queued has the same token, but its read may have gone on
		// another connection to the server and be answered before the
		// write. Such a read neither waits nor leads (nor could it fill).
		return false
	}
	if f := pr.joinable(l, key, proto); f != nil {
		f.wait(r, key)
		return true
	}
	gen := pr.hc.Begin(key)
	pr.markFill(r, key)
	r.hkGen = gen
	f := &flight{l: l, pr: pr, s: s, gen: gen, proto: proto}
	l.flights(pr)[string(key)] = f
	r.hkFlight = f
	return false
}

// joinable returns the read of key in flight on loop l that a miss of key
// (from a client speaking proto) may wait for, or nil: none, or one whose
// token is stale (a write or flush came since it was sent), or a write of
// key or a flush is in flight now (see coalesce).
func (pr *poolRT) joinable(l *loop, key []byte, proto int8) *flight {
	if pr.hc.Closed(key) {
		return nil
	}
	if f := l.flights(pr)[string(key)]; f != nil && f.gen == pr.hc.Begin(key) && f.proto == proto && f.pr == pr {
		return f
	}
	return nil
}

// wait makes r (a whole read, or a one-key fragment of a multi-get) wait
// for f's reply instead of being sent.
func (f *flight) wait(r *request, key []byte) {
	r.keys = append(r.keys[:0], key...)
	r.inFIFO = true // held by the flight until it lands
	f.waiters = append(f.waiters, r)
	f.l.near(f.pr).coalesced.Add(1)
}

// land ends leader's flight: every waiter gets reply (the exact bytes the
// leader's client gets: its value, its miss or its failure), in its own
// client's order; with reply nil (nothing to share: the reply was
// streamed) each waiter is sent on its own.
func land(leader *request, reply []byte) {
	f := leader.hkFlight
	leader.hkFlight = nil
	l := f.l
	if f.pr.idx < len(l.hot) {
		if fl := l.hot[f.pr.idx].flights; fl != nil && fl[string(leader.keys)] == f {
			delete(fl, string(leader.keys))
		}
	}
	for i, w := range f.waiters {
		f.waiters[i] = nil
		w.inFIFO = false
		switch {
		case w.parent != nil:
			f.landFragment(w, reply)
		case w.cl == nil || w.cl.closed:
			w.done = true
			l.release(w)
		case reply != nil:
			w.reply = append(w.reply[:0], reply...)
			w.cl.complete(w)
		default:
			f.resend(w)
		}
	}
}

// landFragment completes w, a one-key fragment of a memcached multi-get
// that waited for f, with the leader's reply (its VALUE block or miss,
// without END; an error fails the fragment, whose key then reads as a
// miss, as a failed server's keys do); with reply nil it is sent on its
// own, unless its client is gone.
func (f *flight) landFragment(w *request, reply []byte) {
	p := w.parent
	if reply == nil && p.cl != nil && !p.cl.closed {
		key := w.keys
		route(p.cl, f.pr, w, f.s, true, func(dst []byte, _ int) []byte {
			return append(append(append(dst, "get "...), key...), "\r\n"...)
		}, -1)
		return
	}
	w.reply = w.reply[:0]
	n, rep, err := 0, memcache.Reply{}, error(nil)
	if reply != nil {
		n, rep, err = memcache.ParseReply(reply, memcache.CmdGet)
	}
	if reply == nil || err != nil || n != len(reply) || rep.Status.IsError() {
		w.failed = true
		w.reply = append(w.reply, reply...)
	} else {
		w.ok = true
		w.reply = append(w.reply, reply[:rep.Body]...)
	}
	fragmentDone(w, f.pr.codec)
	f.l.release(w)
}

// resend sends w, a waiter whose flight had no reply to share, on its own.
func (f *flight) resend(w *request) {
	key := w.keys
	redis := f.pr.cfg.Protocol == config.ProtocolRedis
	route(w.cl, f.pr, w, f.s, true, func(dst []byte, _ int) []byte {
		if !redis {
			return append(append(append(dst, "get "...), key...), "\r\n"...)
		}
		dst = append(dst, "*2\r\n$3\r\nGET\r\n$"...)
		dst = strconv.AppendInt(dst, int64(len(key)), 10)
		return append(append(append(dst, "\r\n"...), key...), "\r\n"...)
	}, -1)
}

// refreshAhead is called on a near-cache hit of key (server s): when the
// entry is in the last quarter of its TTL (Cache.Expiring) and no read of
// key is in flight on this loop, it sends one read with no client (setup
// prepares it, frame writes it) whose reply refills the cache, so a
// steadily hot key is refreshed before it expires instead of missing on
// every loop. Later misses of the key on the loop wait for it.
func (pr *poolRT) refreshAhead(cl *client, key []byte, s int, proto int8, setup func(r *request), frame frameFunc) {
	if s < 0 || !pr.hc.Expiring(key) {
		return
	}
	l := cl.l
	if pr.joinable(l, key, proto) != nil {
		return // one in flight already
	}
	r := l.newRequest()
	r.class = ClassRead
	setup(r)
	pr.coalesce(l, r, key, s, proto)
	l.near(pr).refreshes.Add(1)
	route(cl, pr, r, s, true, frame, -1)
}
