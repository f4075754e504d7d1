package memcache

import (
	"bytes"
	"errors"
	"fmt"
)

// Status classifies a reply.
type Status uint8

// Reply statuses.
const (
	StatusNone        Status = iota
	StatusEnd                // get family and stats: the block closed by "END"
	StatusStored             // STORED
	StatusNotStored          // NOT_STORED
	StatusExists             // EXISTS
	StatusNotFound           // NOT_FOUND
	StatusDeleted            // DELETED
	StatusTouched            // TOUCHED
	StatusOK                 // OK
	StatusNumber             // incr/decr result
	StatusVersion            // VERSION ...
	StatusError              // ERROR
	StatusClientError        // CLIENT_ERROR ...
	StatusServerError        // SERVER_ERROR ...
	StatusHD                 // meta HD
	StatusVA                 // meta VA <size> with a data block
	StatusEN                 // meta EN (miss)
	StatusNF                 // meta NF
	StatusNS                 // meta NS
	StatusEX                 // meta EX
	StatusMN                 // meta MN
	StatusME                 // meta ME <key> ...
)

var statusNames = [...]string{
	"None", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED",
	"OK", "NUMBER", "VERSION", "ERROR", "CLIENT_ERROR", "SERVER_ERROR",
	"HD", "VA", "EN", "NF", "NS", "EX", "MN", "ME",
}

// String names the status by its wire word.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// IsError reports ERROR, CLIENT_ERROR and SERVER_ERROR.
func (s Status) IsError() bool {
	return s == StatusError || s == StatusClientError || s == StatusServerError
}

// Reply describes one framed backend reply.
type Reply struct {
	// Status classifies the reply.
	Status Status
	// Hits is the number of VALUE blocks of a get-family reply; for mg, 1
	// for a hit (VA or HD) and 0 for EN; 0 otherwise.
	Hits int
	// Body is, for a get-family or stats reply ending in END, the bytes
	// before the closing "END\r\n" (so a merge copies buf[:Body] of each
	// fragment and writes one END); for every other reply it equals n.
	Body int
}

// ErrMalformedReply is wrapped by every error ParseReply returns: the
// backend sent something that is not a reply to the command, and the
// connection cannot be trusted any more.
var ErrMalformedReply = errors.New("memcache: malformed reply")

// maxReplyLine bounds a reply line (not its data block) from a backend.
const maxReplyLine = 64 << 10

// ParseReply frames the first complete reply for a request of command cmd
// in buf. n is 0 while the reply is incomplete. ERROR, CLIENT_ERROR and
// SERVER_ERROR lines are complete replies for any cmd when they come first;
// an error line after some VALUE blocks is treated as malformed. Malformed backend
// output returns an error wrapping ErrMalformedReply. It never allocates on
// success or while incomplete.
func ParseReply(buf []byte, cmd Command) (n int, rep Reply, err error) {
	line, next, err := replyLine(buf, 0)
	if next == 0 || err != nil {
		return 0, Reply{}, err
	}
	if s := errorStatus(line); s != StatusNone {
		return next, Reply{Status: s, Body: next}, nil
	}
	switch cmd {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		return valueBlocks(buf, line, next, "VALUE ", 3)
	case CmdStats:
		return statBlock(buf, line, next)
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas:
		switch string(line) {
		case "STORED":
			return one(next, StatusStored)
		case "NOT_STORED":
			return one(next, StatusNotStored)
		case "EXISTS":
			return one(next, StatusExists)
		case "NOT_FOUND":
			return one(next, StatusNotFound)
		}
	case CmdDelete:
		switch string(line) {
		case "DELETED":
			return one(next, StatusDeleted)
		case "NOT_FOUND":
			return one(next, StatusNotFound)
		}
	case CmdTouch:
		switch string(line) {
		case "TOUCHED":
			return one(next, StatusTouched)
		case "NOT_FOUND":
			return one(next, StatusNotFound)
		}
	case CmdIncr, CmdDecr:
		if string(line) == "NOT_FOUND" {
			return one(next, StatusNotFound)
		}
		if isNumber(line) {
			return one(next, StatusNumber)
		}
	case CmdFlushAll, CmdVerbosity:
		if string(line) == "OK" {
			return one(next, StatusOK)
		}
	case CmdVersion:
		if bytes.HasPrefix(line, []byte("VERSION ")) {
			return one(next, StatusVersion)
		}
	case CmdMetaGet:
		switch {
		case metaCode(line, "VA"):
			n, rep, err := metaValue(buf, line, next)
			rep.Hits = 1
			return n, rep, err
		case metaCode(line, "HD"):
			return next, Reply{Status: StatusHD, Hits: 1, Body: next}, nil
		case metaCode(line, "EN"):
			return one(next, StatusEN)
		}
	case CmdMetaSet, CmdMetaDelete, CmdMetaArith:
		switch {
		case metaCode(line, "HD"):
			return one(next, StatusHD)
		case metaCode(line, "NF"):
			return one(next, StatusNF)
		case metaCode(line, "EX"):
			return one(next, StatusEX)
		case metaCode(line, "NS") && cmd != CmdMetaDelete:
			return one(next, StatusNS)
		case metaCode(line, "VA") && cmd == CmdMetaArith:
			return metaValue(buf, line, next)
		}
	case CmdMetaNoop:
		if metaCode(line, "MN") {
			return one(next, StatusMN)
		}
	case CmdMetaDebug:
		switch {
		case metaCode(line, "ME"):
			return one(next, StatusME)
		case metaCode(line, "EN"):
			return one(next, StatusEN)
		}
	}
	return 0, Reply{}, fmt.Errorf("%w: %q for %s", ErrMalformedReply, clip(line), cmd)
}

// ParseQuietReply frames the reply to a quiet (q) meta request that
// AppendForward sent followed by "mn": nothing or one reply to cmd, then
// "MN". n covers both; rep describes the first reply, with Body its length
// (the bytes the client gets), or is Reply{Status: StatusMN} when q left
// nothing to answer. Anything else between the request's reply and MN is
// malformed.
func ParseQuietReply(buf []byte, cmd Command) (n int, rep Reply, err error) {
	line, next, err := replyLine(buf, 0)
	if next == 0 || err != nil {
		return 0, Reply{}, err
	}
	if string(line) == "MN" {
		return next, Reply{Status: StatusMN}, nil
	}
	n, rep, err = ParseReply(buf, cmd)
	if n == 0 || err != nil {
		return 0, Reply{}, err
	}
	line, next, err = replyLine(buf, n)
	if next == 0 || err != nil {
		return 0, Reply{}, err
	}
	if string(line) != "MN" {
		return 0, Reply{}, fmt.Errorf("%w: %q after the reply to a quiet %s, want MN", ErrMalformedReply, clip(line), cmd)
	}
	rep.Body = n
	return next, rep, nil
}

func one(n int, s Status) (int, Reply, error) { return n, Reply{Status: s, Body: n}, nil }

// replyLine returns the line starting at off (without its terminator) and
// the offset after it; next is 0 when the line is incomplete.
func replyLine(buf []byte, off int) (line []byte, next int, err error) {
	rest := buf[off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		if len(rest) > maxReplyLine {
			return nil, 0, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, maxReplyLine)
		}
		return nil, 0, nil
	}
	line = rest[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, off + i + 1, nil
}

func errorStatus(line []byte) Status {
	word := line
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		word = line[:i]
	}
	switch string(word) {
	case "ERROR":
		return StatusError
	case "CLIENT_ERROR":
		return StatusClientError
	case "SERVER_ERROR":
		return StatusServerError
	}
	return StatusNone
}

// valueBlocks frames "VALUE <key> <flags> <bytes> [<cas>]" items up to END.
func valueBlocks(buf, line []byte, next int, prefix string, lenTok int) (int, Reply, error) {
	rep := Reply{Status: StatusEnd}
	start := 0
	for {
		if string(line) == "END" {
			rep.Body = start
			return next, rep, nil
		}
		if !bytes.HasPrefix(line, []byte(prefix)) {
			return 0, Reply{}, fmt.Errorf("%w: %q in a get reply", ErrMalformedReply, clip(line))
		}
		vlen, ok := tokenInt(line, lenTok)
		if !ok {
			return 0, Reply{}, fmt.Errorf("%w: bad VALUE line %q", ErrMalformedReply, clip(line))
		}
		end := next + vlen + 2
		if len(buf) < end {
			return 0, Reply{}, nil
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			return 0, Reply{}, fmt.Errorf("%w: data block not terminated by \\r\\n", ErrMalformedReply)
		}
		rep.Hits++
		start = end
		var err error
		line, next, err = replyLine(buf, end)
		if next == 0 || err != nil {
			return 0, Reply{}, err
		}
	}
}

// statBlock frames "STAT name value" lines up to END.
func statBlock(buf, line []byte, next int) (int, Reply, error) {
	start := 0
	for string(line) != "END" {
		if !bytes.HasPrefix(line, []byte("STAT ")) {
			return 0, Reply{}, fmt.Errorf("%w: %q in a stats reply", ErrMalformedReply, clip(line))
		}
		start = next
		var err error
		line, next, err = replyLine(buf, next)
		if next == 0 || err != nil {
			return 0, Reply{}, err
		}
	}
	return next, Reply{Status: StatusEnd, Body: start}, nil
}

// metaValue frames "VA <size> <flags>*" and its data block.
func metaValue(buf, line []byte, next int) (int, Reply, error) {
	vlen, ok := tokenInt(line, 1)
	if !ok {
		return 0, Reply{}, fmt.Errorf("%w: bad VA line %q", ErrMalformedReply, clip(line))
	}
	end := next + vlen + 2
	if len(buf) < end {
		return 0, Reply{}, nil
	}
	if buf[end-2] != '\r' || buf[end-1] != '\n' {
		return 0, Reply{}, fmt.Errorf("%w: data block not terminated by \\r\\n", ErrMalformedReply)
	}
	return end, Reply{Status: StatusVA, Body: end}, nil
}

// metaCode reports whether line is the two-letter code alone or followed by
// a space and flags.
func metaCode(line []byte, code string) bool {
	return len(line) >= 2 && line[0] == code[0] && line[1] == code[1] && (len(line) == 2 || line[2] == ' ')
}

// tokenInt parses token i (0-based, space separated) of line as a
// non-negative int32.
func tokenInt(line []byte, i int) (int, bool) {
	pos := 0
	var t []byte
	for j := 0; j <= i; j++ {
		if t, pos = nextToken(line, pos); t == nil {
			return 0, false
		}
	}
	v, ok := parseInt32(t)
	return v, ok && v >= 0 && t[0] != '-' && t[0] != '+'
}

// isNumber reports a decimal, possibly space padded (memcached may pad a
// decremented number).
func isNumber(line []byte) bool {
	line = bytes.TrimRight(line, " ")
	if len(line) == 0 || len(line) > 20 {
		return false
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// Suppress reports whether the client asked not to see rep, the backend's
// reply to req (sent by AppendForward):
//
//   - text noreply: every reply, as memcached 1.6.18 does (out_string
//     drops even CLIENT_ERROR and SERVER_ERROR for noreply);
//   - meta q: the request was sent as it is and memcached applied q
//     itself; only a bare MN (from ParseQuietReply) is dropped.
func Suppress(req *Request, rep Reply) bool {
	if req.Noreply {
		return true
	}
	if req.Quiet {
		return rep.Status == StatusMN
	}
	return false
}
