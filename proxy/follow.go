package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/respclient"
	"github.com/cacheproxy/cacheproxy/sentinel"
)

// Following a failover. A Redis pool's server can move: a server written
// without an address is a Sentinel master, whose primary and replicas the
// pool's Sentinels tell (sentinel package); with role_check, whichever of a
// server's configured addresses answers ROLE "master" is its primary. What
// a follower learns is kept per server name in poolLive.follow and applied
// to the configured pool (poolLive.configured) to build a new version,
// published as a reload publishes one. Placement is by the server's name,
// which never changes, so keys do not move; the new address is a new slot,
// so the loops' connections to the old primary retire (each closes once the
// replies it is owed are in, or fails them when the server is gone) and
// requests parsed from then on go to the new primary.

// learnt is where a follower says a server is now.
type learnt struct {
	addr     string
	replicas []config.Replica
}

// poolFollow is what a pool's follower learnt, by server name.
type poolFollow struct {
	mu        sync.Mutex
	learnt    map[string]learnt
	failovers map[string]int64 // primary changes followed, by server name
	// names are the servers the running follower follows.
	names map[string]bool
	// running describes the follower running (followKey); stop stops it.
	// Guarded by Proxy.reloadMu.
	running string
	stop    context.CancelFunc
}

// server returns whether server name is followed and how many of its
// primary changes were.
func (f *poolFollow) server(name string) (followed bool, failovers int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[name], f.failovers[name]
}

// followed reports whether a follower learnt where server name is.
func (live *poolLive) followed(name string) bool {
	live.follow.mu.Lock()
	defer live.follow.mu.Unlock()
	_, ok := live.follow.learnt[name]
	return ok
}

// withFollowed returns a copy of c with what the follower learnt applied:
// a Sentinel master gets its primary and replicas; with role_check, a
// server whose primary moved to one of its configured addresses gets it,
// the others as replicas.
func (live *poolLive) withFollowed(c *config.Pool) *config.Pool {
	cp := c.Clone()
	live.follow.mu.Lock()
	defer live.follow.mu.Unlock()
	for i := range cp.Servers {
		s := &cp.Servers[i]
		l, ok := live.follow.learnt[s.Name]
		if !ok {
			continue
		}
		switch {
		case s.Followed() && len(cp.Sentinels) > 0:
		case cp.RoleCheck > 0 && slices.Contains(serverAddrs(s), l.addr):
		default:
			continue
		}
		s.Addr, s.Network = l.addr, "tcp"
		s.Replicas = slices.Clone(l.replicas)
	}
	live.withDiscovered(&cp)
	live.withCluster(&cp)
	return &cp
}

// serverAddrs lists s's configured addresses: its own, then its replicas'.
func serverAddrs(s *config.Server) []string {
	return append([]string{s.Addr}, s.ReplicaAddrs()...)
}

// learn records where server name is now and, when that changes the
// current version, publishes a new one. Called from a follower goroutine.
func (live *poolLive) learn(name string, l learnt) {
	p := live.p
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	if live.removed.Load() || live.configured == nil {
		return
	}
	cur := live.cur.Load()
	i := slices.IndexFunc(cur.cfg.Servers, func(s config.Server) bool { return s.Name == name })
	if i < 0 {
		return
	}
	old := cur.cfg.Servers[i]
	live.follow.mu.Lock()
	if live.follow.learnt == nil {
		live.follow.learnt, live.follow.failovers = map[string]learnt{}, map[string]int64{}
	}
	live.follow.learnt[name] = l
	live.follow.mu.Unlock()
	nc := live.withFollowed(live.configured)
	j := slices.IndexFunc(nc.Servers, func(s config.Server) bool { return s.Name == name })
	if j < 0 {
		return
	}
	ns := nc.Servers[j]
	if ns.Addr == old.Addr && slices.Equal(ns.Replicas, old.Replicas) {
		return // nothing changes for the data path
	}
	if err := live.republish(nc); err != nil {
		p.log.Error("follow failover: cannot build the pool's new version", "pool", live.name, "server", name, "error", err)
		return
	}
	if old.Addr != "" && old.Addr != ns.Addr {
		live.follow.mu.Lock()
		live.follow.failovers[name]++
		live.follow.mu.Unlock()
		p.log.Warn("failover followed: new primary", "pool", live.name, "server", name, "old", old.Addr, "new", ns.Addr,
			"replicas", strings.Join(ns.ReplicaAddrs(), ","))
	} else {
		p.log.Info("server address learnt", "pool", live.name, "server", name, "primary", ns.Addr,
			"replicas", strings.Join(ns.ReplicaAddrs(), ","))
	}
}

// republish builds a version of the pool from nc (the configured pool with
// what its followers learnt applied) and publishes it as a reload does:
// requests parsed from then on use it, the loops adopt it now, connections
// to servers in both versions are kept. Called with Proxy.reloadMu held.
func (live *poolLive) republish(nc *config.Pool) error {
	next, err := live.newVersion(nc, live.cur.Load())
	if err != nil {
		return err
	}
	live.publish(next)
	live.p.forEachLoop(func(l *loop) { l.version(live) })
	return nil
}

// followKey describes the follower that configured pool c needs ("" for
// none): it restarts only when this changes.
func followKey(c *config.Pool) string {
	if c.Protocol != config.ProtocolRedis {
		return ""
	}
	if len(c.Sentinels) > 0 {
		var names []string
		for i := range c.Servers {
			if c.Servers[i].Followed() {
				names = append(names, c.Servers[i].Name)
			}
		}
		if len(names) == 0 {
			return ""
		}
		return fmt.Sprintf("sentinel %q %q %q %q", c.Sentinels, c.SentinelAuth.User, c.SentinelAuth.Password, names)
	}
	if c.RoleCheck > 0 {
		var b strings.Builder
		user, pw := c.ServerAuth()
		fmt.Fprintf(&b, "role %v %q %q %d", c.RoleCheck, user, pw, c.RedisDB)
		for i := range c.Servers {
			fmt.Fprintf(&b, " %s=%q", c.Servers[i].Name, serverAddrs(&c.Servers[i]))
		}
		return b.String()
	}
	return ""
}

// syncFollow starts, restarts or stops the pool's follower to match its
// configured pool. Called with Proxy.reloadMu held, once Run serves.
func (live *poolLive) syncFollow() {
	key := ""
	if !live.removed.Load() && live.configured != nil {
		key = followKey(live.configured)
	}
	f := &live.follow
	if key == f.running {
		return
	}
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
	f.running = key
	names := map[string]bool{}
	if key != "" {
		for i := range live.configured.Servers {
			if s := &live.configured.Servers[i]; s.Followed() || live.configured.RoleCheck > 0 {
				names[s.Name] = true
			}
		}
	}
	f.mu.Lock()
	f.names = names
	f.mu.Unlock()
	if key == "" {
		return
	}
	p := live.p
	ctx, cancel := context.WithCancel(p.ctx)
	f.stop = cancel
	c := live.configured.Clone()
	p.bg.Add(1)
	if len(c.Sentinels) > 0 {
		go func() { defer p.bg.Done(); live.followSentinels(ctx, &c) }()
	} else {
		go func() { defer p.bg.Done(); live.checkRoles(ctx, &c) }()
	}
}

// followSentinels asks the pool's Sentinels about its Sentinel masters
// until ctx is done.
func (live *poolLive) followSentinels(ctx context.Context, c *config.Pool) {
	var names []string
	for i := range c.Servers {
		if c.Servers[i].Followed() {
			names = append(names, c.Servers[i].Name)
		}
	}
	w := sentinel.New(sentinel.Config{
		Sentinels: c.Sentinels,
		Auth:      sentinel.Auth{User: c.SentinelAuth.User, Password: c.SentinelAuth.Password},
		Masters:   names,
		OnChange: func(m sentinel.Master) {
			l := learnt{addr: m.Addr}
			for _, r := range m.Replicas {
				l.replicas = append(l.replicas, config.NewReplica(r))
			}
			live.learn(m.Name, l)
		},
		Logger: live.p.log.With("pool", c.Name),
	})
	_ = w.Run(ctx) // returns when ctx is done
}

// checkRoles polls ROLE on every configured address of each server every
// role_check interval until ctx is done; a server whose current primary no
// longer says master, while another of its addresses does, moves to that
// one. A host name is looked up again on every poll (and the data path's
// connections look it up on every dial).
func (live *poolLive) checkRoles(ctx context.Context, c *config.Pool) {
	timeout := min(c.RoleCheck, 2*time.Second)
	t := time.NewTicker(c.RoleCheck)
	defer t.Stop()
	for {
		for i := range c.Servers {
			if ctx.Err() != nil {
				return
			}
			live.checkServer(ctx, c, &c.Servers[i], timeout)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkServer asks each address of s for its role and moves s's primary
// when the current one does not say master and another does.
func (live *poolLive) checkServer(ctx context.Context, c *config.Pool, s *config.Server, timeout time.Duration) {
	addrs := serverAddrs(s)
	roles := make([]string, len(addrs))
	var wg sync.WaitGroup
	for k, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, pw := c.ServerAuth()
			tlsName := "" // a replica's certificate names its address
			if k == 0 {
				tlsName = s.TLSName
			}
			role, err := askRole(ctx, a, tlsName, user, pw, live.cur.Load().stls, timeout)
			if err != nil {
				live.p.log.Debug("role_check", "pool", c.Name, "server", s.Name, "addr", a, "error", err)
			}
			roles[k] = role
		}()
	}
	wg.Wait()
	cur := live.cur.Load()
	primary := s.Addr
	if i := slices.IndexFunc(cur.cfg.Servers, func(x config.Server) bool { return x.Name == s.Name }); i >= 0 {
		primary = cur.cfg.Servers[i].Addr
	}
	if k := slices.Index(addrs, primary); k >= 0 && roles[k] == "master" {
		return
	}
	k := slices.Index(roles, "master")
	if k < 0 {
		return // nobody says master (yet): keep the primary we have
	}
	l := learnt{addr: addrs[k]}
	if k > 0 {
		l.replicas = append(l.replicas, config.NewReplica(s.Addr))
	}
	for j, r := range s.Replicas {
		if j+1 != k {
			l.replicas = append(l.replicas, r)
		}
	}
	live.learn(s.Name, l)
}

// askRole returns the first element of the ROLE reply of the Redis server
// at addr ("master", "slave", ...), asked over TLS when stls is not nil
// (server_tls; tlsName, if not "", is the name the certificate must carry),
// as the data path's connections are made.
func askRole(ctx context.Context, addr, tlsName, user, password string, stls *tls.Config, timeout time.Duration) (string, error) {
	nc, err := dialServer(ctx, &net.Dialer{Timeout: timeout}, stls, "tcp", addr, tlsName)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", addr, err)
	}
	c, err := respclient.New(nc, addr, user, password, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := c.Do("ROLE")
	if err != nil {
		return "", fmt.Errorf("%s: ROLE: %w", addr, err)
	}
	if l, ok := v.([]any); ok && len(l) > 0 {
		if s, ok := l[0].(string); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("%s: ROLE: unexpected reply %v", addr, v)
}
