package memcache

import (
	"bytes"
	"strconv"
)

// Answering mg from a cached get reply (the proxy's near cache holds the
// exact "VALUE <key> <flags> <bytes>\r\n<data>\r\n" block memcached sent
// for a get): such a block has the value, its client flags and its size,
// so an mg whose flags ask for nothing else can be answered from it byte
// for byte as memcached 1.6 answers a hit, and an mg hit that returned the
// value and the client flags can be turned into such a block.

// maxOpaque is memcached's limit on an O token, the O included
// (MFLAG_MAX_OPAQUE_LENGTH): a longer one is a CLIENT_ERROR.
const maxOpaque = 32

// NearMetaGet reports whether r, an mg request, can be answered from a
// cached get reply: every flag is one of v f k O q s b, each at most once
// (memcached refuses duplicates), the flags other than O are one letter
// (memcached reads only the first), O's token is at most 32 bytes, and b
// (a base64 key) comes with a key that decodes and without k (memcached
// 1.6.18 echoes such a key decoded, later versions encoded: the proxy
// cannot know which its servers do). fills reports that r asks for the
// value and the client flags (v and f), so the server's reply to r, a hit,
// can fill the cache (AppendValueBlock). Any other mg (t, c, h, l, N, T,
// R, E, I, ... or malformed) goes to the server, which answers it.
func (r *Request) NearMetaGet() (ok, fills bool) {
	if r.Cmd != CmdMetaGet {
		return false, false
	}
	var seen [128]bool
	line := r.Raw[:r.line]
	_, pos := nextToken(line, 0)  // mg
	_, pos = nextToken(line, pos) // key
	n := 2
	for {
		var t []byte
		if t, pos = nextToken(line, pos); t == nil {
			break
		}
		if n++; n >= maxMetaTokens {
			return false, false
		}
		c := t[0]
		switch c {
		case 'v', 'f', 'k', 'q', 's', 'b':
			if len(t) != 1 {
				return false, false
			}
		case 'O':
			if len(t) > maxOpaque {
				return false, false
			}
		default:
			return false, false
		}
		if seen[c] {
			return false, false
		}
		seen[c] = true
	}
	if seen['b'] && (!r.Base64 || seen['k']) {
		return false, false
	}
	return true, seen['v'] && seen['f']
}

// ValueBlock splits a get reply block for one key ("VALUE <key> <flags>
// <bytes>\r\n<data>\r\n", no cas) into its client flags and data.
func ValueBlock(block []byte) (flags, data []byte, ok bool) {
	nl := bytes.IndexByte(block, '\n')
	if nl < 1 || block[nl-1] != '\r' || !bytes.HasPrefix(block, []byte("VALUE ")) {
		return nil, nil, false
	}
	hdr := block[:nl-1]
	sp := bytes.LastIndexByte(hdr, ' ')
	size, ok := parseInt32(hdr[sp+1:])
	if !ok || size < 0 || len(block) != nl+1+size+2 {
		return nil, nil, false
	}
	hdr = hdr[:sp]
	sp = bytes.LastIndexByte(hdr, ' ')
	if sp < len("VALUE") {
		return nil, nil, false
	}
	return hdr[sp+1:], block[nl+1 : nl+1+size], true
}

// AppendMetaHit appends memcached's reply to r (an mg for which
// NearMetaGet is ok) for a hit with client flags (decimal, as in a VALUE
// line) and data: "VA <size> <flags>*\r\n<data>\r\n" with v, else
// "HD <flags>*\r\n", the return flags in the order asked (f<flags>,
// s<size>, k<key>, O<opaque>; v, q and b add none). q hides only a miss,
// so a hit is answered whatever q says. No allocation when dst has the
// capacity.
func (r *Request) AppendMetaHit(dst, flags, data []byte) []byte {
	line := r.Raw[:r.line]
	_, pos := nextToken(line, 0)
	key, pos := nextToken(line, pos)
	flagsAt := pos
	value := false
	for p := pos; ; {
		var t []byte
		if t, p = nextToken(line, p); t == nil {
			break
		}
		value = value || t[0] == 'v'
	}
	if value {
		dst = append(dst, "VA "...)
		dst = strconv.AppendInt(dst, int64(len(data)), 10)
	} else {
		dst = append(dst, "HD"...)
	}
	for p := flagsAt; ; {
		var t []byte
		if t, p = nextToken(line, p); t == nil {
			break
		}
		switch t[0] {
		case 'f':
			dst = append(append(dst, " f"...), flags...)
		case 's':
			dst = append(dst, " s"...)
			dst = strconv.AppendInt(dst, int64(len(data)), 10)
		case 'k':
			dst = append(append(dst, " k"...), key...)
		case 'O':
			dst = append(append(dst, ' '), t...)
		}
	}
	dst = append(dst, '\r', '\n')
	if value {
		dst = append(append(dst, data...), '\r', '\n')
	}
	return dst
}

// AppendValueBlock appends the get reply block for key ("VALUE <key>
// <flags> <bytes>\r\n<data>\r\n") made from reply, a server's VA reply to
// an mg that asked for v and f. ok is false (dst unchanged) when reply is
// not such a reply.
func AppendValueBlock(dst, key, reply []byte) ([]byte, bool) {
	nl := bytes.IndexByte(reply, '\n')
	if nl < 1 || reply[nl-1] != '\r' || !metaCode(reply[:nl-1], "VA") {
		return dst, false
	}
	line := reply[:nl-1]
	size, ok := tokenInt(line, 1)
	if !ok || len(reply) != nl+1+size+2 {
		return dst, false
	}
	var flags []byte
	for pos := 0; ; {
		var t []byte
		if t, pos = nextToken(line, pos); t == nil {
			break
		}
		if t[0] == 'f' && len(t) > 1 {
			flags = t[1:]
		}
	}
	if flags == nil {
		return dst, false
	}
	if _, ok := safeStrtoul(flags); !ok {
		return dst, false
	}
	dst = append(append(dst, "VALUE "...), key...)
	dst = append(append(append(dst, ' '), flags...), ' ')
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, '\r', '\n')
	return append(dst, reply[nl+1:]...), true
}
