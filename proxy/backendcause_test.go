package proxy_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestBackendHandshakeRefusalReachesClient: with a wrong redis_auth the
// client is told what the server said (WRONGPASS), not that the server sent
// a malformed reply.
func TestBackendHandshakeRefusalReachesClient(t *testing.T) {
	r := testserver.Redis(t, "--requirepass", "right")
	pool := proxytest.RedisPool(t, "r", r)
	pool.RedisAuth = "wrong"
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	// redis_auth is also the password clients give the proxy.
	c.RoundTrip("AUTH wrong\r\n", "+OK\r\n")
	for range 3 {
		c.RoundTrip("GET k\r\n",
			"-ERR server r1 refused the connection handshake: WRONGPASS invalid username-password pair or user is disabled.\r\n")
	}
}

// TestBackendInBackoffSaysWhy: requests refused while a server is in
// backoff after failed connects name the cause and when the next attempt is
// due (they used to say only "unavailable").
func TestBackendInBackoffSaysWhy(t *testing.T) {
	pool := config.NewPool("mc", config.ProtocolMemcache)
	pool.Listen = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	pool.Servers = []config.Server{{Name: "gone", Addr: "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t)), Network: "tcp", Weight: 1}}
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	valid := regexp.MustCompile(`^SERVER_ERROR server gone unavailable: connection refused(, retry in [0-9.]+(ms|s))?\r\n$`)
	withRetry := 0
	for i := range 20 {
		c.Send("get k\r\n")
		got := c.Line()
		if !valid.MatchString(got) {
			t.Fatalf("request %d: got %q; want %s", i, got, valid)
		}
		if strings.Contains(got, ", retry in ") {
			withRetry++
		}
	}
	// The backoff doubles from 50 ms after the second failure, so most of
	// 20 requests sent back to back find the server in backoff.
	if withRetry == 0 {
		t.Fatalf("no request was refused during the backoff")
	}
}
