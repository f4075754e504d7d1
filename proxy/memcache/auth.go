package memcache

import (
	"bytes"
	"strconv"
)

// Text-protocol authentication, as memcached 1.6 does it with -Y
// <auth_file>: until it authenticates, a client may only send
//
//	set <any key> <any flags> <any exptime> <n>\r\n<user> <password>\r\n
//
// (n the length of "user password"; user and password are the data's
// first two space-separated words), answered STORED when the pair is in
// the file. Anything else is answered CLIENT_ERROR unauthenticated, line
// by line; the connection stays open.

// Replies of the authentication step, memcached's words.
const (
	AuthOK              = "STORED\r\n"
	AuthUnauthenticated = "CLIENT_ERROR unauthenticated\r\n"
	AuthFailure         = "CLIENT_ERROR authentication failure\r\n"
	AuthBadTermination  = "CLIENT_ERROR bad command line termination\r\n"
	AuthBadFormat       = "CLIENT_ERROR bad authentication token format\r\n"
	AuthTooLong         = "CLIENT_ERROR auth token too long\r\n"
)

// MaxAuthToken bounds "user password" (memcached 1.6.22 and later refuse a
// longer one with AuthTooLong; earlier ones wait for it, however long).
const MaxAuthToken = 16384

// maxAuthLine is how much input without a line end an unauthenticated
// client may send before the connection is closed, as memcached does.
const maxAuthLine = 2048

// AuthStep is what ParseAuth made of the start of an unauthenticated
// client's input.
type AuthStep struct {
	// N is the number of bytes used; 0 means more input is needed.
	N int
	// Reply, if not empty, answers the input (and User and Pass are nil).
	Reply string
	// User and Pass are an authentication attempt's credentials, to be
	// checked and answered AuthOK or AuthFailure. They point into the input.
	User, Pass []byte
	// Close says to close the connection without a reply.
	Close bool
}

// ParseAuth reads the next request of a client that has not authenticated
// yet, as memcached 1.6's try_read_command_asciiauth does. It does not
// allocate.
func ParseAuth(buf []byte) AuthStep {
	el := bytes.IndexByte(buf, '\n')
	if el < 0 {
		if len(buf) > maxAuthLine {
			return AuthStep{N: len(buf), Close: true}
		}
		return AuthStep{}
	}
	line := buf[:el]
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i] // a C string: a NUL ends it
	}
	// memcached's tokenizer: tokens separated by spaces, empty ones
	// skipped; the \r stays in the last token, where strtoul stops.
	var tok [5][]byte
	nt := 0
	for rest := line; nt < len(tok); nt++ {
		if tok[nt], rest = authToken(rest); tok[nt] == nil {
			break
		}
	}
	size, ok := -1, nt == 5 && string(tok[0]) == "set"
	if ok {
		size, ok = authSize(tok[4])
	}
	if !ok {
		return AuthStep{N: el + 1, Reply: AuthUnauthenticated}
	}
	if size > MaxAuthToken {
		return AuthStep{N: el + 1, Reply: AuthTooLong}
	}
	need := el + 1 + size + 2
	if len(buf) < need {
		return AuthStep{}
	}
	data := buf[el+1 : need]
	if data[size] != '\r' || data[size+1] != '\n' {
		return AuthStep{N: need, Reply: AuthBadTermination}
	}
	// "user pass", split as memcached 1.6.18 does: its tokenizer on the
	// data as a C string; the first two tokens count, any more are ignored.
	token := data[:size]
	if i := bytes.IndexByte(token, 0); i >= 0 {
		token = token[:i]
	}
	user, rest := authToken(token)
	pass, _ := authToken(rest)
	if pass == nil {
		return AuthStep{N: need, Reply: AuthBadFormat}
	}
	return AuthStep{N: need, User: user, Pass: pass}
}

// authToken returns the first space-separated token of b (nil if none) and
// what follows it.
func authToken(b []byte) (tok, rest []byte) {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil, nil
	}
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// authSize reads the length token as memcached's safe_strtoul does:
// decimal digits (after an optional +), then the end or white space (the
// line's \r).
func authSize(t []byte) (int, bool) {
	if len(t) > 1 && t[0] == '+' {
		t = t[1:] // strtoul takes a sign; a minus is refused
	}
	end := 0
	for end < len(t) && '0' <= t[end] && t[end] <= '9' {
		end++
	}
	if end == 0 || end < len(t) && t[end] != '\r' && t[end] != '\t' && t[end] != '\v' && t[end] != '\f' {
		return 0, false
	}
	if end > 10 {
		return MaxAuthToken + 1, true // more than any token allowed
	}
	n, err := strconv.Atoi(string(t[:end]))
	if err != nil {
		return 0, false
	}
	return n, true
}
