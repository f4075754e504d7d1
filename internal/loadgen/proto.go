package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Protocol is the wire protocol a load generator speaks.
type Protocol int

const (
	// Memcache is the memcached text protocol (get/set).
	Memcache Protocol = iota
	// Redis is RESP (GET/SET as arrays of bulk strings).
	Redis
)

// String returns "memcache" or "redis".
func (p Protocol) String() string {
	switch p {
	case Memcache:
		return "memcache"
	case Redis:
		return "redis"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses "memcache" (or "memcached") and "redis" (or "resp").
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "memcache", "memcached":
		return Memcache, nil
	case "redis", "resp":
		return Redis, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want memcache or redis)", s)
}

// AppendGet appends a single-key get request for key to dst.
func AppendGet(dst []byte, p Protocol, key []byte) []byte {
	if p == Redis {
		dst = append(dst, "*2\r\n$3\r\nGET\r\n$"...)
		dst = strconv.AppendInt(dst, int64(len(key)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, key...)
		return append(dst, '\r', '\n')
	}
	dst = append(dst, "get "...)
	dst = append(dst, key...)
	return append(dst, '\r', '\n')
}

// AppendSet appends a set request storing value under key to dst.
func AppendSet(dst []byte, p Protocol, key, value []byte) []byte {
	if p == Redis {
		dst = append(dst, "*3\r\n$3\r\nSET\r\n$"...)
		dst = strconv.AppendInt(dst, int64(len(key)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, key...)
		dst = append(dst, "\r\n$"...)
		dst = strconv.AppendInt(dst, int64(len(value)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, value...)
		return append(dst, '\r', '\n')
	}
	dst = append(dst, "set "...)
	dst = append(dst, key...)
	dst = append(dst, " 0 0 "...)
	dst = strconv.AppendInt(dst, int64(len(value)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// Kind classifies a reply.
type Kind int

const (
	// Hit is a get reply carrying a value.
	Hit Kind = iota
	// Miss is a get reply without a value (memcached END, RESP null).
	Miss
	// Stored is a successful store (memcached STORED, RESP +OK or another status).
	Stored
	// NotStored is memcached's NOT_STORED, EXISTS or NOT_FOUND.
	NotStored
	// Integer is a RESP integer reply.
	Integer
	// ErrorReply is a server-side error reply (memcached ERROR, CLIENT_ERROR,
	// SERVER_ERROR; RESP -ERR ...). The connection stays usable.
	ErrorReply
)

var kindNames = [...]string{"hit", "miss", "stored", "not-stored", "integer", "error"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) && k >= 0 {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Reply is one parsed reply. Its slices point into the Reader's scratch
// buffers and stay valid only until the next call to Next.
type Reply struct {
	Kind Kind
	// Key is the key of a memcached VALUE line (nil for RESP).
	Key []byte
	// Value is the value of a Hit, or the message of an ErrorReply.
	Value []byte
}

// ErrProtocol is wrapped by every error Reader returns for a malformed reply.
// After it the stream cannot be resynchronised and the connection should be
// closed.
var ErrProtocol = errors.New("protocol error")

// MaxValueSize bounds the length a reply may announce for one value.
const MaxValueSize = 64 << 20

// Reader parses replies from a buffered stream, reusing its own scratch
// buffers so that steady-state parsing does not allocate.
type Reader struct {
	br    *bufio.Reader
	proto Protocol
	key   []byte
	val   []byte
}

// NewReader returns a Reader for protocol p over br. br's buffer must hold the
// longest reply line (bufio's default 4096 bytes is plenty).
func NewReader(br *bufio.Reader, p Protocol) *Reader {
	return &Reader{br: br, proto: p}
}

// Next reads and returns the next complete reply.
func (r *Reader) Next() (Reply, error) {
	if r.proto == Redis {
		return r.nextRESP()
	}
	return r.nextMemcache()
}

// line reads one CRLF-terminated line and returns it without the CRLF.
func (r *Reader) line() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, r.br.Size())
		}
		if errors.Is(err, io.EOF) && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("%w: line %q not terminated by CRLF", ErrProtocol, l)
	}
	return l[:len(l)-2], nil
}

// body reads n bytes of data followed by CRLF into r.val.
func (r *Reader) body(n int) ([]byte, error) {
	if n < 0 || n > MaxValueSize {
		return nil, fmt.Errorf("%w: value length %d out of range", ErrProtocol, n)
	}
	if cap(r.val) < n+2 {
		r.val = make([]byte, n+2)
	}
	b := r.val[:n+2]
	if _, err := io.ReadFull(r.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if b[n] != '\r' || b[n+1] != '\n' {
		return nil, fmt.Errorf("%w: value of %d bytes not followed by CRLF", ErrProtocol, n)
	}
	return b[:n], nil
}

func (r *Reader) errMessage(msg []byte) Reply {
	r.key = append(r.key[:0], msg...)
	return Reply{Kind: ErrorReply, Value: r.key}
}

func (r *Reader) nextMemcache() (Reply, error) {
	l, err := r.line()
	if err != nil {
		return Reply{}, err
	}
	switch {
	case bytes.Equal(l, []byte("END")):
		return Reply{Kind: Miss}, nil
	case bytes.Equal(l, []byte("STORED")):
		return Reply{Kind: Stored}, nil
	case bytes.Equal(l, []byte("NOT_STORED")), bytes.Equal(l, []byte("EXISTS")), bytes.Equal(l, []byte("NOT_FOUND")):
		return Reply{Kind: NotStored}, nil
	case bytes.Equal(l, []byte("ERROR")), bytes.HasPrefix(l, []byte("CLIENT_ERROR")), bytes.HasPrefix(l, []byte("SERVER_ERROR")):
		return r.errMessage(l), nil
	case bytes.HasPrefix(l, []byte("VALUE ")):
	default:
		return Reply{}, fmt.Errorf("%w: unexpected memcached reply %q", ErrProtocol, l)
	}
	// VALUE <key> <flags> <bytes> [<cas>]
	rest := l[len("VALUE "):]
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return Reply{}, fmt.Errorf("%w: malformed VALUE line %q", ErrProtocol, l)
	}
	r.key = append(r.key[:0], rest[:sp]...)
	rest = rest[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return Reply{}, fmt.Errorf("%w: malformed VALUE line %q", ErrProtocol, l)
	}
	rest = rest[sp+1:]
	if sp = bytes.IndexByte(rest, ' '); sp >= 0 {
		rest = rest[:sp]
	}
	n, ok := atoi(rest)
	if !ok {
		return Reply{}, fmt.Errorf("%w: malformed VALUE line %q", ErrProtocol, l)
	}
	v, err := r.body(n)
	if err != nil {
		return Reply{}, err
	}
	end, err := r.line()
	if err != nil {
		return Reply{}, err
	}
	if !bytes.Equal(end, []byte("END")) {
		return Reply{}, fmt.Errorf("%w: %q after a single-key VALUE, want END", ErrProtocol, end)
	}
	return Reply{Kind: Hit, Key: r.key, Value: v}, nil
}

func (r *Reader) nextRESP() (Reply, error) {
	l, err := r.line()
	if err != nil {
		return Reply{}, err
	}
	if len(l) == 0 {
		return Reply{}, fmt.Errorf("%w: empty RESP line", ErrProtocol)
	}
	switch l[0] {
	case '+':
		return Reply{Kind: Stored}, nil
	case '-':
		return r.errMessage(l[1:]), nil
	case ':':
		if _, ok := atoi(trimSign(l[1:])); !ok {
			return Reply{}, fmt.Errorf("%w: malformed integer %q", ErrProtocol, l)
		}
		return Reply{Kind: Integer}, nil
	case '_':
		if len(l) != 1 {
			return Reply{}, fmt.Errorf("%w: malformed null %q", ErrProtocol, l)
		}
		return Reply{Kind: Miss}, nil
	case '$':
		if bytes.Equal(l, []byte("$-1")) {
			return Reply{Kind: Miss}, nil
		}
		n, ok := atoi(l[1:])
		if !ok {
			return Reply{}, fmt.Errorf("%w: malformed bulk length %q", ErrProtocol, l)
		}
		v, err := r.body(n)
		if err != nil {
			return Reply{}, err
		}
		return Reply{Kind: Hit, Value: v}, nil
	}
	return Reply{}, fmt.Errorf("%w: unexpected RESP reply %q", ErrProtocol, l)
}

func trimSign(b []byte) []byte {
	if len(b) > 1 && (b[0] == '-' || b[0] == '+') {
		return b[1:]
	}
	return b
}

// atoi parses a non-negative decimal that fits in an int without allocating.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
