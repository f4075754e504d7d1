package resp

import "strconv"

// Expiry finds the relative expiry a write sets: SET's EX or PX option
// (with any of NX, XX, GET), SETEX's seconds, PSETEX's milliseconds. name
// is the command's table name (Command.Name: "set", "setex", "psetex") and
// args its arguments, args[0] the name as sent, arity already checked. i
// is the index of the argument holding the expiry, v its value and ms
// whether it counts milliseconds (PX, PSETEX) rather than seconds.
//
// ok is false for every other command, and when there is nothing relative
// to change: no expiry, KEEPTTL, an absolute one (EXAT, PXAT), or arguments
// Redis 7 refuses (a syntax error such as EX twice or NX with XX, a value
// that is not a positive integer as Redis reads one); those go to the
// server untouched, which answers them as it always does.
func Expiry(name string, args [][]byte) (i int, v int64, ms bool, ok bool) {
	switch name {
	case "setex", "psetex":
		if len(args) != 4 {
			return 0, 0, false, false
		}
		i, ms = 2, name == "psetex"
	case "set":
		if i, ms, ok = setExpiry(args); !ok {
			return 0, 0, false, false
		}
	default:
		return 0, 0, false, false
	}
	v, ok = parseInt(args[i])
	if !ok || v <= 0 {
		return 0, 0, false, false
	}
	return i, v, ms, true
}

// setExpiry reads SET's options as Redis 7's parseExtendedStringArgumentsOrReply
// does, and returns the index of the EX or PX value; ok is false when there
// is none or the options are refused. As in Redis, the same expiry option
// may be repeated (the last one counts) but two different ones may not.
func setExpiry(args [][]byte) (i int, ms bool, ok bool) {
	var nx, xx, keepTTL bool
	var kind string // the expiry option so far: "ex", "px", "exat", "pxat"
	for j := 3; j < len(args); j++ {
		opt := args[j]
		hasNext := j+1 < len(args)
		switch {
		case equalFold("nx", opt) && !xx:
			nx = true
		case equalFold("xx", opt) && !nx:
			xx = true
		case equalFold("get", opt):
		case equalFold("keepttl", opt) && kind == "":
			keepTTL = true
		default:
			k := expiryOption(opt)
			if k == "" || keepTTL || (kind != "" && kind != k) || !hasNext {
				return 0, false, false // syntax error
			}
			kind = k
			j++
			i = j
		}
	}
	switch kind {
	case "ex", "px":
		return i, kind == "px", true
	}
	return 0, false, false // none, or absolute (EXAT, PXAT): nothing to spread
}

// expiryOption returns the table spelling of a SET expiry option, "" if opt
// is none.
func expiryOption(opt []byte) string {
	for _, k := range [...]string{"ex", "px", "exat", "pxat"} {
		if equalFold(k, opt) {
			return k
		}
	}
	return ""
}

// AppendForwardArg appends the request as AppendForward would, but with
// argument i replaced by the decimal integer v. The request is always
// encoded as a multibulk (as an inline request already is). It does not
// allocate when dst has the capacity.
func (r *Request) AppendForwardArg(dst []byte, i int, v int64) []byte {
	var num [20]byte
	dst = AppendArrayHeader(dst, len(r.Args))
	for j, a := range r.Args {
		if j == i {
			a = strconv.AppendInt(num[:0], v, 10)
		}
		dst = AppendBulk(dst, a)
	}
	return dst
}
