package proxy_test

import (
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// openFDs lists this process's open descriptors.
func openFDs(t *testing.T) []int {
	t.Helper()
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Fatalf("list descriptors: %v", err)
	}
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		t.Fatalf("list descriptors: %v", err)
	}
	fds := make([]int, 0, len(ents))
	for _, e := range ents {
		// The listing's own descriptor is closed again on return.
		if n, err := strconv.Atoi(e.Name()); err == nil && uintptr(n) != dir.Fd() {
			fds = append(fds, n)
		}
	}
	sort.Ints(fds)
	return fds
}

// limitLeavingOne is the smallest RLIMIT_NOFILE under which exactly one more
// descriptor can be opened.
func limitLeavingOne(fds []int) uint64 {
	for l := 1; ; l++ {
		below := sort.SearchInts(fds, l) // open descriptors numbered < l
		if l-below == 1 {
			return uint64(l)
		}
	}
}

// TestDescriptorExhaustionKeepsServing: when accept fails for want of file
// descriptors, the proxy keeps serving its open clients, counts the failure,
// backs off, and accepts the waiting client once descriptors are free again
// (gnet's own acceptor would stop the engine and every client with it).
func TestDescriptorExhaustionKeepsServing(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	p := proxytest.Start(t, proxy.Options{MaxClients: -1}, pool)

	a := proxytest.Dial(t, pool.Listen)
	a.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")

	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(restore)
	low := saved
	low.Cur = limitLeavingOne(openFDs(t))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("lower RLIMIT_NOFILE to %d: %v", low.Cur, err)
	}
	// The test's own side of the new connection takes the last descriptor,
	// so the proxy's accept fails with EMFILE.
	b := proxytest.Dial(t, pool.Listen)
	deadline := time.Now().Add(proxytest.Timeout)
	for acceptErrors(p) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no accept error counted under RLIMIT_NOFILE %d", low.Cur)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	// The open client is served meanwhile, repeatedly.
	for range 20 {
		a.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	}
	restore()
	// The waiting client is accepted on a retry and served.
	b.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	a.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	if !p.Ready() {
		t.Fatalf("proxy not ready after descriptor exhaustion")
	}
}

func acceptErrors(p *proxy.Proxy) int64 {
	var n int64
	for _, ps := range p.Stats() {
		n += ps.AcceptErrors
	}
	return n
}

// TestProxyClientLimit: a client over the proxy-wide cap gets the
// protocol's error and is closed; the others are served.
func TestProxyClientLimit(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	p := proxytest.Start(t, proxy.Options{MaxClients: 2}, pool)
	a := proxytest.Dial(t, pool.Listen)
	a.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	b := proxytest.Dial(t, pool.Listen)
	b.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	c := proxytest.Dial(t, pool.Listen)
	c.Expect("ERROR Too many open connections\r\n")
	waitClients(t, p, 2)
}
