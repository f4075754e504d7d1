// Package testserver starts real backend processes (memcached, redis-server,
// nutcracker) on free loopback ports for tests, waits until they accept
// connections, and stops them in the test's cleanup.
//
// A binary that cannot be found fails the test with a message naming the
// Debian package that provides it; tests never skip silently.
package testserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long a started process may take to accept
// connections.
const ReadyTimeout = 15 * time.Second

// packages maps each binary to the Debian package that installs it.
var packages = map[string]string{
	"memcached":       "memcached",
	"redis-server":    "redis-server",
	"redis-cli":       "redis-tools",
	"redis-benchmark": "redis-tools",
	"nutcracker":      "nutcracker",
	"memccapable":     "libmemcached-tools",
	"memcaslap":       "libmemcached-tools",
	"nc":              "netcat-openbsd",
	"curl":            "curl",
	"perf":            "linux-perf",
}

// Require returns the path of binary, or fails the test with a message
// naming the package to install.
func Require(t testing.TB, binary string) string {
	t.Helper()
	p, err := exec.LookPath(binary)
	if err != nil {
		pkg := packages[binary]
		if pkg == "" {
			pkg = binary
		}
		t.Fatalf("%s not found in PATH (install the Debian package %q; .ci/run does): %v", binary, pkg, err)
	}
	return p
}

// FreePort returns a loopback TCP port the kernel just handed out. The port
// is closed again before returning, so a process started on it may race with
// another; Start* functions retry with a new port when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a backend process started by this package.
type Process struct {
	// Name is the binary's name, for messages.
	Name string
	// Addr is the host:port the process listens on.
	Addr string
	// Port is Addr's port.
	Port int
	// StatsAddr is nutcracker's stats address (empty for other processes).
	StatsAddr string

	t    testing.TB
	path string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	output *SyncBuffer
}

// Memcached starts a memcached on a free loopback port. Extra args are
// appended to the command line.
func Memcached(t testing.TB, args ...string) *Process {
	t.Helper()
	path := Require(t, "memcached")
	return startOnFreePort(t, "memcached", path, func(port int) []string {
		a := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64", "-t", "1"}
		if os.Geteuid() == 0 {
			a = append(a, "-u", "root")
		}
		return append(a, args...)
	})
}

// Redis starts a redis-server on a free loopback port with persistence off.
// Extra args (in redis-server's --key value form) are appended.
func Redis(t testing.TB, args ...string) *Process {
	t.Helper()
	path := Require(t, "redis-server")
	dir := t.TempDir()
	return startOnFreePort(t, "redis-server", path, func(port int) []string {
		a := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning"}
		return append(a, args...)
	})
}

// Nutcracker starts twemproxy with the configuration text conf and waits
// until every address in listen accepts connections. The caller chooses the
// listen ports (FreePort) and writes them into conf.
func Nutcracker(t testing.TB, conf string, listen ...string) *Process {
	t.Helper()
	path := Require(t, "nutcracker")
	dir := t.TempDir()
	file := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatalf("write nutcracker config: %v", err)
	}
	statsPort := FreePort(t)
	p := &Process{Name: "nutcracker", t: t, path: path,
		args: []string{"-c", file, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-o", filepath.Join(dir, "nutcracker.log")}}
	p.StatsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(statsPort))
	p.startListening(listen, p.StatsAddr)
	return p
}

// startListening starts p, with Addr and Port from the first address of
// listen, stops it in the test's cleanup, and waits until every address of
// listen and more accepts connections.
func (p *Process) startListening(listen []string, more ...string) {
	p.t.Helper()
	if len(listen) > 0 {
		p.Addr = listen[0]
		if _, ps, err := net.SplitHostPort(listen[0]); err == nil {
			p.Port, _ = strconv.Atoi(ps)
		}
	}
	if err := p.start(); err != nil {
		p.t.Fatalf("%v", err)
	}
	p.t.Cleanup(p.Stop)
	for _, a := range append(append([]string(nil), listen...), more...) {
		if err := p.waitReady(a); err != nil {
			p.t.Fatalf("%v", err)
		}
	}
}

func startOnFreePort(t testing.TB, name, path string, args func(port int) []string) *Process {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := FreePort(t)
		p := &Process{Name: name, t: t, path: path, args: args(port),
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port}
		if err := p.start(); err != nil {
			t.Fatalf("%v", err)
		}
		if err := p.waitReady(p.Addr); err != nil {
			lastErr = err
			p.Stop()
			continue // most likely the port was taken between FreePort and start
		}
		t.Cleanup(p.Stop)
		return p
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil
}

func (p *Process) start() error {
	cmd := exec.Command(p.path, p.args...)
	out := &SyncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s %v: %w", p.path, p.args, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done, p.output = cmd, done, out
	p.mu.Unlock()
	return nil
}

// waitReady polls addr until it accepts a TCP connection, the process exits,
// or ReadyTimeout passes.
func (p *Process) waitReady(addr string) error {
	deadline := time.Now().Add(ReadyTimeout)
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited before accepting on %s: %s", p.Name, addr, p.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting on %s after %v: %v; output: %s", p.Name, addr, ReadyTimeout, err, p.Output())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.output == nil {
		return ""
	}
	return p.output.String()
}

// Kill stops the process with SIGKILL and waits for it to exit, as a crash
// would. The address stays reserved for Restart.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
}

// Stop stops the process (SIGTERM, then SIGKILL after 5s) and waits for it.
// Stopping a stopped process does nothing.
func (p *Process) Stop() {
	p.signal(syscall.SIGTERM)
}

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Restart starts the process again with the same arguments (so on the same
// port) after Kill or Stop, and waits until it accepts connections.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		if err := p.start(); err != nil {
			p.t.Fatalf("%v", err)
		}
		err := p.waitReady(p.Addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("restart %s: %v", p.Name, err)
		}
		p.Stop() // port still in TIME_WAIT or similar: try again
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid returns the process id of the running process, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
