package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cacheproxy/cacheproxy/proxy/memcache"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// Big replies.
//
// A reply that is still incomplete once streamMin of it has arrived is not
// gathered whole before it is handled. A replyCursor frames it as it
// arrives (complete lines, then data blocks counted down by length), and
// the bytes go to one of three sinks:
//
//   - through: the request is at the head of its client's FIFO and nothing
//     is queued before it, so the bytes are written to the client as they
//     arrive; the proxy holds none of them (only what the client has not
//     read yet, in its output buffer).
//   - collect: a fragment, or a request behind others: the bytes are kept in
//     one buffer, allocated once to the size the reply's headers announce,
//     and handed to the codec whole at the end, as a small reply is.
//   - skip: the reply was refused (max_memory) or its client left: the bytes
//     are dropped as they arrive, and the connection stays in step.
//
// Every byte the proxy holds for a reply is charged to the proxy-wide
// memBudget (max_memory). A reply that would go over it is refused with an
// error in the protocol's words; one already partly written to its client
// is cut where the protocol allows (memcached: between VALUE blocks, ending
// the reply with SERVER_ERROR as memcached itself does when it runs out of
// memory mid-get), otherwise its client is closed.

// streamMin is the size from which an incomplete reply is streamed rather
// than gathered whole.
const streamMin = 64 << 10

// bigPiece is the size from which a reply (or a piece of a merged reply) is
// queued to its client by reference and written out paced, instead of being
// copied into the client's output buffer.
const bigPiece = 64 << 10

// maxStreamLine bounds a reply line framed by a cursor.
const maxStreamLine = 64 << 10

// keepingUp is how much unsent output a client may have and still count as
// keeping up with its replies.
const keepingUp = 2 * paceLow

// oomMessage is the error a request gets when its reply would take the proxy
// over max_memory.
const oomMessage = "out of memory: reply over the proxy's max_memory"

// memBudget counts the reply bytes the whole proxy holds, against
// max_memory. It is shared by every loop.
type memBudget struct {
	limit   int64
	used    atomic.Int64
	refused atomic.Int64 // replies refused or cut for max_memory
}

// charge reserves n bytes; it fails, reserving nothing, when that would go
// over the limit.
func (m *memBudget) charge(n int64) bool {
	if m.used.Add(n) > m.limit {
		m.used.Add(-n)
		return false
	}
	return true
}

// fits reports whether n more bytes would stay within the limit.
func (m *memBudget) fits(n int64) bool { return m.used.Load()+n <= m.limit }

// adjust records a change of n bytes (either sign) that already happened.
func (m *memBudget) adjust(n int64) {
	if n != 0 {
		m.used.Add(n)
	}
}

// over reports whether the proxy holds more than the limit.
func (m *memBudget) over() bool { return m.used.Load() > m.limit }

// replyCursor frames one reply incrementally.
type replyCursor interface {
	// feed consumes the longest prefix of buf that belongs to the reply and
	// can be framed now: complete lines and data bytes. done reports that
	// the reply ended with buf[n-1].
	feed(buf []byte) (n int, done bool, err error)
	// need is how many more bytes the reply is known to need.
	need() int
	// estimate is the reply's likely total size, given that n bytes of
	// it have been framed: more than n+need() when it is an aggregate whose
	// later elements are taken to be the size of the current one.
	estimate(n int) int
	// cuttable reports whether the reply may end here with an error line
	// instead of its remaining bytes (memcached: between VALUE blocks).
	cuttable() bool
	// mayCut reports whether the reply has places where it may be cut.
	mayCut() bool
	// hits is the number of values framed (memcached get family).
	hits() int
}

// errStreamLine is returned for a reply line longer than maxStreamLine.
var errStreamLine = errors.New("reply line too long")

// dataState counts down a data block and its closing CRLF.
type dataState struct {
	left int // data bytes still to pass
	tail int // bytes of the closing "\r\n" still to see (2, 1 or 0)
}

// pass consumes data bytes and the closing CRLF from buf; closed reports
// that the block has ended.
func (d *dataState) pass(buf []byte) (n int, closed bool, err error) {
	if d.left > 0 {
		n = min(d.left, len(buf))
		d.left -= n
	}
	for d.left == 0 && d.tail > 0 && n < len(buf) {
		if buf[n] != "\r\n"[2-d.tail] {
			return n, false, errors.New("data block not terminated by \\r\\n")
		}
		n++
		d.tail--
	}
	return n, d.left == 0 && d.tail == 0, nil
}

func (d *dataState) active() bool { return d.left > 0 || d.tail > 0 }

// nextLine returns the line at the start of buf without its terminator and
// the length with it; size is 0 while the line is incomplete.
func nextLine(buf []byte) (line []byte, size int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > maxStreamLine {
			return nil, 0, errStreamLine
		}
		return nil, 0, nil
	}
	return bytes.TrimSuffix(buf[:i], []byte("\r")), i + 1, nil
}

// mcCursor frames a memcached reply: for the get family, VALUE blocks up to
// END; for mg and ma, a VA block or one line; for stats, STAT lines up to
// END; for the rest, one line.
type mcCursor struct {
	cmd   memcache.Command
	keys  int // keys asked for (get family), for estimate
	block int // size of the current VALUE block, line included
	lines int
	n     int // values framed
	data  dataState
	last  bool // the reply ends with the current data block
}

func (c *mcCursor) need() int { return c.data.left + c.data.tail }
func (c *mcCursor) hits() int { return c.n }

func (c *mcCursor) estimate(n int) int {
	return n + c.need() + max(c.keys-c.n, 0)*c.block + len("END\r\n")
}

func (c *mcCursor) mayCut() bool { return c.cmd.Class() == memcache.ClassMultiKey }

func (c *mcCursor) cuttable() bool {
	return c.cmd.Class() == memcache.ClassMultiKey && c.lines > 0 && !c.data.active()
}

func (c *mcCursor) feed(buf []byte) (int, bool, error) {
	n := 0
	for n < len(buf) {
		if c.data.active() {
			k, closed, err := c.data.pass(buf[n:])
			n += k
			if err != nil {
				return n, false, err
			}
			if closed {
				// Stop between blocks, where the reply may be cut.
				return n, c.last, nil
			}
			continue
		}
		line, size, err := nextLine(buf[n:])
		if err != nil || size == 0 {
			return n, false, err
		}
		n += size
		first := c.lines == 0
		c.lines++
		if first && (bytes.HasPrefix(line, []byte("ERROR")) || bytes.HasPrefix(line, []byte("CLIENT_ERROR")) ||
			bytes.HasPrefix(line, []byte("SERVER_ERROR"))) {
			return n, true, nil
		}
		switch {
		case c.cmd.Class() == memcache.ClassMultiKey:
			if string(line) == "END" {
				return n, true, nil
			}
			if !bytes.HasPrefix(line, []byte("VALUE ")) {
				return n, false, fmt.Errorf("%q in a get reply", clip(line))
			}
			size, ok := token(line, 3)
			if !ok {
				return n, false, fmt.Errorf("bad VALUE line %q", clip(line))
			}
			c.data = dataState{left: size, tail: 2}
			c.block = len(line) + 2 + size + 2
			c.n++
		case c.cmd == memcache.CmdMetaGet || c.cmd == memcache.CmdMetaArith:
			if !first {
				return n, false, errors.New("meta reply with more than one line")
			}
			if !bytes.HasPrefix(line, []byte("VA ")) {
				return n, true, nil // HD, EN, NF...: one line
			}
			size, ok := token(line, 1)
			if !ok {
				return n, false, fmt.Errorf("bad VA line %q", clip(line))
			}
			c.data = dataState{left: size, tail: 2}
			c.last = true
			c.n++
		case c.cmd == memcache.CmdStats:
			if string(line) == "END" {
				return n, true, nil
			}
		default:
			return n, true, nil
		}
	}
	return n, false, nil
}

// token parses token i (0-based, space separated) of line as a
// non-negative decimal int32.
func token(line []byte, i int) (int, bool) {
	for ; i > 0; i-- {
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return 0, false
		}
		line = bytes.TrimLeft(line[sp:], " ")
	}
	if sp := bytes.IndexByte(line, ' '); sp >= 0 {
		line = line[:sp]
	}
	if len(line) == 0 || len(line) > 10 {
		return 0, false
	}
	v := 0
	for _, ch := range line {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + int(ch-'0')
	}
	return v, v <= 1<<31-1
}

// respCursor frames a RESP2/RESP3 reply of any shape by counting the
// elements still owed. The zero value frames as resp.ParseReply does; set
// up by startStream, it refuses a RESP3 type byte on a RESP2 connection
// (as resp.ParseReplyRESP2 does) and a push where a reply starts on a RESP3
// one (as the codec's replyFits does for the replies framed whole).
type respCursor struct {
	pending int
	data    dataState
	bulk    int  // size of the current bulk element, header included
	resp2   bool // the connection speaks RESP2 only
	noPush  bool // a push cannot start the reply
	started bool // the reply's first line is framed
}

func (c *respCursor) need() int { return c.data.left + c.data.tail }
func (c *respCursor) hits() int { return 0 }

func (c *respCursor) estimate(n int) int {
	if !c.data.active() {
		return n + c.need()
	}
	return n + c.need() + max(c.pending-1, 0)*c.bulk
}
func (c *respCursor) cuttable() bool { return false }
func (c *respCursor) mayCut() bool   { return false }

func (c *respCursor) feed(buf []byte) (int, bool, error) {
	if c.pending == 0 {
		c.pending = 1
	}
	n := 0
	for n < len(buf) {
		if c.data.active() {
			k, closed, err := c.data.pass(buf[n:])
			n += k
			if err != nil {
				return n, false, err
			}
			if closed {
				if c.pending--; c.pending == 0 {
					return n, true, nil
				}
			}
			continue
		}
		// A line ends at the first CR, which must be followed by LF (as
		// resp.ParseReply frames it).
		i := bytes.IndexByte(buf[n:], '\r')
		switch {
		case i < 0 && len(buf)-n > maxStreamLine:
			return n, false, errStreamLine
		case i < 0 || n+i+1 >= len(buf):
			return n, false, nil
		case i == 0:
			return n, false, errors.New("empty reply line")
		case buf[n+i+1] != '\n':
			return n, false, errors.New("CR without LF in a reply line")
		}
		t, arg := buf[n], buf[n+1:n+i]
		n += i + 2
		top := !c.started
		c.started = true
		switch {
		case c.resp2 && t != '+' && t != '-' && t != ':' && t != '$' && t != '*':
			return n, false, fmt.Errorf("type byte %q in a RESP2 reply", t)
		case c.noPush && t == '>' && top:
			return n, false, errors.New("push where a reply was due")
		case t == '_' && len(arg) != 0 || t == '#' && string(arg) != "t" && string(arg) != "f":
			return n, false, fmt.Errorf("%q with data %q", t, clip(arg))
		}
		switch t {
		case '+', '-', ',', '(', '_', '#', ':':
			c.pending--
		case '$', '!', '=':
			l, ok := signed(arg)
			if !ok || l < -1 || l == -1 && t != '$' {
				return n, false, fmt.Errorf("bulk length %q", clip(arg))
			}
			if l == -1 {
				c.pending--
			} else {
				c.data = dataState{left: l, tail: 2}
				c.bulk = i + 2 + l + 2
			}
		case '*', '~', '>', '%', '|':
			l, ok := signed(arg)
			if !ok || l < -1 || l == -1 && t != '*' {
				return n, false, fmt.Errorf("aggregate length %q", clip(arg))
			}
			if t == '%' || t == '|' {
				l *= 2
			}
			if t == '|' {
				l++ // an attribute precedes the reply it annotates
			}
			c.pending += max(l, 0) - 1
		default:
			return n, false, fmt.Errorf("unknown type byte %q", t)
		}
		if c.pending == 0 {
			return n, true, nil
		}
	}
	return n, false, nil
}

// signed parses a decimal that may be -1.
func signed(b []byte) (int, bool) {
	if string(b) == "-1" {
		return -1, true
	}
	return token(b, 0)
}

// cursor returns a cursor for r's reply and whether the reply may be
// written through to the client as it arrives: not when it may have to be
// swallowed (noreply, meta q) or rewritten.
func (m *memcacheCodec) cursor(r *request) (replyCursor, bool) {
	return &mcCursor{cmd: r.mc.Cmd, keys: r.nkeys}, !r.mc.Noreply && !r.mc.Quiet
}

func (rc *respCodec) cursor(r *request) (replyCursor, bool) {
	// A subscribed RESP3 client gets pushes between its replies: a reply
	// is then gathered whole, so a push never lands inside it.
	pushes := r.cl != nil && r.cl.rs != nil && r.cl.rs.sub != nil
	return &respCursor{}, r.merge != resp.MergeScan && !pushes
}

// Sinks of a streamed reply.
const (
	sinkThrough   = iota // written to the client as it arrives
	sinkCollect          // gathered whole, then handed to the codec
	sinkSkip             // dropped
	sinkUndecided        // not chosen yet
)

// replyStream is a big reply in progress on a backend connection.
type replyStream struct {
	r    *request
	cur  replyCursor
	sink int
	// alias: the codec may keep the collected buffer as the request's reply
	// (it copies the reply unchanged); false when it rewrites it.
	alias bool
	n     int    // reply bytes framed so far
	out   int    // bytes written through to the client
	coll  []byte // sinkCollect: the reply so far
	held  int64  // bytes of coll charged to the budget
}

// startStream begins streaming the reply to r, the head of the FIFO, from
// its first byte. Its sink is chosen once the first part is framed and the
// reply's size is better known.
func (b *backend) startStream(r *request) {
	cur, through := b.pr.codec.cursor(r)
	if rc, ok := cur.(*respCursor); ok {
		rc.resp2, rc.noPush = !b.resp3, b.resp3
	}
	b.rstate.Reset()
	b.st = &replyStream{r: r, cur: cur, sink: sinkUndecided, alias: through}
}

// decide chooses the stream's sink; size is how big the reply is known to
// be so far.
func (b *backend) decide(st *replyStream, size int) {
	r := st.r
	cl := r.cl
	st.sink = sinkCollect
	switch {
	case r.internal:
	case r.done || r.parent == nil && (cl == nil || cl.closed) || r.parent != nil && r.parent.cl == nil:
		st.sink = sinkSkip // nobody is waiting for it
	case st.alias && r.parent == nil && frontIs(cl, r) && len(cl.pend) == 0 && cl.held <= keepingUp:
		// Written through to a client that keeps up: held only as long
		// as the client takes to read it.
		st.sink = sinkThrough
	case !b.l.p.mem.fits(int64(size)):
		b.refuseStream(st)
	case st.alias && r.parent == nil && frontIs(cl, r) && len(cl.pend) == 0:
		st.sink = sinkThrough
	}
}

// stream frames and delivers the next part of the big reply in progress; n
// is how much of buf it took. An error means the backend's stream can't be
// trusted.
func (b *backend) stream(buf []byte) (int, error) {
	st := b.st
	n, done, err := st.cur.feed(buf)
	st.n += n
	if st.sink == sinkUndecided {
		b.decide(st, st.n+st.cur.need())
	}
	switch st.sink {
	case sinkThrough:
		b.through(st, buf[:n])
	case sinkCollect:
		b.collect(st, buf[:n])
	}
	if b.st != st {
		return n, nil // dropped: the connection went with a client it served
	}
	if err != nil {
		return n, err
	}
	if done {
		return n, b.endStream()
	}
	return n, nil
}

// through writes part of a reply to its client, and cuts it or closes the
// client if the proxy holds more than max_memory.
func (b *backend) through(st *replyStream, part []byte) {
	r := st.r
	cl := r.cl
	if cl == nil || cl.closed {
		st.sink = sinkSkip
		return
	}
	if len(part) > 0 {
		cl.writeThrough(part)
		st.out += len(part)
		if cl.closed {
			st.sink = sinkSkip
			return
		}
	}
	// Over max_memory, a client that keeps up is let be (it holds next to
	// nothing); one that does not is where the memory goes.
	mem := &b.l.p.mem
	if !mem.over() || cl.held <= keepingUp {
		return
	}
	switch {
	case st.cur.cuttable():
		// End the reply here, as memcached does when it runs out of
		// memory in the middle of a get; the rest is dropped.
		cl.writeThrough(b.pr.codec.errorReply(nil, oomMessage))
		b.oom(r)
		st.sink = sinkSkip
		r.silent = true
		cl.complete(r) // it leaves the backend's FIFO when its reply ends
	case st.cur.mayCut():
		// Cut at the end of the current value.
	default:
		// The reply can't be cut: the client goes.
		b.oom(r)
		b.l.p.log.Warn("closing client: reply over max_memory and not read", "pool", b.pr.cfg.Name,
			"remote", cl.raddr.String(), "unsent", cl.held, "max_memory", mem.limit)
		st.sink = sinkSkip
		cl.close()
	}
}

// collect appends part of a reply to the stream's buffer, allocated to the
// size the reply announces, charging it to the budget.
func (b *backend) collect(st *replyStream, part []byte) {
	if want := len(st.coll) + len(part); want > cap(st.coll) {
		size := want + st.cur.need()
		if est := st.cur.estimate(st.n); est > size && b.l.p.mem.fits(int64(est-cap(st.coll))) {
			// Room for the elements still to come, taken to be as big
			// as this one, so a reply of several big values is not
			// copied at each (what is never written is never resident;
			// the excess is returned to the budget at the end).
			size = est
		} else if st.cur.hits() > 1 {
			size = max(size, 2*cap(st.coll)) // many values: grow geometrically
		}
		delta := int64(size - cap(st.coll))
		if !b.l.p.mem.charge(delta) {
			b.refuseStream(st)
			return
		}
		st.held += delta
		nb := make([]byte, len(st.coll), size)
		copy(nb, st.coll)
		st.coll = nb
	}
	st.coll = append(st.coll, part...)
}

// refuseStream fails the stream's request for max_memory and drops the rest
// of its reply.
func (b *backend) refuseStream(st *replyStream) {
	b.l.p.mem.adjust(-st.held)
	st.held, st.coll, st.sink = 0, nil, sinkSkip
	r := st.r
	b.oom(r)
	if !r.done {
		failRequest(r, b.pr, oomMessage)
	}
}

// oom counts a reply refused or cut for max_memory.
func (b *backend) oom(r *request) {
	r.oom = true
	b.l.p.mem.refused.Add(1)
	b.l.pools[b.pr.idx].rejected[RejectMemory].Add(1)
}

// endStream delivers a streamed reply that has ended and pops its request.
func (b *backend) endStream() error {
	st := b.st
	b.st = nil
	r := st.r
	switch st.sink {
	case sinkThrough:
		if r.nkeys > 0 {
			hits := min(st.cur.hits(), r.nkeys)
			b.counters.hits.Add(int64(hits))
			b.counters.misses.Add(int64(r.nkeys - hits))
		}
		r.silent = true // already written
		if cl := r.cl; cl != nil {
			cl.complete(r)
		} else {
			r.done = true
		}
	case sinkCollect:
		// The codec sees the whole reply as it sees a small one, but with
		// the client detached, so it keeps the reply on r (in the collected
		// buffer itself when alias) rather than copying it into the client's
		// output; advance queues it by reference.
		cl := r.cl
		r.cl = nil
		r.reply = nil
		if st.alias {
			r.reply = st.coll[:0]
		}
		if extra := st.held - int64(len(st.coll)); extra > 0 {
			b.l.p.mem.adjust(-extra) // estimated, never written
			st.held -= extra
		}
		r.held += st.held // before the codec: a merge may emit it at once
		n, err := b.pr.codec.reply(b, st.coll, r)
		r.cl = cl
		if err == nil && n != len(st.coll) {
			err = fmt.Errorf("reply framed at %d bytes by the codec, %d by the stream", n, len(st.coll))
		}
		if err != nil {
			return err
		}
		if r.parent == nil && cl != nil && !r.internal {
			cl.complete(r)
		}
	case sinkSkip:
		if !r.done {
			failRequest(r, b.pr, "client gone")
		}
	}
	b.answered(r, st.n)
	return nil
}

// dropStream abandons the stream in progress (the connection is lost). A
// client that has part of its reply can't be given an error in its place,
// so it is closed.
func (b *backend) dropStream() {
	st := b.st
	if st == nil {
		return
	}
	b.st = nil
	b.l.p.mem.adjust(-st.held)
	if cl := st.r.cl; st.sink == sinkThrough && st.out > 0 && cl != nil && !cl.closed {
		cl.close()
	}
}

// MemoryHeld returns the reply bytes the proxy holds now, as counted against
// max_memory.
func (p *Proxy) MemoryHeld() int64 { return p.mem.used.Load() }

// MemoryLimit returns max_memory, the bound on reply bytes held.
func (p *Proxy) MemoryLimit() int64 { return p.mem.limit }

// MemoryRefused returns how many replies were refused or cut because they
// would have taken the proxy over max_memory.
func (p *Proxy) MemoryRefused() int64 { return p.mem.refused.Load() }
