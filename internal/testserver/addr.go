package testserver

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback "host:port" whose port the kernel just handed
// out, never one it returned before in this test binary: a configuration
// may name a port that nothing holds yet (a fake proxy does not listen on
// its pools' ports), and the kernel may hand that port out again.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		a := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		if !handedOut.addrs[a] {
			handedOut.addrs[a] = true
			return a
		}
	}
}

// handedOut is what FreeAddr returned: state of the test binary, not of
// anything under test.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// Healthz returns "" if GET /healthz on addr answers 200, else why not.
func Healthz(addr string) string {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}
