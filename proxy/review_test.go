package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// echoMemcached is a fake memcached: "get <key>" answers the key as its own
// value, "get die" closes the connection without answering.
func echoMemcached(t *testing.T) string {
	t.Helper()
	return proxytest.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "get" {
				_, _ = fmt.Fprint(c, "ERROR\r\n")
				continue
			}
			var out strings.Builder
			for _, k := range f[1:] {
				if k == "die" {
					return
				}
				fmt.Fprintf(&out, "VALUE %s 0 %d\r\n%s\r\n", k, len(k), k)
			}
			out.WriteString("END\r\n")
			if _, err := fmt.Fprint(c, out.String()); err != nil {
				return
			}
		}
	})
}

// A client that closes with multi-get fragments in flight leaves them
// orphaned; they are recycled once their replies arrive and never leak
// into another client's requests.
func TestReviewOrphanedFragmentsRecycledSafely(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	pool.Timeout = 5 * time.Second
	pool.AutoEjectHosts = false
	pool.Hash = "murmur"
	for i := 0; i < 3; i++ {
		pool.Servers = append(pool.Servers, config.Server{Name: fmt.Sprintf("e%d", i), Addr: echoMemcached(t), Network: "tcp", Weight: 1})
	}
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	var keys []string
	for i := 0; i < 20; i++ {
		keys = append(keys, fmt.Sprintf("key%02d", i))
	}
	multi := "get " + strings.Join(keys, " ") + "\r\n"
	for round := 0; round < 20; round++ {
		gone := proxytest.Dial(t, pool.Listen)
		gone.Send(strings.Repeat(multi, 10))
		gone.C.Close()
		c := proxytest.Dial(t, pool.Listen)
		c.Send(multi + "get solo\r\n" + multi)
		for _, want := range [][]string{keys, {"solo"}, keys} {
			order, vals := c.ReadGet()
			if got := strings.Join(order, " "); got != strings.Join(want, " ") {
				t.Fatalf("round %d: got keys %q; want %q", round, got, strings.Join(want, " "))
			}
			for _, k := range order {
				if vals[k] != k {
					t.Fatalf("round %d: value of %s: got %q; want %q", round, k, vals[k], k)
				}
			}
		}
		c.C.Close()
	}
}
