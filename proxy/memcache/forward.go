package memcache

import (
	"encoding/base64"
	"strconv"
)

// AppendForward appends the request as the backend must see it, so that
// the backend answers exactly one reply per request:
//
//   - a text command with noreply is sent without its final "noreply"
//     token (the line as memcached reads it, rejoined with single spaces);
//     the codec drops the reply;
//   - a meta command with the q flag is sent as it is, followed by "mn":
//     memcached answers whatever q leaves (nothing, or one reply) and then
//     MN, so the reply count never depends on how q is read;
//   - everything else is sent byte for byte as received.
//
// It does not allocate when dst has the capacity.
func (r *Request) AppendForward(dst []byte) []byte {
	return r.appendForward(dst, 0)
}

// TTL reports the relative expiry, in seconds, that a set, add, replace or
// cas (its exptime) or an ms (its T flag; not in append or prepend mode)
// gives its item, when AppendForwardTTL may rewrite it: a plain decimal
// from 1 to MaxRelativeTTL. ok is false for every other request and value
// (0, negative, a unix time, or a spelling such as "+60").
func (r *Request) TTL() (ttl int64, ok bool) {
	return int64(r.ttl), r.ttlOff > 0
}

// AppendForwardTTL is AppendForward with the expiry TTL reported replaced
// by ttl, written in decimal; everything else is as AppendForward sends it.
// ttl must be from 1 to MaxRelativeTTL, so that memcached still reads a
// relative expiry; a request without one (TTL's ok false) or an out of
// range ttl is sent as AppendForward sends it. It does not allocate when
// dst has the capacity.
func (r *Request) AppendForwardTTL(dst []byte, ttl int64) []byte {
	if r.ttlOff == 0 || ttl <= 0 || ttl > MaxRelativeTTL {
		return r.appendForward(dst, 0)
	}
	return r.appendForward(dst, ttl)
}

// appendForward is AppendForward, with the expiry token replaced by ttl
// when ttl > 0 (the caller checked it may be).
func (r *Request) appendForward(dst []byte, ttl int64) []byte {
	switch {
	case r.Quiet || !r.Noreply:
		if ttl > 0 {
			dst = append(dst, r.Raw[:r.ttlOff]...)
			dst = strconv.AppendInt(dst, ttl, 10)
			dst = append(dst, r.Raw[r.ttlEnd:]...)
		} else {
			dst = append(dst, r.Raw...)
		}
		if r.Quiet {
			dst = append(dst, QuietSentinel...)
		}
		return dst
	}
	line := r.Raw[:r.line]
	n := 0 // tokens in line
	for pos := 0; ; n++ {
		var t []byte
		if t, pos = nextToken(line, pos); t == nil {
			break
		}
	}
	for i, pos := 0, 0; i < n-1; i++ { // all but the final "noreply"
		var t []byte
		t, pos = nextToken(line, pos)
		if i > 0 {
			dst = append(dst, ' ')
		}
		if ttl > 0 && pos == r.ttlEnd {
			dst = strconv.AppendInt(dst, ttl, 10)
		} else {
			dst = append(dst, t...)
		}
	}
	dst = append(dst, '\r', '\n')
	return append(dst, r.Raw[r.hdr:]...)
}

// QuietSentinel is what AppendForward sends after a quiet (q) meta request:
// its MN reply closes whatever the request answered.
const QuietSentinel = "mn\r\n"

// AppendMultiGet appends a get/gets/gat/gats request for the keys r.Keys[i]
// for i in idx (in that order), with gat's exptime, as one line. It does not
// allocate when dst has the capacity.
func (r *Request) AppendMultiGet(dst []byte, idx []int) []byte {
	dst = append(dst, r.Cmd.String()...)
	if r.Cmd == CmdGat || r.Cmd == CmdGats {
		dst = append(dst, ' ')
		dst = append(dst, r.Exptime...)
	}
	for _, i := range idx {
		dst = append(dst, ' ')
		dst = append(dst, r.Keys[i]...)
	}
	return append(dst, '\r', '\n')
}

// HashKey returns the bytes to hash for key i: the key itself, or with the
// meta b flag its base64 decoding, appended to scratch[:0] (no allocation
// when scratch has the capacity). Parse has already refused invalid base64.
func (r *Request) HashKey(i int, scratch []byte) []byte {
	k := r.Keys[i]
	if !r.Base64 {
		return k
	}
	d, err := base64.StdEncoding.AppendDecode(scratch[:0], k)
	if err != nil {
		return k
	}
	return d
}
