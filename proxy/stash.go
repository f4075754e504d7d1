package proxy

// A client the proxy is not parsing (paused at its in-flight cap, waiting
// for its replies to go out, or for them to be taken) keeps sending, and
// gnet reads whatever arrives: it has no way to stop reading one
// connection. gnet keeps unread input in one ring buffer per connection
// that doubles as it fills, so a client that pipelines without reading
// makes the loop allocate and copy its whole input at each doubling: one
// growth from 64 to 128 MiB held the loop (and every other client on it)
// for 167 ms on a 2-core VM, where touching fresh memory costs about
// 3 ms per MiB. So past stashAbove, a paused client's input is moved out of
// gnet into a stash of fixed-size chunks: each read costs at most a chunk,
// the loop serves its other clients between reads, and chunks freed by one
// client are reused by the next.

// stashAbove is how much unparsed input a paused client may leave in gnet's
// buffer before it is moved to the client's stash.
const stashAbove = 256 << 10

// stashChunk is the size of a stash chunk.
const stashChunk = 64 << 10

// stashFreeMax is how many free chunks a loop keeps for reuse.
const stashFreeMax = 64

// stashScratchMax is the biggest peek across chunks whose buffer a loop
// keeps.
const stashScratchMax = 1 << 20

// inStash is a client's unparsed input moved out of gnet, oldest first.
type inStash struct {
	chunks [][]byte // each of capacity stashChunk; chunks[0][off:] is next
	off    int
	n      int // bytes held
}

// held is how many bytes the stash holds.
func (s *inStash) held() int { return s.n }

// head is how many bytes are contiguous at the front.
func (s *inStash) head() int {
	if len(s.chunks) == 0 {
		return 0
	}
	return len(s.chunks[0]) - s.off
}

// push appends b, taking chunks from the loop's free list.
func (s *inStash) push(l *loop, b []byte) {
	s.n += len(b)
	for len(b) > 0 {
		if k := len(s.chunks); k > 0 {
			last := s.chunks[k-1]
			if room := cap(last) - len(last); room > 0 {
				m := min(room, len(b))
				s.chunks[k-1] = append(last, b[:m]...)
				b = b[m:]
				continue
			}
		}
		s.chunks = append(s.chunks, l.stashChunk())
	}
}

// peek returns the first n bytes (n <= held) contiguously: in place when
// the first chunk holds them, else copied into the loop's scratch buffer,
// valid until the next peek.
func (s *inStash) peek(l *loop, n int) []byte {
	if n <= s.head() {
		return s.chunks[0][s.off : s.off+n]
	}
	var buf []byte
	switch {
	case n > stashScratchMax:
		buf = make([]byte, 0, n) // a big request: not kept
	case cap(l.stashScratch) < n:
		l.stashScratch = make([]byte, 0, max(n, 2*cap(l.stashScratch)))
		fallthrough
	default:
		buf = l.stashScratch[:0]
	}
	off := s.off
	for _, c := range s.chunks {
		buf = append(buf, c[off:min(len(c), off+n-len(buf))]...)
		off = 0
		if len(buf) == n {
			break
		}
	}
	return buf
}

// discard drops the first n bytes (at most held) and returns how many it
// dropped, returning emptied chunks to the loop.
func (s *inStash) discard(l *loop, n int) int {
	n = min(n, s.n)
	s.n -= n
	left := n
	for left > 0 {
		h := len(s.chunks[0]) - s.off
		if left < h {
			s.off += left
			break
		}
		left -= h
		l.freeStashChunk(s.chunks[0])
		s.chunks[0] = nil
		s.chunks = s.chunks[1:]
		s.off = 0
	}
	if s.n == 0 {
		s.reset(l)
	}
	return n
}

// bytes returns a copy of everything held.
func (s *inStash) bytes() []byte {
	out := make([]byte, 0, s.n)
	off := s.off
	for _, c := range s.chunks {
		out = append(out, c[off:]...)
		off = 0
	}
	return out
}

// reset drops everything held.
func (s *inStash) reset(l *loop) {
	for i, c := range s.chunks {
		l.freeStashChunk(c)
		s.chunks[i] = nil
	}
	s.chunks, s.off, s.n = s.chunks[:0], 0, 0
}

// stashChunk returns an empty chunk, reused when the loop has one.
func (l *loop) stashChunk() []byte {
	if k := len(l.stashFree); k > 0 {
		c := l.stashFree[k-1]
		l.stashFree[k-1] = nil
		l.stashFree = l.stashFree[:k-1]
		return c[:0]
	}
	return make([]byte, 0, stashChunk)
}

// freeStashChunk keeps c for reuse, up to stashFreeMax chunks.
func (l *loop) freeStashChunk(c []byte) {
	if len(l.stashFree) < stashFreeMax {
		l.stashFree = append(l.stashFree, c[:0])
	}
}

// inBuffered is how much unparsed input cl has: its stash and gnet's.
func (cl *client) inBuffered() int {
	if cl.half != nil {
		return len(cl.half.in)
	}
	return cl.stash.held() + cl.c.InboundBuffered()
}

// stashInput moves gnet's input for cl to its stash: always when the stash
// already holds some (the order must be kept), else past stashAbove.
func (cl *client) stashInput() {
	c := cl.c
	k := c.InboundBuffered()
	if k == 0 || cl.stash.held() == 0 && k <= stashAbove {
		return
	}
	b, _ := c.Peek(k)
	cl.stash.push(cl.l, b)
	_, _ = c.Discard(k)
}

// stashIfPaused moves gnet's input to the stash (as stashInput) when the
// proxy is not parsing cl's input.
func (cl *client) stashIfPaused() {
	if cl.paused || cl.waitIdle || cl.outPaused {
		cl.stashInput()
	}
}

// inWindow is how much input read parses at a time: the stash's first
// chunk, in place, or at least stashMinWindow of it (copied when the chunk
// holds less), or gnet's peekWindow. A paused client parses a few requests
// per wake, so a window copied from the stash stays small: peekWindow
// (256 KiB) copied at each wake near a chunk's end would copy far more
// than is parsed.
func (cl *client) inWindow() int {
	if h := cl.stash.head(); h > 0 {
		return max(h, stashMinWindow)
	}
	return peekWindow
}

// stashMinWindow is the least read takes of the stash at a time.
const stashMinWindow = 4 << 10

// peekIn returns the first n bytes of cl's input (n <= inBuffered, after
// stashInput); discardIn drops the first n.
func (cl *client) peekIn(n int) []byte {
	if cl.stash.held() > 0 {
		return cl.stash.peek(cl.l, n)
	}
	b, _ := cl.c.Peek(n)
	return b
}

func (cl *client) discardIn(n int) int {
	if cl.stash.held() > 0 {
		return cl.stash.discard(cl.l, n)
	}
	k, _ := cl.c.Discard(n)
	return k
}
