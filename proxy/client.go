package proxy

import (
	"errors"
	"io"
	"net"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// client is one client connection and its FIFO of requests.
type client struct {
	l  *loop
	pr *poolRT
	c  gnet.Conn // never used once half is set: gnet has closed it
	id uint64
	// raddr and laddr are the connection's addresses, kept for messages
	// and CLIENT INFO after gnet let go of the connection.
	raddr, laddr net.Addr
	// half is set once the client closed its writing side with replies
	// still owed (see halfclose.go).
	half *halfClosed

	fifo pool.Queue[*request]
	out  []byte

	dirty    bool
	closed   bool
	quitting bool // close once every owed reply is written; ignore input
	draining bool // proxy shutting down: close once idle
	paused   bool // stopped parsing at the in-flight limit
	waitIdle bool // stopped parsing until every owed reply is out
	// backlogged: gnet held unsent output after the last write (it may
	// have drained since; gnet does not say).
	backlogged bool
	need       int // bytes the parser needs before it can make progress
	skip       int // input bytes still to discard (an oversized value)

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
	cl := &client{l: l, pr: pr, c: c, id: id, raddr: c.RemoteAddr(), laddr: c.LocalAddr()}
	pr.codec.initClient(cl)
	l.clients[cl] = struct{}{}
	return cl
}

// onTraffic parses and dispatches every complete request in the input.
func (cl *client) onTraffic() gnet.Action {
	if cl.closed || cl.half != nil {
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
			"remote", cl.raddr.String(), "buffered", avail, "limit", limit)
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
		cl.wake() // parse what was left in the input
	}
	if cl.quitting || cl.draining || cl.half != nil {
		cl.maybeClose()
	}
}

// wake has the loop parse input left while the client was paused.
func (cl *client) wake() {
	if cl.half != nil {
		_ = cl.l.el.Execute(cl.l.p.ctx, cl.half.resumed)
		return
	}
	_ = cl.c.Wake(nil)
}

// flush writes the pending output.
func (cl *client) flush() {
	if cl.closed || len(cl.out) == 0 {
		cl.out = cl.out[:0]
		return
	}
	if h := cl.half; h != nil {
		cl.l.pools[cl.pr.idx].bytesOut.Add(int64(len(cl.out)))
		h.send(cl.out)
		cl.out = nil
		if h.failed.Load() {
			cl.close()
			return
		}
		cl.maybeClose()
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
	unsent := cl.c.OutboundBuffered()
	cl.backlogged = unsent > 0
	if unsent > maxClientOutput {
		// A client that doesn't read its replies must not hold memory
		// without bound.
		cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
		cl.l.p.log.Warn("closing client that does not read its replies", "pool", cl.pr.cfg.Name,
			"remote", cl.raddr.String(), "buffered", unsent)
		cl.close()
		return
	}
	if cl.quitting || cl.draining {
		cl.maybeClose()
	}
}

// maxClientOutput caps a slow reader's unsent replies.
const maxClientOutput = 64 << 20

// maybeClose closes a quitting client once nothing is owed, a draining one
// once it is idle (nothing owed and no unparsed input), and a half-closed
// one once nothing is owed and its input is used up.
func (cl *client) maybeClose() {
	if cl.closed || cl.fifo.Len() > 0 || len(cl.out) > 0 && cl.dirty {
		return
	}
	if h := cl.half; h != nil {
		if len(h.in) > 0 {
			return
		}
	} else if !cl.quitting && (!cl.draining || cl.c.InboundBuffered() > 0) {
		return
	}
	cl.write(cl.out)
	cl.out = cl.out[:0]
	cl.close()
}

// write writes b to the client now (a final reply before a close).
func (cl *client) write(b []byte) {
	if len(b) == 0 {
		return
	}
	if cl.half != nil {
		cl.half.send(append([]byte(nil), b...))
		return
	}
	_, _ = cl.c.Write(b)
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
	cl.write(cl.out)
	cl.out = cl.out[:0]
	cl.close()
}

// close closes the connection now.
func (cl *client) close() {
	if cl.closed {
		return
	}
	if cl.half != nil {
		cl.half.end() // the writer closes the socket after what is queued
		cl.finish(nil)
		return
	}
	_ = cl.l.el.Close(cl.c) // calls onClose synchronously
}

// onClose is gnet's close of the client's connection. A client that closed
// its writing side with replies owed lives on (detach); any other is
// finished.
func (cl *client) onClose(c gnet.Conn, err error) {
	if cl.closed || cl.half != nil {
		return
	}
	if errors.Is(err, io.EOF) && cl.detach(c) {
		return
	}
	cl.finish(err)
}

// finish forgets the client; its requests still in flight are orphaned and
// recycled when their backends answer.
func (cl *client) finish(err error) {
	if cl.closed {
		return
	}
	cl.closed = true
	cl.pr.clients.Add(-1)
	cl.l.p.clients.Add(-1)
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
