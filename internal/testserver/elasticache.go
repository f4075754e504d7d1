package testserver

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ConfigEndpoint is a fake ElastiCache memcached configuration endpoint: it
// answers "config get cluster" with a node list the test sets (or, when
// Legacy, ERROR to that and the list as the value of
// "get AmazonElastiCache:cluster", as engines before 1.4.14 do). Every
// SetNodes is a new configuration version. For the discovery protocol only;
// the nodes themselves are real memcached processes.
type ConfigEndpoint struct {
	// Addr is the endpoint's host:port.
	Addr string

	legacy bool
	mu     sync.Mutex
	ver    uint64
	body   string
	down   bool
	asks   atomic.Int64
}

// NewConfigEndpoint starts an endpoint with no nodes (it answers END, as
// an engine without a cluster configuration would) until SetNodes.
func NewConfigEndpoint(t testing.TB, legacy bool) *ConfigEndpoint {
	t.Helper()
	e := &ConfigEndpoint{legacy: legacy}
	e.Addr = FakeServer(t, e.serve)
	return e
}

// NewConfigEndpointTLS is NewConfigEndpoint speaking TLS with conf, as an
// ElastiCache cluster with in-transit encryption does.
func NewConfigEndpointTLS(t testing.TB, legacy bool, conf *tls.Config) *ConfigEndpoint {
	t.Helper()
	e := &ConfigEndpoint{legacy: legacy}
	e.Addr = FakeServer(t, func(c net.Conn) {
		tc := tls.Server(c, conf)
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		e.serve(tc)
	})
	return e
}

// SetNodes makes nodes ("host|ip|port" each) the cluster's, as a new
// version, and returns that version.
func (e *ConfigEndpoint) SetNodes(nodes ...string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ver++
	e.body = fmt.Sprintf("%d\n%s\n", e.ver, strings.Join(nodes, " "))
	return e.ver
}

// SetBody makes the endpoint answer body (malformed, say) as is.
func (e *ConfigEndpoint) SetBody(body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.body = body
}

// SetDown makes the endpoint close every connection at once (down) or
// answer again.
func (e *ConfigEndpoint) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// Asks counts the discovery commands answered so far.
func (e *ConfigEndpoint) Asks() int64 { return e.asks.Load() }

// Node formats a node of the list: host|ip|port for a process listening
// on 127.0.0.1.
func Node(host string, p *Process) string {
	return fmt.Sprintf("%s|127.0.0.1|%d", host, p.Port)
}

func (e *ConfigEndpoint) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		e.mu.Lock()
		down, body := e.down, e.body
		e.mu.Unlock()
		if down {
			return
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		var reply string
		switch {
		case line == "config get cluster\r\n" && !e.legacy, line == "get AmazonElastiCache:cluster\r\n" && e.legacy:
			head := "CONFIG cluster"
			if e.legacy {
				head = "VALUE AmazonElastiCache:cluster"
			}
			if body == "" {
				reply = "END\r\n"
			} else {
				reply = fmt.Sprintf("%s 0 %d\r\n%s\r\nEND\r\n", head, len(body), body)
			}
			e.asks.Add(1)
		default:
			reply = "ERROR\r\n"
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
	}
}
