package proxy

import (
	"errors"
	"io"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// client is one client connection and its FIFO of requests.
type client struct {
	l  *loop
	pr *poolRT
	c  gnet.Conn
	id uint64

	fifo pool.Queue[*request]
	out  []byte

	dirty    bool
	closed   bool
	quitting bool // close once every owed reply is written; ignore input
	draining bool // proxy shutting down: close once idle
	paused   bool // stopped parsing at the in-flight limit
	waitIdle bool // stopped parsing until every owed reply is out
	need     int  // bytes the parser needs before it can make progress
	skip     int  // input bytes still to discard (an oversized value)

	mp   *memcache.Parser
	mreq memcache.Request
	msc  *mcScratch
	rs   *respState
}

// scratch returns the client's routing scratch space.
func (cl *client) scratch() *mcScratch {
	if cl.msc == nil {
		cl.msc = &mcScratch{}
	}
	return cl.msc
}

func newClient(l *loop, pr *poolRT, c gnet.Conn, id uint64) *client {
	cl := &client{l: l, pr: pr, c: c, id: id}
	pr.codec.initClient(cl)
	l.clients[cl] = struct{}{}
	return cl
}

// onTraffic parses and dispatches every complete request in the input.
func (cl *client) onTraffic() gnet.Action {
	if cl.closed {
		return gnet.Close
	}
	c := cl.c
	if cl.skip > 0 {
		n, _ := c.Discard(cl.skip)
		cl.skip -= n
		if cl.skip > 0 {
			return gnet.None
		}
	}
	avail := c.InboundBuffered()
	if cl.quitting {
		_, _ = c.Discard(avail)
		return gnet.None
	}
	if limit := cl.pr.cfg.Limits.MaxClientBuffer; limit > 0 && avail > limit {
		cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
		cl.l.pools[cl.pr.idx].clientErr.Add(1)
		cl.l.p.log.Warn("closing client over max_client_buffer", "pool", cl.pr.cfg.Name,
			"remote", cl.c.RemoteAddr().String(), "buffered", avail, "limit", limit)
		cl.abort(cl.pr.codec.errorReply(nil, "input buffer limit exceeded"))
		return gnet.None
	}
	if cl.paused || cl.waitIdle || avail == 0 || avail < cl.need {
		return gnet.None
	}
	buf, _ := c.Peek(-1)
	n := cl.pr.codec.serve(cl, buf)
	if !cl.closed && n > 0 {
		cl.l.pools[cl.pr.idx].bytesIn.Add(int64(min(n, len(buf))))
		if n > len(buf) { // an error asked to skip past what has arrived
			cl.skip = n - len(buf)
			n = len(buf)
		}
		_, _ = c.Discard(n)
	}
	if cl.l.p.opts.FlushMode == FlushPerCallback {
		cl.l.flush()
	} else {
		cl.l.flushClients()
	}
	if cl.draining {
		cl.maybeClose()
	}
	return gnet.None
}

// push appends r to the FIFO.
func (cl *client) push(r *request) {
	r.cl = cl
	r.start = cl.l.clock
	r.inQueue = true
	cl.fifo.Push(r)
}

// full reports whether the in-flight limit is reached.
func (cl *client) full() bool {
	limit := cl.pr.cfg.Limits.MaxInFlight
	return limit > 0 && cl.fifo.Len() >= limit
}

// complete marks r done and moves every finished request at the head of the
// FIFO to the output.
func (cl *client) complete(r *request) {
	r.done = true
	cl.advance()
}

// advance emits finished requests from the head of the FIFO, in order.
func (cl *client) advance() {
	emitted := false
	for {
		r, ok := cl.fifo.Front()
		if !ok || !r.done {
			break
		}
		cl.fifo.Pop()
		r.inQueue = false
		pc := &cl.l.pools[cl.pr.idx]
		pc.requests[r.class].Add(1)
		pc.latency.observe(cl.l.clock - r.start)
		if !r.silent {
			cl.out = append(cl.out, r.reply...)
			emitted = true
		}
		cl.l.release(r)
	}
	if emitted {
		cl.l.markClient(cl)
	}
	if cl.paused && cl.fifo.Len() <= cl.pr.cfg.Limits.MaxInFlight/2 || cl.waitIdle && cl.fifo.Len() == 0 {
		cl.paused, cl.waitIdle = false, false
		_ = cl.c.Wake(nil) // parse what was left in the input
	}
	if cl.quitting || cl.draining {
		cl.maybeClose()
	}
}

// flush writes the pending output.
func (cl *client) flush() {
	if cl.closed || len(cl.out) == 0 {
		cl.out = cl.out[:0]
		return
	}
	_, err := cl.c.Write(cl.out)
	cl.l.pools[cl.pr.idx].bytesOut.Add(int64(len(cl.out)))
	cl.out = cl.out[:0]
	if cap(cl.out) > 1<<20 {
		cl.out = nil
	}
	if err != nil || cl.closed {
		return
	}
	if cl.c.OutboundBuffered() > maxClientOutput {
		// A client that doesn't read its replies must not hold memory
		// without bound.
		cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
		cl.l.p.log.Warn("closing client that does not read its replies", "pool", cl.pr.cfg.Name,
			"remote", cl.c.RemoteAddr().String(), "buffered", cl.c.OutboundBuffered())
		cl.close()
		return
	}
	if cl.quitting || cl.draining {
		cl.maybeClose()
	}
}

// maxClientOutput caps a slow reader's unsent replies.
const maxClientOutput = 64 << 20

// maybeClose closes a quitting client once nothing is owed, and a draining
// one once it is idle (nothing owed and no unparsed input).
func (cl *client) maybeClose() {
	if cl.closed || cl.fifo.Len() > 0 || len(cl.out) > 0 && cl.dirty {
		return
	}
	if !cl.quitting && (!cl.draining || cl.c.InboundBuffered() > 0) {
		return
	}
	if len(cl.out) > 0 {
		_, _ = cl.c.Write(cl.out)
		cl.out = cl.out[:0]
	}
	cl.close()
}

// closeWith queues a final reply (written before everything owed is
// dropped) and closes the connection after the owed replies.
func (cl *client) closeWith(reply []byte) {
	cl.quitting = true
	cl.answer(ClassInvalid, reply, false)
}

// answer queues a reply the proxy makes itself, in order behind the
// client's outstanding requests (silent: the client asked for none).
func (cl *client) answer(class CmdClass, reply []byte, silent bool) {
	r := cl.l.newRequest()
	r.class = class
	r.reply = append(r.reply[:0], reply...)
	r.silent = silent
	cl.push(r)
	cl.complete(r)
}

// refuse answers a request the proxy will not serve with reply, counting
// why.
func (cl *client) refuse(reason RejectReason, reply []byte) {
	pc := &cl.l.pools[cl.pr.idx]
	pc.rejected[reason].Add(1)
	pc.errors[ClassInvalid].Add(1)
	cl.answer(ClassInvalid, reply, false)
}

// abort closes the connection now, without waiting for owed replies (they
// may never come). The error reply is written only when nothing is owed:
// otherwise the client would take it for the reply to an earlier request.
func (cl *client) abort(reply []byte) {
	if cl.closed {
		return
	}
	if cl.fifo.Len() == 0 {
		cl.out = append(cl.out, reply...)
	}
	if len(cl.out) > 0 {
		_, _ = cl.c.Write(cl.out)
		cl.out = cl.out[:0]
	}
	cl.close()
}

// close closes the connection now.
func (cl *client) close() {
	if cl.closed {
		return
	}
	_ = cl.l.el.Close(cl.c) // calls onClose synchronously
}

// onClose forgets the client; its requests still in flight are orphaned and
// recycled when their backends answer.
func (cl *client) onClose(err error) {
	if cl.closed {
		return
	}
	cl.closed = true
	pc := &cl.l.pools[cl.pr.idx]
	pc.clientConns.Add(-1)
	if err == nil || errors.Is(err, io.EOF) {
		pc.clientEOF.Add(1)
	} else {
		pc.clientErr.Add(1)
	}
	delete(cl.l.clients, cl)
	for {
		r, ok := cl.fifo.Pop()
		if !ok {
			break
		}
		r.inQueue = false
		r.cl = nil
		cl.l.release(r)
	}
	cl.out = nil
	// After the FIFO is emptied, so failing the dedicated connections'
	// requests completes nothing on this client.
	cl.pr.codec.closeClient(cl)
}
