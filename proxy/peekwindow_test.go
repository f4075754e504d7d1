package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestInputWiderThanPeekWindow: one write of pipelined requests several
// times the 256 KiB the proxy parses at a time, with big values crossing
// the window's edges, is answered whole and in order (memcache and Redis).
func TestInputWiderThanPeekWindow(t *testing.T) {
	mc, rs := testserver.Memcached(t), testserver.Redis(t)
	mp := proxytest.MemcachePool(t, "mc", mc)
	rp := proxytest.RedisPool(t, "r", rs)
	proxytest.Start(t, proxy.Options{}, mp, rp)
	big := strings.Repeat("b", 300<<10)

	var req, want strings.Builder
	for i := 0; i < 3; i++ {
		for j := 0; j < 20000; j++ { // 140 KiB of gets between the sets
			req.WriteString("get k\r\n")
			want.WriteString("END\r\n")
		}
		fmt.Fprintf(&req, "set k%d 0 0 %d noreply\r\n%s\r\nget k%d\r\n", i, len(big), big, i)
		fmt.Fprintf(&want, "VALUE k%d 0 %d\r\n%s\r\nEND\r\n", i, len(big), big)
	}
	c := proxytest.Dial(t, mp.Listen)
	go func() { _, _ = c.C.Write([]byte(req.String())) }()
	if got := c.ReadN(want.Len()); got != want.String() {
		t.Fatalf("memcache: %d bytes of replies differ from the %d expected", len(got), want.Len())
	}

	req.Reset()
	want.Reset()
	for i := 0; i < 3; i++ {
		for j := 0; j < 20000; j++ {
			req.WriteString("GET k\r\n")
			want.WriteString("$-1\r\n")
		}
		fmt.Fprintf(&req, "*3\r\n$3\r\nSET\r\n$2\r\nk%d\r\n$%d\r\n%s\r\nGET k%d\r\n", i, len(big), big, i)
		fmt.Fprintf(&want, "+OK\r\n$%d\r\n%s\r\n", len(big), big)
	}
	r := proxytest.Dial(t, rp.Listen)
	go func() { _, _ = r.C.Write([]byte(req.String())) }()
	if got := r.ReadN(want.Len()); got != want.String() {
		t.Fatalf("redis: %d bytes of replies differ from the %d expected", len(got), want.Len())
	}
}
