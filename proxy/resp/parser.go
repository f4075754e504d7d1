package resp

import (
	"bytes"
	"math"
)

// Limits bound what a client may send. Zero fields take the defaults.
type Limits struct {
	// MaxMultibulk is the most arguments one request may have. If zero,
	// 1024*1024 is used.
	MaxMultibulk int
	// MaxBulk is the most bytes one argument may have. If zero, 512 MiB is
	// used (Redis's proto-max-bulk-len).
	MaxBulk int
	// MaxInline is the longest inline command line, and the longest header
	// line of a multibulk request. If zero, 64 KiB is used (Redis's
	// PROTO_INLINE_MAX_SIZE).
	MaxInline int
}

// Default limits.
const (
	DefaultMaxMultibulk = 1024 * 1024
	DefaultMaxBulk      = 512 << 20
	DefaultMaxInline    = 64 << 10
)

// Request is one parsed command.
type Request struct {
	// Raw is the whole request as received.
	Raw []byte
	// Args are the arguments, Args[0] the command name as sent (any case).
	// They point into the input buffer (or, for quoted inline arguments,
	// into the parser's scratch space) and are valid until the next Parse
	// or until the buffer changes. The backing array is reused across
	// Parse calls.
	Args [][]byte
	// Inline is true for an inline command (a plain text line).
	Inline bool
	// Cmd is the top-level table entry for Args[0], nil if unknown.
	Cmd *Command

	// reencode says Raw has separators other than CRLF, which Redis skips
	// unchecked; AppendForward then re-encodes the arguments.
	reencode bool
}

// Error is a protocol error: Reply is the complete error reply in Redis's
// words; Close says the connection cannot be resynchronised and must be
// closed after the reply is written.
type Error struct {
	Reply []byte
	Close bool
}

// Error returns the reply text without the leading '-' and the CRLF.
func (e *Error) Error() string {
	r := e.Reply
	if len(r) > 0 && r[0] == '-' {
		r = r[1:]
	}
	return string(bytes.TrimSuffix(r, []byte("\r\n")))
}

func protocolError(msg string) *Error {
	return &Error{Reply: AppendError(nil, "ERR Protocol error: "+msg), Close: true}
}

// Parser parses requests incrementally. After an incomplete result it keeps
// how far it got, so the next call must pass the same unconsumed input with
// more bytes appended (it may have moved in memory); call Reset to drop that
// state when the input is discarded instead. A Parser is not safe for
// concurrent use; use one per client connection.
type Parser struct {
	// Unauthenticated makes the parser apply Redis's limits for a client
	// that has not authenticated yet (at most 10 arguments of at most 16384
	// bytes); the caller sets it while authentication is required.
	Unauthenticated bool

	lim Limits

	// Resume state of an incomplete multibulk request; offsets are from the
	// start of the request.
	inMulti bool
	nargs   int   // arguments announced
	pos     int   // bytes parsed so far
	offs    []int // start, end of each complete argument
	need    int
	odd     bool // a separator was not CRLF: re-encode when forwarding

	scratch []byte // unquoted copies of quoted inline arguments
}

// NewParser returns a parser with limits l (zero fields take the defaults).
func NewParser(l Limits) *Parser {
	if l.MaxMultibulk <= 0 {
		l.MaxMultibulk = DefaultMaxMultibulk
	}
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultMaxBulk
	}
	if l.MaxInline <= 0 {
		l.MaxInline = DefaultMaxInline
	}
	return &Parser{lim: l}
}

// Reset forgets a partly parsed request.
func (p *Parser) Reset() {
	p.inMulti, p.nargs, p.pos, p.need, p.odd = false, 0, 0, 0, false
	p.offs = p.offs[:0]
}

// Need returns, after Parse reported an incomplete request, the total number
// of bytes the request needs from the start of the input when that is known
// (a bulk argument's length has been read), else 0. The caller may wait for
// that many bytes before calling Parse again.
func (p *Parser) Need() int { return p.need }

// Parse parses the first request in buf into req.
//
//   - A complete request: n is the number of bytes it used, req is filled.
//   - An empty line or an empty multibulk (*0, *-1), which Redis skips: n is
//     the bytes to skip and len(req.Args) == 0.
//   - Incomplete input: n == 0 and err == nil; see Need.
//   - Bad input: err is an *Error carrying the reply; the caller writes it
//     and, when Close is set, closes the connection.
func (p *Parser) Parse(buf []byte, req *Request) (n int, err error) {
	req.Args = req.Args[:0]
	req.Raw, req.Cmd, req.Inline, req.reencode = nil, nil, false, false
	p.need = 0
	if p.inMulti && p.pos > len(buf) {
		p.Reset() // not the same input: start over
	}
	if len(buf) == 0 {
		return 0, nil
	}
	if p.inMulti || buf[0] == '*' {
		return p.parseMulti(buf, req)
	}
	return p.parseInline(buf, req)
}

// lineEnd finds where Redis ends a header line that starts at buf[0]: the
// first c, as strchr(3) finds it, so a NUL before it hides it (Redis then
// waits for more input, and finally reports the request as too big). It
// returns -1 when Redis would not see c yet.
func lineEnd(buf []byte, c byte) int {
	for i, b := range buf {
		switch b {
		case c:
			return i
		case 0:
			return -1
		}
	}
	return -1
}

// printable renders a byte for an error message as Redis's
// addReplyErrorFormat does: CR and LF become spaces.
func printable(c byte) string {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return string([]byte{c})
}

func (p *Parser) parseMulti(buf []byte, req *Request) (int, error) {
	if !p.inMulti {
		// processMultibulkBuffer: the count line must end in '\r' with a
		// byte after it (Redis does not check that it is '\n').
		i := lineEnd(buf, '\r')
		if i < 0 {
			if len(buf) > p.lim.MaxInline {
				return 0, protocolError("too big mbulk count string")
			}
			return 0, nil
		}
		if i+1 >= len(buf) {
			return 0, nil
		}
		ll, ok := parseInt(buf[1:i])
		if !ok || ll > math.MaxInt32 || ll > int64(p.lim.MaxMultibulk) {
			return 0, protocolError("invalid multibulk length")
		}
		if ll > 10 && p.Unauthenticated {
			return 0, protocolError("unauthenticated multibulk length")
		}
		if ll <= 0 {
			return i + 2, nil
		}
		p.inMulti, p.nargs, p.pos = true, int(ll), i+2
		p.offs = p.offs[:0]
		p.odd = buf[i+1] != '\n'
	}
	for len(p.offs) < 2*p.nargs {
		pos := p.pos
		if pos >= len(buf) {
			return 0, nil
		}
		i := lineEnd(buf[pos:], '\r')
		if i < 0 {
			if len(buf)-pos > p.lim.MaxInline {
				p.Reset()
				return 0, protocolError("too big bulk count string")
			}
			return 0, nil
		}
		if pos+i+1 >= len(buf) {
			return 0, nil
		}
		// Only a complete line is checked for its '$', as Redis does.
		if buf[pos] != '$' {
			c := buf[pos]
			p.Reset()
			return 0, protocolError("expected '$', got '" + printable(c) + "'")
		}
		ll, ok := parseInt(buf[pos+1 : pos+i])
		if !ok || ll < 0 || ll > int64(p.lim.MaxBulk) {
			p.Reset()
			return 0, protocolError("invalid bulk length")
		}
		if ll > 16384 && p.Unauthenticated {
			p.Reset()
			return 0, protocolError("unauthenticated bulk length")
		}
		start := pos + i + 2
		end := start + int(ll)
		if end+2 > len(buf) {
			p.need = end + 2
			return 0, nil
		}
		// Redis skips the byte after the length line's '\r' and the two
		// bytes after the data without looking at them; so does the
		// parser, and such a request is re-encoded when forwarded.
		if buf[pos+i+1] != '\n' || buf[end] != '\r' || buf[end+1] != '\n' {
			p.odd = true
		}
		p.offs = append(p.offs, start, end)
		p.pos = end + 2
	}
	for i := 0; i < len(p.offs); i += 2 {
		req.Args = append(req.Args, buf[p.offs[i]:p.offs[i+1]:p.offs[i+1]])
	}
	n := p.pos
	req.Raw = buf[:n:n]
	req.reencode = p.odd
	req.Cmd = Lookup(req.Args[0])
	p.Reset()
	return n, nil
}

func (p *Parser) parseInline(buf []byte, req *Request) (int, error) {
	// processInlineBuffer: the line ends at the first '\n' strchr(3) sees.
	// Like Redis, the parser gives up only when MaxInline bytes are in
	// without one: a longer line that arrives whole is read (how much
	// arrives at once depends on the reads, in Redis as in the proxy).
	nl := lineEnd(buf, '\n')
	if nl < 0 {
		if len(buf) > p.lim.MaxInline {
			return 0, protocolError("too big inline request")
		}
		return 0, nil
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := p.splitArgs(line, req.Args)
	if !ok {
		req.Args = args[:0]
		return 0, protocolError("unbalanced quotes in request")
	}
	req.Args = args
	n := nl + 1
	req.Raw = buf[:n:n]
	if len(args) == 0 {
		return n, nil
	}
	if len(args) > p.lim.MaxMultibulk {
		req.Args = args[:0]
		return 0, protocolError("invalid multibulk length")
	}
	req.Inline = true
	req.Cmd = Lookup(args[0])
	return n, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// splitArgs splits an inline line as Redis's sdssplitargs does: blanks
// separate arguments; "double quotes" take \n \r \t \b \a \xHH and \<any>
// escapes; 'single quotes' take \'; a closing quote must be followed by a
// blank or the end. As in C, a NUL byte ends the line. Unquoted arguments
// point into line; quoted ones are unescaped into p.scratch.
func (p *Parser) splitArgs(line []byte, args [][]byte) ([][]byte, bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	if cap(p.scratch) < len(line) {
		p.scratch = make([]byte, 0, len(line))
	}
	sc := p.scratch[:0] // never grows past len(line): earlier args stay valid
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		start := i
		quoted := false
		for i < len(line) {
			c := line[i]
			if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				break
			}
			if c == '"' || c == '\'' {
				quoted = true
				break
			}
			i++
		}
		if !quoted {
			args = append(args, line[start:i:i])
			continue
		}
		// Copy mode: the plain prefix, then quoted parts, into scratch.
		from := len(sc)
		sc = append(sc, line[start:i]...)
		inq, insq := false, false
	token:
		for {
			if i >= len(line) {
				if inq || insq {
					return args, false
				}
				break
			}
			c := line[i]
			switch {
			case inq:
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					sc = append(sc, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 4
				case c == '\\' && i+1 < len(line):
					e := line[i+1]
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					sc = append(sc, e)
					i += 2
				case c == '"':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return args, false
					}
					i++
					break token
				default:
					sc = append(sc, c)
					i++
				}
			case insq:
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					sc = append(sc, '\'')
					i += 2
				case c == '\'':
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return args, false
					}
					i++
					break token
				default:
					sc = append(sc, c)
					i++
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t':
					break token
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					sc = append(sc, c)
				}
				i++
			}
		}
		args = append(args, sc[from:len(sc):len(sc)])
	}
}

// parseInt parses a decimal integer as Redis's string2ll: an optional '-',
// no '+', no leading zeros, no spaces, at most 20 bytes, no overflow.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// AppendForward appends the request as it should go to a backend: Raw for a
// multibulk request, the arguments re-encoded as multibulk for an inline one
// or for one whose separators were not all CRLF.
func (r *Request) AppendForward(dst []byte) []byte {
	if !r.Inline && !r.reencode {
		return append(dst, r.Raw...)
	}
	return AppendCommand(dst, r.Args...)
}

// AppendCommand appends args encoded as a RESP multibulk request.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}
