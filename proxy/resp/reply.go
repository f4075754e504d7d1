package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// Reply describes the first complete reply ParseReply framed.
type Reply struct {
	// Type is the reply's first byte: '+' '-' ':' '$' '*' (RESP2) or one of
	// the RESP3 types '_' ',' '#' '!' '=' '(' '|' '~' '>' '%'.
	Type byte
	// Int is the value of an integer (':') reply.
	Int int64
	// Len is the length of a bulk string ('$' '!' '='), the element count
	// of an aggregate ('*' '~' '>'), or the pair count of a map or attribute
	// ('%' '|'); -1 for a null bulk or null array.
	Len int
	// Data is the line of a simple reply (without type byte and CRLF) or
	// the body of a bulk one; it points into the framed buffer.
	Data []byte
}

// ErrMalformed is wrapped by every error ParseReply returns.
var ErrMalformed = errors.New("resp: malformed reply")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
}

// maxAggregate bounds an aggregate's announced element count.
const maxAggregate = math.MaxInt32

// ParseReply frames the first complete reply in buf: n is its length, or 0
// when buf holds only part of it. rep describes the top-level reply. A
// malformed reply gives an error wrapping ErrMalformed (the proxy closes
// that backend connection). Nested aggregates are walked iteratively with a
// count of pending elements, so depth costs neither stack nor memory. It
// does not allocate.
func ParseReply(buf []byte) (n int, rep Reply, err error) {
	var st ReplyState
	return ParseReplyResume(buf, &st)
}

// ReplyState carries an incomplete ParseReplyResume over to the next call.
// The zero value starts a new reply.
type ReplyState struct {
	pos     int   // where the next element starts
	pending int   // elements still to frame; 0 before the first call
	top     Reply // the top-level reply, once framed (Data cleared)
}

// Reset forgets a partial reply (the connection was lost, say).
func (st *ReplyState) Reset() { *st = ReplyState{} }

// ParseReplyResume is ParseReply for a reply that arrives in pieces: when
// buf holds only part of a reply it returns 0 and remembers in st how far it
// framed, so the next call, given the same bytes with more appended, goes on
// from there instead of walking every element again (a reply with a million
// elements arriving over many reads is framed in linear time). st is reset
// when a reply is complete or malformed.
func ParseReplyResume(buf []byte, st *ReplyState) (n int, rep Reply, err error) {
	return parseReply(buf, st, false)
}

// ParseReplyRESP2 is ParseReplyResume for a connection that speaks RESP2,
// as every backend connection of the proxy does (it never sends HELLO 3):
// a RESP3 type byte at any depth ('>' push, '_' null, '%' map...) is
// malformed there, for a server that sends one is not answering what the
// proxy asked.
func ParseReplyRESP2(buf []byte, st *ReplyState) (n int, rep Reply, err error) {
	return parseReply(buf, st, true)
}

func parseReply(buf []byte, st *ReplyState, resp2 bool) (n int, rep Reply, err error) {
	pending, pos, top := st.pending, st.pos, false
	if pending == 0 {
		pending, pos, top = 1, 0, true
	} else {
		rep = st.top
	}
	// save records progress up to the last complete element.
	save := func() (int, Reply, error) {
		if top {
			*st = ReplyState{} // nothing framed yet
		} else {
			r := rep
			r.Data = nil
			*st = ReplyState{pos: pos, pending: pending, top: r}
		}
		return 0, Reply{}, nil
	}
	fail := func(format string, a ...any) (int, Reply, error) {
		*st = ReplyState{}
		return 0, Reply{}, malformed(format, a...)
	}
	for pending > 0 {
		if pos >= len(buf) {
			return save()
		}
		t := buf[pos]
		i := bytes.IndexByte(buf[pos:], '\r')
		if i < 0 {
			return save()
		}
		if i == 0 {
			return fail("empty line at %d", pos)
		}
		lineEnd := pos + i
		if lineEnd+1 >= len(buf) {
			return save()
		}
		if buf[lineEnd+1] != '\n' {
			return fail("CR without LF at %d", lineEnd)
		}
		line := buf[pos+1 : lineEnd]
		next := lineEnd + 2
		r := Reply{Type: t, Data: line}
		if resp2 && t != '+' && t != '-' && t != ':' && t != '$' && t != '*' {
			return fail("type byte %q at %d in a RESP2 reply", t, pos)
		}
		switch t {
		case '+', '-', ',', '(':
		case '_':
			if len(line) != 0 {
				return fail("null with data %q", line)
			}
			r.Len = -1
		case '#':
			if len(line) != 1 || line[0] != 't' && line[0] != 'f' {
				return fail("boolean %q", line)
			}
		case ':':
			v, ok := parseInt(line)
			if !ok {
				return fail("integer %q", line)
			}
			r.Int = v
		case '$', '!', '=':
			l, ok := parseInt(line)
			if !ok || l < -1 || l == -1 && t != '$' || l > math.MaxInt32 {
				return fail("bulk length %q", line)
			}
			r.Len, r.Data = int(l), nil
			if l >= 0 {
				end := next + int(l)
				if end+2 > len(buf) {
					return save()
				}
				if buf[end] != '\r' || buf[end+1] != '\n' {
					return fail("bulk not followed by CRLF at %d", end)
				}
				r.Data = buf[next:end]
				next = end + 2
			}
		case '*', '~', '>', '%', '|':
			l, ok := parseInt(line)
			if !ok || l < -1 || l == -1 && t != '*' || l > maxAggregate {
				return fail("aggregate length %q", line)
			}
			r.Len, r.Data = int(l), nil
			if l > 0 {
				if t == '%' || t == '|' {
					l *= 2
				}
				pending += int(l)
			}
			if t == '|' {
				pending++ // an attribute precedes the reply it annotates
			}
		default:
			return fail("unknown type byte %q at %d", t, pos)
		}
		pending--
		if top {
			rep, top = r, false
		}
		pos = next
	}
	*st = ReplyState{}
	return pos, rep, nil
}

// IsError reports whether reply (a framed reply) is an error: '-' or the
// RESP3 blob error '!'.
func IsError(reply []byte) bool {
	return len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
}

// ErrorCode returns the code of an error reply, the first word of its
// message ("ERR", "LOADING", "BUSY", "OOM", "MOVED", "NOPROTO"...), or nil
// when reply is not an error. It points into reply.
func ErrorCode(reply []byte) []byte {
	if !IsError(reply) {
		return nil
	}
	msg := reply[1:]
	if reply[0] == '!' {
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			return nil
		}
		msg = msg[i+2:]
	}
	for i, c := range msg {
		if c == ' ' || c == '\r' {
			return msg[:i]
		}
	}
	return msg
}

// Elements iterates over the top-level elements of a framed aggregate reply
// (for a map, keys and values in turn) without allocating:
//
//	it := resp.NewElements(reply)
//	for it.Next() {
//		use(it.Elem())
//	}
//	if err := it.Err(); err != nil { ... }
type Elements struct {
	buf  []byte
	pos  int
	left int
	elem []byte
	err  error
}

// NewElements returns an iterator over reply's top-level elements; reply
// must be one complete reply as ParseReply framed it. A non-aggregate or
// null reply has no elements.
func NewElements(reply []byte) Elements {
	n, rep, err := ParseReply(reply)
	if err != nil || n == 0 {
		if err == nil {
			err = malformed("incomplete reply")
		}
		return Elements{err: err}
	}
	e := Elements{buf: reply[:n]}
	switch rep.Type {
	case '*', '~', '>':
		e.left = rep.Len
	case '%':
		e.left = 2 * rep.Len
	default:
		return e
	}
	e.pos = bytes.IndexByte(reply, '\n') + 1
	return e
}

// Next advances to the next element, reporting whether there is one.
func (e *Elements) Next() bool {
	if e.left <= 0 || e.err != nil {
		return false
	}
	n, _, err := ParseReply(e.buf[e.pos:])
	if err != nil || n == 0 {
		if err == nil {
			err = malformed("truncated aggregate")
		}
		e.err = err
		return false
	}
	e.elem = e.buf[e.pos : e.pos+n]
	e.pos += n
	e.left--
	return true
}

// Elem returns the current element's bytes (a complete reply).
func (e *Elements) Elem() []byte { return e.elem }

// Err returns the error that stopped the iteration, if any.
func (e *Elements) Err() error { return e.err }
