package testserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func roundTrip(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return line
}

func TestMemcachedStartsKillsRestarts(t *testing.T) {
	m := Memcached(t)
	if got := roundTrip(t, m.Addr, "version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Fatalf("got %q; want VERSION line", got)
	}
	m.Kill()
	if c, err := net.DialTimeout("tcp", m.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s after Kill succeeded", m.Addr)
	}
	m.Restart()
	if got := roundTrip(t, m.Addr, "version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Fatalf("after restart got %q; want VERSION line", got)
	}
}

func TestRedisStarts(t *testing.T) {
	r := Redis(t)
	if got := roundTrip(t, r.Addr, "PING\r\n"); got != "+PONG\r\n" {
		t.Fatalf("got %q; want +PONG", got)
	}
}
