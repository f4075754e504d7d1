package proxy

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/config"
)

// loop is the state one event loop owns. Only that loop's goroutine touches
// it, except the atomic counters in stats.
type loop struct {
	p  *Proxy
	el gnet.EventLoop

	// backends[pool][server*conns+conn] are this loop's backend connections.
	backends [][]*backend
	// replicas[pool][server][replica*conns+conn] are its connections to
	// replicas, for read_policy.
	replicas [][][]*backend
	// resp3[pool] are the connections that do HELLO 3, laid out like
	// backends and replicas, for the clients that speak RESP3 (nil for
	// memcache pools). They are made with the loop (so Stats can read them
	// without a lock) but each dials only when a RESP3 client first needs it.
	resp3 []*connSet

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
	pools   []poolCounters // per pool, indexed like Proxy.pools
	// clock is the loop's time in ns since the proxy started, read once at
	// the start of each callback; request timestamps and latencies use it.
	clock int64
}

func newLoop(p *Proxy, el gnet.EventLoop) *loop {
	l := &loop{p: p, el: el, clients: map[*client]struct{}{}, pools: make([]poolCounters, len(p.pools))}
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
	l.backends = make([][]*backend, len(p.pools))
	for i, pr := range p.pools {
		conns := max(pr.cfg.ServerConnections, 1)
		bs := make([]*backend, len(pr.cfg.Servers)*conns)
		for s := range pr.cfg.Servers {
			for c := 0; c < conns; c++ {
				bs[s*conns+c] = newBackend(l, pr, s)
			}
		}
		l.backends[i] = bs
		rs := make([][]*backend, len(pr.cfg.Servers))
		for s, srv := range pr.cfg.Servers {
			for r := range srv.Replicas {
				for c := 0; c < conns; c++ {
					rs[s] = append(rs[s], newReplicaBackend(l, pr, s, r))
				}
			}
		}
		l.replicas = append(l.replicas, rs)
	}
	l.resp3 = make([]*connSet, len(p.pools))
	for i, pr := range p.pools {
		if pr.cfg.Protocol == config.ProtocolRedis {
			l.resp3[i] = l.newConnSet(i)
		}
	}
	return l
}

// preconnect dials every backend of the pools configured with preconnect.
// Called once when the loop state is created (under Proxy.mu, from the
// loop's goroutine); dials run in their own goroutines.
func (l *loop) preconnect() {
	for i, pr := range l.p.pools {
		if !pr.cfg.Preconnect {
			continue
		}
		for _, b := range l.backends[i] {
			b.connect()
		}
	}
}

// connSet is one protocol version's shared connections to a pool's
// servers: backends[server*conns+conn], replicas[server][replica*conns+conn].
type connSet struct {
	backends []*backend
	replicas [][]*backend
}

// newConnSet builds the RESP3 twin of pool i's connections (unconnected:
// each dials when first used).
func (l *loop) newConnSet(i int) *connSet {
	pr := l.p.pools[i]
	cs := &connSet{backends: make([]*backend, len(l.backends[i])), replicas: make([][]*backend, len(l.replicas[i]))}
	for j, b := range l.backends[i] {
		cs.backends[j] = newBackend(l, pr, b.server)
		cs.backends[j].resp3 = true
	}
	for s, reps := range l.replicas[i] {
		for _, b := range reps {
			b3 := newReplicaBackend(l, pr, s, b.replica)
			b3.resp3 = true
			cs.replicas[s] = append(cs.replicas[s], b3)
		}
	}
	return cs
}

// clientBackend is where the protocol version chooses the connection: the
// shared connection to server s that cl's request travels on, one of the
// RESP3 set when cl speaks RESP3 (so redis-server itself frames every reply
// in the client's protocol), else the RESP2 one. read applies read_policy.
func (l *loop) clientBackend(pr *poolRT, s int, cl *client, read bool) *backend {
	if cl.rs == nil || !cl.rs.resp3 {
		if read {
			return l.readBackendFor(pr, s, cl.id)
		}
		return l.backendFor(pr, s, cl.id)
	}
	cs := l.resp3[pr.idx]
	if read {
		return l.readFrom(pr, cs.backends, cs.replicas[s], s, cl.id)
	}
	return pickConn(pr, cs.backends, s, cl.id)
}

// pickConn returns the connection to server s among bs that client id uses.
func pickConn(pr *poolRT, bs []*backend, s int, id uint64) *backend {
	conns := max(pr.cfg.ServerConnections, 1)
	return bs[s*conns+int(id%uint64(conns))]
}

// backendFor returns the connection to server s of pool pr that client id
// uses: the same one for every request of that client, so its writes and
// reads stay ordered.
func (l *loop) backendFor(pr *poolRT, s int, id uint64) *backend {
	return pickConn(pr, l.backends[pr.idx], s, id)
}

// readBackendFor returns the connection a read for server s uses under the
// pool's read_policy: the primary, or one of its replicas chosen by client
// id, falling back as the policy allows when the first choice is down.
func (l *loop) readBackendFor(pr *poolRT, s int, id uint64) *backend {
	return l.readFrom(pr, l.backends[pr.idx], l.replicas[pr.idx][s], s, id)
}

// readFrom is readBackendFor over one set of connections: bs to the
// primaries, reps to server s's replicas.
func (l *loop) readFrom(pr *poolRT, bs, reps []*backend, s int, id uint64) *backend {
	primary := pickConn(pr, bs, s, id)
	if len(reps) == 0 {
		return primary
	}
	conns := uint64(max(pr.cfg.ServerConnections, 1))
	n := uint64(len(reps)) / conns // replicas
	pickReplica := func(skip uint64) *backend {
		r := (id/conns + skip) % n
		return reps[r*conns+id%conns]
	}
	firstUp := func() *backend {
		for i := uint64(0); i < n; i++ {
			if b := pickReplica(i); b.usable() {
				return b
			}
		}
		return nil
	}
	switch pr.cfg.ReadPolicy {
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
		if !primary.usable() {
			if b := firstUp(); b != nil {
				return b
			}
		}
	case config.ReadAny:
		if k := (id / conns) % (n + 1); k < n {
			if b := reps[k*conns+id%conns]; b.usable() {
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
// and closes clients that do not read their replies.
func (l *loop) sweep() {
	l.tick()
	now := l.clock
	for cl := range l.clients {
		cl.checkDrain(now)
	}
	for i, pr := range l.p.pools {
		t := pr.cfg.Timeout
		if t <= 0 {
			continue
		}
		for _, b := range l.backends[i] {
			b.sweep(now, int64(t))
		}
		for _, rs := range l.replicas[i] {
			for _, b := range rs {
				b.sweep(now, int64(t))
			}
		}
		if l.resp3[i] != nil {
			for _, b := range l.resp3[i].backends {
				b.sweep(now, int64(t))
			}
			for _, rs := range l.resp3[i].replicas {
				for _, b := range rs {
					b.sweep(now, int64(t))
				}
			}
		}
	}
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
	for _, f := range r.frags {
		if f.inFIFO {
			return
		}
	}
	l.releaseHeld(r)
	for i, f := range r.frags {
		r.frags[i] = nil
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
