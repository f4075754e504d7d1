// Package discovery asks an ElastiCache memcached configuration endpoint
// which nodes the cluster has (auto discovery) and reports every new
// version of the list.
//
// The endpoint is asked "config get cluster"; an engine before 1.4.14
// answers ERROR to that, and is then asked "get AmazonElastiCache:cluster".
// Both answers carry the same body: the configuration version on one line,
// then the nodes as space-separated "hostname|ip|port" on the next:
//
//	CONFIG cluster 0 <len>\r\n
//	<version>\n
//	<host>|<ip>|<port> <host>|<ip>|<port>\n
//	\r\n
//	END\r\n
//
// An answer that does not have this shape is an error, never a partial list.
package discovery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Defaults for Watch's zero values.
const (
	DefaultInterval = 60 * time.Second
	DefaultTimeout  = 5 * time.Second
	// MaxBody bounds the body of an answer (a cluster of hundreds of nodes
	// needs a few kilobytes).
	MaxBody = 1 << 20
)

// Node is one node of the cluster.
type Node struct {
	// Host is the node's host name, the name it keeps when its IP changes.
	Host string
	// IP is the node's address; empty when the endpoint gives none.
	IP string
	// Port is the node's memcached port.
	Port int
}

// Addr returns the address to dial: ip:port when the IP is known, else
// host:port.
func (n Node) Addr() string {
	h := n.IP
	if h == "" {
		h = n.Host
	}
	return net.JoinHostPort(h, strconv.Itoa(n.Port))
}

// Cluster is one answer of the configuration endpoint.
type Cluster struct {
	// Version is the configuration version; it grows when the node list
	// changes.
	Version uint64
	// Nodes are the cluster's nodes in the endpoint's order.
	Nodes []Node
}

// Equal reports whether c and o have the same version and nodes.
func (c Cluster) Equal(o Cluster) bool {
	if c.Version != o.Version || len(c.Nodes) != len(o.Nodes) {
		return false
	}
	for i := range c.Nodes {
		if c.Nodes[i] != o.Nodes[i] {
			return false
		}
	}
	return true
}

// ParseBody parses the body of an answer: "<version>\n<nodes>\n".
func ParseBody(body []byte) (Cluster, error) {
	var c Cluster
	lines := bytes.Split(body, []byte("\n"))
	if len(lines) != 3 || len(lines[2]) != 0 {
		return c, fmt.Errorf("discovery: body %q: want a version line and a node line, each ending in \\n", clip(body))
	}
	v, err := strconv.ParseUint(string(lines[0]), 10, 64)
	if err != nil {
		return c, fmt.Errorf("discovery: version %q: not a number", clip(lines[0]))
	}
	c.Version = v
	if len(lines[1]) == 0 {
		return c, errors.New("discovery: the node list is empty")
	}
	seen := map[string]bool{}
	for _, f := range bytes.Split(lines[1], []byte(" ")) {
		parts := bytes.Split(f, []byte("|"))
		if len(parts) != 3 {
			return c, fmt.Errorf("discovery: node %q: want host|ip|port", clip(f))
		}
		n := Node{Host: string(parts[0]), IP: string(parts[1])}
		if n.Host == "" {
			return c, fmt.Errorf("discovery: node %q: empty host name", clip(f))
		}
		if n.IP != "" && net.ParseIP(n.IP) == nil {
			return c, fmt.Errorf("discovery: node %q: %q is not an IP address", clip(f), n.IP)
		}
		port, err := strconv.Atoi(string(parts[2]))
		if err != nil || port <= 0 || port > 65535 || parts[2][0] == '+' {
			return c, fmt.Errorf("discovery: node %q: port %q: want 1 to 65535", clip(f), clip(parts[2]))
		}
		n.Port = port
		if seen[n.Host] {
			return c, fmt.Errorf("discovery: node %q: host %s listed twice", clip(f), n.Host)
		}
		seen[n.Host] = true
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

// errUnknown is the endpoint answering ERROR to "config get cluster".
var errUnknown = errors.New("discovery: config get cluster: ERROR")

// ReadAnswer reads one answer from r: "CONFIG cluster <flags> <len>" or
// "VALUE AmazonElastiCache:cluster <flags> <len>", the body, "\r\n" and
// "END\r\n".
func ReadAnswer(r *bufio.Reader) (Cluster, error) {
	line, err := readLine(r)
	if err != nil {
		return Cluster{}, err
	}
	if string(line) == "ERROR" {
		return Cluster{}, errUnknown
	}
	if string(line) == "END" {
		return Cluster{}, errors.New("discovery: the endpoint has no cluster configuration (END)")
	}
	f := bytes.Split(line, []byte(" "))
	ok := len(f) == 4 && (string(f[0]) == "CONFIG" && string(f[1]) == "cluster" ||
		string(f[0]) == "VALUE" && string(f[1]) == "AmazonElastiCache:cluster")
	if !ok {
		return Cluster{}, fmt.Errorf("discovery: unexpected answer %q", clip(line))
	}
	if _, err := strconv.ParseUint(string(f[2]), 10, 32); err != nil {
		return Cluster{}, fmt.Errorf("discovery: answer %q: bad flags", clip(line))
	}
	n, err := strconv.Atoi(string(f[3]))
	if err != nil || n < 0 || n > MaxBody || f[3][0] == '+' {
		return Cluster{}, fmt.Errorf("discovery: answer %q: length: want 0 to %d", clip(line), MaxBody)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return Cluster{}, fmt.Errorf("discovery: reading the body: %w", err)
	}
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		return Cluster{}, errors.New("discovery: the body does not end in \\r\\n where its length says")
	}
	end, err := readLine(r)
	if err != nil {
		return Cluster{}, err
	}
	if string(end) != "END" {
		return Cluster{}, fmt.Errorf("discovery: want END after the body, got %q", clip(end))
	}
	return ParseBody(body[:n])
}

// readLine reads one "\r\n"-terminated line (at most 1 KiB) without its end.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("discovery: reading the answer: %w", err)
		}
		if b == '\n' {
			break
		}
		if len(line) >= 1024 {
			return nil, errors.New("discovery: answer line longer than 1024 bytes")
		}
		line = append(line, b)
	}
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return nil, fmt.Errorf("discovery: answer line %q does not end in \\r\\n", clip(line))
	}
	return line[:len(line)-1], nil
}

// Fetch asks the configuration endpoint at addr ("host:port") for the
// cluster, falling back to the pre-1.4.14 key when it answers ERROR.
// timeout bounds the whole exchange. With tlsConf (nil: plaintext) the
// exchange is over TLS, as an ElastiCache cluster with in-transit
// encryption requires; a tlsConf without ServerName verifies addr's host.
func Fetch(ctx context.Context, addr string, timeout time.Duration, tlsConf *tls.Config) (Cluster, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	var conn net.Conn
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Cluster{}, fmt.Errorf("discovery: %w", err)
	}
	defer func() { _ = conn.Close() }()
	raw := conn // conn becomes the TLS conn below; the deadline goes on the socket either way
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if tlsConf != nil {
		c := tlsConf
		if c.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c = tlsConf.Clone()
				c.ServerName = host
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			return Cluster{}, fmt.Errorf("discovery: %s: tls handshake: %w", addr, err)
		}
		conn = tc
	}
	r := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "config get cluster\r\n"); err != nil {
		return Cluster{}, fmt.Errorf("discovery: %s: %w", addr, err)
	}
	c, err := ReadAnswer(r)
	if errors.Is(err, errUnknown) {
		if _, err := io.WriteString(conn, "get AmazonElastiCache:cluster\r\n"); err != nil {
			return Cluster{}, fmt.Errorf("discovery: %s: %w", addr, err)
		}
		c, err = ReadAnswer(r)
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("%w (endpoint %s)", err, addr)
	}
	return c, nil
}

// Options configure Watch.
type Options struct {
	// Endpoint is the configuration endpoint's "host:port".
	Endpoint string
	// Interval is how often the endpoint is asked. Default DefaultInterval.
	Interval time.Duration
	// Timeout bounds one exchange. Default min(Interval, DefaultTimeout).
	Timeout time.Duration
	// TLS, when not nil, makes every exchange TLS (see Fetch).
	TLS *tls.Config
	// OnChange is called, from Watch's goroutine, with the first answer and
	// with every answer that differs from the last one reported.
	OnChange func(Cluster)
	// OnAnswer is called, from Watch's goroutine, with every good answer,
	// changed or not (before OnChange). nil: not called.
	OnAnswer func(Cluster)
	// OnError is called, from Watch's goroutine, with every failed ask
	// (nil: ignored). The last good answer stays the one reported.
	OnError func(error)
}

// Watch asks the endpoint at once and then every Interval until ctx is
// done, reporting changes and errors; it returns ctx's error.
func Watch(ctx context.Context, o Options) error {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = min(o.Interval, DefaultTimeout)
	}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	var last Cluster
	have := false
	for {
		c, err := Fetch(ctx, o.Endpoint, o.Timeout, o.TLS)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if o.OnError != nil {
				o.OnError(err)
			}
		default:
			if o.OnAnswer != nil {
				o.OnAnswer(c)
			}
			if !have || !c.Equal(last) {
				last, have = c, true
				if o.OnChange != nil {
					o.OnChange(c)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// clip shortens b for an error message.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
