package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/hotkey"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// A pool lives in two parts. poolLive is what stays for the pool's whole
// life: its name, listener, client count and the stable slot numbers of the
// servers it has ever had. poolRT is one version of its settings (a
// snapshot): a proxy-owned copy of its configuration, the ring, health,
// codec and dialer built from it. A version is immutable once published in
// poolLive.cur, except its ring (swapped when its health ejects or
// re-admits a server) and health's counters; a reload publishes a new one.
//
// Servers are numbered by slot, not by configuration index: a slot stands for
// one server identity (name and address) for the pool's life, so requests,
// transactions, subscriptions and the loops' backend connections keep
// referring to the same server across versions. Slot numbers are used
// everywhere in the data path; configuration indexes only by the ring and
// health, and pick maps one to the other.

// serverID is a server's identity: a slot, and the connections to it, carry
// over to a new version that lists a server with the same name and address.
type serverID struct{ name, addr string }

// slotInfo describes the server of one slot.
type slotInfo struct {
	name, addr, network string
	tlsName             string // config.Server.TLSName
}

// poolLive is the part of a pool that outlives its versions.
type poolLive struct {
	p    *Proxy
	idx  int
	name string
	cur  atomic.Pointer[poolRT] // the current version
	// clients counts open client connections, for Limits.MaxClients.
	clients atomic.Int64
	// acceptErrors counts failed accepts and registrations on the pool's
	// listener.
	acceptErrors atomic.Int64
	// tlsHandshakeErrors counts failed client TLS handshakes.
	tlsHandshakeErrors atomic.Int64
	// removed is set when a reload takes the pool away: its listener is
	// closed and its clients are drained.
	removed atomic.Bool
	// hk is the pool's hot-key tracker, made by the first version with
	// hot_keys enabled and kept for the pool's life (nil until then).
	hk atomic.Pointer[hotkey.Tracker]
	// tracking holds a Redis hot-key pool's tracking connections
	// (tracking.go).
	tracking poolTracking

	// Warm-up after a ring change (warmup.go): writes seen while a window
	// is open (allocated by the first window), the end of the last window
	// (proxy clock, ns) and the pool's totals.
	writes    atomic.Pointer[warmWrites]
	warmUntil atomic.Int64
	warm      warmCounters

	// follow is what the pool's failover follower (Sentinel, role_check)
	// learnt, and the follower itself (follow.go).
	follow poolFollow
	// disc is what the pool's ElastiCache discovery learnt, and its
	// watcher (discover.go).
	disc poolDiscovery
	// clus is what a cluster pool's watcher learnt, and the watcher
	// (cluster.go).
	clus poolCluster

	// Guarded by Proxy.reloadMu.
	// configured is the pool as configured (a Sentinel master without its
	// address); versions are built from it with follow applied.
	configured *config.Pool
	slotOf     map[serverID]int
	slots      []slotInfo         // append-only; versions share prefixes of it
	stopHealth context.CancelFunc // stops the current version's health goroutine
	ln         net.Listener       // nil until Run (or Reload) listens
}

// poolRT is one version of a pool (see poolLive).
type poolRT struct {
	p    *Proxy
	idx  int
	live *poolLive
	// cfg is the proxy's own copy of the pool's configuration.
	cfg    *config.Pool
	ring   atomic.Pointer[ringBox]
	health *pool.Health
	// rhealth is the health of every server's replicas, rbase[ci] the
	// index of server ci's first, rnames their "server/replica" names
	// (replica.go).
	rhealth *pool.Health
	rbase   []int
	rnames  []string
	// replicated: a memcache pool that writes every copy of a shard
	// (write_policy all or all_async, servers with replicas); async:
	// all_async. See replica.go.
	replicated, async bool
	codec             codec
	names             []string // "name" or "addr" per server (configuration order), for messages
	dialer            net.Dialer
	// ltls is the listener's TLS (nil: plaintext), stls the configuration
	// for reaching the servers over TLS (nil: plaintext). See tls.go.
	ltls *listenTLS
	stls *tls.Config
	// allow holds the refused-by-default commands the configuration opens.
	allow map[string]struct{}
	// conns is the number of connections per server and loop: the
	// server_connections shared ones and the bulk one (lane.go).
	conns int
	// replicaReads: reads may go to replicas (read_policy and servers
	// that have them); the near cache then takes no fills.
	replicaReads bool
	// slot maps a configuration index to its server's slot; index maps a
	// slot back (-1: this version does not list it); slots describes every
	// slot known when the version was built.
	slot  []int
	index []int
	slots []slotInfo
	// hk is the pool's hot-key tracker when this version has hot_keys
	// enabled (nil: off), hc its near cache.
	hk *hotkey.Tracker
	hc *hotkey.Cache
	// warm is the version's warm-up after a ring change (nil: none).
	warm *warmState
}

type ringBox struct{ r hashring.Ring }

// newPoolLive starts a pool's life with its first version.
func newPoolLive(p *Proxy, idx int, cfg *config.Pool) (*poolLive, error) {
	live := &poolLive{p: p, idx: idx, name: cfg.Name, slotOf: map[serverID]int{}}
	conf := cfg.Clone()
	live.configured = &conf
	pr, err := live.newVersion(live.withFollowed(cfg), nil)
	if err != nil {
		return nil, err
	}
	live.publishHot(pr)
	live.cur.Store(pr)
	return live, nil
}

// newVersion builds a version of the pool from cfg (copied), giving new
// servers new slots; health carries over from prev (if not nil) by server
// name. It publishes nothing. Called with Proxy.reloadMu held (or before
// Run).
func (live *poolLive) newVersion(c *config.Pool, prev *poolRT) (*poolRT, error) {
	cp := c.Clone()
	cfg := &cp
	p := live.p
	pr := &poolRT{p: p, idx: live.idx, live: live, cfg: cfg, conns: lanes(cfg.ServerConnections), replicaReads: replicaReads(cfg),
		replicated: cfg.Replicated(), async: cfg.Writes() == config.WriteAllAsync}
	for _, s := range cfg.Servers {
		pr.names = append(pr.names, s.Name)
		id := serverID{s.Name, s.Addr}
		slot, ok := live.slotOf[id]
		if !ok {
			slot = len(live.slots)
			live.slotOf[id] = slot
			live.slots = append(live.slots, slotInfo{name: s.Name, addr: s.Addr, network: s.Network, tlsName: s.TLSName})
		}
		pr.slot = append(pr.slot, slot)
	}
	pr.slots = live.slots[:len(live.slots):len(live.slots)]
	pr.index = make([]int, len(pr.slots))
	for i := range pr.index {
		pr.index[i] = -1
	}
	for i, slot := range pr.slot {
		pr.index[slot] = i
	}
	switch cfg.Protocol {
	case config.ProtocolRedis:
		rc, err := newRespCodec(pr)
		if err != nil {
			return nil, err
		}
		pr.codec = rc
		pr.allow = map[string]struct{}{}
		for _, name := range cfg.AllowCommands {
			cmd := resp.LookupFull([]byte(name))
			if cmd == nil {
				return nil, fmt.Errorf("allow_commands: unknown Redis command %q", name)
			}
			if cmd.Class != resp.ClassRefused && !(cmd.IsContainer() && hasRefusedSub(cmd)) {
				return nil, fmt.Errorf("allow_commands: %q is not refused by default (class %s); only refused commands can be opened", name, cmd.Class)
			}
			pr.allow[cmd.Name] = struct{}{}
		}
	default:
		pr.codec = newMemcacheCodec(pr)
	}
	dialTimeout := cfg.Timeout
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	pr.dialer = net.Dialer{Timeout: dialTimeout, KeepAlive: time.Minute}
	if cfg.TLS.Enabled() {
		lt, err := newListenTLS(cfg.TLS, p.log.With("pool", cfg.Name))
		if err != nil {
			return nil, err
		}
		pr.ltls = lt
	}
	stls, err := newServerTLS(cfg.ServerTLS)
	if err != nil {
		return nil, err
	}
	pr.stls = stls
	if stls != nil && stls.InsecureSkipVerify {
		p.log.Warn("server_tls.insecure_skip_verify is set: the servers' certificates are NOT verified; anyone on the path can impersonate them",
			"pool", cfg.Name)
	}
	hc := pool.HealthConfig{
		Servers:      len(cfg.Servers),
		AutoEject:    cfg.AutoEjectHosts,
		FailureLimit: cfg.ServerFailureLimit,
		RetryTimeout: cfg.ServerRetryTimeout,
		Probe:        pr.probe,
		ProbeTimeout: dialTimeout,
		OnChange: func(live []bool) {
			if err := pr.rebuild(live); err != nil {
				p.log.Error("rebuild ring", "pool", cfg.Name, "error", err)
			}
		},
		Logger: p.log.With("pool", cfg.Name),
		Names:  pr.names,
	}
	if pr.replicated {
		// A shard never leaves the ring: its primary is ejected and
		// probed as a replica is, while the other copies serve its keys.
		hc.AutoEject, hc.EjectAll, hc.OnChange = true, true, nil
	}
	if cfg.Cluster {
		// A slot belongs to its owner, up or down (the cluster fails it
		// over): a rebuild on an ejection would change nothing but undo
		// the owners that MOVED redirects patched in (moveSlot).
		hc.OnChange = nil
	}
	pr.health = pool.NewHealth(hc)
	var live0 []bool
	if prev != nil {
		for i, s := range cfg.Servers {
			j := slices.Index(prev.names, s.Name)
			if j >= 0 && prev.cfg.Servers[j].Addr != s.Addr && live.followed(s.Name) {
				continue // a failover followed: the new primary starts healthy
			}
			if j >= 0 {
				pr.health.Inherit(i, prev.health, j)
			}
		}
		if !pr.replicated {
			live0 = pr.health.Live()
		}
	}
	pr.replicaHealth(prev, dialTimeout)
	if len(cfg.Servers) == 0 {
		// A discovery pool before the endpoint's first answer: no ring;
		// the codec fails every request that needs a server (noServers).
		live.hotKeys(pr)
		return pr, nil
	}
	if err := pr.rebuild(live0); err != nil {
		return nil, err
	}
	live.hotKeys(pr)
	pr.warmup(prev)
	return pr, nil
}

// publish makes next the pool's current version, as a reload does: hot keys
// and health move to it; the caller then has the loops adopt it
// (loop.version). Called with Proxy.reloadMu held.
func (live *poolLive) publish(next *poolRT) {
	live.publishHot(next)
	live.cur.Store(next)
	if live.p.serving {
		live.runHealth(next)
	}
}

// runHealth starts the health goroutine of version pr, stopping the previous
// version's. Called with Proxy.reloadMu held, once Run has started.
func (live *poolLive) runHealth(pr *poolRT) {
	p := live.p
	if live.stopHealth != nil {
		live.stopHealth()
	}
	ctx, cancel := context.WithCancel(p.ctx)
	live.stopHealth = cancel
	p.bg.Add(1)
	go func() { defer p.bg.Done(); _ = pr.health.Run(ctx, 0) }()
	if len(pr.rnames) > 0 {
		p.bg.Add(1)
		go func() { defer p.bg.Done(); _ = pr.rhealth.Run(ctx, 0) }()
	}
	live.syncTracking(pr)
}

// rebuild builds and publishes a ring over the live servers (nil: all).
func (pr *poolRT) rebuild(live []bool) error {
	dist := pr.cfg.Distribution
	var slots [][]hashring.SlotRange
	if pr.cfg.Cluster {
		dist = "slots" // by Redis Cluster hash slot (cluster.go)
		for _, s := range pr.cfg.Servers {
			slots = append(slots, s.Slots)
		}
	}
	r, err := hashring.New(hashring.Options{
		Distribution: dist,
		Hash:         pr.cfg.Hash,
		HashTag:      pr.cfg.HashTag,
		Servers:      pr.cfg.RingServers(),
		Live:         live,
		Slots:        slots,
	})
	if err != nil {
		return fmt.Errorf("build ring: %w", err)
	}
	pr.ring.Store(&ringBox{r: r})
	return nil
}

// indexOf returns the configuration index of slot s in this version, or -1
// when the version does not list it.
func (pr *poolRT) indexOf(s int) int {
	if s < 0 || s >= len(pr.index) {
		return -1
	}
	return pr.index[s]
}

// serverName names slot s in messages: its name (or address) in this
// version, or as it was known when the version was built.
func (pr *poolRT) serverName(s int) string {
	if i := pr.indexOf(s); i >= 0 {
		return pr.names[i]
	}
	if s >= 0 && s < len(pr.slots) {
		if pr.slots[s].name != "" {
			return pr.slots[s].name
		}
		return pr.slots[s].addr
	}
	return "?"
}

// anyServer is the slot of the version's first server: where a request that
// any server can answer goes.
func (pr *poolRT) anyServer() int { return pr.slot[0] }

// failure and success record the outcome of a request to slot s on the
// pool's current version's health (s may have left it: then nothing).
func (live *poolLive) failure(s int) {
	cur := live.cur.Load()
	if i := cur.indexOf(s); i >= 0 {
		cur.health.Failure(i)
	}
}

func (live *poolLive) success(s int) {
	cur := live.cur.Load()
	if i := cur.indexOf(s); i >= 0 {
		cur.health.Success(i)
	}
}

// allowed reports whether a command refused by default is opened by the
// pool's allow list (by its name, or its container's for a subcommand).
func (pr *poolRT) allowed(cmd *resp.Command) bool {
	if _, ok := pr.allow[cmd.Name]; ok {
		return true
	}
	if cmd.Parent != nil {
		_, ok := pr.allow[cmd.Parent.Name]
		return ok
	}
	return false
}

// probe checks that server i answers its protocol's no-op.
func (pr *poolRT) probe(ctx context.Context, i int) error {
	s := pr.cfg.Servers[i]
	return pr.probeAddr(ctx, s.Network, s.Addr, s.TLSName)
}

// probeAddr checks that the server at addr answers the protocol's no-op;
// under server_tls, tlsName (if not "") is the name its certificate must
// carry (config.Server.TLSName).
func (pr *poolRT) probeAddr(ctx context.Context, network, addr, tlsName string) error {
	c, err := dialServer(ctx, &pr.dialer, pr.stls, network, addr, tlsName)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, want := pr.codec.probeRequest()
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("probe %s: unexpected reply %q", addr, line)
	}
	return nil
}

// hasRefusedSub reports whether a container command has a refused subcommand.
func hasRefusedSub(c *resp.Command) bool {
	for _, s := range c.Sub {
		if s.Class == resp.ClassRefused {
			return true
		}
	}
	return false
}
