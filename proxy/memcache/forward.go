package memcache

import "encoding/base64"

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
	switch {
	case r.Quiet:
		dst = append(dst, r.Raw...)
		return append(dst, QuietSentinel...)
	case !r.Noreply:
		return append(dst, r.Raw...)
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
		dst = append(dst, t...)
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
