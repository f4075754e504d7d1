package memcache

import "encoding/base64"

// AppendForward appends the request as the backend must see it: identical
// to Raw except that a text command's noreply and the meta q flag are
// removed, so the backend answers exactly one reply per request. When a
// token is removed the line is rewritten with single spaces and "\r\n".
// It does not allocate when dst has the capacity.
func (r *Request) AppendForward(dst []byte) []byte {
	if !r.Noreply && !r.Quiet {
		return append(dst, r.Raw...)
	}
	line := r.Raw[:r.hdr]
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	flagsFrom := 2 // meta: first token that may be a flag
	if r.Cmd == CmdMetaSet {
		flagsFrom = 3
	}
	last := -1 // index of the token to drop for noreply
	if r.Noreply {
		last = 0
		for pos := 0; ; last++ {
			var t []byte
			if t, pos = nextToken(line, pos); t == nil {
				break
			}
		}
		last-- // the last token is "noreply"
	}
	i := 0
	for pos := 0; ; i++ {
		var t []byte
		if t, pos = nextToken(line, pos); t == nil {
			break
		}
		if i == last || (r.Quiet && i >= flagsFrom && t[0] == 'q') {
			continue
		}
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, t...)
	}
	dst = append(dst, '\r', '\n')
	return append(dst, r.Raw[r.hdr:]...)
}

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
