package proxy

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/pool"
)

// loop is the state one event loop owns. Only that loop's goroutine touches
// it, except the atomic counters in stats.
type loop struct {
	p  *Proxy
	el gnet.EventLoop

	// Chunks for clients' stashed input, kept for reuse, and the buffer
	// a peek across chunks is copied into (stash.go).
	stashFree    [][]byte
	stashScratch []byte

	// mu guards changes to the per-pool slices below (pools, vers,
	// backends, replicas), which only the loop's goroutine makes, against
	// Stats, which reads them from other goroutines. The loop's own reads
	// take no lock.
	mu sync.Mutex
	// vers[pool] is the version of each pool this loop's connections
	// follow (nil: none yet); clients adopt it at their next read.
	vers []*poolRT
	// backends[pool][slot*conns+conn] are this loop's backend connections
	// (nil for a slot the version does not list).
	backends [][]*backend
	// replicas[pool][slot][replica*conns+conn] are its connections to
	// replicas, for read_policy.
	replicas [][][]*backend
	// resp3[pool] are the connections that did HELLO 3, laid out like
	// backends and replicas, for the clients that speak RESP3 (nil for
	// memcache pools). They follow the pool's versions as backends do, but
	// each dials only when a RESP3 client first needs it.
	resp3 []*connSet
	// retired are connections to servers a reload removed, still owed
	// replies: each closes once its last reply is in (or it fails).
	retired []*backend
	// srv are the counters of each server (and replica) of each pool on
	// this loop, shared by its connections of the shared sets: counters
	// that Stats sums must not drop when a connection is replaced (a
	// failover followed, redis_db changed by a reload). Written under mu
	// by the loop; Stats reads it under mu.
	srv map[serverKey]*serverCounters

	dirtyBackends []*backend
	dirtyClients  []*client
	flushQueued   bool
	flushTask     gnet.Runnable

	// paced are the clients with big output still to write (client.pump)
	// or paused until they take their output; a timer hands pumpTask to the
	// loop while there are any.
	paced      []*client
	pacer      *time.Timer
	pacerArmed bool
	pumpTask   gnet.Runnable

	clients map[*client]struct{}
	free    []*request
	pools   []*poolCounters // per pool, indexed like Proxy.pools
	// hot[pool] is the loop's hot-key recorder for the pool (hotkeys.go);
	// published is the clock of the last Publish.
	hot       []loopHot
	published int64
	// clock is the loop's time in ns since the proxy started, read once at
	// the start of each callback; request timestamps and latencies use it.
	clock int64
	// jrand draws the loop's TTL jitter (jitter.go); seeded per loop.
	jrand rand.PCG
	// authLogAt is the clock of the last failed-AUTH log line and
	// authUnlogged the failures since that went unlogged (respcodec.go:
	// at most one line per authLogEvery per loop).
	authLogAt    int64
	authUnlogged int64
	// clientsCheckedAt is the clock of the last client timeout check
	// (clienttimeout.go).
	clientsCheckedAt int64
}

func newLoop(p *Proxy, el gnet.EventLoop) *loop {
	l := &loop{p: p, el: el, clients: map[*client]struct{}{}}
	l.jrand.Seed(rand.Uint64(), rand.Uint64())
	l.flushTask = gnet.RunnableFunc(func(context.Context) error {
		l.flushQueued = false
		l.tick()
		l.flush()
		return nil
	})
	l.pumpTask = gnet.RunnableFunc(func(context.Context) error {
		l.pacerArmed = false
		l.tick()
		l.pump()
		return nil
	})
	for _, live := range p.poolList() {
		l.version(live)
	}
	return l
}

// counters returns the loop's counters of pool idx.
func (l *loop) counters(idx int) *poolCounters {
	l.grow(idx)
	return l.pools[idx]
}

// grow makes room in the per-pool slices for pool idx.
func (l *loop) grow(idx int) {
	if idx < len(l.pools) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.pools) <= idx {
		l.pools = append(l.pools, &poolCounters{})
		l.vers = append(l.vers, nil)
		l.backends = append(l.backends, nil)
		l.replicas = append(l.replicas, nil)
		l.resp3 = append(l.resp3, nil)
	}
}

// version returns the current version of pool live, which the loop's
// connections then follow: the first call after a reload adopts it (on the
// loop's goroutine, never blocking).
func (l *loop) version(live *poolLive) *poolRT {
	cur := live.cur.Load()
	if live.idx < len(l.vers) && l.vers[live.idx] == cur {
		return cur
	}
	l.adopt(cur)
	return cur
}

// adopt makes the loop's connections follow version pr of its pool:
// connections to servers (slots) it keeps carry over, servers it adds get
// connections (dialed now for a preconnect pool), and connections to
// servers it removes retire: each closes once the replies it is owed are in.
func (l *loop) adopt(pr *poolRT) {
	i := pr.idx
	l.grow(i)
	cur, dial := l.reconcile(pr, connSet{backends: l.backends[i], replicas: l.replicas[i]}, false)
	var r3 *connSet
	if pr.cfg.Protocol == config.ProtocolRedis {
		var old connSet
		if l.resp3[i] != nil {
			old = *l.resp3[i]
		}
		set, _ := l.reconcile(pr, old, true) // dialed when first used
		r3 = &set
	}
	l.mu.Lock()
	l.backends[i], l.replicas[i], l.resp3[i], l.vers[i] = cur.backends, cur.replicas, r3, pr
	l.mu.Unlock()
	l.pruneCounters(pr)
	if pr.cfg.Preconnect && !pr.live.removed.Load() {
		for _, b := range dial {
			b.connect()
		}
	}
}

// connSet is one protocol version's shared connections to a pool's
// servers: backends[slot*conns+conn], replicas[slot][replica*conns+conn]
// (nil entries for slots the version does not list).
type connSet struct {
	backends []*backend
	replicas [][]*backend
}

// connSets returns pool i's shared connections: the RESP2 set and, for a
// Redis pool, the RESP3 one. The caller holds l.mu or is the loop.
func (l *loop) connSets(i int) []connSet {
	sets := []connSet{{backends: l.backends[i], replicas: l.replicas[i]}}
	if l.resp3[i] != nil {
		sets = append(sets, *l.resp3[i])
	}
	return sets
}

// each calls fn for every connection of the set.
func (set connSet) each(fn func(b *backend)) {
	for _, b := range set.backends {
		if b != nil {
			fn(b)
		}
	}
	for _, rs := range set.replicas {
		for _, b := range rs {
			fn(b)
		}
	}
}

// reconcile returns old made to follow version pr: connections to servers
// (slots) pr keeps carry over, servers it adds get new connections (RESP3
// ones when resp3), and connections to servers it removes retire. dial
// lists the new connections, to primaries and replicas (preconnect dials
// them).
func (l *loop) reconcile(pr *poolRT, old connSet, resp3 bool) (set connSet, dial []*backend) {
	conns := pr.conns
	bs := make([]*backend, len(pr.slots)*conns)
	copy(bs, old.backends)
	rs := make([][]*backend, len(pr.slots))
	copy(rs, old.replicas)
	for slot := range pr.slots {
		ci := pr.indexOf(slot)
		for c := 0; c < conns; c++ {
			b := bs[slot*conns+c]
			switch {
			case ci < 0 && b != nil:
				l.retire(b)
				bs[slot*conns+c] = nil
			case ci >= 0 && b == nil:
				b = newBackend(l, pr, slot)
				b.resp3 = resp3
				bs[slot*conns+c] = b
				if !pr.isBulk(c) {
					dial = append(dial, b)
				}
			case b != nil && !sameHandshake(b.pr.cfg, pr.cfg):
				// Set up for another database, credentials or TLS:
				// replaced, so that every request parsed from now on
				// travels on a connection set up as the version says.
				l.retire(b)
				b = newBackend(l, pr, slot)
				b.resp3 = resp3
				bs[slot*conns+c] = b
				if !pr.isBulk(c) {
					dial = append(dial, b)
				}
			case b != nil:
				b.pr = pr
			}
		}
		var want []config.Replica
		if ci >= 0 {
			want = pr.cfg.Servers[ci].Replicas
		}
		if !sameReplicas(rs[slot], want, conns) || len(rs[slot]) > 0 && !sameHandshake(rs[slot][0].pr.cfg, pr.cfg) {
			for _, b := range rs[slot] {
				l.retire(b)
			}
			rs[slot] = nil
			for r := range want {
				for c := 0; c < conns; c++ {
					b := newReplicaBackend(l, pr, slot, r)
					b.resp3 = resp3
					rs[slot] = append(rs[slot], b)
					if !pr.isBulk(c) {
						dial = append(dial, b)
					}
				}
			}
		} else {
			for _, b := range rs[slot] {
				b.pr = pr
			}
		}
	}
	return connSet{backends: bs, replicas: rs}, dial
}

// serverKey names a server of a pool, or one of its replicas at an
// address. By the server's name, which a followed failover keeps (its new
// address is a new slot).
type serverKey struct {
	pool    int
	name    string
	replica int    // -1: the primary
	addr    string // a replica's
}

// serverCounters returns the loop's counters for k, made on first use.
func (l *loop) serverCounters(k serverKey) *serverCounters {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := l.srv[k]
	if sc == nil {
		if l.srv == nil {
			l.srv = make(map[serverKey]*serverCounters)
		}
		sc = new(serverCounters)
		l.srv[k] = sc
	}
	return sc
}

// pruneCounters forgets the counters of pool pr.idx's servers and replicas
// that version pr does not list (a removed server that comes back starts
// again from zero). Connections still draining keep theirs.
func (l *loop) pruneCounters(pr *poolRT) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.srv {
		if k.pool != pr.idx {
			continue
		}
		if pr.statsRow(k) < 0 {
			delete(l.srv, k)
		}
	}
}

// sameHandshake reports whether a backend connection set up under pool
// configuration a serves configuration b as it is: the settings sent or
// negotiated when a connection opens (the database, the credentials sent to
// the servers, TLS to the servers, READONLY on a cluster's replicas) are the
// same. When they differ, a new
// version replaces the pool's connections instead of keeping them.
func sameHandshake(a, b *config.Pool) bool {
	au, ap := a.ServerAuth()
	bu, bp := b.ServerAuth()
	return a.RedisDB == b.RedisDB && au == bu && ap == bp && a.ServerTLS == b.ServerTLS && a.Cluster == b.Cluster
}

// sameReplicas reports whether the replica connections have ("conns" per
// replica, in order) go to the addresses in want.
func sameReplicas(have []*backend, want []config.Replica, conns int) bool {
	if len(have) != len(want)*conns {
		return false
	}
	for k, b := range have {
		if w := want[k/conns]; b.addr != w.Addr || b.network != w.Network {
			return false
		}
	}
	return true
}

// retire takes b out of service: it closes now if it owes nothing, else
// once its last reply is in.
func (l *loop) retire(b *backend) {
	b.retired = true
	if !b.closeIfIdle() {
		l.retired = append(l.retired, b)
	}
}

// clientBackend is where the protocol version chooses the connection: the
// shared connection to server s that cl's request travels on, one of the
// RESP3 set when cl speaks RESP3 (so redis-server itself frames every reply
// in the client's protocol), else the RESP2 one. read applies read_policy.
func (l *loop) clientBackend(pr *poolRT, s int, cl *client, read bool) *backend {
	if cl.rs == nil || !cl.rs.resp3 {
		if read {
			return l.readBackendFor(pr, s, cl.lane())
		}
		return l.backendFor(pr, s, cl.lane())
	}
	cs := l.resp3[pr.idx]
	if read {
		return l.readFrom(pr, cs.backends, cs.replicas[s], s, cl.lane())
	}
	return pickConn(pr, cs.backends, s, cl.lane())
}

// pickConn returns the connection to server s among bs that lane (a
// client's, lane.go) uses.
func pickConn(pr *poolRT, bs []*backend, s int, lane uint64) *backend {
	return bs[s*pr.conns+pr.connIndex(lane)]
}

// backendFor returns the connection to server s of pool pr that lane (a
// client's, lane.go) uses: the same one for every request of that client
// while it keeps its lane, so its writes and reads stay ordered.
func (l *loop) backendFor(pr *poolRT, s int, lane uint64) *backend {
	return pickConn(pr, l.backends[pr.idx], s, lane)
}

// readBackendFor returns the connection a read for server s uses under the
// pool's read_policy: the primary, or one of its replicas chosen by client
// id, falling back as the policy allows when the first choice is down.
func (l *loop) readBackendFor(pr *poolRT, s int, lane uint64) *backend {
	return l.readFrom(pr, l.backends[pr.idx], l.replicas[pr.idx][s], s, lane)
}

// readFrom is readBackendFor over one set of connections: bs to the
// primaries, reps to server s's replicas.
func (l *loop) readFrom(pr *poolRT, bs, reps []*backend, s int, lane uint64) *backend {
	primary := pickConn(pr, bs, s, lane)
	if len(reps) == 0 {
		return primary
	}
	conns := uint64(pr.conns)
	n := uint64(len(reps)) / conns // replicas
	c, spread := uint64(pr.connIndex(lane)), pr.spread(lane)
	pickReplica := func(skip uint64) *backend {
		r := (spread + skip) % n
		return reps[r*conns+c]
	}
	// A replica takes reads while it is not ejected and its connection is
	// not backing off.
	up := func(b *backend) bool { return pr.replicaLive(s, b.replica) && b.usable() }
	firstUp := func() *backend {
		for i := uint64(0); i < n; i++ {
			if b := pickReplica(i); up(b) {
				return b
			}
		}
		return nil
	}
	// The primary takes a read unless it is ejected or backing off; in a
	// replicated pool also while it is failing, since a live copy holds
	// the same keys (replica.go).
	primaryUp := func() bool {
		ci := pr.indexOf(s)
		st := pr.health.State(ci)
		return st != pool.StateEjected && (!pr.replicated || st == pool.StateUp) && primary.usable()
	}
	policy := pr.cfg.ReadPolicy
	if pr.replicated && policy == config.ReadPrimary {
		policy = config.ReadPreferPrimary // any live copy may serve
	}
	switch policy {
	case config.ReadReplica:
		if b := firstUp(); b != nil {
			return b
		}
		return pickReplica(0) // down: the caller fails the request fast
	case config.ReadPreferReplica:
		if b := firstUp(); b != nil {
			return b
		}
	case config.ReadPreferPrimary:
		if !primaryUp() {
			if b := firstUp(); b != nil {
				return b
			}
		}
	case config.ReadAny:
		if k := spread % (n + 1); k < n {
			if b := reps[k*conns+c]; up(b) {
				return b
			}
		}
	}
	return primary
}

// now is the loop's clock in nanoseconds (monotonic).
func (l *loop) now() int64 { return int64(time.Since(l.p.start)) }

// tick reads the clock for the callback that is starting.
func (l *loop) tick() { l.clock = l.now() }

// markBackend queues b for the next flush.
func (l *loop) markBackend(b *backend) {
	if b.dirty {
		return
	}
	b.dirty = true
	l.dirtyBackends = append(l.dirtyBackends, b)
	if l.p.opts.FlushMode == FlushPerIteration && !l.flushQueued {
		l.flushQueued = true
		if err := l.el.Execute(l.p.ctx, l.flushTask); err != nil {
			// Engine shutting down: flush now rather than never.
			l.flushQueued = false
			l.flush()
		}
	}
}

// markClient queues cl's output for writing at the end of the callback.
func (l *loop) markClient(cl *client) {
	if cl.dirty {
		return
	}
	cl.dirty = true
	l.dirtyClients = append(l.dirtyClients, cl)
}

// flush writes every dirty backend connection's queued requests, then every
// dirty client's replies.
func (l *loop) flush() {
	for i := 0; i < len(l.dirtyBackends); i++ {
		b := l.dirtyBackends[i]
		l.dirtyBackends[i] = nil
		b.dirty = false
		b.flush()
	}
	l.dirtyBackends = l.dirtyBackends[:0]
	l.flushClients()
}

// flushClients writes every dirty client's pending replies. Writing can close
// a client synchronously, which may complete more work; the loop picks that
// up because it re-reads the slice length.
func (l *loop) flushClients() {
	for i := 0; i < len(l.dirtyClients); i++ {
		cl := l.dirtyClients[i]
		l.dirtyClients[i] = nil
		cl.dirty = false
		cl.flush()
	}
	l.dirtyClients = l.dirtyClients[:0]
}

// pacerInterval is how often clients with paced output are given more of it.
const pacerInterval = 500 * time.Microsecond

// pace puts cl in the paced list and arms the pacer.
func (l *loop) pace(cl *client) {
	if !cl.paced {
		cl.paced = true
		l.paced = append(l.paced, cl)
	}
	if l.pacerArmed {
		return
	}
	l.pacerArmed = true
	if l.pacer == nil {
		l.pacer = time.AfterFunc(pacerInterval, l.firePacer)
	} else {
		l.pacer.Reset(pacerInterval)
	}
}

// firePacer runs on the timer's goroutine: it hands pumpTask to the loop.
func (l *loop) firePacer() {
	if l.p.ctx.Err() != nil {
		return
	}
	_ = l.el.Execute(l.p.ctx, l.pumpTask)
}

// pump gives every paced client more of its output.
func (l *loop) pump() {
	keep := l.paced[:0]
	for _, cl := range l.paced {
		if !cl.closed {
			cl.flush()
			cl.resume()
		}
		if !cl.closed && (len(cl.pend) > 0 || cl.outPaused) {
			keep = append(keep, cl)
		} else {
			cl.paced = false
		}
	}
	clear(l.paced[len(keep):])
	l.paced = keep
	if len(keep) > 0 && !l.pacerArmed {
		l.pacerArmed = true
		l.pacer.Reset(pacerInterval)
	}
}

// sweep fails requests that have waited longer than their pool's timeout,
// closes clients that do not read their replies, closes clients past a
// client timeout (at most once per clientCheckEvery), and closes retired
// connections that owe nothing any more.
func (l *loop) sweep() {
	l.tick()
	now := l.clock
	for cl := range l.clients {
		cl.checkDrain(now)
	}
	if now-l.clientsCheckedAt >= int64(clientCheckEvery) {
		l.clientsCheckedAt = now
		l.checkTimeouts(now)
	}
	for i, pr := range l.vers {
		if pr == nil {
			continue
		}
		t := pr.cfg.Timeout
		if t <= 0 {
			continue
		}
		for _, set := range l.connSets(i) {
			set.each(func(b *backend) { b.sweep(now, int64(t)) })
		}
	}
	for i, pr := range l.vers {
		if pr != nil && pr.live.removed.Load() && !l.hasClients(pr.live) {
			l.retirePool(i)
		}
	}
	keep := l.retired[:0]
	for _, b := range l.retired {
		if t := b.pr.cfg.Timeout; t > 0 {
			b.sweep(now, int64(t))
		}
		if !b.closeIfIdle() {
			keep = append(keep, b)
		}
	}
	clear(l.retired[len(keep):])
	l.retired = keep
	l.publish()
	l.flush()
}

// drain closes the clients that owe nothing and marks the rest to close
// once their replies are written.
func (l *loop) drain() {
	for cl := range l.clients {
		cl.draining = true
		cl.maybeClose()
	}
	l.flush()
}

// drainPool is drain for the clients of one (removed) pool.
func (l *loop) drainPool(live *poolLive) {
	for cl := range l.clients {
		if cl.pr.live == live {
			cl.draining = true
			cl.maybeClose()
		}
	}
	l.flush()
}

// releaseHeld returns the bytes charged for r's reply and its fragments'
// to the budget.
func (l *loop) releaseHeld(r *request) {
	n := r.held
	r.held = 0
	for _, f := range r.frags {
		n += f.held
		f.held = 0
	}
	l.p.mem.adjust(-n)
}

// newRequest returns a cleared request from the free list.
func (l *loop) newRequest() *request {
	if n := len(l.free); n > 0 {
		r := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return r
	}
	return &request{}
}

// release returns r (and its fragments) to the free list once nothing refers
// to it any more: it has left its client's FIFO and every backend FIFO.
func (l *loop) release(r *request) {
	if r.parent != nil {
		r = r.parent // fragments are recycled with their parent
	}
	if r.inQueue || r.inFIFO || r.pending > 0 {
		return
	}
	if r.hkFlight != nil {
		land(r, nil) // its reply was not seen whole: the waiters read on their own
	}
	for _, f := range r.frags {
		if f.inFIFO {
			return
		}
	}
	l.releaseHeld(r)
	r.endWrites() // a write that never got a reply nor a failure
	for i, f := range r.frags {
		r.frags[i] = nil
		f.endWrites()
		f.reset()
		if cap(f.reply) > 64<<10 {
			f.reply = nil
		}
		l.free = append(l.free, f)
	}
	r.reset()
	if cap(r.reply) > 64<<10 {
		r.reply = nil // don't keep huge buffers around
	}
	if len(l.free) < 4096 {
		l.free = append(l.free, r)
	}
}
