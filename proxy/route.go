package proxy

import "github.com/cacheproxy/cacheproxy/pool"

// The routing seam: every request the proxy forwards, of either protocol,
// leaves through the functions in this file. The codecs parse, split keys by
// server (pick), frame each piece and merge the replies; here a server (and,
// by read_policy, a replica) is chosen, the connection is picked by client
// affinity and the request is queued on it, or failed at once when that
// server is down. Writes announce their keys through written. See doc.go.

// frameFunc appends the wire bytes of a request (fi: its fragment index, -1
// for a whole request) to dst.
type frameFunc func(dst []byte, fi int) []byte

// pick returns the server (slot) for key, or -1 when none is live.
func (pr *poolRT) pick(key []byte) int {
	if len(pr.slot) == 1 {
		return pr.slot[0]
	}
	if i := pr.ring.Load().r.Pick(key); i >= 0 {
		return pr.slot[i]
	}
	return -1
}

// route queues r for server s of pr on the connection client cl uses: a
// read (read true) goes where the pool's read_policy says, anything else to
// the primary. frame appends r's bytes. r is in its client's FIFO already,
// or is a fragment.
func route(cl *client, pr *poolRT, r *request, s int, read bool, frame frameFunc, fi int) {
	sendOn(cl.l.clientBackend(pr, s, cl, read), r, frame, fi)
}

// sendOn queues r on connection b (the one route chose, or a client's
// dedicated connection), or fails it at once when b's server is down; it
// reports whether r was queued.
func sendOn(b *backend, r *request, frame frameFunc, fi int) bool {
	if !b.usable() {
		b.refuse(r)
		return false
	}
	n := len(b.wbuf)
	b.wbuf = frame(b.wbuf, fi)
	if b.pr.cfg.Cluster {
		r.raw = append(r.raw[:0], b.wbuf[n:]...) // for a redirect (cluster.go)
	}
	b.enqueue(r, len(b.wbuf)-n)
	return true
}

// newFragment adds a fragment of parent for server s, of parent's class.
func newFragment(l *loop, parent *request, s int) *request {
	f := l.newRequest()
	f.parent = parent
	f.server = s
	f.class = parent.class
	parent.frags = append(parent.frags, f)
	return f
}

// fanoutFragments adds a fragment of parent for every server of pr, but the
// ejected ones (which hold no keys now) when skipEjected.
// In a replicated pool every live copy of every server gets one.
func fanoutFragments(l *loop, pr *poolRT, parent *request, skipEjected bool) {
	for i, s := range pr.slot {
		if pr.replicated {
			copyFragments(l, pr, parent, s)
			continue
		}
		if skipEjected && pr.health.State(i) == pool.StateEjected {
			continue
		}
		newFragment(l, parent, s)
	}
}

// sendFragments queues each of parent's fragments on its server (a read may
// go to a replica), framing its bytes with frame; a fragment whose server is
// down fails at once. Everything is queued before any failure completes, so
// a merge never sees a fragment half set up.
func sendFragments(cl *client, pr *poolRT, parent *request, frame frameFunc) {
	parent.pending = len(parent.frags)
	if !parent.repl { // a replicated write's copies are not split keys
		cl.l.pools[pr.idx].fragments.Add(int64(len(parent.frags)))
	}
	if parent.pending == 0 {
		pr.codec.merge(parent)
		return
	}
	for fi, f := range parent.frags {
		if f.inFIFO {
			continue // waits for a read of its key in flight (hotkeys.go)
		}
		if f.pinned {
			f.via = cl.l.copyBackend(pr, f.server, f.replica, cl.lane())
			sendOn(f.via, f, frame, fi)
			continue
		}
		route(cl, pr, f, f.server, f.read, frame, fi)
	}
}

// written is the one point every write passes on its way to a server: a
// keyed write (memcached storage, delete, arithmetic, touch; Redis writes,
// the keys of scripts and of commands queued in a transaction) calls it with
// each key, a flush (flush_all, FLUSHALL, FLUSHDB and other keyless writes
// sent to every server) with nil, meaning every key. It is called before the
// request is queued. With hot keys on, the write is counted and its key
// dropped from the near cache; r (the request carrying the write, nil when
// the caller marks another) is marked to drop it again when its reply
// comes (hotkeys.go).
func (pr *poolRT) written(l *loop, r *request, key []byte) {
	pr.live.wrote(l, key) // warm-up copies in flight (warmup.go)
	if pr.hk == nil {
		return
	}
	if key == nil {
		l.near(pr).inval[InvalFlush].Add(1)
		if r != nil {
			pr.markFlush(r)
		} else {
			pr.hc.InvalidateAll()
		}
		return
	}
	l.recorder(pr).Observe(key, true)
	l.near(pr).inval[InvalWrite].Add(1)
	if r != nil {
		pr.markWrite(r, key) // drops key now, and keeps it closed until r's reply
	} else {
		pr.hc.Invalidate(key)
	}
}

// flushed is written for a flush sent as parent's fragments: every
// fragment empties the near cache again when its reply comes.
func (pr *poolRT) flushed(l *loop, parent *request) {
	if pr.hk == nil {
		return
	}
	pr.written(l, nil, nil)
	for _, f := range parent.frags {
		pr.markFlush(f)
	}
}

// observe counts a keyed read (write false) of key for the hot-key
// detector; writes are counted by written.
func (pr *poolRT) observe(l *loop, key []byte) {
	if pr.hk != nil {
		l.recorder(pr).Observe(key, false)
	}
}
