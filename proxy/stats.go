package proxy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cacheproxy/cacheproxy/pool"
)

// CmdClass groups commands for the request and error counters.
type CmdClass int

// Command classes.
const (
	// ClassRead is a single-key retrieval (get, mg, GET, HGET, ...).
	ClassRead CmdClass = iota
	// ClassWrite is a single-key write (set, delete, incr, touch, SET, ...).
	ClassWrite
	// ClassMulti is a multi-key request split over servers (get k1 k2, MGET, ...).
	ClassMulti
	// ClassFanout is a request sent to every server (flush_all, DBSIZE, ...).
	ClassFanout
	// ClassLocal is answered by the proxy itself (version, PING, ...).
	ClassLocal
	// ClassInvalid is a request the proxy rejected (bad syntax, refused, limits).
	ClassInvalid
	numClasses
)

// String returns the class's metric label.
func (c CmdClass) String() string {
	return [...]string{"read", "write", "multi", "fanout", "local", "invalid"}[c]
}

// LatencyBuckets are the upper bounds of the request latency histograms.
var LatencyBuckets = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second,
}

const numBuckets = len(LatencyBuckets) + 1 // the last is +Inf

// histogram is a fixed-bucket latency histogram with one writer (its loop).
type histogram struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *histogram) observe(d int64) {
	if !countersOn {
		return
	}
	i := 0
	for i < len(LatencyBuckets) && d > int64(LatencyBuckets[i]) {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(d)
}

func (h *histogram) addTo(dst *Histogram) {
	for i := range h.counts {
		dst.Counts[i] += h.counts[i].Load()
	}
	dst.Sum += time.Duration(h.sum.Load())
}

// Histogram is a latency histogram snapshot. Counts[i] counts requests whose
// latency was at most LatencyBuckets[i] (and above the previous bound); the
// last count is everything slower. Counts are not cumulative.
type Histogram struct {
	Counts [numBuckets]uint64
	Sum    time.Duration
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// serverCounters are one backend connection's counters; the loop owning the
// connection is the only writer.
type serverCounters struct {
	requests      counter
	requestBytes  counter
	responses     counter
	responseBytes counter
	errors        counter // requests failed by the proxy (down, lost, timeout)
	timeouts      counter
	eof           counter // connections closed by the server
	connErrors    counter // connect failures and I/O errors
	dials         counter // connection attempts
	hits          counter
	misses        counter
	// fragmentErrors counts fragments of multi-key requests that failed
	// (server down, timeout, connection lost, an error reply); their keys
	// were answered as misses (memcached) or the request with the error
	// (Redis).
	fragmentErrors counter
	// Replicated memcache pools (replica.go): writes whose reply from this
	// copy disagreed with the one the client got, all_async writes this
	// copy failed after the client was answered, and misses answered
	// since the copy was last re-admitted.
	disagreements    counter
	asyncErrors      counter
	readmittedMisses counter
	readRepairs      counter // misses sent again to another copy (read_repair)
	latency          histogram
}

// poolCounters are one loop's counters for one pool.
type poolCounters struct {
	clientConns  counter // current
	clientTotal  counter
	clientEOF    counter
	clientErr    counter
	requests     [numClasses]counter
	errors       [numClasses]counter
	fragments    counter
	rejected     [numReject]counter
	bytesIn      counter
	bytesOut     counter
	latency      histogram
	forwardError counter
	authFailures counter // wrong passwords (Redis AUTH, memcache auth_file)
	// clientTimeouts counts clients closed by a client timeout, by kind.
	clientTimeouts [numTimeoutKinds]counter
	near           nearCounters
}

// RejectReason says why the proxy refused a request or a client.
type RejectReason int

// Reject reasons.
const (
	// RejectProtocol is malformed input.
	RejectProtocol RejectReason = iota
	// RejectLimit is a request over a configured limit (key, value, arguments).
	RejectLimit
	// RejectRefused is a command the proxy does not forward.
	RejectRefused
	// RejectMaxClients is a client refused at max_clients.
	RejectMaxClients
	// RejectBuffer is a client closed for exceeding its input or output buffer.
	RejectBuffer
	// RejectMemory is a reply refused or cut because it would take the
	// proxy over max_memory.
	RejectMemory
	numReject
)

// String returns the reason's metric label.
func (r RejectReason) String() string {
	return [...]string{"protocol", "limit", "refused", "max_clients", "buffer", "memory"}[r]
}

// PoolStats is a snapshot of one pool's counters, summed over event loops.
type PoolStats struct {
	Name     string
	Protocol string
	// Client side.
	ClientConnections      int64
	ClientConnectionsTotal int64
	ClientEOF              int64 // clients that closed their connection
	ClientErrors           int64 // clients closed on an error
	// AcceptErrors counts connections the listener failed to accept (out
	// of descriptors, say) or to hand to an event loop.
	AcceptErrors      int64
	Requests          [numClasses]int64
	Errors            [numClasses]int64
	Rejected          [numReject]int64
	Fragments         int64
	BytesIn, BytesOut int64
	ForwardErrors     int64 // requests failed because their server was unavailable
	// AuthFailures counts authentications with a wrong password: AUTH
	// (and HELLO ... AUTH) on a Redis pool with redis_auth or users, the
	// auth set on a memcache pool with an auth_file.
	AuthFailures int64
	// ClientTimeouts counts clients closed by client_idle_timeout and
	// client_request_timeout, indexed by TimeoutKind.
	ClientTimeouts [numTimeoutKinds]int64
	Latency        Histogram
	Servers        []ServerStats
	// Replicated: a memcache pool that writes every copy of a shard
	// (write_policy all or all_async; docs/replicas.md).
	Replicated bool
	// NearCache: the pool's hot keys and near cache (hot_keys).
	NearCache NearCacheStats
	// Warmup: the pool's warm-up after ring changes (warmup).
	Warmup WarmupStats
	// Discovery: the pool's ElastiCache auto discovery (discovery).
	Discovery DiscoveryStats

	// TLSHandshakeErrors counts clients of a TLS listener closed because
	// their handshake failed (a plaintext client, an unknown or missing
	// client certificate, a timeout).
	TLSHandshakeErrors int64
	// Cluster: the pool's Redis Cluster slot map and redirects (cluster).
	Cluster ClusterStats
}

// ServerStats is a snapshot of one server's counters.
type ServerStats struct {
	// Name is the server's name; a replica's is "server/replica". Addr is
	// where the server is now: for a server whose failovers the proxy
	// follows (Followed), the primary it learnt ("" until then).
	Name, Addr string
	// Role is RolePrimary or RoleReplica. A pool's primaries come first,
	// in configuration order, then every replica (server by server).
	Role string
	// Followed: Sentinel or role_check tells where the server is.
	Followed bool
	// Failovers counts the primary changes followed (Sentinel, role_check).
	Failovers int64
	// TrackingUp: the server's Redis tracking connection is up (a Redis
	// pool with hot_keys only; see docs/hotkeys.md).
	TrackingUp    bool
	State         pool.State
	EjectedAt     time.Time // last ejection; zero if never
	Ejections     int64
	Failures      int64
	Connections   int64 // open backend connections, all loops
	InFlight      int64 // requests sent and not answered
	Requests      int64
	RequestBytes  int64
	Responses     int64
	ResponseBytes int64
	Errors        int64
	Timeouts      int64
	EOF           int64
	ConnErrors    int64
	// Dials counts connection attempts to the server (all loops): a reload
	// that keeps a server keeps its connections and does not add to it.
	Dials        int64
	Hits, Misses int64
	// FragmentErrors counts fragments of multi-key requests (memcached
	// get/gets/gat/gats, Redis MGET, MSET, DEL...) sent to the server that
	// failed: the server was down or timed out, the connection was lost,
	// or it answered an error. A memcached client got misses for their
	// keys; a Redis client got the error.
	FragmentErrors int64
	// Replicated memcache pools (docs/replicas.md): Disagreements counts
	// writes this copy answered differently from the copy whose reply the
	// client got; AsyncErrors all_async writes it failed after the client
	// was answered; ReadmittedMisses the misses it answered since it was
	// last re-admitted after an ejection (it came back empty).
	// ReadRepairs counts those misses sent again to another copy
	// (read_repair).
	Disagreements, AsyncErrors, ReadmittedMisses, ReadRepairs int64
	Latency                                                   Histogram
}

// Stats returns a snapshot of every pool's counters. It is safe to call from
// any goroutine at any time; it reads atomics and takes no lock the data path
// uses.
func (p *Proxy) Stats() []PoolStats {
	p.mu.Lock()
	loops := make([]*loop, 0, len(p.loops))
	for _, l := range p.loops {
		loops = append(loops, l)
	}
	p.mu.Unlock()
	var out []PoolStats
	for _, live := range p.activePools() {
		i := live.idx
		pr := live.cur.Load()
		out = append(out, PoolStats{})
		ps := &out[len(out)-1]
		ps.Name, ps.Protocol, ps.Replicated = pr.cfg.Name, string(pr.cfg.Protocol), pr.replicated
		nprim := len(pr.cfg.Servers)
		ps.Servers = make([]ServerStats, nprim+len(pr.rnames))
		for s, srv := range pr.cfg.Servers {
			ss := &ps.Servers[s]
			ss.Name, ss.Addr, ss.Role = srv.Name, srv.Addr, RolePrimary
			ss.Followed, ss.Failovers = live.follow.server(srv.Name)
			healthStats(ss, pr.health, s)
			for r, rep := range srv.Replicas {
				i := pr.rbase[s] + r
				ss := &ps.Servers[nprim+i]
				ss.Name, ss.Addr, ss.Role = pr.rnames[i], rep.Addr, RoleReplica
				healthStats(ss, pr.rhealth, i)
			}
		}
		ps.AcceptErrors = live.acceptErrors.Load()
		ps.TLSHandshakeErrors = live.tlsHandshakeErrors.Load()
		live.warmStats(&ps.Warmup)
		ps.Discovery = live.discoveryStats(pr.cfg)
		ps.Cluster = live.clusterStats(pr.cfg)
		if t := live.hk.Load(); t != nil {
			// Counted while hot keys are off too: the loops release their
			// recorders then.
			ps.NearCache.Recorders = t.Stats().Recorders
		}
		if pr.hk != nil {
			ts := pr.hk.Stats()
			ps.NearCache.Enabled = true
			ps.NearCache.Bytes, ps.NearCache.Promotions, ps.NearCache.Demotions = ts.Bytes, int64(ts.Promotions), int64(ts.Demotions)
			ps.NearCache.Invalidations[InvalTracking] = live.tracking.inval.Load()
			if trackingWanted(pr) {
				for s := range ps.Servers {
					ps.Servers[s].TrackingUp = live.trackedUp(pr.slot[s])
				}
			}
		}
		for _, l := range loops {
			l.mu.Lock()
			if i >= len(l.pools) {
				l.mu.Unlock()
				continue
			}
			pc := l.pools[i]
			var bs, rs []*backend // RESP3 clients' connections count too
			for _, set := range l.connSets(i) {
				bs = append(bs, set.backends...)
				for _, reps := range set.replicas {
					rs = append(rs, reps...)
				}
			}
			type keyed struct {
				k  serverKey
				sc *serverCounters
			}
			var scs []keyed
			for k, sc := range l.srv {
				if k.pool == i {
					scs = append(scs, keyed{k, sc})
				}
			}
			l.mu.Unlock()
			ps.ClientConnections += pc.clientConns.Load()
			ps.ClientConnectionsTotal += pc.clientTotal.Load()
			ps.ClientEOF += pc.clientEOF.Load()
			ps.ClientErrors += pc.clientErr.Load()
			for c := range ps.Requests {
				ps.Requests[c] += pc.requests[c].Load()
				ps.Errors[c] += pc.errors[c].Load()
			}
			for r := range ps.Rejected {
				ps.Rejected[r] += pc.rejected[r].Load()
			}
			ps.Fragments += pc.fragments.Load()
			ps.BytesIn += pc.bytesIn.Load()
			ps.BytesOut += pc.bytesOut.Load()
			ps.ForwardErrors += pc.forwardError.Load()
			ps.AuthFailures += pc.authFailures.Load()
			for k := range ps.ClientTimeouts {
				ps.ClientTimeouts[k] += pc.clientTimeouts[k].Load()
			}
			pc.latency.addTo(&ps.Latency)
			nc := &ps.NearCache
			nc.Hits += pc.near.hits.Load()
			nc.Misses += pc.near.misses.Load()
			nc.Fills += pc.near.fills.Load()
			nc.Coalesced += pc.near.coalesced.Load()
			nc.Refreshes += pc.near.refreshes.Load()
			for c := range nc.Invalidations {
				nc.Invalidations[c] += pc.near.inval[c].Load()
			}
			for _, b := range bs {
				si := pr.indexOf(sOf(b))
				if si < 0 {
					continue // not in the current version (or a slot it lacks)
				}
				connStats(&ps.Servers[si], b)
			}
			for _, b := range rs {
				if ri := pr.replicaAt(b.server, b.replica, b.addr); ri >= 0 {
					connStats(&ps.Servers[nprim+ri], b)
				}
			}
			for _, e := range scs {
				if row := pr.statsRow(e.k); row >= 0 {
					counterStats(&ps.Servers[row], e.sc)
				}
			}
		}
	}
	return out
}

// statsRow is the row of PoolStats.Servers that counters k belong to in
// this version (primaries first, then replicas), or -1 when the version
// does not list the server or replica.
func (pr *poolRT) statsRow(k serverKey) int {
	ci := slices.Index(pr.names, k.name)
	if ci < 0 {
		return -1
	}
	if k.replica < 0 {
		return ci
	}
	reps := pr.cfg.Servers[ci].Replicas
	if k.replica >= len(reps) || reps[k.replica].Addr != k.addr {
		return -1
	}
	return len(pr.cfg.Servers) + pr.rbase[ci] + k.replica
}

// healthStats fills ss's health figures from server i of h.
func healthStats(ss *ServerStats, h *pool.Health, i int) {
	ss.State = h.State(i)
	ss.Ejections = h.Ejections(i)
	ss.EjectedAt = h.EjectedAt(i)
	ss.Failures = h.Failures(i)
}

// connStats adds connection b's gauges to ss.
func connStats(ss *ServerStats, b *backend) {
	if b.connected.Load() {
		ss.Connections++
	}
	ss.InFlight += b.inFlight.Load()
}

// counterStats adds a server's counters on one loop to ss.
func counterStats(ss *ServerStats, sc *serverCounters) {
	ss.Requests += sc.requests.Load()
	ss.RequestBytes += sc.requestBytes.Load()
	ss.Responses += sc.responses.Load()
	ss.ResponseBytes += sc.responseBytes.Load()
	ss.Errors += sc.errors.Load()
	ss.Timeouts += sc.timeouts.Load()
	ss.EOF += sc.eof.Load()
	ss.ConnErrors += sc.connErrors.Load()
	ss.Dials += sc.dials.Load()
	ss.Hits += sc.hits.Load()
	ss.Misses += sc.misses.Load()
	ss.FragmentErrors += sc.fragmentErrors.Load()
	ss.Disagreements += sc.disagreements.Load()
	ss.AsyncErrors += sc.asyncErrors.Load()
	ss.ReadmittedMisses += sc.readmittedMisses.Load()
	ss.ReadRepairs += sc.readRepairs.Load()
	sc.latency.addTo(&ss.Latency)
}

// fragmentFailed counts a failed fragment f of a multi-key request (cmd)
// of client cl against its server, and logs it at debug level: a client
// that asked for many keys gets misses (memcached) for them, which the
// counter and the log line make visible.
func fragmentFailed(cl *client, pr *poolRT, f *request, cmd string) {
	l := cl.l
	if b := l.backendFor(pr, f.server, cl.lane()); b != nil {
		b.counters.fragmentErrors.Add(1)
	}
	if log := l.p.log; log.Enabled(context.Background(), slog.LevelDebug) {
		fi, keys := slices.Index(f.parent.frags, f), 0
		for _, k := range f.parent.keyFrag {
			if k == fi {
				keys++
			}
		}
		cause := f.reply[:min(len(f.reply), 256)]
		log.Debug("multi-key fragment failed", "pool", pr.cfg.Name, "server", pr.serverName(f.server),
			"command", cmd, "keys", keys, "cause", strings.TrimSpace(strings.TrimPrefix(string(cause), "-")))
	}
}

// sOf is b's slot, or -1 for a nil entry (a slot the loop's version lacks).
func sOf(b *backend) int {
	if b == nil {
		return -1
	}
	return b.server
}

// Uptime returns how long the proxy has run.
func (p *Proxy) Uptime() time.Duration { return time.Since(p.start) }

// Ready reports whether every listener is up and every pool has at least one
// server that is not ejected (in a replicated memcache pool, a copy).
func (p *Proxy) Ready() bool {
	select {
	case <-p.booted:
	default:
		return false
	}
	if p.draining.Load() {
		return false
	}
	for _, live := range p.activePools() {
		pr := live.cur.Load()
		ok := false
		for s := range pr.cfg.Servers {
			if pr.health.State(s) != pool.StateEjected {
				ok = true
				break
			}
		}
		// A replicated pool's primaries may all be out while replicas
		// serve their shards (replica.go).
		for i := 0; pr.replicated && !ok && i < len(pr.rnames); i++ {
			ok = pr.rhealth.State(i) != pool.StateEjected
		}
		if !ok {
			return false
		}
	}
	return true
}
