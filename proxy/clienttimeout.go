package proxy

import (
	"slices"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
)

// Client timeouts: client_idle_timeout closes a client that has been idle
// (nothing in flight, nothing owed, no input) for that long, silently, as
// redis-server's `timeout` does; client_request_timeout closes one that
// started a request and has not finished sending it (slowloris), with an
// error reply when nothing else is owed to it.
//
// No timer per client or per request: the loop's sweep, at most once per
// clientCheckEvery, looks at each of its clients (O(clients), a few loads
// each). What a check needs is kept up to date by the data path for the
// price of a few stores: activeAt when input arrives or output is written,
// and partial/partialAt/partialMark when a callback leaves the start of a
// request in the input.

// clientCheckEvery is how often a loop checks its clients' timeouts; a
// timeout fires up to this late (config.ClientTimeoutMin).
const clientCheckEvery = time.Second

// TimeoutKind says which client timeout closed a client.
type TimeoutKind int

// Client timeout kinds.
const (
	// TimeoutIdle is client_idle_timeout.
	TimeoutIdle TimeoutKind = iota
	// TimeoutRequest is client_request_timeout.
	TimeoutRequest
	numTimeoutKinds
)

// String returns the kind's metric label.
func (k TimeoutKind) String() string {
	return [...]string{"idle", "request"}[k]
}

// notePartial records, at the end of a read callback, whether the client
// left the start of a request in its input: the request timeout's clock
// starts then (and keeps running while it stays so). Input the proxy
// itself is not parsing (paused at max_in_flight, waiting for replies to
// go out or to be taken) does not count: the client is not to blame, and
// the clock starts again once the proxy reads on.
func (cl *client) notePartial() {
	if cl.closed || cl.half != nil || cl.quitting || cl.paused || cl.waitIdle || cl.outPaused {
		cl.partial = false
		return
	}
	buffered := cl.inBuffered()
	if cl.skip == 0 && buffered == 0 {
		cl.partial = false
		return
	}
	if !cl.partial {
		cl.partial = true
		cl.partialAt = cl.l.clock
		cl.partialMark = cl.rcvd + int64(buffered)
	}
}

// idle reports whether nothing is going on for cl: no request in flight, no
// output owed or unsent, not subscribed or waiting for subscription
// confirmations. A blocking command is a request in flight.
func (cl *client) idle() bool {
	if cl.fifo.Len() > 0 || len(cl.out) > 0 || len(cl.pend) > 0 || cl.w.OutboundBuffered() > 0 {
		return false
	}
	if rs := cl.rs; rs != nil && (rs.awaitPush > 0 || rs.sub != nil && rs.sub.count() > 0) {
		return false
	}
	return true
}

// timedOut reports whether cl is past one of its pool's client timeouts at
// now, and which. It restarts the request clock of a request that grew by
// config.RequestProgress bytes since the clock last started.
func (cl *client) timedOut(now int64) (TimeoutKind, bool) {
	if cl.closed || cl.half != nil || cl.quitting || cl.draining {
		return 0, false
	}
	cfg := cl.pr.live.cur.Load().cfg // a reload applies at once
	if t := cfg.ClientRequestTimeout; t > 0 && cl.partial {
		got := cl.rcvd + int64(cl.inBuffered())
		if got-cl.partialMark >= config.RequestProgress {
			cl.partialAt, cl.partialMark = now, got
		} else if now-cl.partialAt >= int64(t) {
			return TimeoutRequest, true
		}
	}
	if t := cfg.ClientIdleTimeout; t > 0 && now-cl.activeAt >= int64(t) && cl.idle() {
		return TimeoutIdle, true
	}
	return 0, false
}

// timeoutLog sums one sweep's client timeouts of one kind in one pool for
// a single log line: 10,000 slowloris connections closed at once make one
// line per loop and pool, not 10,000.
type timeoutLog struct {
	kind   TimeoutKind
	pool   string
	n      int
	remote string        // the first client's, as an example
	after  time.Duration // the pool's timeout
}

// checkTimeouts closes the loop's clients that are past a client timeout
// and logs what it closed.
func (l *loop) checkTimeouts(now int64) {
	var logs []*timeoutLog // few: one per kind and pool that had any
	for cl := range l.clients {
		kind, ok := cl.timedOut(now)
		if !ok {
			continue
		}
		cfg := cl.pr.live.cur.Load().cfg
		after := cfg.ClientIdleTimeout
		if kind == TimeoutRequest {
			after = cfg.ClientRequestTimeout
		}
		pc := l.pools[cl.pr.idx]
		pc.clientTimeouts[kind].Add(1)
		i := slices.IndexFunc(logs, func(lg *timeoutLog) bool { return lg.kind == kind && lg.pool == cfg.Name })
		if i < 0 {
			logs = append(logs, &timeoutLog{kind: kind, pool: cfg.Name, remote: cl.raddr.String(), after: after})
			i = len(logs) - 1
		}
		logs[i].n++
		if kind == TimeoutIdle {
			cl.close() // silently, as redis-server and memcached close idle clients
			continue
		}
		pc.clientErr.Add(1)
		cl.abort(cl.pr.codec.errorReply(nil, "request timed out: incomplete after "+after.String()))
	}
	for _, lg := range logs {
		if lg.kind == TimeoutRequest {
			l.p.log.Warn("closed clients that did not finish sending a request within client_request_timeout",
				"clients", lg.n, "pool", lg.pool, "example_remote", lg.remote, "timeout", lg.after)
		} else {
			l.p.log.Debug("closed idle clients (client_idle_timeout)",
				"clients", lg.n, "pool", lg.pool, "example_remote", lg.remote, "timeout", lg.after)
		}
	}
}
