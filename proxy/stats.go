package proxy

import (
	"slices"
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
	hits          counter
	misses        counter
	latency       histogram
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
	Latency           Histogram
	Servers           []ServerStats
}

// ServerStats is a snapshot of one server's counters.
type ServerStats struct {
	Name, Addr    string
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
	Hits, Misses  int64
	Latency       Histogram
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
	out := make([]PoolStats, len(p.pools))
	for i, pr := range p.pools {
		ps := &out[i]
		ps.Name, ps.Protocol = pr.cfg.Name, string(pr.cfg.Protocol)
		ps.Servers = make([]ServerStats, len(pr.cfg.Servers))
		for s, srv := range pr.cfg.Servers {
			ss := &ps.Servers[s]
			ss.Name, ss.Addr = srv.Name, srv.Addr
			ss.State = pr.health.State(s)
			ss.Ejections = pr.health.Ejections(s)
			ss.EjectedAt = pr.health.EjectedAt(s)
			ss.Failures = pr.health.Failures(s)
		}
		ps.AcceptErrors = pr.acceptErrors.Load()
		for _, l := range loops {
			pc := &l.pools[i]
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
			pc.latency.addTo(&ps.Latency)
			shared := l.backends[i]
			if l.resp3[i] != nil {
				shared = append(slices.Clip(shared), l.resp3[i].backends...) // RESP3 clients' connections count too
			}
			for _, b := range shared {
				ss := &ps.Servers[b.server]
				sc := &b.counters
				if b.connected.Load() {
					ss.Connections++
				}
				ss.InFlight += b.inFlight.Load()
				ss.Requests += sc.requests.Load()
				ss.RequestBytes += sc.requestBytes.Load()
				ss.Responses += sc.responses.Load()
				ss.ResponseBytes += sc.responseBytes.Load()
				ss.Errors += sc.errors.Load()
				ss.Timeouts += sc.timeouts.Load()
				ss.EOF += sc.eof.Load()
				ss.ConnErrors += sc.connErrors.Load()
				ss.Hits += sc.hits.Load()
				ss.Misses += sc.misses.Load()
				sc.latency.addTo(&ss.Latency)
			}
		}
	}
	return out
}

// Uptime returns how long the proxy has run.
func (p *Proxy) Uptime() time.Duration { return time.Since(p.start) }

// Ready reports whether every listener is up and every pool has at least one
// server that is not ejected.
func (p *Proxy) Ready() bool {
	select {
	case <-p.booted:
	default:
		return false
	}
	if p.draining.Load() {
		return false
	}
	for _, pr := range p.pools {
		ok := false
		for s := range pr.cfg.Servers {
			if pr.health.State(s) != pool.StateEjected {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
