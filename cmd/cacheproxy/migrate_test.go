package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// proc is cacheproxy running as a process, with its stderr captured.
type proc struct {
	t    *testing.T
	cmd  *os.Process
	done chan error
	err  testserver.SyncBuffer
}

// start runs cacheproxy with args and stops it (SIGTERM, then SIGKILL) in
// cleanup. env is added to the environment.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := command(args...)
	cmd.Env = append(cmd.Env, env...)
	p := &proc{t: t, done: make(chan error, 1)}
	cmd.Stderr = &p.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd.Process
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			p.done <- err
		case <-time.After(30 * time.Second):
			_ = p.cmd.Kill()
		}
	})
	return p
}

func (p *proc) stderr() string { return p.err.String() }

// waitFor polls text() until it contains want, failing the test after a
// deadline or if the process exits first.
func (p *proc) waitFor(what string, text func() string, want string) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(text(), want) {
		select {
		case err := <-p.done:
			p.done <- err
			p.t.Fatalf("cacheproxy exited (%v) before %s had %q:\n%s\nstderr:\n%s", err, what, want, text(), p.stderr())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %q in time:\n%s", what, want, text())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func readFile(path string) func() string {
	return func() string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
}

// statsDoc reads one twemproxy stats document from addr.
func statsDoc(t *testing.T, addr string) map[string]any {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read stats from %s: %v", addr, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("stats from %s: %v: %q", addr, err, b)
	}
	return doc
}

// shape returns the document's keys and, for the pool, its counter names
// (the servers, which are objects, left out): what a dashboard reads.
func shape(doc map[string]any, pool string) (top, counters, servers []string) {
	for k := range doc {
		top = append(top, k)
	}
	for k, v := range doc[pool].(map[string]any) {
		if _, obj := v.(map[string]any); obj {
			servers = append(servers, k)
		} else {
			counters = append(counters, k)
		}
	}
	slices.Sort(top)
	slices.Sort(counters)
	slices.Sort(servers)
	return top, counters, servers
}

// TestNutcrackerStatsDefault runs cacheproxy on a nutcracker.yml with no
// stats flag: like nutcracker, which serves stats on 0.0.0.0:22222 unless
// told otherwise, it serves them on port 22222, but on 127.0.0.1, and logs
// that. The document has the keys nutcracker's has for the same file.
func TestNutcrackerStatsDefault(t *testing.T) {
	const def = "127.0.0.1:22222"
	if l, err := net.Listen("tcp", def); err != nil {
		t.Fatalf("%s is in use on this machine, so the default cannot be tried: %v", def, err)
	} else {
		l.Close()
	}
	mc := testserver.Memcached(t)
	listen := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	// A second server, never used, on memcached's default port: twemproxy
	// names an unnamed server there "host" alone, in stats as on the ring.
	servers := "\n  servers:\n   - " + mc.Addr + ":1\n   - 127.0.0.1:11211:1\n"
	conf := "a:\n  listen: " + listen + servers
	path := writeConf(t, "nutcracker.yml", conf)

	p := start(t, nil, "-c", path)
	waitAccept(t, listen, p.done, p.stderr)
	p.waitFor("stderr", p.stderr, "msg=listening pool=a")
	if strings.Contains(p.stderr(), "stats: not served") {
		t.Fatalf("%s was taken meanwhile:\n%s", def, p.stderr())
	}
	want := `level=INFO msg="stats: a nutcracker.yml and no stats settings, so twemproxy JSON stats are served as nutcracker serves them, ` +
		`but on 127.0.0.1 (nutcracker binds 0.0.0.0); -s PORT and -a ADDR change the address, -s 0 turns stats off" addr=127.0.0.1:22222` + "\n"
	if !strings.Contains(p.stderr(), want) {
		t.Errorf("log: want the line\n%q\nin\n%s", want, p.stderr())
	}
	// One request through, so the counters are not all zero.
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("set k 0 0 1\r\nv\r\n")); err != nil {
		t.Fatal(err)
	}
	// k goes to one of the two servers, the live one or the one never
	// started; the reply says which.
	got, err := bufio.NewReader(c).ReadString('\n')
	if got != "STORED\r\n" && got != "SERVER_ERROR server 127.0.0.1 unavailable: connection refused\r\n" {
		t.Fatalf("set: got %q (%v); want STORED or SERVER_ERROR from the server not started", got, err)
	}
	doc := statsDoc(t, def)
	if doc["service"] != "cacheproxy" {
		t.Errorf("service: got %v; want cacheproxy", doc["service"])
	}

	// nutcracker's document for the same pool, on a port of our choosing
	// (its default, 0.0.0.0:22222, would collide with the one above).
	nlisten := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	nc := testserver.Nutcracker(t, "a:\n  listen: "+nlisten+servers, nlisten)
	ntop, ncounters, nservers := shape(statsDoc(t, nc.StatsAddr), "a")
	top, counters, srvs := shape(doc, "a")
	if !slices.Equal(srvs, nservers) {
		t.Errorf("server keys:\ngot  %q\nwant %q (nutcracker's)", srvs, nservers)
	}
	if !slices.Equal(top, ntop) {
		t.Errorf("stats keys:\ngot  %q\nwant %q (nutcracker's)", top, ntop)
	}
	if !slices.Equal(counters, ncounters) {
		t.Errorf("pool counters:\ngot  %q\nwant %q (nutcracker's)", counters, ncounters)
	}
}

// TestNutcrackerStatsDefaultTaken: when 127.0.0.1:22222 is taken (here by
// the test), the implicit default gives way: cacheproxy serves the pools
// without stats and logs why at error level.
func TestNutcrackerStatsDefaultTaken(t *testing.T) {
	const def = "127.0.0.1:22222"
	hold, err := net.Listen("tcp", def)
	if err != nil {
		t.Fatalf("%s is in use on this machine, and may be released at any time: %v", def, err)
	}
	defer hold.Close()
	mc := testserver.Memcached(t)
	listen := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	path := writeConf(t, "nutcracker.yml", "a:\n  listen: "+listen+"\n  servers:\n   - "+mc.Addr+":1\n")
	p := start(t, nil, "-c", path)
	waitAccept(t, listen, p.done, p.stderr)
	p.waitFor("stderr", p.stderr, "msg=listening pool=a")
	want := `level=ERROR msg="stats: not served: the default stats address is taken (is nutcracker still running?); ` +
		`choose another with -s PORT, or turn stats off with -s 0" addr=127.0.0.1:22222 err="listen tcp 127.0.0.1:22222: bind: address already in use"` + "\n"
	if !strings.Contains(p.stderr(), want) {
		t.Errorf("log: want the line\n%q\nin\n%s", want, p.stderr())
	}
	if strings.Contains(p.stderr(), "stats listening") {
		t.Errorf("stats served although the address is taken:\n%s", p.stderr())
	}
}

// TestNutcrackerStatsSettingsWin checks that -s, CACHEPROXY_STATS_PORT and
// -s 0 override the nutcracker.yml default, and that a native file without
// a stats section still serves none.
func TestNutcrackerStatsSettingsWin(t *testing.T) {
	mc := testserver.Memcached(t)
	for _, tc := range []struct {
		name   string
		native bool
		env    func(port string) []string
		args   func(port string) []string
		stats  bool // stats on 127.0.0.1:port
	}{
		{name: "-s", args: func(port string) []string { return []string{"-s", port} }, stats: true},
		{name: "environment", env: func(port string) []string { return []string{"CACHEPROXY_STATS_PORT=" + port} }, stats: true},
		{name: "-s 0", args: func(string) []string { return []string{"-s", "0"} }},
		{name: "native without stats", native: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := strconv.Itoa(testserver.FreePort(t))
			listen := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
			conf := "a:\n  listen: " + listen + "\n  servers:\n   - " + mc.Addr + ":1\n"
			if tc.native {
				conf = "pools:\n  a:\n    listen: " + listen + "\n    servers:\n     - " + mc.Addr + ":1\n"
			}
			args := []string{"-c", writeConf(t, "c.yml", conf)}
			if tc.args != nil {
				args = append(args, tc.args(port)...)
			}
			var env []string
			if tc.env != nil {
				env = tc.env(port)
			}
			p := start(t, env, args...)
			waitAccept(t, listen, p.done, p.stderr)
			// "listening" for the pool comes after the stats listener's line.
			p.waitFor("stderr", p.stderr, "msg=listening pool=a")
			log := p.stderr()
			if strings.Contains(log, "msg=\"stats: a nutcracker.yml") {
				t.Errorf("the default was announced although stats were set:\n%s", log)
			}
			if got := strings.Contains(log, `msg="stats listening" component=admin addr=127.0.0.1:`+port+"\n"); got != tc.stats {
				t.Errorf("stats on 127.0.0.1:%s: got %v; want %v\n%s", port, got, tc.stats, log)
			}
			if !tc.stats && strings.Contains(log, "stats listening") {
				t.Errorf("stats served although off:\n%s", log)
			}
			if tc.stats {
				if doc := statsDoc(t, "127.0.0.1:"+port); doc["service"] != "cacheproxy" {
					t.Errorf("service: got %v; want cacheproxy", doc["service"])
				}
			}
		})
	}
}

// TestHelpBinary checks that --help goes to stdout with exit status 0, and
// that usage after a mistake goes to stderr with 2.
func TestHelpBinary(t *testing.T) {
	code, stdout, stderr := runCommand(t, "--help")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: cacheproxy ") || !strings.Contains(stdout, "\n      --route string ") {
		t.Errorf("--help: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCommand(t, "--no-such-flag")
	if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "cacheproxy: unknown flag: --no-such-flag\nUsage: cacheproxy ") {
		t.Errorf("bad flag: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

// TestMisindentedServersBinary: nutcracker -t rejects each file without a
// line; cacheproxy -t names the offending item's line.
func TestMisindentedServersBinary(t *testing.T) {
	head := "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n"
	for _, tc := range []struct{ name, items, want string }{
		{"deeper", "   - 127.0.0.1:11211:1\n    - 127.0.0.1:11212:1\n",
			`:5: pool "alpha": servers: list item indented 4 spaces where the first item has 3 spaces: YAML reads it as more text of the item above; indent every item alike`},
		{"shallower", "    - 127.0.0.1:11211:1\n    - 127.0.0.1:11212:1\n   - 127.0.0.1:11213:1\n",
			`:6: pool "alpha": servers: list item indented 3 spaces where the first item has 4 spaces: indent every item alike`},
		{"left of the key", " - 127.0.0.1:11211:1\n",
			`:4: pool "alpha": servers: list item indented 1 space, less than servers: (2 spaces): indent the items at least as far as servers:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConf(t, "nutcracker.yml", head+tc.items)
			code, stdout, stderr := runCommand(t, "-t", "-c", path)
			want := path + tc.want + "\ncacheproxy: configuration file '" + path + "' syntax is invalid\n"
			if code != 1 || stdout != "" || stderr != want {
				t.Errorf("exit %d; want 1\nstdout %q\nstderr\ngot  %q\nwant %q", code, stdout, stderr, want)
			}
			if code, out := nutcrackerTestConf(t, path); code != 1 {
				t.Errorf("nutcracker -t: exit %d; want 1\n%s", code, out)
			}
		})
	}
}

// TestLogFileSignals runs cacheproxy with -o and checks, as logrotate would
// use it, that SIGHUP reopens the file by name (the renamed file gets no
// more lines), and that SIGTTIN makes debug events show, SIGTTOU hides
// info ones again.
func TestLogFileSignals(t *testing.T) {
	refused := func() string { // a port nobody listens on: a debug event per dial
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	listen := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	dir := t.TempDir()
	logPath := filepath.Join(dir, "cacheproxy.log")
	conf := writeConf(t, "nutcracker.yml", "a:\n  listen: "+listen+"\n  server_retry_timeout: 10\n  servers:\n   - "+refused+":1 gone\n")
	p := start(t, nil, "-c", conf, "-s", "0", "-o", logPath)
	waitAccept(t, listen, p.done, p.stderr)
	logText := readFile(logPath)
	p.waitFor(logPath, logText, "msg=listening pool=a")

	// logrotate: rename, then SIGHUP.
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The file is unchanged: the reload finds nothing to do.
	p.waitFor(logPath, logText, `level=INFO msg="configuration reloaded" trigger=SIGHUP file=`+conf+` hash=`)
	p.waitFor(logPath, logText, ` changes="no change"`+"\n")
	if !strings.Contains(logText(), `level=INFO msg="SIGHUP: log file reopened" path=`+logPath+"\n") {
		t.Errorf("new log: no reopen line:\n%s", logText())
	}
	if old := readFile(rotated)(); strings.Contains(old, "SIGHUP") || !strings.Contains(old, "msg=starting") {
		t.Errorf("rotated log: want the start and nothing after the rename:\n%s", old)
	}

	// At -v 5 (info) a failed dial is not logged; SIGTTIN makes it show.
	get := func() {
		t.Helper()
		c, err := net.DialTimeout("tcp", listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("get k\r\n")); err != nil {
			t.Fatal(err)
		}
		want := "SERVER_ERROR server gone unavailable: connection refused\r\n"
		if got, err := bufio.NewReader(c).ReadString('\n'); got != want {
			t.Fatalf("get: got %q (%v); want %q", got, err, want)
		}
	}
	get()
	if strings.Contains(logText(), "backend connect failed") {
		t.Fatalf("debug event logged at -v 5:\n%s", logText())
	}
	if err := p.cmd.Signal(syscall.SIGTTIN); err != nil {
		t.Fatal(err)
	}
	p.waitFor(logPath, logText, `level=DEBUG msg="log level changed" signal=SIGTTIN level=DEBUG`+"\n")
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logText(), `level=DEBUG msg="backend connect failed" pool=a server=gone`) {
		if time.Now().After(deadline) {
			t.Fatalf("no debug event after SIGTTIN:\n%s", logText())
		}
		get() // the server is retried every 10ms: a request dials again
	}

	// SIGTTOU twice: info, then warn, so the info line of a second SIGHUP
	// is not logged but the error of its reload (a broken file) is.
	for _, want := range []string{`level=INFO msg="log level changed" signal=SIGTTOU level=INFO`, `level=WARN msg="log level changed" signal=SIGTTOU level=WARN`} {
		if err := p.cmd.Signal(syscall.SIGTTOU); err != nil {
			t.Fatal(err)
		}
		p.waitFor(logPath, logText, want+"\n")
	}
	if err := os.WriteFile(conf, []byte("a:\n  listen: "+listen+"\n  hash: fnv2\n  servers:\n   - "+refused+":1 gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(logPath, func() string { return strings.Join(strings.SplitAfter(logText(), "SIGTTOU level=WARN\n")[1:], "") },
		`level=ERROR msg="configuration not reloaded: the file has a problem; the running configuration is unchanged" trigger=SIGHUP file=`+conf+
			` problem="`+conf+`:3: pool \"a\": hash: unknown hash \"fnv2\" (want one of `)
	if n := strings.Count(logText(), "SIGHUP: log file reopened"); n != 1 {
		t.Errorf("at warn level the reopen (info) was logged: %d times; want 1 (the first)\n%s", n, logText())
	}
}

// TestPanicDumpInLogFile makes the real process panic (the test binary's
// TestMain starts a goroutine that panics when a trigger file appears) and
// checks that the dump is in the -o file as well as on stderr.
func TestPanicDumpInLogFile(t *testing.T) {
	mc := testserver.Memcached(t)
	listen := "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
	dir := t.TempDir()
	logPath, trigger := filepath.Join(dir, "cacheproxy.log"), filepath.Join(dir, "panic-now")
	conf := writeConf(t, "nutcracker.yml", "a:\n  listen: "+listen+"\n  servers:\n   - "+mc.Addr+":1\n")
	p := start(t, []string{panicTriggerEnv + "=" + trigger}, "-c", conf, "-s", "0", "-o", logPath)
	waitAccept(t, listen, p.done, p.stderr)
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err == nil {
			t.Fatal("exit status 0 after a panic")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after the panic trigger")
	}
	const want = "panic: cacheproxy test panic\n\ngoroutine "
	if !strings.Contains(p.stderr(), want) {
		t.Errorf("stderr: no %q in\n%s", want, p.stderr())
	}
	if log := readFile(logPath)(); !strings.Contains(log, want) || !strings.Contains(log, "msg=starting") {
		t.Errorf("log file: want the log and %q in\n%s", want, log)
	}
}

func TestStepLevel(t *testing.T) {
	for _, tc := range []struct {
		from     string
		up, down string
	}{{"ERROR", "WARN", "ERROR"}, {"WARN", "INFO", "ERROR"}, {"INFO", "DEBUG", "WARN"}, {"DEBUG", "DEBUG", "INFO"}} {
		var l slog.Level
		if err := l.UnmarshalText([]byte(tc.from)); err != nil {
			t.Fatal(err)
		}
		if got := stepLevel(l, true).String(); got != tc.up {
			t.Errorf("up from %s: got %s; want %s", tc.from, got, tc.up)
		}
		if got := stepLevel(l, false).String(); got != tc.down {
			t.Errorf("down from %s: got %s; want %s", tc.from, got, tc.down)
		}
	}
}

// TestWhatNutcrackerCloses sends the same requests to nutcracker 0.5.0 and
// to cacheproxy, loading the same pools: nutcracker closes the connection
// without a reply on each (client libraries' handshakes among them), where
// cacheproxy answers. docs/migrating-from-twemproxy.md lists them.
func TestWhatNutcrackerCloses(t *testing.T) {
	mc, rs := testserver.Memcached(t), testserver.Redis(t)
	pools := func(m, r string) string {
		return "m:\n  listen: " + m + "\n  servers:\n   - " + mc.Addr + ":1\n" +
			"r:\n  listen: " + r + "\n  redis: true\n  servers:\n   - " + rs.Addr + ":1\n"
	}
	free := func() string { return "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t)) }
	ncM, ncR, cpM, cpR := free(), free(), free(), free()
	testserver.Nutcracker(t, pools(ncM, ncR), ncM, ncR)
	p := start(t, nil, "-c", writeConf(t, "nutcracker.yml", pools(cpM, cpR)), "-s", "0")
	waitAccept(t, cpM, p.done, p.stderr)
	waitAccept(t, cpR, p.done, p.stderr)

	exchange := func(addr, req string) (string, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			return "", err
		}
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	resp := func(args ...string) string {
		s := "*" + strconv.Itoa(len(args)) + "\r\n"
		for _, a := range args {
			s += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
		}
		return s
	}
	for _, tc := range []struct {
		name, pool, req, want string // want: cacheproxy's reply, a prefix
		ncWant                string // nutcracker's reply: "" (closed) but for the controls
	}{
		// Controls: nutcracker does answer these, so a closed connection
		// below is its answer to the request, not to the half-close.
		{name: "control redis PING", pool: "r", req: resp("PING"), want: "+PONG\r\n", ncWant: "+PONG\r\n"},
		{name: "control memcache get", pool: "m", req: "get nokey\r\n", want: "END\r\n", ncWant: "END\r\n"},
		// HELLO 3: a RESP3 map from the proxy, where nutcracker does not know HELLO.
		{name: "redis HELLO 3", pool: "r", req: resp("HELLO", "3"), want: "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"},
		{name: "redis HELLO 2", pool: "r", req: resp("HELLO", "2"), want: "*14\r\n$6\r\nserver\r\n"},
		{name: "redis CLIENT SETINFO", pool: "r", req: resp("CLIENT", "SETINFO", "LIB-NAME", "x"), want: "+OK\r\n"},
		{name: "redis CLIENT SETNAME", pool: "r", req: resp("CLIENT", "SETNAME", "a"), want: "+OK\r\n"},
		{name: "redis SELECT 0", pool: "r", req: resp("SELECT", "0"), want: "+OK\r\n"},
		{name: "redis MULTI", pool: "r", req: resp("MULTI"), want: "+OK\r\n"},
		{name: "redis INFO", pool: "r", req: resp("INFO"), want: "$"},
		{name: "redis SCAN", pool: "r", req: resp("SCAN", "0"), want: "*2\r\n$1\r\n0\r\n*0\r\n"},
		{name: "memcache mg", pool: "m", req: "mg nokey v\r\n", want: "EN\r\n"},
		{name: "memcache ms", pool: "m", req: "ms k 2\r\nxx\r\n", want: "HD\r\n"},
		{name: "memcache mn", pool: "m", req: "mn\r\n", want: "MN\r\n"},
		{name: "memcache gat", pool: "m", req: "gat 0 nokey\r\n", want: "END\r\n"},
		{name: "memcache stats", pool: "m", req: "stats\r\n", want: "STAT pid "},
		{name: "memcache verbosity", pool: "m", req: "verbosity 1\r\n", want: "OK\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, cp := ncM, cpM
			if tc.pool == "r" {
				nc, cp = ncR, cpR
			}
			if got, err := exchange(nc, tc.req); got != tc.ncWant || err != nil {
				t.Errorf("nutcracker: got %q (%v); want %q, then the connection closed", got, err, tc.ncWant)
			}
			if got, err := exchange(cp, tc.req); got == "" || !strings.HasPrefix(got, tc.want) || err != nil {
				t.Errorf("cacheproxy: got %q (%v); want it to start with %q", got, err, tc.want)
			}
		})
	}
}
