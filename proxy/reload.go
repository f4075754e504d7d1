package proxy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
)

// Reload applies cfg to the running proxy without dropping clients. cfg has passed
// config validation. It returns an error, and applies nothing, when cfg cannot be applied
// live; the error says what and why ("pool beta: protocol cannot change live", ...).
//
// A pool is known by its name. A pool in both configurations gets a new
// version (see poolLive): servers added, removed, re-weighted or renamed,
// replicas, hash, distribution, hash tag, timeouts, limits, read policy,
// auto-eject settings, allow_commands, redis_auth/redis_db and server_tls
// apply to requests parsed from then on; requests already parsed finish on
// the version they were parsed under. Connections to a server (same name and
// address) in both versions are kept, unless what a connection is set up
// with changed (redis_db, redis_auth, server_user, server_password, server_tls: see
// sameHandshake), which replaces them; those replaced or to a removed
// server close once their replies are in. Health carries over by
// server name. A pool only in cfg starts listening; a pool no longer in cfg
// stops accepting and its clients are drained as on shutdown. A pool whose
// listen address changed is removed and added. Its protocol,
// server_connections and the proxy's max_memory cannot change live.
//
// Limits that the request parsers enforce (max_value_size, max_multibulk,
// and memcache's max_key_length) apply to clients that connect after the
// reload; the others at once. A Redis transaction whose keys now live on
// another server is aborted (CROSSSLOT, then EXECABORT at EXEC); one whose
// server keeps them goes on. A subscription stays on the server it was made
// on.
//
// Before Run, Reload only replaces the configuration Run will serve.
// Concurrent calls are serialised.
func (p *Proxy) Reload(cfg *config.Config) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	if cfg.MemoryBudget() != p.mem.limit {
		return errors.New("max_memory cannot change live (restart to apply it)")
	}
	type change struct {
		live *poolLive
		next *poolRT
	}
	var (
		changes []change
		added   []*config.Pool
		removed []*poolLive
	)
	current := map[string]*poolLive{}
	for _, live := range p.poolList() {
		if !live.removed.Load() {
			current[live.name] = live
		}
	}
	seen := map[string]bool{}
	order := make([]*poolLive, len(cfg.Pools)) // the new active list, filled below
	for i := range cfg.Pools {
		pc := &cfg.Pools[i]
		seen[pc.Name] = true
		live := current[pc.Name]
		if live == nil {
			added = append(added, pc)
			continue
		}
		cur := live.cur.Load()
		if pc.Listen != cur.cfg.Listen {
			removed = append(removed, live)
			added = append(added, pc)
			continue
		}
		if err := liveChange(cur.cfg, pc); err != nil {
			return fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		next, err := live.newVersion(live.withFollowed(pc), cur)
		if err != nil {
			return fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		changes = append(changes, change{live, next})
		order[i] = live
	}
	for _, live := range p.poolList() {
		if !live.removed.Load() && !seen[live.name] {
			removed = append(removed, live)
		}
	}
	pools := slices.Clone(p.poolList())
	var fresh []*poolLive
	for _, pc := range added {
		live, err := newPoolLive(p, len(pools)+len(fresh), pc)
		if err != nil {
			return fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		fresh = append(fresh, live)
		for i := range cfg.Pools {
			if &cfg.Pools[i] == pc {
				order[i] = live
			}
		}
	}
	for _, f := range fresh {
		for _, r := range removed {
			if r.cur.Load().cfg.Listen == f.cur.Load().cfg.Listen {
				return fmt.Errorf("pool %s: listen %s is that of pool %s, which this configuration removes: "+
					"a pool renamed (or a unix socket's permissions changed) on the same address cannot be applied live; "+
					"restart, or move it to another address first", f.name, f.cur.Load().cfg.Listen, r.name)
			}
		}
	}
	if p.listening {
		// Listen before anything changes, so that a port in use refuses
		// the reload as a whole. A pool that keeps its name but moves
		// is still listening on its old address meanwhile.
		for i, live := range fresh {
			ln, err := listenPool(p.ctx, live.cur.Load())
			if err != nil {
				for _, l := range fresh[:i] {
					_ = l.ln.Close()
				}
				return err
			}
			live.ln = ln
		}
	}

	// Nothing can fail from here on.
	for _, c := range changes {
		c.live.publish(c.next)
		for i := range cfg.Pools {
			if cfg.Pools[i].Name == c.live.name {
				conf := cfg.Pools[i].Clone()
				c.live.configured = &conf
			}
		}
		if p.serving {
			c.live.syncFollow()
			c.live.syncDiscovery()
			c.live.syncCluster()
		}
	}
	for _, live := range removed {
		live.removed.Store(true)
		if live.ln != nil && p.listening {
			_ = live.ln.Close()
		}
		if live.stopHealth != nil {
			live.stopHealth()
		}
		live.stopTracking()
		live.syncFollow() // removed: stops the follower
		live.syncDiscovery()
		live.syncCluster()
		p.log.Info("pool removed; draining its clients", "pool", live.name, "clients", live.clients.Load(),
			"timeout", p.opts.DrainTimeout)
		if p.serving {
			p.bg.Add(1)
			go func() { defer p.bg.Done(); p.drainDeadline(live) }()
		}
	}
	pools = append(pools, fresh...)
	p.pools.Store(&pools)
	p.active.Store(&order)
	if p.serving {
		for _, live := range fresh {
			p.serve(live)
		}
	}
	p.tick.Store(int64(p.sweepEvery()))
	// Each loop adopts the new versions on its own goroutine (clients also
	// do at their next read): connections to removed servers retire now
	// rather than at the next request.
	p.forEachLoop(func(l *loop) {
		for _, c := range changes {
			l.version(c.live)
		}
		for _, live := range removed {
			l.drainPool(live)
		}
	})
	return nil
}

// liveChange returns why pool settings next cannot replace cur live, or nil.
func liveChange(cur, next *config.Pool) error {
	switch {
	case next.Protocol != cur.Protocol:
		return fmt.Errorf("protocol cannot change live (%s to %s): remove the pool and add it under another name, or restart",
			cur.Protocol, next.Protocol)
	case max(next.ServerConnections, 1) != max(cur.ServerConnections, 1):
		return fmt.Errorf("server_connections cannot change live (%d to %d): restart to apply it",
			cur.ServerConnections, next.ServerConnections)
	}
	return nil
}

// retirePool closes the loop's connections of a removed pool once none of
// its clients is left on the loop; each closes when its replies are in.
func (l *loop) retirePool(i int) {
	l.mu.Lock()
	sets := l.connSets(i)
	l.backends[i], l.replicas[i], l.resp3[i], l.vers[i] = nil, nil, nil, nil
	for k := range l.srv {
		if k.pool == i {
			delete(l.srv, k)
		}
	}
	l.mu.Unlock()
	for _, set := range sets {
		set.each(l.retire)
	}
}

// hasClients reports whether any client of pool live is on the loop.
func (l *loop) hasClients(live *poolLive) bool {
	for cl := range l.clients {
		if cl.pr.live == live {
			return true
		}
	}
	return false
}

// drainDeadline closes the clients of removed pool live still open after
// Options.DrainTimeout (owed replies that never came: a blocking command, a
// server that does not answer), as shutdown does.
func (p *Proxy) drainDeadline(live *poolLive) {
	t := time.NewTimer(p.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return
	case <-t.C:
	}
	if n := live.clients.Load(); n > 0 {
		p.log.Warn("removed pool: drain timeout; closing clients with replies owed", "pool", live.name, "clients", n)
		p.forEachLoop(func(l *loop) {
			for cl := range l.clients {
				if cl.pr.live == live {
					cl.abort(cl.pr.codec.errorReply(nil, "pool removed by a configuration reload"))
				}
			}
			l.flush()
		})
	}
}
