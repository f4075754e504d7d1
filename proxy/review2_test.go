package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// A command refused for limits.max_key_length inside MULTI must make EXEC
// fail (EXECABORT), as Redis does for any command refused while queueing;
// the rest of the transaction must not run.
func TestReview2KeyTooLongInMultiAbortsExec(t *testing.T) {
	rd := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", rd)
	pool.Limits.MaxKeyLength = 16
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip(respCmd("MULTI"), "+OK\r\n")
	c.RoundTrip(respCmd("SET", "a", "1"), "+QUEUED\r\n")
	c.Send(respCmd("SET", strings.Repeat("k", 17), "x"))
	if l := c.Line(); !strings.HasPrefix(l, "-ERR key too long") {
		t.Fatalf("SET with a long key: got %q; want key too long", l)
	}
	c.Send(respCmd("EXEC"))
	if got := c.Line(); !strings.HasPrefix(got, "-EXECABORT") {
		t.Fatalf("EXEC after a refused command: got %q; want -EXECABORT", got)
	}
	c.RoundTrip(respCmd("GET", "a"), "$-1\r\n")
}

// A server's error reply to SUBSCRIBE (here NOPERM from an ACL) must reach
// the client; it must not leave the client waiting forever for a
// confirmation that will never come.
func TestReview2SubscribeErrorReplyDoesNotHang(t *testing.T) {
	rd := testserver.Redis(t)
	admin := proxytest.Dial(t, rd.Addr)
	admin.RoundTrip(respCmd("ACL", "SETUSER", "default", "resetchannels"), "+OK\r\n")
	pool := proxytest.RedisPool(t, "r", rd)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(respCmd("SUBSCRIBE", "ch"))
	if got := c.Line(); !strings.HasPrefix(got, "-NOPERM") {
		t.Fatalf("SUBSCRIBE refused by the server: got %q; want -NOPERM", got)
	}
	c.RoundTrip(respCmd("PING"), "+PONG\r\n")
}

// UNSUBSCRIBE of a subscribed and an unsubscribed channel: the
// confirmations come in argument order with the count after each, as Redis
// sends them; the proxy's own confirmation must not overtake the server's.
func TestReview2UnsubscribeMixedInOrder(t *testing.T) {
	rd := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", rd)
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(respCmd("SUBSCRIBE", "a"))
	c.Expect("*3\r\n", "$9\r\n", "subscribe\r\n", "$1\r\n", "a\r\n", ":1\r\n")
	c.Send(respCmd("UNSUBSCRIBE", "a", "b"))
	c.Expect("*3\r\n", "$11\r\n", "unsubscribe\r\n", "$1\r\n", "a\r\n", ":0\r\n")
	c.Expect("*3\r\n", "$11\r\n", "unsubscribe\r\n", "$1\r\n", "b\r\n", ":0\r\n")
}

// Confirmations for channels on different servers come back in the order the
// client named them, with running counts, and UNSUBSCRIBE with no argument
// leaves everything in order, as Redis answers.
func TestReview2SubscribeAcrossServersInOrder(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", testserver.Redis(t), testserver.Redis(t), testserver.Redis(t))
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	chans := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	c.Send(respCmd(append([]string{"SUBSCRIBE"}, chans...)...))
	for i, ch := range chans {
		c.Expect("*3\r\n", "$9\r\n", "subscribe\r\n", "$2\r\n", ch+"\r\n", fmt.Sprintf(":%d\r\n", i+1))
	}
	c.Send(respCmd("PSUBSCRIBE", "p*") + respCmd("PING"))
	c.Expect("*3\r\n", "$10\r\n", "psubscribe\r\n", "$2\r\n", "p*\r\n", ":7\r\n")
	c.Expect("*2\r\n", "$4\r\n", "pong\r\n", "$0\r\n", "\r\n")
	c.Send(respCmd("UNSUBSCRIBE"))
	for i, ch := range chans { // the proxy leaves channels in name order
		c.Expect("*3\r\n", "$11\r\n", "unsubscribe\r\n", "$2\r\n", ch+"\r\n", fmt.Sprintf(":%d\r\n", 6-i))
	}
	c.Send(respCmd("PUNSUBSCRIBE") + respCmd("PING"))
	c.Expect("*3\r\n", "$12\r\n", "punsubscribe\r\n", "$2\r\n", "p*\r\n", ":0\r\n")
	c.Expect("+PONG\r\n") // out of subscribed mode at count 0
}
