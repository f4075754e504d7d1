package proxy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/discovery"
)

// ElastiCache auto discovery. A memcache pool with discovery asks its
// configuration endpoint for the cluster's nodes (discovery package) and
// puts them on the ring after its configured servers, each named by its
// host name (so a node whose IP changes keeps its keys) and dialled at
// ip:port. A new node list is applied as a Sentinel failover is: the
// configured pool with what was learnt applied (withFollowed) is published
// as a new version through republish, so no client is dropped and the
// connections to nodes in both lists are kept. A failed ask keeps the last
// good list; the first failure of an outage is logged, every one counted.

// poolDiscovery is what a pool's discovery learnt, and its watcher.
type poolDiscovery struct {
	mu      sync.Mutex
	nodes   []discovery.Node // the last good list (nil: no answer yet)
	failing bool             // in an outage (logged once)

	version atomic.Uint64 // the last good answer's version (0: none)
	changes atomic.Int64  // node lists applied
	errors  atomic.Int64  // failed asks

	// running describes the watcher running (discoveryKey); stop stops it.
	// Guarded by Proxy.reloadMu.
	running string
	stop    context.CancelFunc
}

// DiscoveryStats is a snapshot of a pool's auto discovery.
type DiscoveryStats struct {
	// Enabled: the pool follows a configuration endpoint.
	Enabled bool
	// Version is the configuration version of the last good answer (0:
	// none yet).
	Version uint64
	// Nodes is the number of nodes in the last good answer.
	Nodes int
	// Changes counts node lists applied; Errors failed asks (unreachable
	// endpoint, bad answer).
	Changes, Errors int64
}

// discoveryStats returns the pool's discovery snapshot.
func (live *poolLive) discoveryStats(c *config.Pool) DiscoveryStats {
	d := &live.disc
	d.mu.Lock()
	n := len(d.nodes)
	d.mu.Unlock()
	return DiscoveryStats{Enabled: c.Discovery.Enabled(), Version: d.version.Load(), Nodes: n,
		Changes: d.changes.Load(), Errors: d.errors.Load()}
}

// withDiscovered appends the discovered nodes to c's servers, but those
// whose name a configured server already has.
func (live *poolLive) withDiscovered(c *config.Pool) {
	if !c.Discovery.Enabled() {
		return
	}
	live.disc.mu.Lock()
	defer live.disc.mu.Unlock()
	for _, n := range live.disc.nodes {
		if slices.ContainsFunc(c.Servers, func(s config.Server) bool { return s.Name == n.Host }) {
			continue
		}
		c.Servers = append(c.Servers, config.Server{Name: n.Host, Addr: n.Addr(), Network: "tcp", Weight: 1, TLSName: n.Host})
	}
}

// discoveryKey describes the watcher configured pool c needs ("" for none).
func discoveryKey(c *config.Pool) string {
	if c.Protocol != config.ProtocolMemcache || !c.Discovery.Enabled() {
		return ""
	}
	return fmt.Sprintf("%s every %v, server_tls %+v", c.Discovery.Endpoint, c.Discovery.Interval, c.ServerTLS)
}

// syncDiscovery starts, restarts or stops the pool's discovery watcher to
// match its configured pool. Called with Proxy.reloadMu held, once Run
// serves.
func (live *poolLive) syncDiscovery() {
	key := ""
	if !live.removed.Load() && live.configured != nil {
		key = discoveryKey(live.configured)
	}
	d := &live.disc
	if key == d.running {
		return
	}
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
	d.running = key
	if key == "" {
		return
	}
	p := live.p
	// The endpoint is asked over TLS when the pool reaches its servers so
	// (an ElastiCache cluster with in-transit encryption), with the TLS
	// configuration of the version just published.
	stls := live.cur.Load().stls
	ctx, cancel := context.WithCancel(p.ctx)
	d.stop = cancel
	o := discovery.Options{
		Endpoint: live.configured.Discovery.Endpoint,
		Interval: live.configured.Discovery.Interval,
		TLS:      stls,
		OnAnswer: live.discoveryAnswered,
		OnChange: func(c discovery.Cluster) { live.discovered(ctx, c) },
		OnError:  live.discoveryFailed,
	}
	p.bg.Add(1)
	go func() { defer p.bg.Done(); _ = discovery.Watch(ctx, o) }()
}

// discoveryAnswered ends an outage. Called from the watcher goroutine.
func (live *poolLive) discoveryAnswered(c discovery.Cluster) {
	d := &live.disc
	d.mu.Lock()
	was := d.failing
	d.failing = false
	d.mu.Unlock()
	if was {
		live.p.log.Info("discovery endpoint answers again", "pool", live.name, "version", c.Version, "nodes", len(c.Nodes))
	}
}

// discoveryFailed counts a failed ask and logs the first of an outage.
// Called from the watcher goroutine.
func (live *poolLive) discoveryFailed(err error) {
	d := &live.disc
	d.errors.Add(1)
	d.mu.Lock()
	first := !d.failing
	d.failing = true
	n := len(d.nodes)
	d.mu.Unlock()
	if first {
		live.p.log.Warn("discovery endpoint failed; keeping the last good node list", "pool", live.name,
			"nodes", n, "error", err)
	}
}

// discovered applies a new node list. Called from the watcher goroutine;
// ctx is the watcher's: a watcher stopped (under reloadMu) by a reload that
// changed the endpoint applies nothing more.
func (live *poolLive) discovered(ctx context.Context, c discovery.Cluster) {
	p := live.p
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	if ctx.Err() != nil || live.removed.Load() || live.configured == nil {
		return
	}
	d := &live.disc
	d.mu.Lock()
	d.nodes = slices.Clone(c.Nodes)
	d.mu.Unlock()
	d.version.Store(c.Version)
	nc := live.withFollowed(live.configured)
	cur := live.cur.Load().cfg.Servers
	if slices.EqualFunc(nc.Servers, cur, func(a, b config.Server) bool { return a.Name == b.Name && a.Addr == b.Addr }) {
		return // same ring, same addresses: nothing changes for the data path
	}
	if err := live.republish(nc); err != nil {
		p.log.Error("discovery: cannot build the pool's new version", "pool", live.name, "version", c.Version, "error", err)
		return
	}
	d.changes.Add(1)
	names := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		names[i] = n.Host + "=" + n.Addr()
	}
	p.log.Info("discovery: node list applied", "pool", live.name, "version", c.Version, "servers", len(nc.Servers),
		"nodes", strings.Join(names, ","))
}
