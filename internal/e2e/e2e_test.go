// Package e2e tests the built cacheproxy binary as users run it: the
// README's quick start through deploy/run-local.sh, and the process under a
// small descriptor limit.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// timeout bounds every wait in this package.
const timeout = 30 * time.Second

// root is the module root, two levels above this package.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startGroup starts cmd in its own process group and stops the group (SIGINT,
// then SIGKILL) in the test's cleanup.
func startGroup(t *testing.T, cmd *exec.Cmd) (*testserver.SyncBuffer, <-chan struct{}) {
	t.Helper()
	out := &testserver.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(timeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("%v did not stop on SIGINT within %v; killed\n%s", cmd.Args, timeout, out)
		}
	})
	return out, done
}

// waitListening polls addr until it accepts a connection.
func waitListening(t *testing.T, addr string, out *testserver.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing accepting on %s after %v: %v\noutput:\n%s", addr, timeout, err, out)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// freePort returns a port the kernel just handed out on 127.0.0.1.
func freePort(t *testing.T) int { return testserver.FreePort(t) }

var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

// TestQuickStart runs the README's quick start as written, on free ports:
// `make run`'s script starts the backends config.yaml names and the proxy,
// then the README's two client commands give the answers a user expects.
func TestQuickStart(t *testing.T) {
	for _, b := range []string{"memcached", "redis-server", "redis-cli", "nc", "curl"} {
		testserver.Require(t, b)
	}
	dir := root(t)
	bin := testserver.BuildCacheproxy(t)

	// config.yaml with every loopback port moved to a free one.
	conf, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	conf = loopbackPort.ReplaceAllFunc(conf, func(m []byte) []byte {
		old := string(loopbackPort.FindSubmatch(m)[1])
		if ports[old] == "" {
			ports[old] = strconv.Itoa(freePort(t))
		}
		return []byte("127.0.0.1:" + ports[old])
	})
	for _, p := range []string{"22121", "22122"} {
		if ports[p] == "" {
			t.Fatalf("config.yaml no longer listens on 127.0.0.1:%s, which the README names", p)
		}
	}
	confPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}

	// The README's commands: the shell block after "make run serves".
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(t, string(readme))

	run := exec.Command(filepath.Join(dir, "deploy", "run-local.sh"), confPath)
	run.Dir = dir
	run.Env = append(os.Environ(), "CACHEPROXY="+bin)
	out, _ := startGroup(t, run)
	waitListening(t, "127.0.0.1:"+ports["22121"], out)
	waitListening(t, "127.0.0.1:"+ports["22122"], out)

	want := []string{
		"STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n",
		"OK\n2\n",
	}
	if len(cmds) != len(want) {
		t.Fatalf("README quick start has %d commands %q; this test knows the answers of %d", len(cmds), cmds, len(want))
	}
	for i, c := range cmds {
		for old, p := range ports {
			c = strings.ReplaceAll(c, " "+old, " "+p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		got, err := exec.CommandContext(ctx, "bash", "-c", c).CombinedOutput()
		cancel()
		if err != nil || string(got) != want[i] {
			t.Errorf("README command %q: got %q (err %v); want %q\nrun-local output:\n%s", cmds[i], got, err, want[i], out)
		}
	}

	// The commands the paragraph after the block names.
	for _, tc := range []struct{ cmd, want string }{
		{"curl -s 127.0.0.1:9121/readyz", "ready\n"},
		{"bin/cacheproxy --route KEY -c config.yaml", "pool redis"},
	} {
		if !strings.Contains(string(readme), "`"+tc.cmd+"`") {
			t.Errorf("README no longer shows `%s`; update this test", tc.cmd)
			continue
		}
		c := strings.ReplaceAll(tc.cmd, "bin/cacheproxy", bin)
		c = strings.ReplaceAll(c, "config.yaml", confPath)
		for old, p := range ports {
			c = strings.ReplaceAll(c, "127.0.0.1:"+old, "127.0.0.1:"+p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		got, err := exec.CommandContext(ctx, "bash", "-c", c).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(got), tc.want) {
			t.Errorf("README command %q: got %q (err %v); want %q in it", tc.cmd, got, err, tc.want)
		}
	}
}

// readmeCommands returns the lines of the shell block that follows the
// README's "make run serves" paragraph.
func readmeCommands(t *testing.T, readme string) []string {
	t.Helper()
	i := strings.Index(readme, "`make run` serves")
	if i < 0 {
		t.Fatalf("README has no \"`make run` serves\" paragraph")
	}
	rest := readme[i:]
	start := strings.Index(rest, "```sh\n")
	if start < 0 {
		t.Fatalf("no shell block after the make run paragraph")
	}
	rest = rest[start+len("```sh\n"):]
	end := strings.Index(rest, "```")
	var cmds []string
	for _, l := range strings.Split(rest[:end], "\n") {
		if l = strings.TrimSpace(l); l != "" {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// TestDescriptorLimit runs the binary under a descriptor limit of 128 and
// opens far more clients than fit: the proxy refuses the excess with an
// error, keeps serving the clients it has, stays up, and serves new clients
// once the others leave.
func TestDescriptorLimit(t *testing.T) {
	mc := testserver.Memcached(t)
	bin := testserver.BuildCacheproxy(t)
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	confPath := filepath.Join(t.TempDir(), "nutcracker.yml")
	conf := fmt.Sprintf("mc:\n  listen: %s\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n   - %s:1\n", listen, mc.Addr)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := exec.Command("bash", "-c", `ulimit -n 128 && exec "$0" -c "$1" -s 0`, bin, confPath)
	out, exited := startGroup(t, proc)
	waitListening(t, listen, out)

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", listen, timeout)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(timeout))
		return c, bufio.NewReader(c)
	}
	roundTrip := func(c net.Conn, r *bufio.Reader, req string, lines int) string {
		t.Helper()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatalf("write %q: %v", req, err)
		}
		var b strings.Builder
		for range lines {
			l, err := r.ReadString('\n')
			b.WriteString(l)
			if err != nil {
				return b.String() + "<" + err.Error() + ">"
			}
		}
		return b.String()
	}
	first, fr := dial()
	if got := roundTrip(first, fr, "set k 0 0 1\r\nv\r\n", 1); got != "STORED\r\n" {
		t.Fatalf("first client: got %q", got)
	}
	served, refused := 0, 0
	var conns []net.Conn
	for range 300 {
		c, r := dial()
		conns = append(conns, c)
		// A refused client is told at once and closed; its request may
		// then meet a reset instead of EOF.
		got := roundTrip(c, r, "get k\r\n", 3)
		switch {
		case got == "VALUE k 0 1\r\nv\r\nEND\r\n":
			served++
		case got == "ERROR Too many open connections\r\n<EOF>",
			strings.HasPrefix(got, "ERROR Too many open connections\r\n<") && strings.HasSuffix(got, "connection reset by peer>"):
			refused++
		default:
			t.Fatalf("client %d: got %q; want the value or ERROR Too many open connections\noutput:\n%s", len(conns), got, out)
		}
		if got := roundTrip(first, fr, "get k\r\n", 3); got != "VALUE k 0 1\r\nv\r\nEND\r\n" {
			t.Fatalf("first client after %d more: got %q\noutput:\n%s", len(conns), got, out)
		}
	}
	if served == 0 || refused == 0 || served+refused != 300 {
		t.Fatalf("served %d, refused %d of 300 clients under a limit of 128 descriptors", served, refused)
	}
	for _, c := range conns {
		c.Close()
	}
	// Once they have gone, a new client is served (the count drops as the
	// proxy sees the closes, so poll).
	deadline := time.Now().Add(timeout)
	for {
		c, r := dial()
		got := roundTrip(c, r, "get k\r\n", 3)
		c.Close()
		if got == "VALUE k 0 1\r\nv\r\nEND\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new client after the others left: got %q\noutput:\n%s", got, out)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	select {
	case <-exited:
		t.Fatalf("proxy exited\noutput:\n%s", out)
	default:
	}
}
