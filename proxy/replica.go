package proxy

import (
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
	return pr.probeAddr(ctx, r.Network, r.Addr)
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
