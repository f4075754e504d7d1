package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// execMainEnv, set to 1, makes the test binary run as cacheproxy itself, so
// tests can run the real command as a process: exit status, stdout, stderr,
// signals.
const execMainEnv = "CACHEPROXY_TEST_EXEC_MAIN"

// panicTriggerEnv names a file; when it appears, the process running as
// cacheproxy panics (TestPanicDumpInLogFile).
const panicTriggerEnv = "CACHEPROXY_TEST_PANIC_TRIGGER"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		if trigger := os.Getenv(panicTriggerEnv); trigger != "" {
			go func() {
				for {
					if _, err := os.Stat(trigger); err == nil {
						panic("cacheproxy test panic")
					}
					time.Sleep(10 * time.Millisecond) // poll interval
				}
			}()
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
	}
	os.Exit(m.Run())
}

// command returns cacheproxy with args, as a process.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	return cmd
}

// runCommand runs cacheproxy with args to completion and returns its exit
// status, stdout and stderr.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("run cacheproxy %v: %v", args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// nutcrackerTestConf runs nutcracker -t on path and returns its exit status.
func nutcrackerTestConf(t *testing.T, path string) (int, string) {
	t.Helper()
	out, err := exec.Command(testserver.Require(t, "nutcracker"), "-t", "-c", path).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("nutcracker -t: %v", err)
	}
	return 0, string(out)
}

func writeConf(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTestConfBinary runs `cacheproxy -t` as a process on files of both
// shapes that twemproxy's -t passes and that fail later: two listeners that
// cannot both bind (an error, exit 1) and a server name that does not
// resolve (a warning, exit 0, as nutcracker -t exits). The name is under
// .invalid, which never resolves (RFC 6761), so this runs the machine's
// real resolver.
func TestTestConfBinary(t *testing.T) {
	port := strconv.Itoa(testserver.FreePort(t))
	conflict := writeConf(t, "nutcracker.yml", "a:\n  listen: 127.0.0.1:"+port+"\n  servers:\n   - 127.0.0.1:11211:1\n"+
		"b:\n  listen: 0.0.0.0:"+port+"\n  servers:\n   - 127.0.0.1:11212:1\n")
	unresolvable := writeConf(t, "nutcracker.yml", "a:\n  listen: 127.0.0.1:"+port+"\n  servers:\n   - cacheproxy-test.invalid:11211:1 ghost\n   - 127.0.0.1:1:1 gone\n")
	nativeConflict := writeConf(t, "config.yaml", "admin:\n  listen: 0.0.0.0:"+port+"\npools:\n  a:\n    listen: \"[::1]:"+port+"\"\n    servers: [127.0.0.1:11211:1]\n")
	nativeUnresolvable := writeConf(t, "config.yaml", "pools:\n  r:\n    listen: 127.0.0.1:"+port+"\n    protocol: redis\n    servers:\n"+
		"      - name: shard1\n        addr: 127.0.0.1:6379\n        replicas: [cacheproxy-test.invalid:6380]\n")

	for _, tc := range []struct {
		name, path string
		code       int
		stdout     string
		stderr     string // a regular expression for all of stderr
		nutcracker int    // nutcracker -t's exit status, -1 for a native file
	}{
		{"wildcard and loopback", conflict, 1, "",
			regexp.QuoteMeta(conflict + `:6: pool "b": listen: 0.0.0.0:` + port + ` overlaps 127.0.0.1:` + port + `, the listen address of pool "a" (0.0.0.0:` + port + ` binds the port on every IPv4 address)` + "\n" +
				"cacheproxy: configuration file '" + conflict + "' syntax is invalid\n"), 0},
		{"unresolvable server", unresolvable, 0,
			"cacheproxy: configuration file '" + unresolvable + "' syntax is ok\nstats 127.0.0.1:22222\npools 1\n" +
				"pool a: memcache listen 127.0.0.1:" + port + " distribution ketama hash fnv1a_64 servers 2\n" +
				"  server ghost addr cacheproxy-test.invalid:11211 weight 1\n  server gone addr 127.0.0.1:1 weight 1\n",
			regexp.QuoteMeta("warning: "+unresolvable+`:4: pool "a": servers[0]: server "ghost": host "cacheproxy-test.invalid" `) +
				`(does not resolve|was not resolved in the time allowed) \(requests to it fail until it resolves\): lookup cacheproxy-test\.invalid[^\n]*\n`, 0},
		{"native admin dual-stack", nativeConflict, 1, "",
			regexp.QuoteMeta(nativeConflict + `:5: pool "a": listen: [::1]:` + port + ` overlaps 0.0.0.0:` + port + `, the listen address of admin.listen (admin.listen opens 0.0.0.0:` + port + ` dual-stack: it binds the port on every IPv4 and IPv6 address)` + "\n" +
				"cacheproxy: configuration file '" + nativeConflict + "' syntax is invalid\n"), -1},
		{"native unresolvable replica", nativeUnresolvable, 0,
			"cacheproxy: configuration file '" + nativeUnresolvable + "' syntax is ok\npools 1\n" +
				"pool r: redis listen 127.0.0.1:" + port + " distribution ketama hash fnv1a_64 servers 1\n" +
				"  server shard1 addr 127.0.0.1:6379 weight 1 replicas cacheproxy-test.invalid:6380\n",
			regexp.QuoteMeta("warning: "+nativeUnresolvable+`:6: pool "r": servers[0].replicas: server "shard1" replica cacheproxy-test.invalid:6380: host "cacheproxy-test.invalid" `) +
				`(does not resolve|was not resolved in the time allowed) \(requests to it fail until it resolves\): lookup cacheproxy-test\.invalid[^\n]*\n`, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, "-t", "-c", tc.path)
			if code != tc.code {
				t.Errorf("exit: got %d; want %d\nstderr: %s", code, tc.code, stderr)
			}
			if stdout != tc.stdout {
				t.Errorf("stdout:\ngot  %q\nwant %q", stdout, tc.stdout)
			}
			if !regexp.MustCompile(`^` + tc.stderr + `$`).MatchString(stderr) {
				t.Errorf("stderr:\ngot  %q\nwant %q", stderr, tc.stderr)
			}
			if tc.nutcracker >= 0 {
				if code, out := nutcrackerTestConf(t, tc.path); code != tc.nutcracker {
					t.Errorf("nutcracker -t: got exit %d; want %d\n%s", code, tc.nutcracker, out)
				}
			}
		})
	}
}

// resolverAddrs returns the name servers in /etc/resolv.conf and the
// systemd-resolved stub, which a reply must not name.
func resolverAddrs(t *testing.T) []string {
	addrs := []string{"127.0.0.53", ":53"}
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return addrs
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			addrs = append(addrs, f[1])
		}
	}
	return addrs
}

// TestClientErrorsNameNoAddress runs cacheproxy as a process over pools
// whose only server is a name that does not resolve, a port that refuses or
// a server that resets the connection, and checks the exact error replies on both protocols: the server's
// configured name and the cause, never the resolver's address or an IP. The
// full error is in the log.
func TestClientErrorsNameNoAddress(t *testing.T) {
	refused := func() string { // a port nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	// What the machine's resolver says about the name decides the cause.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, lerr := net.DefaultResolver.LookupHost(ctx, "cacheproxy-test.invalid")
	cancel()
	var dnsErr *net.DNSError
	if !errors.As(lerr, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("this test needs a resolver that answers NXDOMAIN for .invalid names; lookup: %v", lerr)
	}

	// A server that resets the connection on the first request.
	reset := testserver.FakeServer(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 512))
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	ports := map[string]string{}
	var conf strings.Builder
	conf.WriteString("pools:\n")
	for _, p := range []struct{ name, proto, server string }{
		{"mc_dns", "memcache", "cacheproxy-test.invalid:11211:1 ghost"},
		{"mc_refused", "memcache", refused + ":1 gone"},
		{"r_dns", "redis", "cacheproxy-test.invalid:6379:1 ghost"},
		{"r_refused", "redis", refused + ":1 gone"},
		{"mc_reset", "memcache", reset + ":1 flaky"},
		{"r_reset", "redis", reset + ":1 flaky"},
	} {
		ports[p.name] = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
		conf.WriteString("  " + p.name + ":\n    listen: " + ports[p.name] + "\n    protocol: " + p.proto +
			"\n    timeout: 2s\n    servers:\n      - " + p.server + "\n")
	}
	path := writeConf(t, "config.yaml", conf.String())
	p := start(t, nil, "-c", path, "-v", "7")
	log := p.stderr
	for _, addr := range ports {
		waitAccept(t, addr, p.done, log)
	}

	mcGet := "get foo\r\n"
	rGet := "*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"
	for _, tc := range []struct {
		pool, req, want string
	}{
		{"mc_dns", mcGet, "SERVER_ERROR server ghost unavailable: no such host\r\n"},
		{"mc_refused", mcGet, "SERVER_ERROR server gone unavailable: connection refused\r\n"},
		{"r_dns", rGet, "-ERR server ghost unavailable: no such host\r\n"},
		{"r_refused", rGet, "-ERR server gone unavailable: connection refused\r\n"},
		{"mc_reset", mcGet, "SERVER_ERROR server flaky connection lost: connection reset\r\n"},
		{"r_reset", rGet, "-ERR server flaky connection lost: connection reset\r\n"},
	} {
		t.Run(tc.pool, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", ports[tc.pool], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			r := bufio.NewReader(c)
			// Each request waits for a dial and gets its cause (the first
			// retry comes without backoff).
			for i, want := range []string{tc.want, tc.want} {
				if _, err := c.Write([]byte(tc.req)); err != nil {
					t.Fatal(err)
				}
				got, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("reply %d: got %q: %v", i, got, err)
				}
				if got != want {
					t.Errorf("reply %d: got %q; want %q", i, got, want)
				}
				for _, a := range append(resolverAddrs(t), "127.0.0.1", refused, reset) {
					if strings.Contains(got, a) {
						t.Errorf("reply %d %q names %q", i, got, a)
					}
				}
			}
		})
	}
	// The operator still sees everything, in the log.
	for _, want := range []string{"lookup cacheproxy-test.invalid", "connect " + refused} {
		if !strings.Contains(log(), want) {
			t.Errorf("log: want %q in it; got %s", want, log())
		}
	}
}

// waitAccept polls addr until it accepts, failing if the process exits.
func waitAccept(t *testing.T, addr string, done chan error, log func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("cacheproxy exited before listening on %s: %v\n%s", addr, err, log())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cacheproxy not accepting on %s: %v\n%s", addr, err, log())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}
