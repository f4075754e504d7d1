package proxy

import (
	"github.com/cacheproxy/cacheproxy/hotkey"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// request is one client request in flight, or one fragment of a multi-key
// request. It lives in its client's FIFO (whole requests only) and in at most
// one backend connection's FIFO (fragments and forwarded whole requests). It
// is recycled through its loop's free list once both are done with it.
type request struct {
	cl     *client  // nil once the client has gone (the reply is then dropped)
	parent *request // for fragments: the multi-key request they belong to
	frags  []*request
	// pending counts fragments still waiting for a reply.
	pending int

	class   CmdClass // for counters
	start   int64    // loop clock when the client's request was parsed, in ns
	nkeys   int      // keys asked for (retrievals), for hit and miss counts
	server  int      // server index (fragments and forwarded requests)
	sentAt  int64    // loop clock when queued toward the backend, in ns
	reply   []byte
	done    bool // reply (or its absence) is final
	silent  bool // the client asked for no reply (noreply, meta q)
	failed  bool // the backend failed this request (fragments: its keys are misses)
	inFIFO  bool // still queued on a backend connection
	inQueue bool // still in its client's FIFO

	read bool // a plain read: read_policy may send it to a replica
	// Replicated memcache pools (replica.go): a pinned fragment goes to
	// one copy of its shard, replica (-1: the primary), over via. A
	// replicated write's parent has repl set (async: answered by its
	// first good copy), first is its first fragment answered well.
	pinned  bool
	replica int
	via     *backend
	repl    bool
	async   bool
	early   bool // async: answered while copies were in flight (client.background)
	first   *request
	// read_repair: repair marks a read that a miss on a re-admitted copy
	// sends again, raw its bytes; requeued tells the backend that
	// delivered the miss that r has moved to another connection.
	repair, requeued bool
	raw              []byte
	// redirected: a Redis Cluster -MOVED or -ASK sent r on once already
	// (cluster.go); raw holds its bytes in a cluster pool.
	redirected bool
	// Warm-up after a ring change (warmup.go): the window r reads under,
	// its stage, the key's old and new server (slots), the write seq when
	// it was parsed and its client's id (for the connection to use).
	warm             *warmState
	warmStage        uint8
	warmFrom, warmTo int
	warmSeq, warmID  uint64
	internal         bool       // sent by the proxy itself (connection handshake); reply checked and dropped
	dedicated        bool       // sent on a client's own connection
	blocking         bool       // a blocking command (BLPOP, XREAD BLOCK, ...), on a dedicated connection
	merge            resp.Merge // how fragment replies combine (Redis)
	name             string     // a split Redis request's command, for the log
	info             int        // Redis INFO: the sections asked for
	// Redis: the reply types that can answer it (0: any).
	replies resp.ReplyTypes

	// memcached
	mc memcache.Request // Cmd, Noreply, Quiet and friends; slices cleared
	// multi-key get: the original keys in order and, for each, its fragment.
	keys    []byte
	keyEnds []int
	keyFrag []int
	// replyStatus of a memcached reply (for merges of flush_all).
	ok bool

	// segs, when not nil, is the reply in pieces (a merge of big
	// fragments): small pieces copied, big ones referring to fragments'
	// replies, which are never recycled. reply is then unused.
	segs [][]byte
	// held is how many bytes of reply are charged to max_memory.
	held int64
	// oom: the reply was refused or cut for max_memory.
	oom bool

	// Hot keys (hotkeys.go). hkc is the near cache of a request that
	// fills it or invalidates in it (nil: neither).
	hkc     *hotkey.Cache
	hkFill  bool       // a read of a hot key (keys[0]): fill from the reply
	hkGen   hotkey.Gen // the fill token, taken before the read was queued
	hkWrite bool       // a write: invalidate keys again on the reply
	hkFlush bool       // a flush: empty the cache again on the reply
	// hkFlight is the flight r leads: misses of the same key waiting for
	// r's reply (hotkeys.go, coalesce).
	hkFlight *flight
	// A multi-key get of a hot-key pool, per key: the cached reply block
	// answering it (nil: asked of its server), and whether its reply fills
	// the cache, with the token.
	hkCached [][]byte
	hkFills  []bool
	hkGens   []hotkey.Gen
}

// reset clears r for reuse, keeping its buffers.
func (r *request) reset() {
	frags, reply, keys, keyEnds, keyFrag, raw := r.frags[:0], r.reply[:0], r.keys[:0], r.keyEnds[:0], r.keyFrag[:0], r.raw[:0]
	if cap(raw) > 1<<20 {
		raw = nil // a big request's bytes, kept for a redirect (cluster.go): not for the next one
	}
	clear(r.hkCached)
	cached, fills, gens := r.hkCached[:0], r.hkFills[:0], r.hkGens[:0]
	*r = request{frags: frags, reply: reply, keys: keys, keyEnds: keyEnds, keyFrag: keyFrag, raw: raw,
		hkCached: cached, hkFills: fills, hkGens: gens}
}

// key returns the i-th saved key of a multi-key request.
func (r *request) key(i int) []byte {
	start := 0
	if i > 0 {
		start = r.keyEnds[i-1]
	}
	return r.keys[start:r.keyEnds[i]]
}

// fragmentDone counts a finished fragment and has c merge the parent after
// the last one.
func fragmentDone(f *request, c codec) {
	f.done = true
	p := f.parent
	p.pending--
	if p.repl {
		copyDone(f, p, c)
		return
	}
	switch {
	case p.pending > 0:
	case p.cl == nil:
		// Orphaned (its client left): nothing to build. The backend
		// releases it when its last fragment leaves the FIFO.
		p.done = true
	default:
		c.merge(p)
	}
}

// failRequest completes r with a failure described by msg, in the pool's
// protocol's words: a handshake request just ends (its connection is being
// closed), a fragment counts toward its parent's merge, a whole request is
// completed on its client (silently for memcached noreply) and counted.
func failRequest(r *request, pr *poolRT, msg string) {
	if r.warmStage == warmOld && r.cl != nil {
		warmFailed(r) // the new server's miss stands (warmup.go)
		return
	}
	r.reply = pr.codec.errorReply(r.reply[:0], msg)
	if r.hkFlight != nil {
		land(r, r.reply) // its waiters fail with it
	}
	switch {
	case r.internal:
		r.done = true
	case r.parent != nil:
		r.failed = true
		fragmentDone(r, pr.codec)
	case r.cl == nil:
		r.done = true
	default:
		r.silent = r.mc.Noreply
		r.cl.l.pools[pr.idx].errors[r.class].Add(1)
		r.cl.complete(r)
	}
}
