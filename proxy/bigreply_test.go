package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestSlowClientDoesNotTimeOutHealthyServers: one client pipelines gets of
// 256 KiB values on three memcached servers and never reads its replies.
// The servers answer at once; the proxy must not count their replies'
// wait behind that client as server timeouts, nor eject them.
func TestSlowClientDoesNotTimeOutHealthyServers(t *testing.T) {
	mcs := threeMemcached(t)
	pc := proxytest.MemcachePool(t, "mc", mcs...)
	pc.Timeout = 300 * time.Millisecond
	pc.AutoEjectHosts = true
	pc.ServerFailureLimit = 2
	p := proxytest.Start(t, proxy.Options{}, pc)

	val := strings.Repeat("v", 256<<10)
	setter := proxytest.Dial(t, pc.Listen)
	for i := 0; i < 9; i++ {
		setter.RoundTrip(fmt.Sprintf("set big%d 0 0 %d\r\n%s\r\n", i, len(val), val), "STORED\r\n")
	}

	slow := proxytest.Dial(t, pc.Listen)
	var req strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&req, "get big%d\r\n", i%9)
	}
	go func() { _, _ = slow.C.Write([]byte(req.String())) }()

	// Another client keeps working meanwhile.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		setter.RoundTrip("get nokey\r\n", "END\r\n")
		time.Sleep(20 * time.Millisecond) // pacing the probe, not synchronisation
	}
	var timeouts, failures int64
	for _, s := range p.Stats()[0].Servers {
		timeouts += s.Timeouts
		failures += s.Failures
		t.Logf("server %s: state %v timeouts %d failures %d ejections %d", s.Name, s.State, s.Timeouts, s.Failures, s.Ejections)
	}
	if timeouts != 0 || failures != 0 {
		t.Errorf("got %d timeouts and %d failures counted against healthy servers; want 0 and 0", timeouts, failures)
	}
	for _, s := range p.Stats()[0].Servers {
		if s.State != pool.StateUp {
			t.Errorf("server %s: got state %v; want %v", s.Name, s.State, pool.StateUp)
		}
	}
}
