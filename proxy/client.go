package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// client is one client connection and its FIFO of requests.
type client struct {
	l  *loop
	pr *poolRT
	c  gnet.Conn // never used once half is set: gnet has closed it
	// w is where output goes and how the client is woken: c, or once the
	// client closed its writing side with replies owed, half.
	w  clientConn
	id uint64
	// raddr and laddr are the connection's addresses, kept for messages
	// and CLIENT INFO after gnet let go of the connection.
	raddr, laddr net.Addr
	// half is set once the client closed its writing side with replies
	// still owed (see halfclose.go).
	half *halfClosed

	fifo pool.Queue[*request]
	out  []byte // small replies, appended; written at the next flush

	// Output written paced (see pump): big replies queued by reference,
	// behind what out held when they were queued.
	pend      [][]byte
	pendBytes int
	paced     bool  // in the loop's paced list
	outPaused bool  // not parsing input until the client takes its output
	held      int64 // unsent output charged to max_memory: pend and gnet's buffer
	sent      int64 // bytes handed to gnet
	// Drain progress, sampled by the loop's sweep: when the client last
	// took output (or had none owed), and the counts at the last sample.
	drainAt  int64
	lastSent int64
	lastOut  int

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
	// avgReply is the running average size of the client's replies (0:
	// none yet), for its in-flight cap (inFlightCap).
	avgReply int
	bulk     bool // its requests use the servers' bulk connections (lane.go)
	// background counts its all_async writes answered while copies of
	// them are still in flight (replica.go); it keeps its lane meanwhile.
	background int
	skip       int // input bytes still to discard (an oversized value)
	// stash holds input moved out of gnet while the client is not
	// parsed (stash.go); parsing takes it before gnet's.
	stash inStash

	// Client timeouts (clienttimeout.go). activeAt is the clock of the
	// last input or output; rcvd counts the input bytes taken (parsed or
	// skipped). partial is set while the input holds the start of a
	// request the client has not finished sending: since partialAt, when
	// rcvd plus the buffered input was partialMark.
	activeAt    int64
	rcvd        int64
	partial     bool
	partialAt   int64
	partialMark int64

	mp   *memcache.Parser
	mreq memcache.Request
	// mcAuthed: the memcache client may send requests (it authenticated,
	// or its pool had no auth_file when it connected); mcAuthFails counts
	// wrong passwords since (see memcacheCodec.authStep).
	mcAuthed    bool
	mcAuthFails int
	msc         *mcScratch
	rs          *respState
}

// clientConn is what a client uses of its connection for output: gnet's
// connection, or the writer of a half-closed client (halfclose.go).
type clientConn interface {
	// Write sends b, keeping what cannot go at once; b may be reused.
	Write(b []byte) (int, error)
	// OutboundBuffered is how much written output is not sent yet.
	OutboundBuffered() int
	// Wake has the loop parse the client's input again.
	Wake(cb gnet.AsyncCallback) error
}

// scratch returns the client's routing scratch space.
func (cl *client) scratch() *mcScratch {
	if cl.msc == nil {
		cl.msc = &mcScratch{}
	}
	return cl.msc
}

func newClient(l *loop, pr *poolRT, c gnet.Conn, id uint64) *client {
	cl := &client{l: l, pr: pr, c: c, w: c, id: id, raddr: c.RemoteAddr(), laddr: c.LocalAddr(), drainAt: l.clock, activeAt: l.clock}
	pr.codec.initClient(cl)
	l.clients[cl] = struct{}{}
	return cl
}

// onTraffic parses and dispatches every complete request in the input.
func (cl *client) onTraffic() gnet.Action {
	if cl.closed || cl.half != nil {
		return gnet.Close
	}
	cl.activeAt = cl.l.clock
	cl.read()
	cl.notePartial()
	return gnet.None
}

// read parses and dispatches every complete request in the input: the
// stash's, then gnet's (stash.go).
func (cl *client) read() {
	if cl.stash.held() > 0 {
		cl.stashInput() // behind what the stash holds
	}
	if !cl.skipInput() {
		return
	}
	avail := cl.inBuffered()
	if cl.quitting {
		n := cl.stash.held()
		cl.stash.reset(cl.l)
		k, _ := cl.c.Discard(cl.c.InboundBuffered())
		cl.rcvd += int64(n + k)
		return
	}
	if limit := cl.pr.cfg.Limits.MaxClientBuffer; limit > 0 && avail > limit {
		cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
		cl.l.pools[cl.pr.idx].clientErr.Add(1)
		cl.l.p.log.Warn("closing client over max_client_buffer", "pool", cl.pr.cfg.Name,
			"remote", cl.raddr.String(), "buffered", avail, "limit", limit)
		cl.abort(cl.pr.codec.errorReply(nil, "input buffer limit exceeded"))
		return
	}
	if cl.paused || cl.waitIdle || avail == 0 || avail < cl.need {
		cl.stashIfPaused()
		return
	}
	if cl.outFull() {
		// Back-pressure: no new requests while the client is not taking
		// its replies; the pacer wakes it once it has taken them.
		cl.outPaused = true
		cl.l.pace(cl)
		cl.stashIfPaused()
		return
	}
	cl.pr = cl.l.version(cl.pr.live) // a reload applies from the next request on
	// The input is parsed a window at a time (peekWindow, or more for a
	// request known to be bigger): gnet's Peek copies what it returns
	// when its buffer wraps, and a client paused with megabytes of
	// pipelined input must not cost a copy of all of it at every wake.
	// Stashed input is parsed a chunk at a time, in place.
	size := cl.inWindow()
	for {
		want := min(avail, max(size, cl.need))
		buf := cl.peekIn(want)
		cl.need = 0 // met; serve sets it again if it stops at an incomplete request
		n := cl.pr.codec.serve(cl, buf)
		if cl.closed {
			break
		}
		if n > 0 {
			cl.l.pools[cl.pr.idx].bytesIn.Add(int64(min(n, len(buf))))
			if n > len(buf) { // an error asked to skip past what has arrived
				cl.skip = n - len(buf)
				n = len(buf)
			}
			cl.discardIn(n)
			cl.rcvd += int64(n)
		}
		if want == avail || cl.paused || cl.waitIdle || cl.quitting {
			break // all of the input was in view, or parsing stopped
		}
		// Only a window of the input was in view: go on with the rest.
		if n == 0 {
			size = 2 * want // a request longer than the window
		} else {
			size = cl.inWindow()
		}
		if !cl.skipInput() {
			break
		}
		avail = cl.inBuffered()
		if avail == 0 || avail < cl.need {
			break
		}
		if cl.outFull() {
			cl.outPaused = true // as above: the pacer wakes it
			cl.l.pace(cl)
			break
		}
	}
	if !cl.closed {
		cl.stashIfPaused()
	}
	if cl.l.p.opts.FlushMode == FlushPerCallback {
		cl.l.flush()
	} else {
		cl.l.flushClients()
	}
	if cl.draining {
		cl.maybeClose()
	}
}

// skipInput discards what has arrived of the input cl is skipping (the rest
// of a refused request's data) and reports whether none is left to skip.
func (cl *client) skipInput() bool {
	if cl.skip > 0 {
		n := cl.discardIn(cl.skip)
		cl.skip -= n
		cl.rcvd += int64(n)
	}
	return cl.skip == 0
}

// peekWindow is how much input a client's read parses at a time.
const peekWindow = 256 << 10

// push appends r to the FIFO.
func (cl *client) push(r *request) {
	if cl.fifo.Len() == 0 && cl.background == 0 {
		cl.chooseLane() // nothing in flight: its order cannot change
	}
	r.cl = cl
	r.start = cl.l.clock
	r.inQueue = true
	cl.fifo.Push(r)
}

// full reports whether the client's in-flight cap is reached.
func (cl *client) full() bool {
	limit := cl.inFlightCap()
	return limit > 0 && cl.fifo.Len() >= limit
}

// A client's requests share backend connections with every other client of
// its loop (with big replies, with every other such client: lane.go), and a
// backend answers in order: a client that has 1,024 gets of
// a 1 MiB value in flight puts a gigabyte ahead of everyone else's next
// reply (and, if it does not read, into the proxy's memory). So the requests
// a client may have in flight are capped by the size of its replies as well
// as by max_in_flight: about inFlightBytes of replies, judged by the average
// of its recent replies, at least one request; initialWindow until its first
// reply is in. Small replies (up to 1 KiB) leave max_in_flight (1,024 by
// default) as the only cap. inFlightBytes is what another client's request
// may wait behind: 1 MiB halved a pipelining attacker's neighbours' p99
// against 4 MiB (8-9 ms against 13-18 ms), and cost a client reading 1 MiB
// values 11% of its throughput (1,440 against 1,636 MB/s; 256 KiB values:
// no loss).
const (
	inFlightBytes = 1 << 20
	initialWindow = 16
)

// inFlightCap is how many requests cl may have in flight now.
func (cl *client) inFlightCap() int {
	limit := cl.pr.cfg.Limits.MaxInFlight
	w := initialWindow
	if cl.avgReply > 0 {
		w = max(inFlightBytes/cl.avgReply, 1)
	}
	return min(w, limit)
}

// noteReply folds the size of a reply to one of cl's requests (or to a
// fragment of one) into its average.
func (cl *client) noteReply(n int) {
	n = max(n, 1)
	if cl.avgReply == 0 {
		cl.avgReply = n
		return
	}
	cl.avgReply += (n - cl.avgReply) / 4
	cl.avgReply = max(cl.avgReply, 1)
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
		pc := cl.l.pools[cl.pr.idx]
		pc.requests[r.class].Add(1)
		pc.latency.observe(cl.l.clock - r.start)
		if !r.silent {
			if r.segs != nil || len(r.reply) > bigPiece {
				cl.queue(r)
			} else {
				cl.out = append(cl.out, r.reply...)
			}
			emitted = true
		}
		cl.l.release(r)
	}
	if emitted {
		cl.l.markClient(cl)
	}
	if cl.paused && cl.fifo.Len() <= cl.inFlightCap()/2 || cl.waitIdle && cl.fifo.Len() == 0 {
		cl.paused, cl.waitIdle = false, false
		_ = cl.w.Wake(nil) // parse what was left in the input
	}
	if cl.quitting || cl.draining || cl.half != nil {
		cl.maybeClose()
	}
}

// flush writes the pending output: small replies at once, big ones paced.
func (cl *client) flush() {
	if cl.closed {
		cl.out = cl.out[:0]
		return
	}
	if len(cl.pend) > 0 && len(cl.out) > 0 {
		cl.pend = append(cl.pend, cl.out) // behind the big replies
		cl.pendBytes += len(cl.out)
		cl.out = nil
	}
	if len(cl.out) > 0 {
		cl.write(cl.out)
		cl.out = cl.out[:0]
		if cap(cl.out) > 1<<20 {
			cl.out = nil
		}
	}
	cl.pump()
	if cl.closed {
		return
	}
	cl.account()
	if cl.held > pushOutputLimit && cl.rs != nil && cl.rs.sub != nil && cl.rs.sub.count() > 0 {
		// A subscriber has no requests to pause: messages pile up for
		// as long as it reads slower than they are published.
		cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
		cl.l.p.log.Warn("closing subscriber over the pub/sub output limit", "pool", cl.pr.cfg.Name,
			"remote", cl.raddr.String(), "unsent", cl.held, "limit", pushOutputLimit)
		cl.close()
		return
	}
	if len(cl.pend) > 0 {
		cl.l.pace(cl)
	}
	if h := cl.half; h != nil && h.failed.Load() {
		cl.close() // the half-closed client stopped taking its replies
		return
	}
	if cl.quitting || cl.draining || cl.half != nil {
		cl.maybeClose()
	}
}

// write hands b to gnet, which sends what the socket takes and buffers the
// rest.
func (cl *client) write(b []byte) {
	cl.activeAt = cl.l.clock
	_, _ = cl.w.Write(b)
	cl.sent += int64(len(b))
	cl.l.pools[cl.pr.idx].bytesOut.Add(int64(len(b)))
}

// writeThrough writes part of a reply that is streamed from its backend,
// after the small replies before it.
func (cl *client) writeThrough(b []byte) {
	if len(cl.out) > 0 {
		cl.write(cl.out)
		cl.out = cl.out[:0]
	}
	if !cl.closed {
		cl.write(b)
	}
	if !cl.closed {
		cl.account()
	}
}

// queue moves r's (big) reply to the paced output, by reference; its
// charge to max_memory moves to the client's.
func (cl *client) queue(r *request) {
	if len(cl.out) > 0 {
		cl.pend = append(cl.pend, cl.out)
		cl.pendBytes += len(cl.out)
		cl.out = nil
	}
	if r.segs != nil {
		for _, s := range r.segs {
			cl.pend = append(cl.pend, s)
			cl.pendBytes += len(s)
		}
		r.segs = nil
	} else {
		cl.pend = append(cl.pend, r.reply)
		cl.pendBytes += len(r.reply)
		r.reply = nil
	}
	cl.l.releaseHeld(r)
	cl.account()
}

// Pacing: big output is handed to gnet a chunk at a time, only while gnet's
// buffer for the client holds less than paceLow, so a reply is not copied
// whole into that buffer (it is sent from the buffer it arrived in).
const (
	paceLow   = 256 << 10
	paceChunk = 256 << 10
)

// pump writes queued big output while the client keeps up.
func (cl *client) pump() {
	for len(cl.pend) > 0 && !cl.closed && cl.w.OutboundBuffered() < paceLow {
		seg := cl.pend[0]
		k := min(len(seg), paceChunk)
		cl.write(seg[:k])
		if cl.closed {
			return // the write failed and gnet closed the client (finish dropped pend)
		}
		cl.pendBytes -= k
		if k == len(seg) {
			cl.pend[0] = nil
			cl.pend = cl.pend[1:]
		} else {
			cl.pend[0] = seg[k:]
		}
	}
	if len(cl.pend) == 0 {
		cl.pend, cl.pendBytes = nil, 0
	}
}

// pushOutputLimit caps a subscribed client's unsent output, as Redis's
// default client-output-buffer-limit for pub/sub clients (32mb hard) does.
const pushOutputLimit = 32 << 20

// maxUnsent is how much output a client may have unsent (queued, or in
// gnet's buffer) before the proxy stops reading its requests.
const maxUnsent = 16 << 20

// outFull reports whether the client's unsent output is over maxUnsent.
func (cl *client) outFull() bool {
	return cl.pendBytes+cl.w.OutboundBuffered() > maxUnsent
}

// resume wakes a client paused for its output once it has taken it.
func (cl *client) resume() {
	if cl.outPaused && !cl.closed && !cl.outFull() {
		cl.outPaused = false
		_ = cl.w.Wake(nil) // parse what waited
	}
}

// account updates the client's charge to max_memory: its queued output and
// what gnet buffers for it.
func (cl *client) account() {
	out := cl.w.OutboundBuffered()
	if cl.half == nil {
		cl.backlogged = out > 0
	}
	now := int64(cl.pendBytes + out)
	cl.l.p.mem.adjust(now - cl.held)
	cl.held = now
}

// A client is judged by whether it takes its output, not by how much is
// owed to it: one that has taken none of it for stallTimeout is not reading
// and is closed. What it may hold meanwhile is bounded by max_memory: past
// that, its further big replies are refused with an error.
const stallTimeout = 30 * time.Second

// checkDrain samples the client's drain progress (from the loop's sweep)
// and closes it if it does not read its replies.
func (cl *client) checkDrain(now int64) {
	if cl.closed {
		return
	}
	cl.account()
	out := cl.w.OutboundBuffered()
	unsent := cl.pendBytes + out
	taken := cl.sent - cl.lastSent - int64(out-cl.lastOut) // bytes the socket took since the last sample
	cl.lastSent, cl.lastOut = cl.sent, out
	if unsent == 0 || taken > 0 {
		cl.drainAt = now
		return
	}
	idle := now - cl.drainAt
	if idle < int64(stallTimeout) {
		return
	}
	cl.l.pools[cl.pr.idx].rejected[RejectBuffer].Add(1)
	cl.l.p.log.Warn("closing client that does not read its replies", "pool", cl.pr.cfg.Name,
		"remote", cl.raddr.String(), "unsent", unsent, "idle", time.Duration(idle))
	cl.close()
}

// maybeClose closes a quitting client once nothing is owed, a draining one
// once it is idle (nothing owed and no unparsed input), and a half-closed
// one once nothing is owed and its input is used up.
func (cl *client) maybeClose() {
	if cl.closed || cl.fifo.Len() > 0 || len(cl.out) > 0 && cl.dirty || len(cl.pend) > 0 {
		return
	}
	if h := cl.half; h != nil {
		if len(h.in) > 0 {
			return
		}
	} else if !cl.quitting && (!cl.draining || cl.inBuffered() > 0) {
		return
	}
	if len(cl.out) > 0 {
		_, _ = cl.w.Write(cl.out)
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
	pc := cl.l.pools[cl.pr.idx]
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
	if cl.fifo.Len() == 0 && len(cl.pend) == 0 {
		cl.out = append(cl.out, reply...)
	}
	if len(cl.out) > 0 && len(cl.pend) == 0 {
		_, _ = cl.w.Write(cl.out)
		cl.out = cl.out[:0]
	}
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
	cl.pr.live.clients.Add(-1)
	cl.l.p.clients.Add(-1)
	pc := cl.l.pools[cl.pr.idx]
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
	cl.pend, cl.pendBytes = nil, 0
	cl.stash.reset(cl.l)
	cl.l.p.mem.adjust(-cl.held)
	cl.held = 0
	// After the FIFO is emptied, so failing the dedicated connections'
	// requests completes nothing on this client.
	cl.pr.codec.closeClient(cl)
}
