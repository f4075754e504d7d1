package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// A client that shuts down its writing side (`printf ... | nc -q1`, a
// pipelined batch followed by shutdown(SHUT_WR)) still expects every reply
// it is owed, as memcached, redis-server and twemproxy give them. gnet closes
// a connection as soon as a read returns EOF, so the proxy keeps such a
// client alive without gnet: before gnet closes the socket it duplicates the
// descriptor, takes the unparsed input, and from then on the client's owed
// replies are written to the duplicate by a writer goroutine while requests
// and replies keep flowing through the client's event loop as before. When
// nothing is owed and no input is left, the writer closes the socket.
//
// If gnet still holds unsent output for the client at that point (the client
// was not reading), the client is closed as before: those bytes cannot be
// taken back from gnet, and writing later replies after a gap would corrupt
// the stream.

// halfWriteTimeout bounds each write to a half-closed client: one that stops
// reading is dropped after it (as stallTimeout drops any client that takes
// none of its output).
const halfWriteTimeout = stallTimeout

// halfClosed is the write side of a client whose peer closed its own.
type halfClosed struct {
	conn net.Conn // a duplicate of the client's socket
	in   []byte   // input not yet parsed when gnet closed the connection

	mu     sync.Mutex
	queue  [][]byte     // written in order by run
	queued atomic.Int64 // bytes queued and not yet written
	ending bool         // nothing more will be queued
	signal chan struct{}
	failed atomic.Bool // a write failed: output is dropped

	el      gnet.EventLoop
	ctx     context.Context
	resumed gnet.Runnable
}

var _ clientConn = (*halfClosed)(nil)

// detach keeps cl alive after gnet's read EOF on c if replies are owed. It
// runs inside OnClose, before gnet closes the descriptor, and reports
// whether cl lives on.
func (cl *client) detach(c gnet.Conn) bool {
	// Any input gnet still holds is carried over, whatever the client's
	// state: a client whose in-flight window just reopened is no longer
	// paused, but the wake that would have parsed its input comes after
	// this close.
	var in []byte
	if !cl.quitting && cl.inBuffered() > 0 {
		in = cl.stash.bytes() // before gnet's
		if k := c.InboundBuffered(); k > 0 {
			b, _ := c.Peek(k)
			in = append(in, b...)
		}
		cl.stash.reset(cl.l)
		if cl.skip > 0 { // the rest of a refused request's data
			k := min(cl.skip, len(in))
			in, cl.skip = in[k:], cl.skip-k
		}
	}
	pendingInput := len(in) > 0
	if cl.fifo.Len() == 0 && len(cl.out) == 0 && len(cl.pend) == 0 && !pendingInput {
		return false
	}
	if cl.waitsOnServer() {
		// Redis frees a client at EOF even while it is blocked or
		// subscribed; kept alive, a BLPOP would take the next element
		// pushed and write it to nobody.
		return false
	}
	_ = c.Flush()
	// gnet discards its unsent output when it sees the peer's shutdown
	// without readable data, so output pending at the last write cannot be
	// trusted to have reached the client.
	if n := c.OutboundBuffered(); n > 0 || cl.backlogged {
		cl.l.p.log.Warn("client closed its side while not reading its replies; dropping it",
			"pool", cl.pr.cfg.Name, "remote", cl.raddr.String(), "unsent", n, "owed", cl.fifo.Len())
		return false
	}
	nc, err := dupConn(c.Fd())
	if err != nil {
		cl.l.p.log.Warn("cannot keep half-closed client for its replies", "pool", cl.pr.cfg.Name,
			"remote", cl.raddr.String(), "owed", cl.fifo.Len(), "error", err)
		return false
	}
	p := cl.l.p
	h := &halfClosed{conn: nc, signal: make(chan struct{}, 1), el: cl.l.el, ctx: p.ctx}
	if pendingInput {
		h.in = in // a copy: gnet's buffer goes with the connection
	}
	h.resumed = gnet.RunnableFunc(func(context.Context) error {
		cl.l.tick()
		cl.resumeHalf()
		return nil
	})
	cl.half, cl.w = h, h
	cl.outPaused = false // resumeHalf parses what waited, once owed replies allow
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		h.run(p.ctx)
	}()
	if pendingInput {
		_ = h.Wake(nil) // resumeHalf pauses again if it must
	}
	return true
}

// waitsOnServer reports whether cl has a Redis blocking command in flight
// or is subscribed.
func (cl *client) waitsOnServer() bool {
	if cl.rs == nil {
		return false
	}
	if cl.rs.sub != nil && cl.rs.sub.count() > 0 {
		return true
	}
	for i := range cl.fifo.Len() {
		if r := cl.fifo.At(i); r.blocking && !r.done {
			return true
		}
	}
	return false
}

// dupConn returns a net.Conn on a duplicate of descriptor fd.
func dupConn(fd int) (net.Conn, error) {
	nfd, err := syscall.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	f := os.NewFile(uintptr(nfd), "client")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("file conn: %w", err)
	}
	return nc, nil
}

// Write queues a copy of b for the writer.
func (h *halfClosed) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	h.mu.Lock()
	if !h.failed.Load() && !h.ending {
		h.queue = append(h.queue, append([]byte(nil), b...))
		h.queued.Add(int64(len(b)))
	}
	h.mu.Unlock()
	h.wake()
	return len(b), nil
}

// OutboundBuffered is how much is queued and not yet written.
func (h *halfClosed) OutboundBuffered() int { return int(h.queued.Load()) }

// Wake has the loop parse the input the client left (resumeHalf).
func (h *halfClosed) Wake(gnet.AsyncCallback) error {
	return h.el.Execute(h.ctx, h.resumed)
}

// end tells the writer that nothing more comes: it closes the socket once
// the queue is written.
func (h *halfClosed) end() {
	h.mu.Lock()
	h.ending = true
	h.mu.Unlock()
	h.wake()
}

func (h *halfClosed) wake() {
	select {
	case h.signal <- struct{}{}:
	default:
	}
}

// run writes the queue in order until end, a failed write, or ctx is done.
func (h *halfClosed) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { _ = h.conn.Close() })
	defer stop()
	defer h.conn.Close()
	for {
		h.mu.Lock()
		batch, ending := h.queue, h.ending
		h.queue = nil
		h.mu.Unlock()
		for _, b := range batch {
			_ = h.conn.SetWriteDeadline(time.Now().Add(halfWriteTimeout))
			if _, err := h.conn.Write(b); err != nil {
				h.failed.Store(true)
				return
			}
			h.queued.Add(-int64(len(b)))
		}
		if ending && len(batch) == 0 {
			return
		}
		if len(batch) > 0 {
			continue // more may have come while writing
		}
		select {
		case <-h.signal:
		case <-ctx.Done():
			return
		}
	}
}

// resumeHalf parses input a half-closed client left when it was paused.
// Input that does not make a whole request is dropped: no more will come.
func (cl *client) resumeHalf() {
	h := cl.half
	if cl.closed || h == nil {
		return
	}
	if cl.quitting {
		h.in = nil
	}
	if len(h.in) > 0 && !cl.paused && !cl.waitIdle && cl.outFull() {
		cl.outPaused = true // as onTraffic: not while its output waits
		cl.l.pace(cl)
		return
	}
	if !cl.paused && !cl.waitIdle && len(h.in) > 0 {
		cl.need = 0
		cl.pr = cl.l.version(cl.pr.live) // a reload applies from the next request on
		n := cl.pr.codec.serve(cl, h.in)
		if cl.closed {
			return
		}
		h.in = h.in[min(n, len(h.in)):]
		if !cl.paused && !cl.waitIdle && !cl.outPaused {
			h.in = nil // an incomplete request that can never complete
		}
	}
	cl.l.flush()
	cl.maybeClose()
}
