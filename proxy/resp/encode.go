package resp

import (
	"bytes"
	"strconv"
	"strings"
)

// AppendError appends an error reply: '-', msg with any CR or LF replaced by
// a space, CRLF. msg starts with the error code ("ERR ...", "CROSSSLOT ...").
// Every error the proxy shows a client goes through this function.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	return appendLine(dst, msg)
}

// AppendSimple appends a simple string reply ("+OK\r\n"), CR and LF in s
// replaced by spaces.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	return appendLine(dst, s)
}

func appendLine(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends a bulk string reply holding b.
func AppendBulk(dst []byte, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends a bulk string reply holding s.
func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNullBulk appends the RESP2 null bulk string, "$-1\r\n".
func AppendNullBulk(dst []byte) []byte { return append(dst, "$-1\r\n"...) }

// AppendNullArray appends the RESP2 null array, "*-1\r\n".
func AppendNullArray(dst []byte) []byte { return append(dst, "*-1\r\n"...) }

// AppendArrayHeader appends the header of an array of n elements.
func AppendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// appendTrunc appends at most max bytes of s, CR and LF as spaces (Redis's
// "%.128s" followed by its newline scrubbing).
func appendTrunc(dst, s []byte, max int) []byte {
	s = cString(s)
	if len(s) > max {
		s = s[:max]
	}
	for _, c := range s {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// cString returns s up to its first NUL: what C's %s prints of it.
func cString(s []byte) []byte {
	if i := bytes.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// ErrUnknownCommand appends Redis 7's reply to an unknown command: name is
// the command name as sent, args the arguments after it:
//
//	-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n
func ErrUnknownCommand(dst []byte, name []byte, args [][]byte) []byte {
	dst = append(dst, "-ERR unknown command '"...)
	dst = appendTrunc(dst, name, 128)
	dst = append(dst, "', with args beginning with: "...)
	n := 0 // length of the args part, as Redis counts it
	for _, a := range args {
		if n >= 128 {
			break
		}
		m := min(len(cString(a)), 128-n)
		dst = append(dst, '\'')
		dst = appendTrunc(dst, a, m)
		dst = append(dst, '\'', ' ')
		n += m + 3
	}
	return append(dst, '\r', '\n')
}

// ErrUnknownSubcommand appends Redis 7's reply to an unknown subcommand of a
// container command: -ERR unknown subcommand 'foo'. Try CLIENT HELP.
func ErrUnknownSubcommand(dst []byte, sub []byte, container string) []byte {
	dst = append(dst, "-ERR unknown subcommand '"...)
	dst = appendTrunc(dst, sub, 128)
	dst = append(dst, "'. Try "...)
	for i := 0; i < len(container); i++ {
		c := container[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return append(dst, " HELP.\r\n"...)
}

// ErrWrongArity appends -ERR wrong number of arguments for 'get' command;
// name is the table entry's Name ("client|setname" for a subcommand, as
// Redis 7 words it).
func ErrWrongArity(dst []byte, name string) []byte {
	return AppendError(dst, "ERR wrong number of arguments for '"+name+"' command")
}

// ErrCrossSlot appends the reply to a request whose keys hash to several
// servers: -CROSSSLOT Keys in request don't hash to the same server.
func ErrCrossSlot(dst []byte) []byte {
	return append(dst, "-CROSSSLOT Keys in request don't hash to the same server\r\n"...)
}

// ErrCrossSlotCluster appends Redis Cluster's own reply to a request whose
// keys hash to several slots: -CROSSSLOT Keys in request don't hash to the
// same slot.
func ErrCrossSlotCluster(dst []byte) []byte {
	return append(dst, "-CROSSSLOT Keys in request don't hash to the same slot\r\n"...)
}

// ErrNotAllowed appends the reply to a command refused by configuration:
// -ERR command 'flushall' is not allowed through the proxy.
func ErrNotAllowed(dst []byte, name string) []byte {
	return AppendError(dst, "ERR command '"+name+"' is not allowed through the proxy")
}

// ErrUnsupported appends the reply to a command that cannot work through the
// proxy: -ERR command 'wait' is not supported through the proxy: <reason>.
func ErrUnsupported(dst []byte, name, reason string) []byte {
	return AppendError(dst, "ERR command '"+name+"' is not supported through the proxy: "+reason)
}

// AppendNull appends a null: RESP3's "_\r\n" when resp3, else the RESP2
// null bulk "$-1\r\n".
func AppendNull(dst []byte, resp3 bool) []byte {
	if resp3 {
		return append(dst, "_\r\n"...)
	}
	return AppendNullBulk(dst)
}

// AppendMapHeader appends the header of a RESP3 map of n pairs ("%n").
func AppendMapHeader(dst []byte, n int) []byte {
	dst = append(dst, '%')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendPushHeader appends the header of a RESP3 push of n elements (">n").
func AppendPushHeader(dst []byte, n int) []byte {
	dst = append(dst, '>')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendVerbatim appends s as RESP3 verbatim text ("=N\r\ntxt:s\r\n"), as
// redis-server answers INFO and CLIENT INFO to a RESP3 client, when resp3;
// else as a bulk string.
func AppendVerbatim(dst []byte, s string, resp3 bool) []byte {
	if !resp3 {
		return AppendBulkString(dst, s)
	}
	dst = append(dst, '=')
	dst = strconv.AppendInt(dst, int64(len(s)+4), 10)
	dst = append(dst, "\r\ntxt:"...)
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// ErrTracking appends the refusal of CLIENT TRACKING, CACHING, GETREDIR and
// TRACKINGINFO (name is the container|sub name, "client|tracking").
func ErrTracking(dst []byte, name string) []byte {
	return AppendError(dst, "ERR "+strings.ToUpper(strings.ReplaceAll(name, "|", " "))+
		" is not supported by the proxy yet (the proxy's near cache will own server-assisted caching); "+
		"disable client-side caching (rueidis: DisableCache: true)")
}
