package memcache

import (
	"bytes"
	"encoding/base64"
	"math"
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
	// base64 key is measured encoded, as memcached does). If zero or more
	// than 250, 250.
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
	if l.MaxKeyLength <= 0 || l.MaxKeyLength > DefaultMaxKeyLength {
		// Never more than memcached's own 250: memcached refuses a longer
		// key, and for get/gets/gat/gats it then also discards the unsent
		// replies to the requests before it on the connection (1.6.18,
		// conn_release_items), which on a shared backend connection would
		// take other clients' replies.
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
	// Primary reports an mg whose flags write (N vivifies a missing key,
	// T touches, R and E take part in recaching or set the CAS) or ask for
	// the CAS value (c): it must go to the primary, never a replica. Also
	// set when the flags are too many to read.
	Primary bool
	// Exptime is the exptime token of gat, gats and touch (nil otherwise).
	Exptime []byte
	// Value is the data block of a storage command (set, add, replace,
	// append, prepend, cas, ms) without its "\r\n".
	Value []byte
	// Args holds the arguments of the commands without keys, noreply
	// excluded: flush_all's delay (if any), verbosity's level, stats's
	// arguments, and "get", "cluster" for config get.
	Args [][]byte

	hdr  int // length of the command line including its terminator
	line int // length of the line as memcached reads it (no terminator, cut at a NUL)
	// ttlOff, ttlEnd locate in Raw the digits of a relative expiry that
	// may be rewritten (see TTL); 0, 0 when there is none. ttl is its value.
	ttlOff, ttlEnd int
	ttl            int32
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
	// Answer reports that Reply is memcached's ordinary answer, not an
	// error (END for gat/gats without keys): nothing is refused.
	Answer bool

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
	// ascii is set once the connection has sent a byte: memcached picks
	// the binary protocol by the first byte of a connection only.
	ascii bool
}

// memcached 1.6.18's limits on a command line.
const (
	// maxTokens is memcached's MAX_TOKENS: 23 tokens and a final one
	// holding the rest of the line.
	maxTokens = 24
	// maxMetaTokens is memcached's MFLAG_MAX_OPT_LENGTH: a meta command
	// with more tokens (the final one counted) is refused.
	maxMetaTokens = 20
	// memcachedLineLimit is the length past which memcached closes a
	// connection whose line has no "\n" yet, unless it is a get or gets.
	memcachedLineLimit = 2048
)

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
// The request is read exactly as memcached 1.6.18 reads it (proto_text.c):
// a line ends at "\n", one "\r" before it is dropped (unless the line is
// just "\r"), and the line ends at its first NUL byte; tokens are split on
// spaces only, so a key is any bytes but space, CR, LF and NUL, up to
// MaxKeyLength. Numbers are read as memcached's safe_strtol family reads
// them (leading white space, a sign, trailing white space after the digits,
// 64-bit values truncated to the field). "noreply" is the last token,
// compared whole. A refused request gets memcached's own reply, or none when
// memcached would stay silent (a noreply command that fails after its token
// count checked out), and skips what memcached skips: the line, or the line
// and data block when memcached swallows the block too. A data block not
// followed by "\r\n" is answered "CLIENT_ERROR bad data chunk" (silently
// with noreply) and skipped, as memcached does. Meta commands other than
// ms are forwarded as they are once they have a key: memcached itself
// answers their errors, one reply each.
//
// Where the proxy deliberately differs from memcached 1.6.18 (all of them
// requests the proxy answers itself, never forwards):
//   - commands the proxy refuses (shutdown, slabs, lru_crawler, lru, watch,
//     cache_memlimit, extstore, bget, ...) get "CLIENT_ERROR command not
//     supported by proxy" and the connection stays usable;
//   - version, verbosity, stats, quit, mn and config get cluster are
//     answered by the proxy (see the codec);
//   - get/gets/gat/gats with more than MaxKeys keys get "CLIENT_ERROR too
//     many keys", and a line longer than MaxLineLength closes the
//     connection (memcached reads get lines without bound);
//   - a gat/gats line longer than 2048 bytes is read (memcached closes the
//     connection when such a line is not complete within 2048 bytes);
//   - a get-family request with a key too long is refused before any key is
//     looked up, so no key of it is touched (memcached touches the keys
//     before the long one, then answers the same CLIENT_ERROR);
//   - a storage command whose data block exceeds MaxValueSize is answered
//     "SERVER_ERROR object too large for cache" by the proxy (memcached's
//     words; its own limit is -I and counts the item header);
//   - a first byte 0x80 (binary protocol) on a connection closes it.
func (p *Parser) Parse(buf []byte, req *Request) (n int, err error) {
	req.reset()
	p.need = 0
	if len(buf) == 0 {
		return 0, nil
	}
	if buf[0] == protocolBinaryByte && !p.ascii {
		return 0, closeErr(KindClientError, "", "binary protocol is not supported")
	}
	p.ascii = true
	search := buf
	if len(search) > p.lim.MaxLineLength {
		search = search[:p.lim.MaxLineLength]
	}
	eol := bytes.IndexByte(search, '\n')
	if eol < 0 {
		if len(buf) >= p.lim.MaxLineLength {
			return 0, closeErr(KindClientError, "", "command line too long")
		}
		if len(buf) > memcachedLineLimit && !longLineOK(buf) {
			return 0, closeErr(KindClientError, "", "command line too long")
		}
		return 0, nil
	}
	if eol > memcachedLineLimit && !longLineOK(buf) {
		return 0, closeErr(KindClientError, "", "command line too long")
	}
	hdr := eol + 1
	line := buf[:eol]
	if eol > 1 && line[eol-1] == '\r' {
		line = line[:eol-1]
	}
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i] // memcached reads the line as a C string
	}
	req.hdr = hdr
	req.line = len(line)
	toks, over := p.tokenize(line, max(p.lim.MaxKeys+2, maxTokens))
	nt := len(toks)
	// memcached's token count: at most 23 tokens and a final one (the
	// unread rest of the line, or none).
	mcn := min(nt, maxTokens-1) + 1
	if nt == 0 || len(toks[0]) < 2 {
		return 0, skipErr(KindError, "", hdr)
	}
	name := toks[0]
	if name[0] == 'm' && len(name) == 2 {
		return p.parseMeta(buf, hdr, toks, mcn, req)
	}
	cmd, refused := lookupCommand(name)
	if refused {
		return 0, skipErr(KindClientError, msgNotSupported, hdr)
	}
	if cmd == CmdNone {
		if !isDispatched(name[0]) && bytes.HasPrefix(toks[mcn-2], []byte("HTTP/")) {
			// memcached closes on what looks like an HTTP request.
			return 0, closeErr(KindClientError, "", "HTTP request")
		}
		return 0, skipErr(KindError, "", hdr)
	}
	req.Cmd = cmd
	// noreply as set_noreply_maybe reads it: the last token, compared whole.
	noreply := nt > 1 && nt < maxTokens && string(toks[nt-1]) == "noreply"
	// fail refuses the line (or more) with msg, silently under noreply.
	fail := func(kind ErrorKind, msg string, skip int) (int, error) {
		if noreply {
			return 0, &Error{Skip: skip, why: msg + " (noreply)"}
		}
		return 0, skipErr(kind, msg, skip)
	}

	switch cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		if nt < 2 {
			return 0, skipErr(KindError, "", hdr)
		}
		first := 1
		if cmd == CmdGat || cmd == CmdGats {
			first = 2
			if _, ok := safeStrtol(toks[1]); !ok {
				return 0, skipErr(KindClientError, msgBadExptime, hdr)
			}
			req.Exptime = toks[1]
			if nt == 2 {
				// memcached answers an empty END.
				return 0, &Error{Reply: []byte("END\r\n"), Skip: hdr, Answer: true, why: "gat without keys"}
			}
		}
		if over || nt-first > p.lim.MaxKeys {
			return 0, skipErr(KindClientError, msgTooManyKeys, hdr)
		}
		for _, k := range toks[first:] {
			if len(k) > p.lim.MaxKeyLength {
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
		if len(toks[1]) > p.lim.MaxKeyLength {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		_, ok1 := safeStrtoul(toks[2])
		_, ok2 := safeStrtol(toks[3])
		vlen32, ok3 := safeStrtol(toks[4])
		if !ok1 || !ok2 || !ok3 {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		if cmd == CmdCas {
			if _, ok := safeStrtoull(toks[5]); !ok {
				return fail(KindClientError, msgBadFormat, hdr)
			}
		}
		if vlen32 < 0 || vlen32 > 1<<31-1-2 {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		vlen := int(vlen32)
		if vlen > p.lim.MaxValueSize {
			return fail(KindServerError, msgTooLarge, hdr+vlen+2)
		}
		req.Noreply = noreply
		req.Keys = append(req.Keys, toks[1])
		if cmd == CmdSet || cmd == CmdAdd || cmd == CmdReplace || cmd == CmdCas {
			req.setTTL(buf, toks[3])
		}
		return p.data(buf, hdr, vlen, req, true)

	case CmdDelete:
		if nt < 2 || nt > 4 {
			return 0, skipErr(KindError, "", hdr)
		}
		// memcached looks for noreply only after the key: "delete noreply"
		// deletes the key "noreply".
		noreply = noreply && nt > 2
		if nt > 2 {
			hold0 := string(toks[2]) == "0"
			if !(nt == 3 && (hold0 || noreply)) && !(nt == 4 && hold0 && noreply) {
				return fail(KindClientError, msgBadDelete, hdr)
			}
		}
		if len(toks[1]) > p.lim.MaxKeyLength {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		req.Noreply = noreply
		req.Keys = append(req.Keys, toks[1])
		return p.complete(buf, hdr, req)

	case CmdIncr, CmdDecr, CmdTouch:
		if nt != 3 && nt != 4 {
			return 0, skipErr(KindError, "", hdr)
		}
		if len(toks[1]) > p.lim.MaxKeyLength {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		if cmd == CmdTouch {
			if _, ok := safeStrtol(toks[2]); !ok {
				return fail(KindClientError, msgBadExptime, hdr)
			}
			req.Exptime = toks[2]
		} else if _, ok := safeStrtoull(toks[2]); !ok {
			return fail(KindClientError, msgBadDelta, hdr)
		}
		req.Noreply = noreply
		req.Keys = append(req.Keys, toks[1])
		return p.complete(buf, hdr, req)

	case CmdFlushAll:
		if nt > 3 {
			return 0, skipErr(KindError, "", hdr)
		}
		plain := 1
		if noreply {
			plain = 2
		}
		if nt != plain {
			if _, ok := safeStrtol(toks[1]); !ok {
				return fail(KindClientError, msgBadExptime, hdr)
			}
			req.Args = append(req.Args, toks[1])
		}
		req.Noreply = noreply
		return p.complete(buf, hdr, req)

	case CmdVersion, CmdQuit:
		// memcached 1.6 ignores any arguments; the proxy, which answers
		// these itself, keeps the older ERROR (memccapable expects it from
		// a server whose version is below 1.x, as the proxy's is).
		if nt != 1 {
			return 0, skipErr(KindError, "", hdr)
		}
		return p.complete(buf, hdr, req)

	case CmdVerbosity:
		if nt != 2 && nt != 3 {
			return 0, skipErr(KindError, "", hdr)
		}
		if _, ok := safeStrtoul(toks[1]); !ok {
			return fail(KindClientError, msgBadFormat, hdr)
		}
		req.Noreply = noreply
		req.Args = append(req.Args, toks[1])
		return p.complete(buf, hdr, req)

	case CmdStats:
		// stats takes no noreply: the proxy answers ERROR.
		if noreply {
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
	}
	return 0, skipErr(KindError, "", hdr)
}

// isDispatched reports whether memcached dispatches commands starting with
// c by their first byte (and answers ERROR to unknown ones there, never
// closing for HTTP).
func isDispatched(c byte) bool {
	switch c {
	case 'g', 's', 'a', 'c', 'i', 'd', 't':
		return true
	}
	return false
}

// parseMeta parses the meta commands (two-letter names starting with m).
// Once a meta command has its key it is forwarded as it is: memcached
// checks its flags and answers one reply, errors included (the q flag is
// handled by the codec). Only ms needs reading here, for its data block.
func (p *Parser) parseMeta(buf []byte, hdr int, toks [][]byte, mcn int, req *Request) (int, error) {
	nt := len(toks)
	switch toks[0][1] {
	case 'g':
		req.Cmd = CmdMetaGet
	case 's':
		req.Cmd = CmdMetaSet
	case 'd':
		req.Cmd = CmdMetaDelete
	case 'a':
		req.Cmd = CmdMetaArith
	case 'e':
		req.Cmd = CmdMetaDebug
	case 'n':
		req.Cmd = CmdMetaNoop
		return p.complete(buf, hdr, req)
	default:
		return 0, skipErr(KindError, "", hdr)
	}
	if nt < 2 {
		if req.Cmd == CmdMetaDebug {
			return 0, skipErr(KindClientError, msgBadFormat, hdr)
		}
		return 0, skipErr(KindError, "", hdr)
	}
	key := toks[1]
	if len(key) > p.lim.MaxKeyLength {
		return 0, skipErr(KindClientError, msgBadFormat, hdr)
	}
	flags := 2
	if req.Cmd == CmdMetaSet {
		flags = 3
	}
	if req.Cmd == CmdMetaDebug {
		req.Base64 = nt >= 3 && string(toks[2]) == "b"
	} else if mcn <= maxMetaTokens {
		for _, f := range toks[min(flags, nt):] {
			switch f[0] {
			case 'b':
				req.Base64 = true
			case 'q':
				req.Quiet = true
			case 'N', 'T', 'R', 'E', 'c':
				req.Primary = req.Cmd == CmdMetaGet
			}
		}
	} else {
		req.Primary = req.Cmd == CmdMetaGet
	}
	if req.Base64 {
		var err error
		p.b64, err = base64.StdEncoding.AppendDecode(p.b64[:0], key)
		if err != nil || len(p.b64) == 0 {
			req.Base64 = false // memcached refuses it; any server will say so
		}
	}
	req.Keys = append(req.Keys, key)
	if req.Cmd != CmdMetaSet {
		return p.complete(buf, hdr, req)
	}
	if nt == 2 {
		req.reset()
		return 0, skipErr(KindClientError, msgBadFormat, hdr)
	}
	if mcn > maxMetaTokens {
		req.reset()
		return 0, skipErr(KindClientError, "options flags too long", hdr)
	}
	vlen32, ok := safeStrtol(toks[2])
	if !ok || vlen32 < 0 || vlen32 > 1<<31-1-2 {
		req.reset()
		return 0, skipErr(KindClientError, msgBadFormat, hdr)
	}
	vlen := int(vlen32)
	if vlen > p.lim.MaxValueSize {
		req.reset()
		return 0, skipErr(KindServerError, msgTooLarge, hdr+vlen+2)
	}
	metaTTL(buf, toks[3:], req)
	// memcached reads the block whatever its flags say and answers one
	// reply (CLIENT_ERROR bad data chunk for a bad terminator): forward it.
	return p.data(buf, hdr, vlen, req, false)
}

// MaxRelativeTTL is the largest exptime memcached reads as relative to now
// (30 days, in seconds); a larger one is a unix time.
const MaxRelativeTTL = 30 * 24 * 3600

// setTTL records tok, an exptime token that points into buf, when it is a
// relative expiry that may be rewritten: plain decimal digits (no sign, no
// white space), more than 0 and at most MaxRelativeTTL. Anything else (0:
// never expires, negative: expired at once, larger: a unix time, or an
// unusual spelling memcached also reads) is left as it is.
func (r *Request) setTTL(buf, tok []byte) {
	if len(tok) == 0 || len(tok) > 7 {
		return // MaxRelativeTTL has 7 digits
	}
	v := 0
	for _, c := range tok {
		if c < '0' || c > '9' {
			return
		}
		v = v*10 + int(c-'0')
	}
	if v <= 0 || v > MaxRelativeTTL {
		return
	}
	// tok is a subslice of buf, which it shares the end of the backing
	// array with: the difference of the capacities is its offset.
	r.ttlOff = cap(buf) - cap(tok)
	r.ttlEnd = r.ttlOff + len(tok)
	r.ttl = int32(v)
}

// metaTTL records the T flag of an ms (flags are its tokens after the data
// length) as setTTL does, unless the mode is append or prepend (MA, MP),
// which keep the item's expiry: only a set, add or replace's expiry moves.
func metaTTL(buf []byte, flags [][]byte, req *Request) {
	var t []byte
	for _, f := range flags {
		switch f[0] {
		case 'T':
			if t == nil {
				t = f[1:]
			}
		case 'M':
			if len(f) > 1 && (f[1] == 'A' || f[1] == 'a' || f[1] == 'P' || f[1] == 'p') {
				return
			}
		}
	}
	if t != nil {
		req.setTTL(buf, t)
	}
}

// longLineOK reports whether a line longer than memcached's 2048-byte
// limit may still be read: a get-family request (memcached reads long get
// and gets lines; the proxy reads gat and gats too), after at most 100
// leading spaces.
func longLineOK(buf []byte) bool {
	i := 0
	for i < len(buf) && i <= 100 && buf[i] == ' ' {
		i++
	}
	if i > 100 {
		return false
	}
	b := buf[i:]
	for _, pre := range []string{"get ", "gets ", "gat ", "gats "} {
		if bytes.HasPrefix(b, []byte(pre)) {
			return true
		}
	}
	return false
}

// complete finishes a request without a data block.
func (p *Parser) complete(buf []byte, hdr int, req *Request) (int, error) {
	req.Raw = buf[:hdr]
	return hdr, nil
}

// data finishes a storage request whose block is vlen bytes. With check, a
// block not followed by "\r\n" is refused as memcached refuses it: "CLIENT_ERROR
// bad data chunk" (nothing under noreply), the line and block skipped.
func (p *Parser) data(buf []byte, hdr, vlen int, req *Request, check bool) (int, error) {
	total := hdr + vlen + 2
	if len(buf) < total {
		p.need = total
		req.reset()
		return 0, nil
	}
	if check && (buf[total-2] != '\r' || buf[total-1] != '\n') {
		noreply := req.Noreply
		req.reset()
		if noreply {
			return 0, &Error{Skip: total, why: msgBadChunk + " (noreply)"}
		}
		return 0, skipErr(KindClientError, msgBadChunk, total)
	}
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

// isCSpace is C's isspace in the C locale.
func isCSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

// strto reads tok as glibc's strtol (signed) or strtoul (unsigned) read a
// NUL-terminated token in base 10, with memcached's safe_strto* check of
// what follows: ok is false when no digit was read, when the value is out
// of the 64-bit range (ERANGE), or when the digits are followed by anything
// but the token's end or white space. v holds the 64-bit result (for
// strtoul, a negative number wraps as C's does); neg reports a '-' sign.
func strto(tok []byte, signed bool) (v uint64, neg bool, ok bool) {
	i := 0
	for i < len(tok) && isCSpace(tok[i]) {
		i++
	}
	if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
		neg = tok[i] == '-'
		i++
	}
	start := i
	var mag uint64
	overflow := false
	for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
		d := uint64(tok[i] - '0')
		if mag > (math.MaxUint64-d)/10 {
			overflow = true
		} else {
			mag = mag*10 + d
		}
		i++
	}
	if i == start {
		return 0, false, false // str == endptr
	}
	if signed {
		limit := uint64(math.MaxInt64)
		if neg {
			limit++
		}
		if mag > limit {
			overflow = true
		}
	}
	if overflow {
		return 0, false, false // ERANGE
	}
	if i < len(tok) && !isCSpace(tok[i]) {
		return 0, false, false
	}
	if neg {
		mag = -mag
	}
	return mag, neg, true
}

// safeStrtol is memcached's safe_strtol: strtol, then truncated to int32
// without a range check, as memcached does.
func safeStrtol(tok []byte) (int32, bool) {
	v, _, ok := strto(tok, true)
	return int32(v), ok
}

// safeStrtoull is memcached's safe_strtoull: strtoull, refusing a value
// that is negative as a signed number when the token holds a '-'.
func safeStrtoull(tok []byte) (uint64, bool) {
	v, _, ok := strto(tok, false)
	if !ok || (int64(v) < 0 && bytes.IndexByte(tok, '-') >= 0) {
		return 0, false
	}
	return v, true
}

// safeStrtoul is memcached's safe_strtoul: as safeStrtoull (unsigned long
// is 64 bits), then truncated to uint32.
func safeStrtoul(tok []byte) (uint32, bool) {
	v, ok := safeStrtoull(tok)
	return uint32(v), ok
}
