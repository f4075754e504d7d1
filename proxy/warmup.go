package proxy

import (
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// Warm-up after a ring change (memcache pools with warmup > 0; see
// docs/reloading.md). A version whose ring differs from the previous
// version's (a reload or discovery added, removed or re-weighted servers)
// gets a warmState: the previous ring, and a deadline. Until then a
// single-key plain get, or an mg that neither writes nor asks for the CAS
// value (not quiet, key not base64), that misses on its key's new server is
// sent, as the client sent it, to the server that owned the key under the
// previous ring, when that server is still configured and not ejected: the
// same "miss, ask elsewhere" step as read_repair (replica.go), so the client
// gets that server's reply, byte for byte, in its place in the pipeline.
// On a hit the proxy then fetches the item from the old server with
// "mg <key> t v f" and stores it on the new server with add (remaining TTL
// and client flags kept), unless a write of the key went through the proxy
// since the client's read was parsed (add alone already never overwrites a
// newer value on the new server; the check also keeps a delete from being
// undone). Each step is a request on the loop's connections, answered in
// the backend's reply callback: no goroutine, no timer, nothing blocking;
// the window ends when a request parsed after the deadline finds it over.
// Multi-key gets are not warmed: their misses stay misses.
//
// The warm-up stops early, for the version, once at least warmMinSample
// old-server lookups have been made and fewer than 1% of them hit: the old
// servers hold little the new ones lack, so asking them only adds latency.

const (
	// warmMinSample is how many old-server lookups the stop-early rule
	// waits for.
	warmMinSample = 1000
	// warmBuckets is the size of the table of recent writes (by key hash):
	// a write marks its bucket, and a copy whose bucket was written since
	// its read is skipped (a collision only skips a copy).
	warmBuckets = 1 << 16
)

// Stages of a warm-up read (request.warmStage).
const (
	warmNone  uint8 = iota
	warmNew         // the client's read, on the key's new server
	warmOld         // the client's read, sent again to the key's old server
	warmFetch       // the proxy's "mg <key> t v f" to the old server (no client)
	warmAdd         // the proxy's add to the new server (no client)
)

// warmState is one version's warm-up: the ring it replaced and the window.
type warmState struct {
	live   *poolLive
	writes *warmWrites
	// ring is the previous version's ring, slot its configuration index
	// to slot map.
	ring hashring.Ring
	slot []int
	// until is the end of the window on the proxy's clock (ns since start),
	// startSeq the write seq when it opened.
	until    int64
	startSeq uint64
	stopped  atomic.Bool
	// lookups and hits of this window, for the stop-early rule.
	lookups, hits atomic.Int64
}

// warmWrites records writes through the proxy while a warm-up is on: seq
// numbers every write, buckets holds the last write's seq per key hash and
// flush a flush's (every key).
type warmWrites struct {
	seq     atomic.Uint64
	flush   atomic.Uint64
	buckets [warmBuckets]atomic.Uint64
}

// warmCounters are a pool's warm-up totals over its life.
type warmCounters struct {
	hits, misses, copies atomic.Int64
}

// WarmupStats is a snapshot of a pool's warm-up counters.
type WarmupStats struct {
	// Enabled: the pool's configuration has warmup > 0.
	Enabled bool
	// Active: a warm-up window is open now.
	Active bool
	// Hits and Misses count reads that missed on a key's new server and
	// were asked of its old one; Copies the items then stored on the new
	// server with add.
	Hits, Misses, Copies int64
}

// warmup gives version pr, built from prev, its warm-up: a new window when
// the ring changed, prev's (if still open) when it did not; none after a
// version without servers (discovery's first answer). Called with
// Proxy.reloadMu held (a reload, or discovery's republish).
func (pr *poolRT) warmup(prev *poolRT) {
	cfg := pr.cfg
	if prev == nil || len(prev.cfg.Servers) == 0 || cfg.Warmup <= 0 || cfg.Protocol != config.ProtocolMemcache || pr.replicated {
		return
	}
	if sameRing(prev.cfg, cfg) {
		pr.warm = prev.warm
		return
	}
	live := pr.live
	if live.writes.Load() == nil {
		live.writes.Store(&warmWrites{})
	}
	w := &warmState{live: live, writes: live.writes.Load(), ring: prev.ring.Load().r, slot: prev.slot,
		until: int64(time.Since(live.p.start) + cfg.Warmup)}
	w.startSeq = w.writes.seq.Load()
	pr.warm = w
	live.warmUntil.Store(w.until)
	live.p.log.Info("ring changed: warm-up from the previous owners", "pool", cfg.Name, "for", cfg.Warmup)
}

// sameRing reports whether pools a and b place keys alike.
func sameRing(a, b *config.Pool) bool {
	return a.Distribution == b.Distribution && a.Hash == b.Hash && a.HashTag == b.HashTag &&
		slices.Equal(a.RingServers(), b.RingServers())
}

// warming returns pr's warm-up when its window is open at the loop's clock.
func (pr *poolRT) warming(l *loop) *warmState {
	w := pr.warm
	if w == nil || l.clock >= w.until || w.stopped.Load() {
		return nil
	}
	return w
}

// warmable reports whether req is a read warm-up applies to: a plain get
// of one key, or an mg that neither writes nor asks for the CAS value,
// without q or b.
func warmable(req *memcache.Request) bool {
	switch req.Cmd {
	case memcache.CmdGet:
		return len(req.Keys) == 1
	case memcache.CmdMetaGet:
		return !req.Quiet && !req.Base64 && !req.Primary
	}
	return false
}

// startWarm marks r, a read of key for new server s, to be asked of the
// key's previous owner when it misses there: unless the key did not move,
// or was written through the proxy since the window opened (its old copy
// is stale; a collision in the table of writes only costs a miss).
func (w *warmState) startWarm(r *request, req *memcache.Request, key []byte, s int, id uint64) {
	i := w.ring.Pick(key)
	if i < 0 || i >= len(w.slot) {
		return
	}
	old := w.slot[i]
	if old == s || w.writes.writtenSince(key, w.startSeq) {
		return // not moved, or written (deleted, say) since the ring changed
	}
	r.warm = w
	r.warmStage = warmNew
	r.warmFrom, r.warmTo, r.warmID = old, s, id
	r.warmSeq = w.writes.seq.Load()
	r.keys = append(r.keys[:0], key...)
	r.raw = req.AppendForward(r.raw[:0])
}

// wrote records a write of key (nil: a flush, every key) for the copies
// in flight.
func (live *poolLive) wrote(l *loop, key []byte) {
	ww := live.writes.Load()
	if ww == nil || l.clock >= live.warmUntil.Load()+int64(time.Minute) {
		return // no window open (copies in flight finish within a timeout)
	}
	n := ww.seq.Add(1)
	if key == nil {
		ww.flush.Store(n)
		return
	}
	ww.buckets[warmBucket(key)].Store(n)
}

// writtenSince reports whether key (or every key) was written since seq.
func (ww *warmWrites) writtenSince(key []byte, seq uint64) bool {
	return ww.flush.Load() > seq || ww.buckets[warmBucket(key)].Load() > seq
}

// warmBucket is key's FNV-1a hash, cut to the table.
func warmBucket(key []byte) int {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % warmBuckets)
}

// warmBackend returns the loop's connection to slot s of pr's pool for
// lane (a client's, lane.go), or nil when the loop has none (s left the pool), it is down
// or ejected.
func (l *loop) warmBackend(pr *poolRT, s int, lane uint64) *backend {
	ci := pr.indexOf(s)
	if ci < 0 || pr.health.State(ci) == pool.StateEjected || pr.idx >= len(l.backends) {
		return nil
	}
	bs := l.backends[pr.idx]
	i := s*pr.conns + pr.connIndex(lane)
	if i >= len(bs) || bs[i] == nil {
		return nil
	}
	b := bs[i]
	if b.retired || b.state == stateDown || !b.usable() {
		return nil
	}
	return b
}

// warmReply handles the reply rep (n bytes of buf) to r, a read or a
// proxy request of a warm-up, on b. It reports whether the reply is
// consumed (r went on to another server, or was the proxy's own); else
// it is delivered to the client as usual.
func warmReply(b *backend, r *request, buf []byte, rep memcache.Reply) bool {
	w := r.warm
	switch r.warmStage {
	case warmNew:
		r.warmStage = warmNone
		if rep.Hits > 0 || rep.Status.IsError() || r.cl == nil || r.cl.closed || w.stopped.Load() {
			return false
		}
		ob := b.l.warmBackend(b.pr, r.warmFrom, r.warmID)
		if ob == nil {
			return false // the old owner is gone or down: a miss
		}
		r.warmStage = warmOld
		r.reply = append(r.reply[:0], buf...) // the miss, should the old server fail
		resend(ob, r, r.raw)
		return true
	case warmOld:
		r.warmStage = warmNone
		if rep.Status.IsError() {
			return false
		}
		n := w.lookups.Add(1)
		if rep.Hits == 0 {
			w.live.warm.misses.Add(1)
			if n >= warmMinSample && w.hits.Load()*100 < n && !w.stopped.Swap(true) {
				b.pr.p.log.Info("warm-up stopped early: under 1% of old-server lookups hit",
					"pool", b.pr.cfg.Name, "lookups", n, "hits", w.hits.Load())
			}
			return false
		}
		w.hits.Add(1)
		w.live.warm.hits.Add(1)
		warmFetchItem(b, r)
		return false
	case warmFetch:
		if rep.Status == memcache.StatusVA && warmCopy(b, r, buf) {
			return true // on to the new server
		}
	case warmAdd:
		if rep.Status == memcache.StatusStored {
			w.live.warm.copies.Add(1)
		}
	default:
		return false
	}
	r.done = true // the proxy's own request: nothing to deliver
	return true
}

// warmFailed answers r, a read whose old server failed it (down, timeout,
// connection lost), with its new server's miss, kept in r.reply: the
// warm-up found nothing, which is no error of the client's read.
func warmFailed(r *request) {
	r.warmStage = warmNone
	r.warm.live.warm.misses.Add(1)
	r.cl.complete(r)
}

// warmFetchItem asks old server b for the item r hit, with its remaining
// TTL and client flags, to copy it to r's new server.
func warmFetchItem(b *backend, r *request) {
	f := b.l.newRequest()
	f.class = ClassRead
	f.mc = memcache.Request{Cmd: memcache.CmdMetaGet}
	f.warm, f.warmStage = r.warm, warmFetch
	f.warmTo, f.warmSeq, f.warmID = r.warmTo, r.warmSeq, r.warmID
	f.keys = append(f.keys[:0], r.keys...)
	n := len(b.wbuf)
	b.wbuf = append(append(append(b.wbuf, "mg "...), f.keys...), " t v f\r\n"...)
	b.enqueue(f, len(b.wbuf)-n)
}

// warmCopy stores the item of buf, old server b's "VA <len> t<ttl> f<flags>"
// reply to fetch r, on r's new server with add, unless the key was written
// through the proxy since the client's read, or expires now. It reports
// whether the add was sent.
func warmCopy(b *backend, r *request, buf []byte) bool {
	if r.warm.writes.writtenSince(r.keys, r.warmSeq) {
		return false
	}
	ttl, flags, data, ok := parseVA(buf)
	if !ok || ttl == 0 {
		return false
	}
	exp := int64(0) // t-1: no expiry
	if ttl > 0 {
		exp = ttl
		if ttl > 30*24*3600 { // memcached reads more than 30 days as a unix time
			exp = time.Now().Unix() + ttl
		}
	}
	nb := b.l.warmBackend(b.pr, r.warmTo, r.warmID)
	if nb == nil {
		return false
	}
	r.warmStage = warmAdd
	r.mc = memcache.Request{Cmd: memcache.CmdAdd}
	n := len(nb.wbuf)
	w := append(append(nb.wbuf, "add "...), r.keys...)
	w = append(w, ' ')
	w = append(w, flags...)
	w = append(w, ' ')
	w = strconv.AppendInt(w, exp, 10)
	w = append(w, ' ')
	w = strconv.AppendInt(w, int64(len(data)), 10)
	w = append(append(append(w, "\r\n"...), data...), "\r\n"...)
	nb.wbuf = w
	r.requeued = true
	nb.enqueue(r, len(nb.wbuf)-n)
	return true
}

// parseVA reads "VA <len> <flags>*\r\n<data>\r\n": the t flag's TTL (-1:
// none), the f flag's client flags ("0" when absent) and the data.
func parseVA(buf []byte) (ttl int64, flags, data []byte, ok bool) {
	end := -1
	for i := 0; i+1 < len(buf); i++ {
		if buf[i] == '\r' && buf[i+1] == '\n' {
			end = i
			break
		}
	}
	if end < 3 {
		return 0, nil, nil, false
	}
	line := buf[:end]
	ttl, flags = -1, []byte("0")
	size := -1
	for i, tok := range splitSpace(line) {
		switch {
		case i == 0:
		case i == 1:
			v, err := strconv.Atoi(string(tok))
			if err != nil {
				return 0, nil, nil, false
			}
			size = v
		case tok[0] == 't':
			v, err := strconv.ParseInt(string(tok[1:]), 10, 64)
			if err != nil {
				return 0, nil, nil, false
			}
			ttl = v
		case tok[0] == 'f':
			flags = tok[1:]
		}
	}
	start := end + 2
	if size < 0 || start+size+2 > len(buf) {
		return 0, nil, nil, false
	}
	return ttl, flags, buf[start : start+size], true
}

// splitSpace splits line on single spaces (a meta reply line).
func splitSpace(line []byte) [][]byte {
	var out [][]byte
	for len(line) > 0 {
		i := 0
		for i < len(line) && line[i] != ' ' {
			i++
		}
		if i > 0 {
			out = append(out, line[:i])
		}
		if i == len(line) {
			break
		}
		line = line[i+1:]
	}
	return out
}

// warmStats fills s from live's counters and current version.
func (live *poolLive) warmStats(s *WarmupStats) {
	cur := live.cur.Load()
	s.Enabled = cur.cfg.Warmup > 0
	if w := cur.warm; w != nil {
		s.Active = time.Since(live.p.start) < time.Duration(w.until) && !w.stopped.Load()
	}
	s.Hits = live.warm.hits.Load()
	s.Misses = live.warm.misses.Load()
	s.Copies = live.warm.copies.Load()
}
