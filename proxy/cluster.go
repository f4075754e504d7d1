package proxy

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
	"github.com/cacheproxy/cacheproxy/rcluster"
)

// Redis Cluster as a backend. A cluster pool's configured servers are seed
// nodes; its watcher (rcluster package) asks them for the slot map and
// every new map is applied as a Sentinel failover is: the configured pool
// with the map applied (withFollowed: one server per master, named by its
// address, with its replicas and slots) is published through republish,
// so connections to masters in both maps are kept and a new master is
// dialled as a server of the new version. Keys go to the owner of their
// hash slot (the "slots" ring).
//
// The data path follows the cluster's redirects (clusterRedirect): a
// -MOVED reply updates the slot's owner in the version's ring, asks for
// the whole map again, and the request is sent once more, to the named
// master; an -ASK reply sends ASKING and the request, back to back on one
// connection, to the named master, changing nothing. A request is
// redirected once: a second redirect goes to the client as it is. A lost
// connection also asks for the map again (a failover promotes a replica).

// poolCluster is what a cluster pool's watcher learnt, and the watcher.
type poolCluster struct {
	mu   sync.Mutex
	m    rcluster.Map // the last map (no shards: none yet)
	have bool

	w         atomic.Pointer[rcluster.Watcher] // the running watcher (Kick), nil when none
	refreshes atomic.Int64                     // maps read
	errors    atomic.Int64                     // failed asks
	failing   atomic.Bool                      // the last ask failed
	changes   atomic.Int64                     // new maps applied
	moved     atomic.Int64                     // MOVED redirects followed
	asks      atomic.Int64                     // ASK redirects followed

	// running describes the watcher running (clusterKey); stop stops it.
	// Guarded by Proxy.reloadMu.
	running string
	stop    context.CancelFunc
}

// ClusterStats is a snapshot of a cluster pool's slot-map following.
type ClusterStats struct {
	// Enabled: the pool is a Redis Cluster client.
	Enabled bool
	// Masters is the number of masters in the last map; Covered the slots
	// they own (16384 when the cluster is whole).
	Masters, Covered int
	// Refreshes counts slot maps read, Errors failed asks (no node
	// answered), Changes new maps applied.
	Refreshes, Errors, Changes int64
	// Moved and Ask count the redirects followed.
	Moved, Ask int64
}

// clusterStats returns the pool's cluster snapshot.
func (live *poolLive) clusterStats(c *config.Pool) ClusterStats {
	k := &live.clus
	k.mu.Lock()
	masters, covered := len(k.m.Shards), k.m.Covered()
	k.mu.Unlock()
	return ClusterStats{Enabled: c.Cluster, Masters: masters, Covered: covered,
		Refreshes: k.refreshes.Load(), Errors: k.errors.Load(), Changes: k.changes.Load(),
		Moved: k.moved.Load(), Ask: k.asks.Load()}
}

// withCluster replaces c's servers (the seeds) by the last map's masters,
// when there is one.
func (live *poolLive) withCluster(c *config.Pool) {
	if !c.Cluster {
		return
	}
	k := &live.clus
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.have {
		return
	}
	servers := make([]config.Server, 0, len(k.m.Shards))
	for _, sh := range k.m.Shards {
		s := config.Server{Name: sh.Master, Addr: sh.Master, Network: "tcp", Weight: 1,
			Slots: slices.Clone(sh.Slots)}
		for _, r := range sh.Replicas {
			s.Replicas = append(s.Replicas, config.NewReplica(r))
		}
		servers = append(servers, s)
	}
	c.Servers = servers
}

// clusterKey describes the watcher configured pool c needs ("" for none).
func clusterKey(c *config.Pool) string {
	if c.Protocol != config.ProtocolRedis || !c.Cluster {
		return ""
	}
	user, password := c.ServerAuth()
	return fmt.Sprintf("%q every %v auth %q %q", clusterSeeds(c), c.ClusterRefresh, user, password)
}

// clusterSeeds are the addresses of configured pool c's servers: the
// nodes its watcher asks first.
func clusterSeeds(c *config.Pool) []string {
	seeds := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		seeds[i] = s.Addr
	}
	return seeds
}

// syncCluster starts, restarts or stops the pool's slot-map watcher to
// match its configured pool. Called with Proxy.reloadMu held, once Run
// serves.
func (live *poolLive) syncCluster() {
	key := ""
	if !live.removed.Load() && live.configured != nil {
		key = clusterKey(live.configured)
	}
	k := &live.clus
	if key == k.running {
		return
	}
	if k.stop != nil {
		k.stop()
		k.stop = nil
		k.w.Store(nil)
	}
	if k.running == "" {
		// Cluster mode (re)starts: a map from an earlier run may be of
		// another cluster. One kept across a change of seeds or refresh
		// serves until the new watcher answers.
		k.mu.Lock()
		k.m, k.have = rcluster.Map{}, false
		k.mu.Unlock()
	}
	k.running = key
	if key == "" {
		return
	}
	p := live.p
	ctx, cancel := context.WithCancel(p.ctx)
	k.stop = cancel
	c := live.configured
	user, password := c.ServerAuth()
	w := rcluster.New(rcluster.Options{
		Seeds:    clusterSeeds(c),
		User:     user,
		Password: password,
		Interval: c.ClusterRefresh,
		Timeout:  min(max(c.Timeout, rcluster.DefaultTimeout), 5*rcluster.DefaultTimeout),
		OnChange: func(m rcluster.Map) { live.clustered(ctx, m) },
		OnAsk:    live.clusterAsked,
		Logger:   p.log.With("pool", c.Name),
	})
	k.w.Store(w)
	p.bg.Add(1)
	go func() { defer p.bg.Done(); _ = w.Run(ctx) }()
}

// clusterKick asks the watcher for the map again soon. It never blocks:
// the data path calls it.
func (live *poolLive) clusterKick() {
	if w := live.clus.w.Load(); w != nil {
		w.Kick()
	}
}

// clusterAsked counts an ask and logs the first failure of each outage and
// its end. Called from the watcher goroutine.
func (live *poolLive) clusterAsked(err error) {
	k := &live.clus
	if err == nil {
		k.refreshes.Add(1)
		if k.failing.Swap(false) {
			live.p.log.Info("cluster: a node answered for the slot map again", "pool", live.name)
		}
		return
	}
	k.errors.Add(1)
	if !k.failing.Swap(true) {
		live.p.log.Warn("cluster: no node answered for the slot map; keeping the last one", "pool", live.name, "error", err)
	}
}

// clustered applies a new slot map. Called from the watcher goroutine; ctx
// is the watcher's (a watcher stopped by a reload applies nothing more).
func (live *poolLive) clustered(ctx context.Context, m rcluster.Map) {
	p := live.p
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	if ctx.Err() != nil || live.removed.Load() || live.configured == nil {
		return
	}
	k := &live.clus
	k.mu.Lock()
	k.m, k.have = m, true
	k.mu.Unlock()
	nc := live.withFollowed(live.configured)
	cur := live.cur.Load().cfg.Servers
	if slices.EqualFunc(nc.Servers, cur, func(a, b config.Server) bool {
		return a.Name == b.Name && a.Addr == b.Addr && slices.Equal(a.Slots, b.Slots) && slices.Equal(a.Replicas, b.Replicas)
	}) {
		return
	}
	if err := live.republish(nc); err != nil {
		p.log.Error("cluster: cannot build the pool's new version", "pool", live.name, "error", err)
		return
	}
	k.changes.Add(1)
	p.log.Info("cluster: slot map applied", "pool", live.name, "masters", len(m.Shards), "slots", m.Covered(), "map", m.String())
}

// readonlyCmd is sent on every connection to a cluster replica (read_policy
// sends reads there), so that it answers reads of its master's slots
// rather than redirect them.
const readonlyCmd = "*1\r\n$8\r\nREADONLY\r\n"

// askingCmd is sent ahead of a request that an -ASK redirect moves.
const askingCmd = "*1\r\n$6\r\nASKING\r\n"

// clusterRedirect follows a -MOVED or -ASK reply (rep, the whole reply)
// that b received for r, the head of its FIFO: r is queued once more on
// the named master's connection (requeued: b leaves it) and true returned.
// It returns false, leaving the reply to go to the client, for any other
// reply, a request redirected once already, a dedicated connection, a
// master the pool's current version does not list or one that is down.
func clusterRedirect(b *backend, r *request, rep []byte) (ok bool) {
	if len(rep) < 5 || rep[0] != '-' || !b.pr.cfg.Cluster {
		return false
	}
	moved := bytes.HasPrefix(rep, []byte("-MOVED "))
	if !moved && !bytes.HasPrefix(rep, []byte("-ASK ")) {
		return false
	}
	live := b.pr.live
	if moved {
		live.clusterKick()
	}
	defer func() {
		if !ok {
			live.clusterKick() // not followed: a master the map lacks, or down
		}
	}()
	if r.redirected || b.owner != nil || r.internal || len(r.raw) == 0 {
		return false
	}
	slot, addr, parsed := parseRedirect(rep)
	if !parsed {
		return false
	}
	cl := r.cl
	if r.parent != nil {
		cl = r.parent.cl
	}
	if cl == nil || cl.closed {
		return false
	}
	l := b.l
	pr := l.vers[live.idx] // the version the loop follows: b's connections are its
	ci := slices.IndexFunc(pr.cfg.Servers, func(s config.Server) bool { return s.Addr == addr })
	if ci < 0 {
		return false // a master the map does not have yet: the kick brings it
	}
	s := pr.slot[ci]
	set := l.backends[pr.idx]
	if b.resp3 {
		set = l.resp3[pr.idx].backends
	}
	nb := pickConn(pr, set, s, cl.lane())
	if nb == b || !nb.usable() {
		return false
	}
	r.redirected = true
	if moved {
		live.clus.moved.Add(1)
		pr.moveSlot(slot, ci)
	} else {
		live.clus.asks.Add(1)
		a := l.newRequest()
		a.internal = true
		nb.wbuf = append(nb.wbuf, askingCmd...)
		nb.enqueue(a, len(askingCmd))
	}
	resend(nb, r, r.raw)
	return true
}

// parseRedirect reads "-MOVED <slot> <host:port>\r\n" (or -ASK).
func parseRedirect(rep []byte) (slot int, addr string, ok bool) {
	rep = bytes.TrimSuffix(rep, []byte("\r\n"))
	f := bytes.Fields(rep)
	if len(f) != 3 {
		return 0, "", false
	}
	n, err := strconv.Atoi(string(f[1]))
	if err != nil || n < 0 || n >= hashring.SlotCount || len(f[2]) == 0 {
		return 0, "", false
	}
	addr = string(f[2])
	if addr[0] == ':' {
		return 0, "", false // an unknown endpoint: wait for the map
	}
	return n, addr, true
}

// moveSlot makes server ci the owner of slot k in the version's ring (a
// MOVED reply said so; the refresh it started brings the whole map).
func (pr *poolRT) moveSlot(k, ci int) {
	for {
		old := pr.ring.Load()
		sr, ok := old.r.(*hashring.Slots)
		if !ok || sr.Owner(k) == ci {
			return
		}
		if pr.ring.CompareAndSwap(old, &ringBox{r: sr.WithOwner(k, ci)}) {
			return
		}
	}
}

// clusterCommand answers CLUSTER INFO, SLOTS, SHARDS, NODES, MYID and
// KEYSLOT from a client of a cluster pool as a one-node cluster would, that
// node being the proxy (at the address the client connected to) and
// owning every slot, so clients in cluster mode keep talking to the proxy.
// It reports whether it answered (false: cmd is another subcommand).
func (rc *respCodec) clusterCommand(cl *client, req *resp.Request, cmd *resp.Command) bool {
	host, port := clusterSelf(cl)
	id := clusterNodeID(rc.pr.cfg.Name, host, port)
	r3 := cl.rs.resp3
	var b []byte
	switch cmd.Name {
	case "cluster|keyslot":
		b = resp.AppendInt(nil, int64(hashring.KeySlot(req.Args[2])))
	case "cluster|myid":
		b = resp.AppendBulkString(nil, id)
	case "cluster|info":
		b = resp.AppendVerbatim(nil, "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n"+
			"cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\n"+
			"cluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n", r3)
	case "cluster|nodes":
		b = resp.AppendVerbatim(nil, id+" "+host+":"+strconv.Itoa(port)+"@0 myself,master - 0 0 1 connected 0-16383\n", r3)
	case "cluster|slots":
		b = resp.AppendArrayHeader(nil, 1)
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendInt(b, 0)
		b = resp.AppendInt(b, hashring.SlotCount-1)
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendBulkString(b, host)
		b = resp.AppendInt(b, int64(port))
		b = resp.AppendBulkString(b, id)
	case "cluster|shards":
		pairs := func(b []byte, n int) []byte {
			if r3 {
				return resp.AppendMapHeader(b, n)
			}
			return resp.AppendArrayHeader(b, 2*n)
		}
		b = resp.AppendArrayHeader(nil, 1)
		b = pairs(b, 2)
		b = resp.AppendBulkString(b, "slots")
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendInt(b, 0)
		b = resp.AppendInt(b, hashring.SlotCount-1)
		b = resp.AppendBulkString(b, "nodes")
		b = resp.AppendArrayHeader(b, 1)
		b = pairs(b, 7)
		for _, kv := range [][2]string{{"id", id}, {"port", ""}, {"ip", host}, {"endpoint", host}, {"role", "master"}, {"replication-offset", ""}, {"health", "online"}} {
			b = resp.AppendBulkString(b, kv[0])
			switch kv[0] {
			case "port":
				b = resp.AppendInt(b, int64(port))
			case "replication-offset":
				b = resp.AppendInt(b, 0)
			default:
				b = resp.AppendBulkString(b, kv[1])
			}
		}
	default:
		return false
	}
	rc.local(cl, b)
	return true
}

// crossSlot is the refusal of a request whose keys span servers: Redis
// Cluster's own words in a cluster pool.
func (rc *respCodec) crossSlot() []byte {
	if rc.pr.cfg.Cluster {
		return resp.ErrCrossSlotCluster(nil)
	}
	return resp.ErrCrossSlot(nil)
}

// clusterSelf is the address the client reached the proxy at: the one
// CLUSTER SLOTS, SHARDS and NODES name (a unix socket client gets
// 127.0.0.1 and port 0).
func clusterSelf(cl *client) (string, int) {
	if a, ok := cl.laddr.(*net.TCPAddr); ok {
		return a.IP.String(), a.Port
	}
	return "127.0.0.1", 0
}

// clusterNodeID is the proxy's node ID as a cluster: 40 hex digits, stable
// for one pool and address.
func clusterNodeID(pool, host string, port int) string {
	h := sha1.Sum([]byte(pool + "\x00" + net.JoinHostPort(host, strconv.Itoa(port))))
	return hex.EncodeToString(h[:])
}
