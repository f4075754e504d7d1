package memcache

import "strconv"

// ErrorKind selects the error word of AppendError.
type ErrorKind uint8

// Error kinds.
const (
	// KindError is "ERROR": an unknown command.
	KindError ErrorKind = iota
	// KindClientError is "CLIENT_ERROR <msg>": the input broke the protocol.
	KindClientError
	// KindServerError is "SERVER_ERROR <msg>": the proxy or a backend failed.
	KindServerError
)

// AppendError appends an error reply: "ERROR\r\n" (or "ERROR <msg>\r\n"
// when msg is not empty), "CLIENT_ERROR <msg>\r\n" or "SERVER_ERROR
// <msg>\r\n". Carriage returns and newlines in msg become spaces, so a
// message (for example a backend's error text) cannot inject a reply. Every
// client-visible error goes through this function.
func AppendError(dst []byte, kind ErrorKind, msg string) []byte {
	switch kind {
	case KindClientError:
		dst = append(dst, "CLIENT_ERROR"...)
	case KindServerError:
		dst = append(dst, "SERVER_ERROR"...)
	default:
		dst = append(dst, "ERROR"...)
	}
	if msg != "" {
		dst = append(dst, ' ')
		for i := 0; i < len(msg); i++ {
			c := msg[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			dst = append(dst, c)
		}
	}
	return append(dst, '\r', '\n')
}

// AppendEnd appends "END\r\n".
func AppendEnd(dst []byte) []byte { return append(dst, "END\r\n"...) }

// AppendOK appends "OK\r\n" (flush_all, verbosity).
func AppendOK(dst []byte) []byte { return append(dst, "OK\r\n"...) }

// AppendVersion appends "VERSION <version>\r\n".
func AppendVersion(dst []byte, version string) []byte {
	dst = append(dst, "VERSION "...)
	dst = append(dst, version...)
	return append(dst, '\r', '\n')
}

// AppendMetaNoop appends "MN\r\n", the answer to mn.
func AppendMetaNoop(dst []byte) []byte { return append(dst, "MN\r\n"...) }

// AppendStat appends one "STAT <name> <value>\r\n" line; close the block
// with AppendEnd.
func AppendStat(dst []byte, name, value string) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// AppendStatUint appends "STAT <name> <value>\r\n" for a counter without
// allocating.
func AppendStatUint(dst []byte, name string, value uint64) []byte {
	dst = append(dst, "STAT "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, value, 10)
	return append(dst, '\r', '\n')
}

// ClusterNode is one node of a "config get cluster" answer.
type ClusterNode struct {
	Host string // host name
	IP   string // IP address (may be empty)
	Port int    // TCP port
}

// AppendConfigCluster appends the ElastiCache auto-discovery answer to
// "config get cluster":
//
//	CONFIG cluster 0 <len>\r\n
//	<version>\n
//	<host>|<ip>|<port> <host>|<ip>|<port>...\n
//	\r\n
//	END\r\n
//
// where <len> counts the two "\n"-terminated lines, as a data block's length
// does; the proxy names itself so discovery-aware clients keep using it.
func AppendConfigCluster(dst []byte, version uint64, nodes []ClusterNode) []byte {
	return appendCluster(dst, "CONFIG cluster 0 ", version, nodes)
}

// ClusterKey is the key engines before 1.4.14 keep the auto-discovery
// answer under.
const ClusterKey = "AmazonElastiCache:cluster"

// AppendClusterValue appends the pre-1.4.14 auto-discovery answer to
// "get AmazonElastiCache:cluster": the body AppendConfigCluster sends, as
// the value of that key ("VALUE AmazonElastiCache:cluster 0 <len>\r\n...").
func AppendClusterValue(dst []byte, version uint64, nodes []ClusterNode) []byte {
	return appendCluster(dst, "VALUE "+ClusterKey+" 0 ", version, nodes)
}

// appendCluster appends head, the body's length, the body and END.
func appendCluster(dst []byte, head string, version uint64, nodes []ClusterNode) []byte {
	bodyLen := len(strconv.AppendUint(make([]byte, 0, 20), version, 10)) + 1
	for i, n := range nodes {
		if i > 0 {
			bodyLen++
		}
		bodyLen += len(n.Host) + 1 + len(n.IP) + 1 + len(strconv.AppendInt(make([]byte, 0, 20), int64(n.Port), 10))
	}
	bodyLen++
	dst = append(dst, head...)
	dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	dst = append(dst, '\r', '\n')
	dst = strconv.AppendUint(dst, version, 10)
	dst = append(dst, '\n')
	for i, n := range nodes {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, n.Host...)
		dst = append(dst, '|')
		dst = append(dst, n.IP...)
		dst = append(dst, '|')
		dst = strconv.AppendInt(dst, int64(n.Port), 10)
	}
	dst = append(dst, "\n\r\n"...)
	return AppendEnd(dst)
}
