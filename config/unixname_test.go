package config

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestUnixServerNameMatchesTwemproxy checks the ring name of an unnamed unix
// socket server ("/path.sock:", with the colon) against real twemproxy: keys
// set through nutcracker must sit on the server our ring picks.
func TestUnixServerNameMatchesTwemproxy(t *testing.T) {
	mcBin := testserver.Require(t, "memcached")
	dir := t.TempDir()
	var socks []string
	for _, n := range []string{"a", "b", "c"} {
		s := filepath.Join(dir, n+".sock")
		socks = append(socks, s)
		args := []string{"-s", s, "-U", "0", "-m", "16", "-t", "1"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		}
		cmd := exec.Command(mcBin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start memcached: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	for _, s := range socks {
		deadline := time.Now().Add(testserver.ReadyTimeout)
		for {
			c, err := net.Dial("unix", s)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("memcached on %s not ready: %v", s, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	conf := fmt.Sprintf("p:\n  listen: %s\n  hash: md5\n  distribution: ketama\n  servers:\n   - %s:1\n   - %s:1\n   - %s:1\n",
		listen, socks[0], socks[1], socks[2])
	testserver.Nutcracker(t, conf, listen)

	const n = 200
	ask := func(network, addr string, fn func(r *bufio.Reader, w net.Conn)) {
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		fn(bufio.NewReader(c), c)
	}
	ask("tcp", listen, func(r *bufio.Reader, w net.Conn) {
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "set k%d 0 0 1\r\nx\r\n", i)
			if l, err := r.ReadString('\n'); l != "STORED\r\n" {
				t.Fatalf("set k%d through nutcracker: got %q, %v; want STORED", i, l, err)
			}
		}
	})

	cfg, _, err := Parse("unix.yml", []byte(conf))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	pool := cfg.Pools[0]
	if got, want := pool.Servers[0].Name, socks[0]+":"; got != want {
		t.Fatalf("ring name: got %q; want %q", got, want)
	}
	ring, err := pool.Ring()
	if err != nil {
		t.Fatalf("Ring: %v", err)
	}
	holder := make([]int, n)
	for i := range holder {
		holder[i] = -1
	}
	for si, s := range socks {
		ask("unix", s, func(r *bufio.Reader, w net.Conn) {
			for i := 0; i < n; i++ {
				fmt.Fprintf(w, "get k%d\r\n", i)
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("get from %s: %v", s, err)
				}
				if strings.HasPrefix(l, "VALUE") {
					holder[i] = si
					_, _ = r.ReadString('\n') // data
					l, _ = r.ReadString('\n')
				}
				if l != "END\r\n" {
					t.Fatalf("get k%d from %s: got %q; want END", i, s, l)
				}
			}
		})
	}
	for i, h := range holder {
		if want := ring.Pick(fmt.Appendf(nil, "k%d", i)); h != want {
			t.Errorf("k%d: twemproxy put it on server %d; our ring picks %d", i, h, want)
		}
	}
}
