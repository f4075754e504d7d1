package proxy

import "bytes"

// valueBlock frames the first "VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n"
// block of a memcached get reply body and returns its key and total length.
// ok is false if body does not start with a well-formed block.
func valueBlock(body []byte) (key []byte, n int, ok bool) {
	nl := bytes.IndexByte(body, '\n')
	if nl < 0 || !bytes.HasPrefix(body, []byte("VALUE ")) {
		return nil, 0, false
	}
	line := body[len("VALUE "):nl]
	line = bytes.TrimSuffix(line, []byte("\r"))
	// key
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, 0, false
	}
	key, line = line[:sp], line[sp+1:]
	// flags
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, 0, false
	}
	line = line[sp+1:]
	// bytes [cas]
	if sp = bytes.IndexByte(line, ' '); sp >= 0 {
		line = line[:sp]
	}
	size := 0
	if len(line) == 0 || len(line) > 10 {
		return nil, 0, false
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		size = size*10 + int(c-'0')
	}
	n = nl + 1 + size + 2
	if n > len(body) || body[n-2] != '\r' || body[n-1] != '\n' {
		return nil, 0, false
	}
	return key, n, true
}

// replyBuilder appends the pieces of a merged reply to r.reply, until the
// first piece bigger than bigPiece: from then on the reply is kept in r.segs,
// big pieces by reference (fragments' replies that big are never recycled,
// see loop.release) and small ones copied, so a merge of big fragments does
// not copy them.
type replyBuilder struct {
	r     *request
	small []byte
}

// add appends b.
func (w *replyBuilder) add(b []byte) {
	r := w.r
	switch {
	case r.segs == nil && len(b) <= bigPiece:
		r.reply = append(r.reply, b...)
	case len(b) <= bigPiece:
		w.small = append(w.small, b...)
	default:
		if r.segs == nil {
			r.segs = append(r.segs, append([]byte(nil), r.reply...)) // r.reply is recycled
		} else if len(w.small) > 0 {
			r.segs = append(r.segs, w.small)
			w.small = nil
		}
		r.segs = append(r.segs, b)
	}
}

// done finishes the reply.
func (w *replyBuilder) done() {
	if w.r.segs != nil && len(w.small) > 0 {
		w.r.segs = append(w.r.segs, w.small)
		w.small = nil
	}
}

// oomFragment returns a fragment of p refused for max_memory, if any: its
// error is then the reply to the whole request, rather than its keys
// turning into misses.
func oomFragment(p *request) *request {
	for _, f := range p.frags {
		if f.oom {
			return f
		}
	}
	return nil
}
