package proxy

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/cacheproxy/cacheproxy/pool"
)

// Replicas are servers of their own: each has its health (failure
// counting, ejection after server_failure_limit, a probe before it is
// re-admitted after server_retry_timeout), tracked by a second pool.Health
// per version over every replica of every server, numbered rbase[ci]+r (ci
// the server's configuration index, r the replica's). A replica's failures
// never count against its primary. An ejected replica takes no reads
// (readFrom skips it); it leaves no ring, so replicas are ejected whatever
// auto_eject_hosts says, and all of them may be out at once.

// Server roles, as Stats and the metrics' role label name them.
const (
	// RolePrimary is a configured server (the one writes go to).
	RolePrimary = "primary"
	// RoleReplica is one of a server's replicas.
	RoleReplica = "replica"
)

// replicaHealth builds the version's replica health, carrying each
// replica's state over from prev by server and replica name.
func (pr *poolRT) replicaHealth(prev *poolRT, probeTimeout time.Duration) {
	cfg := pr.cfg
	pr.rbase = make([]int, len(cfg.Servers))
	pr.rnames = pr.rnames[:0]
	for ci, s := range cfg.Servers {
		pr.rbase[ci] = len(pr.rnames)
		for _, r := range s.Replicas {
			pr.rnames = append(pr.rnames, s.Name+"/"+r.Name)
		}
	}
	pr.rhealth = pool.NewHealth(pool.HealthConfig{
		Servers:      len(pr.rnames),
		AutoEject:    true,
		EjectAll:     true,
		FailureLimit: cfg.ServerFailureLimit,
		RetryTimeout: cfg.ServerRetryTimeout,
		Probe:        pr.probeReplica,
		ProbeTimeout: probeTimeout,
		Logger:       pr.p.log.With("pool", cfg.Name, "role", RoleReplica),
		Names:        pr.rnames,
	})
	if prev == nil || prev.rhealth == nil {
		return
	}
	for i, name := range pr.rnames {
		if j := slices.Index(prev.rnames, name); j >= 0 {
			pr.rhealth.Inherit(i, prev.rhealth, j)
		}
	}
}

// replicaAt returns the replica-health index of replica r of slot s at
// addr in this version, or -1 when the version does not list it (so).
func (pr *poolRT) replicaAt(s, r int, addr string) int {
	ci := pr.indexOf(s)
	if ci < 0 {
		return -1
	}
	reps := pr.cfg.Servers[ci].Replicas
	if r < 0 || r >= len(reps) || reps[r].Addr != addr {
		return -1
	}
	return pr.rbase[ci] + r
}

// replicaLive reports whether replica r of slot s takes reads (it is not
// ejected). One atomic load.
func (pr *poolRT) replicaLive(s, r int) bool {
	ci := pr.indexOf(s)
	if ci < 0 {
		return false
	}
	return pr.rhealth.State(pr.rbase[ci]+r) != pool.StateEjected
}

// probeReplica checks that replica i (replica-health index) answers its
// protocol's no-op.
func (pr *poolRT) probeReplica(ctx context.Context, i int) error {
	ci := pr.ownerOf(i)
	r := pr.cfg.Servers[ci].Replicas[i-pr.rbase[ci]]
	return pr.probeAddr(ctx, r.Network, r.Addr, "")
}

// ownerOf returns the configuration index of the server replica i
// (replica-health index) belongs to.
func (pr *poolRT) ownerOf(i int) int {
	ci := 0
	for ci+1 < len(pr.rbase) && pr.rbase[ci+1] <= i {
		ci++
	}
	return ci
}

// replicaFailure and replicaSuccess record the outcome of a request to
// replica r (at addr) of slot s on the pool's current version's replica
// health (nothing when it no longer lists that replica).
func (live *poolLive) replicaFailure(s, r int, addr string) {
	cur := live.cur.Load()
	if i := cur.replicaAt(s, r, addr); i >= 0 {
		cur.rhealth.Failure(i)
	}
}

func (live *poolLive) replicaSuccess(s, r int, addr string) {
	cur := live.cur.Load()
	if i := cur.replicaAt(s, r, addr); i >= 0 {
		cur.rhealth.Success(i)
	}
}

// Replicated memcache pools (write_policy all or all_async, servers with
// replicas; mcrouter's AllSync and AllAsync routes). Memcached does not
// replicate, so the proxy writes every live copy of a shard: the primary
// and its replicas. A write is a parent request with one pinned fragment per
// copy (the fragment machinery of multi-key requests, route.go); with all,
// the client's reply is the primary's (with the primary down, the first
// copy's that answered well), with all_async the first good copy's, the rest
// completing in the background. A copy that answers differently from the
// one that answered the client is counted (disagreements). In such a pool
// a shard never leaves the ring: a copy (the primary included) that fails
// server_failure_limit times is ejected from reads and writes, probed, and
// re-admitted, while the shard's other copies serve its keys.

// copyLive reports whether copy r (-1: the primary) of slot s takes
// requests: it is not ejected (so a write skips it).
func (pr *poolRT) copyLive(s, r int) bool {
	if r >= 0 {
		return pr.replicaLive(s, r)
	}
	ci := pr.indexOf(s)
	return ci >= 0 && pr.health.State(ci) != pool.StateEjected
}

// copyFragments adds a pinned fragment of parent for every live copy of
// slot s: the primary first, then its replicas. With no copy live, the
// primary still gets one (it fails fast or, if it is back, answers).
func copyFragments(l *loop, pr *poolRT, parent *request, s int) {
	n := len(parent.frags)
	ci := pr.indexOf(s)
	for r := -1; ci >= 0 && r < len(pr.cfg.Servers[ci].Replicas); r++ {
		if pr.copyLive(s, r) {
			f := newFragment(l, parent, s)
			f.pinned, f.replica = true, r
		}
	}
	if len(parent.frags) == n {
		f := newFragment(l, parent, s)
		f.pinned, f.replica = true, -1
	}
}

// copyBackend returns the connection to copy r (-1: the primary) of slot s
// that lane (a client's, lane.go) uses.
func (l *loop) copyBackend(pr *poolRT, s, r int, lane uint64) *backend {
	if r < 0 {
		return l.backendFor(pr, s, lane)
	}
	return l.replicas[pr.idx][s][r*pr.conns+pr.connIndex(lane)]
}

// hasCopies reports whether slot s has replicas in this version.
func (pr *poolRT) hasCopies(s int) bool {
	ci := pr.indexOf(s)
	return ci >= 0 && len(pr.cfg.Servers[ci].Replicas) > 0
}

// copyDone is fragmentDone for a fragment f of a replicated write p: the
// client is answered once every copy has (all), or by the first copy that
// answered well (all_async; or by the last failure when none did).
func copyDone(f, p *request, c codec) {
	if !f.failed && p.first == nil {
		p.first = f
	}
	switch {
	case p.done:
		// all_async, answered already: this copy completes in the
		// background, its reply dropped and a failure counted.
		if f.failed && f.via != nil {
			f.via.counters.asyncErrors.Add(1)
		}
		if p.pending == 0 && p.early {
			p.early = false
			if p.cl != nil {
				p.cl.background--
			}
		}
	case p.cl == nil:
		if p.pending == 0 {
			p.done = true
		}
	case p.pending == 0 || (p.async && !f.failed):
		cl := p.cl
		c.merge(p)
		if p.pending > 0 {
			// Its other copies are still on their connections: the
			// client keeps its lane until they are in (lane.go).
			p.early = true
			cl.background++
		}
	}
}

// mergeCopies answers a replicated write p: with the primary's reply when
// it answered well (all) or the first good copy's, else (no copy took the
// write) the first failure; copies whose reply disagrees with the one
// given are counted. With all_async, copies still to answer are not seen
// here.
func mergeCopies(cl *client, pr *poolRT, p *request) {
	chosen := p.first
	if !p.async {
		for _, f := range p.frags {
			if f.replica < 0 && f.done && !f.failed {
				chosen = f
			}
		}
	}
	p.reply = p.reply[:0]
	if chosen == nil {
		cl.l.pools[pr.idx].errors[p.class].Add(1)
		p.reply = append(p.reply, p.frags[0].reply...)
		p.silent = p.mc.Noreply
		cl.complete(p)
		return
	}
	p.reply = append(p.reply, chosen.reply...)
	p.silent = chosen.silent || p.mc.Noreply
	for _, f := range p.frags {
		if f != chosen && f.done && !f.failed && f.via != nil && !sameStatus(f.reply, chosen.reply) {
			f.via.counters.disagreements.Add(1)
		}
	}
	cl.complete(p)
}

// sameStatus reports whether two memcached replies say the same: their
// first words (STORED, NOT_STORED, DELETED, HD, NS, ... or incr's number).
func sameStatus(a, b []byte) bool {
	return bytes.Equal(firstWord(a), firstWord(b))
}

func firstWord(b []byte) []byte {
	for i, c := range b {
		if c == ' ' || c == '\r' || c == '\n' {
			return b[:i]
		}
	}
	return b
}

// readmitted reports whether b's copy has been re-admitted after an
// ejection (so it may have come back empty).
func (b *backend) readmitted() bool {
	pr := b.pr
	if b.replica >= 0 {
		i := pr.replicaAt(b.server, b.replica, b.addr)
		return i >= 0 && pr.rhealth.Readmissions(i) > 0
	}
	ci := pr.indexOf(b.server)
	return ci >= 0 && pr.health.Readmissions(ci) > 0
}

// repairRead sends read r, which missed on b's copy (re-admitted after an
// ejection, so it may have come back empty), once to another live copy of
// its shard: the primary, or when b is the primary a replica (read_repair).
// It reports whether r was sent; its miss is then dropped.
func repairRead(b *backend, r *request) bool {
	r.repair = false // once
	cl := r.cl
	if cl == nil || cl.closed {
		return false
	}
	pr, l := b.pr, b.l
	ci := pr.indexOf(b.server)
	if ci < 0 {
		return false
	}
	for c := -1; c < len(pr.cfg.Servers[ci].Replicas); c++ {
		if c == b.replica || !pr.copyLive(b.server, c) {
			continue
		}
		nb := l.copyBackend(pr, b.server, c, cl.lane())
		if nb.state == stateDown || nb.retired {
			continue
		}
		nb.usable() // dials if idle
		resend(nb, r, r.raw)
		b.counters.readRepairs.Add(1)
		return true
	}
	return false
}

// resend queues r, whose reply on its current connection is dropped, on b
// with bytes wire: "miss, ask elsewhere", for read_repair (another copy)
// and warm-up (the key's owner under the previous ring, warmup.go). The
// connection that delivered the miss leaves r to b (requeued).
func resend(b *backend, r *request, wire []byte) {
	b.wbuf = append(b.wbuf, wire...)
	r.requeued = true
	b.enqueue(r, len(wire))
}
