package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// backend connection states.
const (
	stateIdle       = iota // no connection; the next request dials
	stateConnecting        // a dial is in progress; requests queue
	stateConnected
	stateDown // recent failures: requests fail fast until retryAt
)

// Reconnect backoff after consecutive connect failures: 0, then doubling from
// backoffMin up to backoffMax.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
)

// backend is one pipelined connection from one loop to one server.
type backend struct {
	l *loop
	// pr is the pool version the connection follows (the loop's, updated
	// when it adopts a new one; a dedicated connection's stays the one it
	// was opened under).
	pr      *poolRT
	server  int    // slot (see poolLive)
	replica int    // -1 for the primary, else the index in the server's replicas
	addr    string // where to connect
	tlsName string // under server_tls, the name to verify ("": addr's host)
	network string

	c     gnet.Conn // nil unless connected
	state int
	gen   uint64 // dial attempt generation; stale attempts are closed
	fails int    // consecutive connect failures, for backoff
	// cause is why the connection last failed, in words safe for clients
	// ("connection refused", "handshake refused: WRONGPASS ..."); requests
	// refused while the server is in backoff are told it.
	cause   string
	retryAt int64 // loop clock; in stateDown, fail fast until then

	fifo pool.Queue[*request]
	wbuf []byte
	rbuf []byte // a partial reply carried between reads
	// rstate is how far the Redis codec framed the partial reply at the
	// start of rbuf, so a huge reply is not walked again on every read.
	rstate resp.ReplyState
	dirty  bool
	// heard is the loop clock when the server last sent bytes on c: the
	// timeout runs from the later of it and the head request's send time,
	// so a server busy delivering a long queue of replies (to a client that
	// reads them slowly, say) is not taken for a slow one.
	heard int64
	// st is the big reply being streamed, if any (see stream.go).
	st *replyStream

	// owner is the client a dedicated connection belongs to (nil for the
	// loop's shared connections); push marks a pub/sub connection, whose
	// replies are not matched to requests.
	owner *client
	push  bool
	// retired: a reload removed the server; the connection closes once it
	// owes nothing (loop.retire).
	retired bool
	// resp3 marks a Redis connection that did HELLO 3 in its handshake:
	// it carries RESP3 clients' requests, and its replies are framed as
	// RESP3 (see loop.clientBackend).
	resp3 bool

	// counters are the server's (or replica's) on this loop, shared by
	// all its connections, clients' own ones included, and kept when they
	// are replaced (reload, failover): see loop.serverCounters.
	counters  *serverCounters
	connected atomic.Bool // mirrors state == stateConnected, for Stats
	inFlight  counter     // mirrors fifo.Len(), for Stats
}

// dialAttempt is the gnet context of a connection being enrolled.
type dialAttempt struct {
	b   *backend
	gen uint64
}

// newBackend is a connection to server (a slot) of pr on loop l, counted
// with the server's other connections there.
func newBackend(l *loop, pr *poolRT, server int) *backend {
	s := pr.slots[server]
	return &backend{l: l, pr: pr, server: server, replica: -1, addr: s.addr, network: s.network, tlsName: s.tlsName,
		counters: l.serverCounters(serverKey{pool: pr.idx, name: s.name, replica: -1})}
}

// newReplicaBackend is a connection to replica i of server (a slot the
// version lists).
func newReplicaBackend(l *loop, pr *poolRT, server, i int) *backend {
	r := pr.cfg.Servers[pr.indexOf(server)].Replicas[i]
	return &backend{l: l, pr: pr, server: server, replica: i, addr: r.Addr, network: r.Network,
		counters: l.serverCounters(serverKey{pool: pr.idx, name: pr.slots[server].name, replica: i, addr: r.Addr})}
}

// name names the connection's server (and replica) in messages.
func (b *backend) name() string {
	if b.replica >= 0 {
		return b.pr.slots[b.server].name + " replica " + b.addr
	}
	return b.pr.slots[b.server].name
}

// failure counts a failure toward the server's ejection; a replica's
// count toward its own (never its primary's).
func (b *backend) failure() {
	if b.replica < 0 {
		b.pr.live.failure(b.server)
	} else {
		b.pr.live.replicaFailure(b.server, b.replica, b.addr)
	}
}

func (b *backend) success() {
	if b.replica < 0 {
		b.pr.live.success(b.server)
	} else {
		b.pr.live.replicaSuccess(b.server, b.replica, b.addr)
	}
}

// usable reports whether a request may be queued on b now, dialing if needed.
// It returns false while the server is in backoff after failures.
func (b *backend) usable() bool {
	switch b.state {
	case stateConnected, stateConnecting:
		return true
	case stateDown:
		if b.l.now() < b.retryAt {
			return false
		}
		b.state = stateIdle
	}
	if b.addr == "" {
		// A Sentinel master no Sentinel has told about yet: fail fast.
		b.cause = noAddrCause
		return false
	}
	b.connect()
	return true
}

// noAddrCause is why a server without an address (a Sentinel master before
// the first answer) refuses requests.
const noAddrCause = "address not known yet (no Sentinel has answered for it)"

// unavailable counts a request failed at once because b is down.
func (b *backend) unavailable() {
	b.l.counters(b.pr.idx).forwardError.Add(1)
}

// refuse fails r at once because b is down, saying why and when the next
// attempt is due.
func (b *backend) refuse(r *request) {
	b.unavailable()
	if b.pr.cfg.Cluster {
		b.pr.live.clusterKick() // its slots may have a new master already
	}
	msg := "server " + b.name() + " unavailable"
	if b.cause != "" {
		msg += ": " + b.cause
	}
	if wait := time.Duration(b.retryAt - b.l.now()); b.state == stateDown && wait > 0 {
		msg += ", retry in " + max(wait.Round(10*time.Millisecond), 10*time.Millisecond).String()
	}
	failRequest(r, b.pr, msg)
}

// enqueue queues r toward this backend. The caller has appended r's bytes
// (size of them) to b.wbuf.
func (b *backend) enqueue(r *request, size int) {
	r.inFIFO = true
	r.server = b.server
	r.sentAt = b.l.clock
	b.fifo.Push(r)
	b.inFlight.Add(1)
	b.counters.requests.Add(1)
	b.counters.requestBytes.Add(int64(size))
	if b.state == stateConnected {
		b.l.markBackend(b)
	}
}

// connect starts a dial in its own goroutine; the connection is enrolled on
// b's loop and reported through onOpen, or the failure through dialFailed.
func (b *backend) connect() {
	if b.state == stateConnecting || b.state == stateConnected || b.addr == "" {
		return
	}
	b.state = stateConnecting
	b.gen++
	b.counters.dials.Add(1)
	b.pr.codec.onConnect(b)
	att := &dialAttempt{b: b, gen: b.gen}
	p := b.l.p
	network, addr, tlsName := b.network, b.addr, cmp.Or(b.tlsName, b.addr)
	dialer := &b.pr.dialer // b.pr may change (loop.adopt) while the dial runs
	stls := b.pr.stls
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		nc, err := dialer.DialContext(p.ctx, network, addr)
		if err == nil && stls != nil {
			nc, err = p.dialTLS(nc, stls, tlsName, dialer.Timeout)
		}
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			ch, err = b.l.el.Enroll(gnet.NewContext(p.ctx, att), nc)
			if err == nil {
				err = enrolled(p.ctx, ch)
			} else {
				nc.Close()
			}
		}
		if err != nil {
			err = fmt.Errorf("connect %s: %w", addr, err)
			_ = b.l.el.Execute(p.ctx, gnet.RunnableFunc(func(context.Context) error {
				b.dialFailed(att, err)
				return nil
			}))
		}
	}()
}

// onOpen runs on the loop when an enrolled connection opens.
func (b *backend) onOpen(c gnet.Conn, att *dialAttempt) {
	if att.gen != b.gen || b.state != stateConnecting {
		_ = b.l.el.Close(c)
		return
	}
	c.SetContext(b)
	b.c = c
	b.state = stateConnected
	b.connected.Store(true)
	b.fails = 0
	b.cause = ""
	if len(b.wbuf) > 0 {
		b.l.markBackend(b)
		if b.l.p.opts.FlushMode == FlushPerCallback {
			b.l.flush()
		}
	}
}

// dialFailed runs on the loop when a dial or enroll failed.
func (b *backend) dialFailed(att *dialAttempt, err error) {
	if att.gen != b.gen || b.state != stateConnecting {
		return
	}
	b.fails++
	b.counters.connErrors.Add(1)
	backoff := time.Duration(0)
	if b.fails > 1 {
		backoff = min(backoffMin<<min(b.fails-2, 10), backoffMax)
	}
	b.state = stateDown
	b.retryAt = b.l.now() + int64(backoff)
	b.failure()
	if b.pr.cfg.Cluster {
		b.pr.live.clusterKick() // a failover may have moved its slots
	}
	b.pr.p.log.Debug("backend connect failed", "pool", b.pr.cfg.Name, "server", b.name(), "error", err)
	b.cause = clientCause(err)
	b.failAll(fmt.Sprintf("server %s unavailable: %s", b.name(), b.cause))
	b.ownerLost("unavailable")
	b.l.flushClients()
}

// flush writes the queued requests.
func (b *backend) flush() {
	if b.state != stateConnected || len(b.wbuf) == 0 {
		return
	}
	c := b.c
	_, err := c.Write(b.wbuf)
	b.wbuf = b.wbuf[:0]
	if cap(b.wbuf) > 1<<20 {
		b.wbuf = nil
	}
	if err != nil && b.c == c {
		// gnet closed it synchronously; onClose normally ran already.
		b.lost(c, err)
	}
}

// onTraffic frames and delivers every complete reply in c's input.
func (b *backend) onTraffic(c gnet.Conn) gnet.Action {
	if b.c != c {
		return gnet.Close
	}
	buf, _ := c.Peek(-1)
	if len(buf) > 0 {
		b.heard = b.l.clock
	}
	own := len(b.rbuf) > 0
	if own {
		// A partial reply is waiting in rbuf: add to it rather than have
		// gnet copy everything buffered into one slice on every read.
		b.rbuf = append(b.rbuf, buf...)
		_, _ = c.Discard(len(buf))
		buf = b.rbuf
	}
	off := 0
	for off < len(buf) {
		if b.st != nil {
			n, err := b.stream(buf[off:])
			off += n
			if b.c != c {
				// Closing a client that owned this (dedicated)
				// connection closed it too.
				return gnet.None
			}
			if err != nil {
				b.protocolError(c, err)
				return gnet.None
			}
			if n == 0 {
				break // the rest of the reply is still to come
			}
			continue
		}
		r, ok := b.fifo.Front()
		if !ok && b.push {
			n, err := b.pr.codec.pushFrame(buf[off:])
			if err != nil {
				b.protocolError(c, err)
				return gnet.None
			}
			if n == 0 {
				break
			}
			b.pr.codec.push(b, buf[off:off+n])
			off += n
			continue
		}
		if !ok {
			b.protocolError(c, fmt.Errorf("unexpected data from server: %q", clip(buf[off:])))
			return gnet.None
		}
		n, err := b.pr.codec.reply(b, buf[off:], r)
		if err != nil {
			b.protocolError(c, err)
			return gnet.None
		}
		if n == 0 {
			if len(buf)-off >= streamMin {
				b.startStream(r) // big: stream the rest from the reply's start
				continue
			}
			break
		}
		b.answered(r, n)
		off += n
	}
	if own {
		b.rbuf = b.rbuf[:copy(b.rbuf, b.rbuf[off:])]
		if len(b.rbuf) == 0 && cap(b.rbuf) > 1<<20 {
			b.rbuf = nil // don't keep a large reply's buffer
		}
	} else {
		if off < len(buf) {
			b.rbuf = append(b.rbuf[:0], buf[off:]...) // keep the partial reply ourselves
		}
		_, _ = c.Discard(len(buf))
	}
	if off > 0 {
		b.success()
	}
	b.l.flushClients()
	if b.retired {
		b.closeIfIdle()
	}
	return gnet.None
}

// closeIfIdle closes a connection that owes no replies (a retired one) and
// reports whether it is closed.
func (b *backend) closeIfIdle() bool {
	if b.fifo.Len() > 0 || b.st != nil {
		return false
	}
	if c := b.c; c != nil {
		b.detach(c)
		_ = b.l.el.Close(c)
	} else if b.state == stateConnecting {
		b.gen++ // the dial still running is abandoned; onOpen closes it
		b.state = stateIdle
	}
	return true
}

// answered pops r, whose n-byte reply has been delivered, from the FIFO.
func (b *backend) answered(r *request, n int) {
	b.fifo.Pop()
	b.inFlight.Add(-1)
	b.counters.responses.Add(1)
	b.counters.responseBytes.Add(int64(n))
	if b.owner == nil {
		// A client's own connection carries blocking commands, whose
		// wait is the client's choice, not the server's latency.
		b.counters.latency.observe(b.l.clock - r.sentAt)
	}
	if cl := r.cl; cl != nil {
		cl.noteReply(n)
	} else if r.parent != nil && r.parent.cl != nil {
		r.parent.cl.noteReply(n)
	}
	if r.requeued {
		r.requeued = false // read_repair sent it on (replica.go): not done
		return
	}
	if r.hkWrite {
		rewritten(b.l, b.pr, r)
	}
	r.inFIFO = false
	b.l.release(r)
}

// protocolError handles output the codec cannot frame: the stream can't be
// resynchronised, so the connection goes.
func (b *backend) protocolError(c gnet.Conn, err error) {
	b.pr.p.log.Warn("backend protocol error", "pool", b.pr.cfg.Name, "server", b.name(), "error", err)
	b.detach(c)
	_ = b.l.el.Close(c)
	b.failure()
	var hs *handshakeError
	if errors.As(err, &hs) {
		// The server's own words (WRONGPASS, NOAUTH, ...): they name no
		// address, and say what to fix.
		b.cause = "handshake refused: " + hs.reply
		b.failAll(fmt.Sprintf("server %s refused the connection handshake: %s", b.name(), hs.reply))
	} else {
		b.cause = "malformed reply"
		b.failAll(fmt.Sprintf("server %s sent a malformed reply", b.name()))
	}
	b.ownerLost("sent a malformed reply")
	b.l.flushClients()
}

// onClose runs when gnet closes c (peer closed, I/O error, or our Close).
func (b *backend) onClose(c gnet.Conn, err error) {
	if b.c != c {
		return // already detached
	}
	b.lost(c, err)
}

// lost handles the loss of the connected c.
func (b *backend) lost(c gnet.Conn, err error) {
	b.detach(c)
	inFlight := b.fifo.Len()
	if inFlight > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		b.failure()
	}
	if err == nil || errors.Is(err, io.EOF) {
		b.counters.eof.Add(1)
	} else {
		b.counters.connErrors.Add(1)
	}
	if err == nil {
		err = io.EOF
	}
	if b.pr.cfg.Cluster {
		b.pr.live.clusterKick() // a failover may have moved its slots
	}
	b.pr.p.log.Debug("backend connection lost", "pool", b.pr.cfg.Name, "server", b.name(), "error", err,
		"in_flight", inFlight)
	b.cause = "connection lost: " + clientCause(err)
	b.failAll(fmt.Sprintf("server %s connection lost: %s", b.name(), clientCause(err)))
	b.ownerLost("connection lost")
	b.l.flushClients()
}

// ownerLost tells the client that owns a dedicated connection that it is
// gone, when the client's session depended on it: its subscriptions or its
// open transaction would silently vanish, so the client is closed with an
// error and its library starts over.
func (b *backend) ownerLost(why string) {
	cl := b.owner
	if cl == nil || cl.closed {
		return
	}
	if b.pr.codec.inSession(cl) {
		cl.closeWith(b.pr.codec.errorReply(nil, "server "+b.name()+" "+why))
	}
}

// detach forgets the connection; its requests are still in b.fifo.
func (b *backend) detach(c gnet.Conn) {
	if b.c == c {
		b.c = nil
	}
	if b.state == stateConnected {
		b.state = stateIdle
	}
	b.connected.Store(false)
	b.wbuf = b.wbuf[:0]
	b.rbuf = b.rbuf[:0]
	b.rstate.Reset()
	b.dropStream()
}

// sweep fails everything on b if the server has owed its oldest request a
// reply for longer than timeout: measured from when that request was sent
// or from when the server last sent anything, whichever is later. The
// server is judged by its own replies, never by how long the proxy took to
// read them or how long earlier replies in the same pipeline took.
func (b *backend) sweep(now, timeout int64) {
	r, ok := b.fifo.Front()
	if !ok || now-max(r.sentAt, b.heard) < timeout {
		return
	}
	b.counters.timeouts.Add(int64(b.fifo.Len()))
	msg := fmt.Sprintf("server %s timed out after %v", b.name(), time.Duration(timeout))
	if c := b.c; c != nil {
		b.detach(c)
		_ = b.l.el.Close(c)
	} else if b.state == stateConnecting {
		b.gen++ // the dial that is still running is abandoned
		b.state = stateIdle
	}
	b.failure()
	b.failAll(msg)
}

// failAll fails every request queued on b with msg.
func (b *backend) failAll(msg string) {
	b.wbuf = b.wbuf[:0]
	for {
		r, ok := b.fifo.Pop()
		if !ok {
			return
		}
		b.inFlight.Add(-1)
		b.counters.errors.Add(1)
		// Fail before clearing inFIFO: completing r may pop it from its
		// client's FIFO, and release must not recycle it until the
		// backend is done with it too (exactly once, below).
		failRequest(r, b.pr, msg)
		if r.hkWrite {
			rewritten(b.l, b.pr, r) // it may have been applied
		}
		r.inFIFO = false
		b.l.release(r)
	}
}

// clip shortens b for a log line.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
