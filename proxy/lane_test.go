package proxy_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestRedisOrderAcrossConnections: a client's pipelined commands take effect
// in the order sent even when some travel on its dedicated connections
// (transactions, blocking commands) and others on the shared ones, as they
// would on one Redis: the GET after EXEC sees the transaction's writes, the
// BLPOP after RPUSH finds the element, the LLEN after BLPOP sees it taken.
func TestRedisOrderAcrossConnections(t *testing.T) {
	r1, r2, r3 := testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r1, r2, r3)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	for i := range 50 {
		a, l := fmt.Sprintf("a%d", i), fmt.Sprintf("l%d", i)
		req := strings.Join([]string{
			"SET " + a + " 5", "MULTI", "INCR " + a, "INCR " + a, "EXEC", "GET " + a,
			"RPUSH " + l + " x", "BLPOP " + l + " 1", "LLEN " + l,
			"WATCH " + a, "GET " + a, "MULTI", "SET " + a + " 9", "EXEC", "GET " + a,
		}, "\r\n") + "\r\n"
		want := "+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:6\r\n:7\r\n$1\r\n7\r\n" +
			":1\r\n*2\r\n$" + fmt.Sprint(len(l)) + "\r\n" + l + "\r\n$1\r\nx\r\n:0\r\n" +
			"+OK\r\n$1\r\n7\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n$1\r\n9\r\n"
		c.Send(req)
		got := make([]byte, len(want))
		_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
		if _, err := io.ReadFull(c.R, got); err != nil || string(got) != want {
			t.Fatalf("round %d: got %q (%v); want %q", i, got, err, want)
		}
	}
}

// TestRedisLocalCommandsInsideMulti: PING, ECHO and TIME inside MULTI are
// queued and answered in EXEC's array, as redis-server does (the proxy used
// to answer them at once, so the client took +PONG for its +QUEUED); other
// proxy-answered commands are refused there and abort the transaction.
func TestRedisLocalCommandsInsideMulti(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{}, pool)
	req := "MULTI\r\nPING\r\nECHO hi\r\nSET a 1\r\nPING x\r\nEXEC\r\n"
	want := "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n+PONG\r\n$2\r\nhi\r\n+OK\r\n$1\r\nx\r\n"
	for _, addr := range []string{r.Addr, pool.Listen} {
		c := proxytest.Dial(t, addr)
		c.Send(req)
		if got := c.ReadN(len(want)); got != want {
			t.Errorf("%s: got %q; want %q", addr, got, want)
		}
	}
	c := proxytest.Dial(t, pool.Listen)
	c.Send("MULTI\r\nCLIENT GETNAME\r\nEXEC\r\nPING\r\n")
	c.Expect("+OK\r\n",
		"-ERR command 'client|getname' can not be used in a transaction through the proxy\r\n",
		"-EXECABORT Transaction discarded because of previous errors: command 'client|getname' can not be used in a transaction through the proxy\r\n",
		"+PONG\r\n")
}
