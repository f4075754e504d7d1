package proxy_test

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// TestUnixSocketPermissions: a unix listen line with permissions
// ("/path.sock 0600") gets them, as config.yaml promises; one without keeps
// what the umask gives.
func TestUnixSocketPermissions(t *testing.T) {
	mc := testserver.Memcached(t)
	dir := t.TempDir()
	for _, perm := range []os.FileMode{0o600, 0o666, 0o640} {
		path := filepath.Join(dir, "mc"+perm.String()[1:]+".sock")
		pc := proxytest.MemcachePool(t, "p"+perm.String()[1:], mc)
		pc.Listen = path + " 0" + strconv.FormatUint(uint64(perm), 8)
		proxytest.Start(t, proxy.Options{Loops: 1}, pc)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		if got := fi.Mode().Perm(); got != perm {
			t.Errorf("%s: permissions %v; want %v", pc.Listen, got, perm)
		}
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
		if _, err := c.Write([]byte("version\r\n")); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if want := "VERSION " + proxy.Version + "\r\n"; line != want || err != nil {
			t.Errorf("version over %s: got %q (%v); want %q", path, line, err, want)
		}
	}
}
