package memcache

import (
	"bytes"
	"encoding/base64"
	"strconv"
)

// Default limits, used for the zero fields of Limits.
const (
	// DefaultMaxKeyLength is memcached's own key limit.
	DefaultMaxKeyLength = 250
	// DefaultMaxValueSize is memcached's default item size limit (-I 1m).
	DefaultMaxValueSize = 1 << 20
	// DefaultMaxLineLength bounds a command line, terminator included but
	// data block excluded. 64 KiB holds a get of about 250 keys of the
	// longest length, or thousands of typical keys; memcached itself keeps
	// reading long lines only for get/gets and closes otherwise.
	DefaultMaxLineLength = 64 << 10
	// DefaultMaxKeys bounds the keys of one get/gets/gat/gats, so one
	// request cannot fan out without bound.
	DefaultMaxKeys = 2048
)

// Limits bounds what the parser accepts. Zero fields take the defaults above.
type Limits struct {
	// MaxKeyLength is the longest key in bytes (as sent on the wire, so a
	// base64 key is measured encoded, as memcached does). If zero, 250.
	MaxKeyLength int
	// MaxValueSize is the largest data block of a storage command. A larger
	// one gets "SERVER_ERROR object too large for cache" and is swallowed.
	// If zero, 1 MiB.
	MaxValueSize int
	// MaxLineLength is the longest command line including its "\r\n" (not
	// counting any data block). A longer line closes the connection, since
	// it cannot be told from garbage. If zero, 64 KiB.
	MaxLineLength int
	// MaxKeys is the most keys one get/gets/gat/gats may carry; more get
	// "CLIENT_ERROR too many keys". If zero, 2048.
	MaxKeys int
}

func (l Limits) withDefaults() Limits {
	if l.MaxKeyLength <= 0 {
		l.MaxKeyLength = DefaultMaxKeyLength
	}
	if l.MaxValueSize <= 0 {
		l.MaxValueSize = DefaultMaxValueSize
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = DefaultMaxLineLength
	}
	if l.MaxKeys <= 0 {
		l.MaxKeys = DefaultMaxKeys
	}
	return l
}

// Request is one parsed request. Byte slices point into the parser's input
// buffer and are valid only until that buffer changes. A Request is reused
// across Parse calls (the backing arrays of Keys and Args are reused) so
// steady-state parsing allocates nothing.
type Request struct {
	// Cmd is the command.
	Cmd Command
	// Raw is the whole request as received, including any data block.
	Raw []byte
	// Keys are the keys as they appear on the wire (meta: possibly base64
	// with the b flag). Empty for commands without keys.
	Keys [][]byte
	// Base64 reports the meta b flag: Keys are base64; use HashKey to get
	// the bytes to hash.
	Base64 bool
	// Noreply reports a text command's trailing noreply.
	Noreply bool
	// Quiet reports the meta q flag.
	Quiet bool
	// Exptime is the exptime token of gat, gats and touch (nil otherwise).
	Exptime []byte
	// Value is the data block of a storage command (set, add, replace,
	// append, prepend, cas, ms) without its "\r\n".
	Value []byte
	// Args holds the arguments of the commands without keys, noreply
	// excluded: flush_all's delay (if any), verbosity's level, stats's
	// arguments, and "get", "cluster" for config get.
	Args [][]byte

	hdr int // length of the command line including its terminator
}

func (r *Request) reset() {
	keys, args := r.Keys[:0], r.Args[:0]
	*r = Request{Keys: keys, Args: args}
}

// Error is a client-visible protocol error returned by Parse.
type Error struct {
	// Reply is what memcached would answer, e.g. "ERROR\r\n" or
	// "CLIENT_ERROR bad data chunk\r\n". It may be empty with Close.
	Reply []byte
	// Skip is how many bytes of input to discard to resynchronise: the bad
	// line, or the line and its data block when the block's length is
	// known. Skip may exceed the bytes buffered so far (an oversized value
	// not yet received); the caller then keeps discarding input as it
	// arrives until Skip bytes are gone. 0 with Close.
	Skip int
	// Close reports that the stream cannot be resynchronised (binary
	// protocol, bad data chunk terminator, overlong line): write Reply, if
	// any, then close the connection.
	Close bool

	why string
}

// Error describes the error for logs.
func (e *Error) Error() string {
	if e.why != "" {
		return "memcache: " + e.why
	}
	return "memcache: " + string(bytes.TrimRight(e.Reply, "\r\n"))
}

// Error replies given by the parser, in memcached 1.6's words.
const (
	msgBadFormat       = "bad command line format"
	msgBadDelete       = "bad command line format.  Usage: delete <key> [noreply]"
	msgBadExptime      = "invalid exptime argument"
	msgBadDelta        = "invalid numeric delta argument"
	msgBadChunk        = "bad data chunk"
	msgTooLarge        = "object too large for cache"
	msgBadBase64       = "error decoding key"
	msgTooManyKeys     = "too many keys"
	msgLineTooLong     = "line too long"
	msgNotSupported    = "command not supported by proxy"
	protocolBinaryByte = 0x80
)

func skipErr(kind ErrorKind, msg string, skip int) *Error {
	return &Error{Reply: AppendError(nil, kind, msg), Skip: skip}
}

func closeErr(kind ErrorKind, msg, why string) *Error {
	e := &Error{Close: true, why: why}
	if msg != "" || kind == KindError {
		e.Reply = AppendError(nil, kind, msg)
	}
	return e
}

// Parser parses memcached requests. It holds limits and scratch space; use
// one per connection (it is not safe for concurrent use).
type Parser struct {
	lim  Limits
	need int
	toks [][]byte
	b64  []byte
}

// NewParser returns a parser enforcing l (zero fields take the defaults).
func NewParser(l Limits) *Parser {
	return &Parser{lim: l.withDefaults()}
}

// Limits returns the limits in force, defaults filled in.
func (p *Parser) Limits() Limits { return p.lim }

// Need reports, after Parse returned n == 0 and a nil error, the total
// number of bytes the buffer must hold before the next call can make
// progress, or 0 if unknown (the command line itself is incomplete).
func (p *Parser) Need() int { return p.need }

// Parse parses the first request in buf into req.
//
//   - complete request: n is the bytes consumed (len(req.Raw)), err is nil.
//   - incomplete: n is 0, err is nil, and Need reports the total size buf
//     must reach (0 if unknown).
//   - bad input: err is an *Error saying what to reply and what to skip.
//
// Lines end in "\r\n" or a bare "\n", as memcached accepts; data blocks must
// end in "\r\n". Tokens are separated by runs of spaces.
//
// Where the proxy deliberately differs from memcached 1.6.18:
//   - keys with control characters (bytes below 0x21 and 0x7f) are refused
//     with "CLIENT_ERROR bad command line format"; memcached only splits on
//     spaces and would accept them;
//   - a storage command refused for a bad key or argument has its data block
//     swallowed whenever its length parsed, so the client gets exactly one
//     reply; memcached skips only the line and then answers the data block
//     as a command (usually "ERROR");
//   - a data block not followed by "\r\n" closes the connection after
//     "CLIENT_ERROR bad data chunk"; memcached swallows length+2 bytes and
//     carries on, which rarely resynchronises;
//   - a line longer than MaxLineLength closes with "CLIENT_ERROR line too
//     long"; memcached closes silently (except for long gets);
//   - commands the proxy refuses (shutdown, slabs, lru_crawler, lru, watch,
//     cache_memlimit, extstore, ...) get "CLIENT_ERROR command not supported
//     by proxy" and the connection stays usable;
//   - get/gets/gat/gats with more than MaxKeys keys get "CLIENT_ERROR too
//     many keys";
//   - "gat <exptime>" without keys gets "ERROR" (memcached answers "END"), so
//     a multi-key request always has at least one key.
func (p *Parser) Parse(buf []byte, req *Request) (n int, err error) {
	req.reset()
	p.need = 0
	if len(buf) == 0 {
		return 0, nil
	}
	if buf[0] == protocolBinaryByte {
		return 0, closeErr(KindClientError, "", "binary protocol is not supported")
	}
	search := buf
	if len(search) > p.lim.MaxLineLength {
		search = search[:p.lim.MaxLineLength]
	}
	eol := bytes.IndexByte(search, '\n')
	if eol < 0 {
		if len(buf) >= p.lim.MaxLineLength {
			return 0, closeErr(KindClientError, msgLineTooLong, "command line too long")
		}
		return 0, nil
	}
	hdr := eol + 1
	line := buf[:eol]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	req.hdr = hdr
	// Enough tokens for the longest get plus the name and gat's exptime, and
	// never fewer than memcached's own 24-token limit for other commands.
	maxToks := max(p.lim.MaxKeys+2, 32)
	toks, over := p.tokenize(line, maxToks)
	if len(toks) == 0 {
		return 0, skipErr(KindError, "", hdr)
	}
	cmd, refused := lookupCommand(toks[0])
	if refused {
		return 0, skipErr(KindClientError, msgNotSupported, hdr)
	}
	if cmd == CmdNone {
		return 0, skipErr(KindError, "", hdr)
	}
	req.Cmd = cmd
	nt := len(toks)
	if over && cmd.Class() != ClassMultiKey {
		return 0, skipErr(KindError, "", hdr)
	}

	switch cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		first := 1
		if cmd == CmdGat || cmd == CmdGats {
			first = 2
			if nt < 2 {
				return 0, skipErr(KindError, "", hdr)
			}
			if !validInt32(toks[1]) {
				return 0, skipErr(KindClientError, msgBadExptime, hdr)
			}
			req.Exptime = toks[1]
		}
		if nt <= first {
			return 0, skipErr(KindError, "", hdr)
		}
		if over || nt-first > p.lim.MaxKeys {
			return 0, skipErr(KindClientError, msgTooManyKeys, hdr)
		}
		for _, k := range toks[first:] {
			if !p.validKey(k) {
				return 0, skipErr(KindClientError, msgBadFormat, hdr)
			}
		}
		req.Keys = append(req.Keys, toks[first:]...)
		return p.complete(buf, hdr, req)

	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas:
		args := 5
		if cmd == CmdCas {
			args = 6
		}
		if nt != args && nt != args+1 {
			return 0, skipErr(KindError, "", hdr)
		}
		vlen, ok := parseInt32(toks[4])
		if !ok || vlen < 0 {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		skip := hdr + vlen + 2
		if !p.validKey(toks[1]) || !validUint(toks[2], 32) || !validInt32(toks[3]) ||
			(cmd == CmdCas && !validUint(toks[5], 64)) {
			return 0, skipErr(KindClientError, msgBadFormat, skip)
		}
		if vlen > p.lim.MaxValueSize {
			return 0, skipErr(KindServerError, msgTooLarge, skip)
		}
		req.Noreply = nt == args+1 && string(toks[args]) == "noreply"
		req.Keys = append(req.Keys, toks[1])
		return p.data(buf, hdr, vlen, req)

	case CmdDelete:
		if nt < 2 || nt > 4 {
			return 0, skipErr(KindError, "", hdr)
		}
		switch {
		case nt == 3 && string(toks[2]) == "noreply":
			req.Noreply = true
		case nt == 3 && string(toks[2]) == "0":
		case nt == 4 && string(toks[2]) == "0" && string(toks[3]) == "noreply":
			req.Noreply = true
		case nt != 2:
			return 0, skipErr(KindClientError, msgBadDelete, hdr)
		}
		if !p.validKey(toks[1]) {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		req.Keys = append(req.Keys, toks[1])
		return p.complete(buf, hdr, req)

	case CmdIncr, CmdDecr, CmdTouch:
		if nt != 3 && nt != 4 {
			return 0, skipErr(KindError, "", hdr)
		}
		if !p.validKey(toks[1]) {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		if cmd == CmdTouch {
			if !validInt32(toks[2]) {
				return 0, skipErr(KindClientError, msgBadExptime, hdr)
			}
			req.Exptime = toks[2]
		} else if !validUint(toks[2], 64) {
			return 0, skipErr(KindClientError, msgBadDelta, hdr)
		}
		req.Noreply = nt == 4 && string(toks[3]) == "noreply"
		req.Keys = append(req.Keys, toks[1])
		return p.complete(buf, hdr, req)

	case CmdFlushAll:
		if nt > 3 {
			return 0, skipErr(KindError, "", hdr)
		}
		rest := toks[1:]
		if len(rest) > 0 && string(rest[len(rest)-1]) == "noreply" {
			req.Noreply = true
			rest = rest[:len(rest)-1]
		}
		if len(rest) > 1 {
			return 0, skipErr(KindError, "", hdr)
		}
		if len(rest) == 1 && !validInt32(rest[0]) {
			return 0, skipErr(KindClientError, msgBadExptime, hdr)
		}
		req.Args = append(req.Args, rest...)
		return p.complete(buf, hdr, req)

	case CmdVersion, CmdQuit:
		if nt != 1 {
			return 0, skipErr(KindError, "", hdr)
		}
		return p.complete(buf, hdr, req)

	case CmdVerbosity:
		// "verbosity <level> [noreply]", as memcached 1.6 reads it: a bare
		// "verbosity noreply" is a silent no-op, a non-numeric level a
		// CLIENT_ERROR.
		if nt != 2 && nt != 3 {
			return 0, skipErr(KindError, "", hdr)
		}
		if nt == 2 && string(toks[1]) == "noreply" {
			req.Noreply = true
			return p.complete(buf, hdr, req)
		}
		if !digits(toks[1]) {
			return 0, skipErr(KindClientError, "bad command line format", hdr)
		}
		req.Noreply = nt == 3 && string(toks[2]) == "noreply"
		req.Args = append(req.Args, toks[1])
		return p.complete(buf, hdr, req)

	case CmdStats:
		// stats takes no noreply: memcached answers ERROR.
		if nt > 1 && string(toks[nt-1]) == "noreply" {
			return 0, skipErr(KindError, "", hdr)
		}
		req.Args = append(req.Args, toks[1:]...)
		return p.complete(buf, hdr, req)

	case CmdConfigGet:
		if nt != 3 || string(toks[1]) != "get" || string(toks[2]) != "cluster" {
			return 0, skipErr(KindError, "", hdr)
		}
		req.Args = append(req.Args, toks[1:]...)
		return p.complete(buf, hdr, req)

	case CmdMetaNoop:
		return p.complete(buf, hdr, req)

	case CmdMetaGet, CmdMetaDelete, CmdMetaArith, CmdMetaDebug:
		if nt < 2 {
			return 0, skipErr(KindError, "", hdr)
		}
		if e := p.metaKey(toks, 2, req, hdr); e != nil {
			return 0, e
		}
		return p.complete(buf, hdr, req)

	case CmdMetaSet:
		if nt < 2 {
			return 0, skipErr(KindError, "", hdr)
		}
		if nt < 3 {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		vlen, ok := parseInt32(toks[2])
		if !ok || vlen < 0 {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		skip := hdr + vlen + 2
		if e := p.metaKey(toks, 3, req, skip); e != nil {
			return 0, e
		}
		if vlen > p.lim.MaxValueSize {
			return 0, skipErr(KindServerError, msgTooLarge, skip)
		}
		return p.data(buf, hdr, vlen, req)
	}
	return 0, skipErr(KindError, "", hdr)
}

// metaKey validates a meta command's key and scans its flags (from token
// index flags on) for b and q. skip is what to discard on error.
func (p *Parser) metaKey(toks [][]byte, flags int, req *Request, skip int) *Error {
	key := toks[1]
	if !p.validKey(key) {
		return skipErr(KindClientError, msgBadFormat, skip)
	}
	for _, f := range toks[flags:] {
		switch f[0] {
		case 'b':
			req.Base64 = true
		case 'q':
			if req.Cmd != CmdMetaDebug {
				req.Quiet = true
			}
		}
	}
	if req.Base64 {
		var err error
		p.b64, err = base64.StdEncoding.AppendDecode(p.b64[:0], key)
		if err != nil || len(p.b64) == 0 {
			return skipErr(KindClientError, msgBadBase64, skip)
		}
	}
	req.Keys = append(req.Keys, key)
	return nil
}

// complete finishes a request without a data block.
func (p *Parser) complete(buf []byte, hdr int, req *Request) (int, error) {
	req.Raw = buf[:hdr]
	return hdr, nil
}

// data finishes a storage request whose block is vlen bytes.
func (p *Parser) data(buf []byte, hdr, vlen int, req *Request) (int, error) {
	total := hdr + vlen + 2
	if len(buf) < total {
		p.need = total
		req.reset()
		return 0, nil
	}
	if buf[total-2] != '\r' || buf[total-1] != '\n' {
		req.reset()
		return 0, closeErr(KindClientError, msgBadChunk, "data block not terminated by \\r\\n")
	}
	req.hdr = hdr
	req.Value = buf[hdr : hdr+vlen]
	req.Raw = buf[:total]
	return total, nil
}

// tokenize splits line on runs of spaces into p.toks, stopping after max
// tokens (over then reports that more followed).
func (p *Parser) tokenize(line []byte, max int) (toks [][]byte, over bool) {
	toks = p.toks[:0]
	for pos := 0; ; {
		var t []byte
		t, pos = nextToken(line, pos)
		if t == nil {
			break
		}
		if len(toks) == max {
			over = true
			break
		}
		toks = append(toks, t)
	}
	p.toks = toks
	return toks, over
}

// nextToken returns the token starting at or after pos and the position
// after it; nil at the end of line.
func nextToken(line []byte, pos int) ([]byte, int) {
	for pos < len(line) && line[pos] == ' ' {
		pos++
	}
	if pos >= len(line) {
		return nil, pos
	}
	start := pos
	for pos < len(line) && line[pos] != ' ' {
		pos++
	}
	return line[start:pos], pos
}

func (p *Parser) validKey(k []byte) bool {
	if len(k) == 0 || len(k) > p.lim.MaxKeyLength {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// parseInt32 parses an optionally signed decimal that fits in int32.
func parseInt32(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 11 {
		return 0, false
	}
	neg := false
	if b[0] == '-' || b[0] == '+' {
		neg = b[0] == '-'
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if neg {
		v = -v
	}
	if v > 1<<31-1 || v < -(1<<31) {
		return 0, false
	}
	return v, true
}

func validInt32(b []byte) bool {
	_, ok := parseInt32(b)
	return ok
}

// validUint reports whether b is an unsigned decimal fitting in bits.
func validUint(b []byte, bits int) bool {
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(string(b), 10, bits) // string(b) does not escape: no allocation
	return err == nil
}

// digits reports whether b is a non-empty run of ASCII digits.
func digits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
