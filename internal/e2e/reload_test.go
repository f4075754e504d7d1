package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
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

// mcClient is one memcached text-protocol connection that stays open for a
// whole test: a reload must not close it.
type mcClient struct {
	t    *testing.T
	name string
	c    net.Conn
	r    *bufio.Reader
}

func dialMC(t *testing.T, name, addr string) *mcClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &mcClient{t: t, name: name, c: c, r: bufio.NewReader(c)}
}

// do sends req and reads lines until one of the terminators.
func (m *mcClient) do(req string, ends ...string) string {
	m.t.Helper()
	_ = m.c.SetDeadline(time.Now().Add(timeout))
	if _, err := m.c.Write([]byte(req)); err != nil {
		m.t.Fatalf("%s: write %q: %v", m.name, req, err)
	}
	var b strings.Builder
	for {
		l, err := m.r.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			m.t.Fatalf("%s: %q: read: got %q: %v", m.name, req, b.String(), err)
		}
		for _, e := range ends {
			if l == e {
				return b.String()
			}
		}
	}
}

// line sends req and reads one line.
func (m *mcClient) line(req string) string {
	m.t.Helper()
	_ = m.c.SetDeadline(time.Now().Add(timeout))
	if _, err := m.c.Write([]byte(req)); err != nil {
		m.t.Fatalf("%s: write %q: %v", m.name, req, err)
	}
	l, err := m.r.ReadString('\n')
	if err != nil {
		m.t.Fatalf("%s: %q: read: got %q: %v", m.name, req, l, err)
	}
	return l
}

// reloadConfig is the test's native configuration: the admin listener and
// one memcache pool over the given memcached servers, named mc1, mc2, ...
func reloadConfig(adminAddr, listen string, servers []*testserver.Process) string {
	var b strings.Builder
	// murmur spreads short keys such as "b17" over the ring; twemproxy's
	// default fnv1a_64 does not (most of them land on one or two servers).
	fmt.Fprintf(&b, "admin:\n  listen: %s\npools:\n  mc:\n    listen: %s\n    distribution: ketama\n    hash: murmur\n    timeout: 2s\n    servers:\n", adminAddr, listen)
	for i, s := range servers {
		fmt.Fprintf(&b, "      - %s:1 mc%d\n", s.Addr, i+1)
	}
	return b.String()
}

// TestReloadBinary runs the built binary over 3 memcached servers, then
// reloads it to 4 with SIGHUP, refuses a broken file (SIGHUP and POST
// /reload), and goes back to 3 with POST /reload, with one client
// connection open throughout: it is never closed, never gets an error or a
// wrong value (a miss is fine: keys move), and the fourth server takes keys
// while it is listed. The reload metrics count what happened.
//
// This needs the proxy's live reload (proxy.(*Proxy).Reload, issue 12 part
// 2): built without it, the binary refuses the first reload with "this
// build of the proxy cannot apply a configuration live", and this test
// fails there.
func TestReloadBinary(t *testing.T) {
	mcs := []*testserver.Process{testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)}
	bin := testserver.BuildCacheproxy(t)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	confPath := filepath.Join(t.TempDir(), "config.yaml")
	three, four := reloadConfig(adminAddr, listen, mcs[:3]), reloadConfig(adminAddr, listen, mcs)
	broken := strings.Replace(three, "distribution: ketama\n", "distribution: ketamax\n", 1)
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(three)
	cmd := exec.Command(bin, "-c", confPath)
	out, exited := startGroup(t, cmd)
	waitListening(t, listen, out)
	waitListening(t, adminAddr, out)

	// waitLog waits for the n-th line of the log holding want, failing at
	// once if more than refusals reloads were refused.
	const refused = `msg="configuration not reloaded`
	waitLog := func(want string, n, refusals int) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for strings.Count(out.String(), want) < n {
			if strings.Count(out.String(), refused) > refusals {
				t.Fatalf("reload refused while waiting for %q:\n%s", want, out)
			}
			select {
			case <-exited:
				t.Fatalf("proxy exited\noutput:\n%s", out)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q (x%d) in the log after %v:\n%s", want, n, timeout, out)
			}
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}
	sighup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	post := func() (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: timeout}).Post("http://"+adminAddr+"/reload", "", nil)
		if err != nil {
			t.Fatalf("POST /reload: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	c := dialMC(t, "client", listen)
	value := func(key string) string { return "v-" + key }
	set := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			k := fmt.Sprintf("%s%d", prefix, i)
			if got := c.do(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(value(k)), value(k)), "STORED\r\n", "END\r\n", "ERROR\r\n"); got != "STORED\r\n" {
				t.Fatalf("set %s: got %q\noutput:\n%s", k, got, out)
			}
		}
	}
	// check gets every key: a hit has the right value; misses are counted.
	check := func(prefix string, n int) (misses int) {
		t.Helper()
		for i := range n {
			k := fmt.Sprintf("%s%d", prefix, i)
			got := c.do("get "+k+"\r\n", "END\r\n", "ERROR\r\n")
			switch got {
			case "END\r\n":
				misses++
			case fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", k, len(value(k)), value(k)):
			default:
				t.Fatalf("get %s: got %q\noutput:\n%s", k, got, out)
			}
		}
		return misses
	}
	set("a", 100)
	if m := check("a", 100); m != 0 {
		t.Fatalf("%d misses right after setting", m)
	}

	// 3 -> 4 servers with SIGHUP.
	write(four)
	sighup()
	waitLog(`msg="configuration reloaded" trigger=SIGHUP`, 1, 0)
	wantChange := fmt.Sprintf(`changes="pool \"mc\": server mc4 added (%s weight 1)"`, mcs[3].Addr)
	if !strings.Contains(out.String(), wantChange) {
		t.Errorf("log: no %q in\n%s", wantChange, out)
	}
	check("a", 100) // misses allowed: some keys moved to mc4
	set("b", 200)
	if m := check("b", 200); m != 0 {
		t.Errorf("%d misses for keys set after the reload", m)
	}
	mc4 := dialMC(t, "mc4", mcs[3].Addr)
	stats := mc4.do("stats\r\n", "END\r\n")
	if m := regexp.MustCompile(`STAT curr_items (\d+)\r\n`).FindStringSubmatch(stats); m == nil || m[1] == "0" {
		t.Errorf("the fourth server holds no items after the reload: %q", m)
	}

	// A broken file: refused, logged as -t prints it, the proxy serves on.
	write(broken)
	sighup()
	problem := confPath + `:6: pool \"mc\": distribution: unknown distribution \"ketamax\" (want one of ketama, modula, random, jump)"`
	waitLog(`level=ERROR msg="configuration not reloaded: the file has a problem; the running configuration is unchanged" trigger=SIGHUP file=`+confPath+` problem="`+problem+"\n", 1, 1)
	if m := check("b", 200); m != 0 {
		t.Errorf("%d misses after a refused reload (the 4-server ring must still serve)", m)
	}
	code, body := post()
	if want := confPath + `:6: pool "mc": distribution: unknown distribution "ketamax" (want one of ketama, modula, random, jump)` + "\n"; code != http.StatusBadRequest || body != want {
		t.Errorf("POST /reload, broken file: got %d %q; want 400 %q", code, body, want)
	}

	// 4 -> 3 with POST /reload.
	write(three)
	code, body = post()
	if want := fmt.Sprintf("pool \"mc\": server mc4 removed (%s weight 1)\n", mcs[3].Addr); code != http.StatusOK || body != want {
		t.Errorf("POST /reload, 3 servers: got %d %q; want 200 %q", code, body, want)
	}
	check("b", 200)
	set("c", 100)
	if m := check("c", 100); m != 0 {
		t.Errorf("%d misses for keys set after the second reload", m)
	}
	if got := c.line("version\r\n"); !strings.HasPrefix(got, "VERSION ") {
		t.Errorf("version on the first connection: got %q", got)
	}

	// The metrics.
	resp, err := (&http.Client{Timeout: timeout}).Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256([]byte(three))
	for _, want := range []string{
		`cacheproxy_config_reloads_total{result="ok"} 2` + "\n",
		`cacheproxy_config_reloads_total{result="error"} 2` + "\n",
		`cacheproxy_config_hash{hash="` + hex.EncodeToString(sum[:])[:12] + `"} 1` + "\n",
		`cacheproxy_client_connections{pool="mc"} 1` + "\n", // the client's, open throughout
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics: no %q", want)
		}
	}
	if n := strings.Count(string(metrics), "cacheproxy_config_hash{"); n != 1 {
		t.Errorf("/metrics: %d cacheproxy_config_hash series; want 1", n)
	}

	// Under load: 16 clients set-then-get keys of their own while the file
	// flips 20 times between 3 and 4 servers with SIGHUP. No error, no
	// closed connection, no wrong value; a miss is fine (a key set on one
	// ring may be read on the next). Every key is set once, so a hit with
	// another value could only be a misrouted or mixed-up reply.
	const clients, flips = 16, 20
	stop := make(chan struct{})
	type tally struct {
		ops, misses int
		err         error
	}
	results := make(chan tally, clients)
	for g := range clients {
		go func() {
			var r tally
			defer func() { results <- r }()
			conn, err := net.DialTimeout("tcp", listen, timeout)
			if err != nil {
				r.err = err
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("load%d-%d", g, i)
				v := value(k)
				_ = conn.SetDeadline(time.Now().Add(timeout))
				if _, err := fmt.Fprintf(conn, "set %s 0 0 %d\r\n%s\r\nget %s\r\n", k, len(v), v, k); err != nil {
					r.err = fmt.Errorf("client %d: write: %w", g, err)
					return
				}
				var got strings.Builder
				for !strings.HasSuffix(got.String(), "END\r\n") && !strings.HasSuffix(got.String(), "ERROR\r\n") {
					l, err := br.ReadString('\n')
					got.WriteString(l)
					if err != nil {
						r.err = fmt.Errorf("client %d: %s: got %q: %w", g, k, got.String(), err)
						return
					}
				}
				switch got.String() {
				case "STORED\r\n" + fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", k, len(v), v):
				case "STORED\r\nEND\r\n":
					r.misses++
				default:
					r.err = fmt.Errorf("client %d: %s: got %q", g, k, got.String())
					return
				}
				r.ops++
			}
		}()
	}
	for i := range flips {
		if i%2 == 0 {
			write(four)
		} else {
			write(three)
		}
		sighup()
		waitLog(`msg="configuration reloaded" trigger=SIGHUP`, 2+i, 2) // two broken files were refused above
	}
	close(stop)
	var ops, misses int
	for range clients {
		r := <-results
		if r.err != nil {
			t.Errorf("under load: %v", r.err)
		}
		ops += r.ops
		misses += r.misses
	}
	t.Logf("under load: %d set-then-get over %d reloads, %d misses", ops, flips, misses)
	if ops < clients {
		t.Errorf("under load: only %d operations in all", ops)
	}
}

// readRESP reads one RESP2 reply from r and returns its bytes as sent.
func readRESP(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return line, err
	}
	if len(line) < 3 {
		return line, fmt.Errorf("short line %q", line)
	}
	switch line[0] {
	case '$':
		n, err := strconv.Atoi(strings.TrimRight(line[1:], "\r\n"))
		if err != nil || n < 0 {
			return line, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return line, err
		}
		return line + string(b), nil
	case '*':
		n, err := strconv.Atoi(strings.TrimRight(line[1:], "\r\n"))
		if err != nil {
			return line, err
		}
		out := line
		for range n {
			el, err := readRESP(r)
			out += el
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	return line, nil
}

// respCmd encodes a command as a RESP array of bulk strings.
func respCmd(args ...string) string {
	s := "*" + strconv.Itoa(len(args)) + "\r\n"
	for _, a := range args {
		s += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	return s
}

// TestReloadBinaryRedis reloads the built binary from 2 to 3 redis-server
// servers with POST /reload while one client is inside MULTI and another
// is subscribed: neither is closed, the transaction's EXEC answers, and
// the subscriber gets a message published after the reload. The key and
// the channel are chosen (with --route) to stay on their server, so the
// answers are exact. Like TestReloadBinary, this needs proxy.Reload.
func TestReloadBinaryRedis(t *testing.T) {
	rds := []*testserver.Process{testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)}
	bin := testserver.BuildCacheproxy(t)
	adminAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dir := t.TempDir()
	conf := func(n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "admin:\n  listen: %s\npools:\n  r:\n    listen: %s\n    protocol: redis\n    hash: murmur\n    timeout: 2s\n    servers:\n", adminAddr, listen)
		for i, s := range rds[:n] {
			fmt.Fprintf(&b, "      - %s:1 r%d\n", s.Addr, i+1)
		}
		return b.String()
	}
	two, three := filepath.Join(dir, "two.yaml"), filepath.Join(dir, "three.yaml")
	for path, text := range map[string]string{two: conf(2), three: conf(3)} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// route returns the server KEY goes to under the configuration at path.
	route := func(path, key string) string {
		t.Helper()
		out, err := exec.Command(bin, "--route", key, "-c", path).Output()
		if err != nil {
			t.Fatalf("--route %s: %v", key, err)
		}
		return strings.Fields(string(out))[3] // pool r: server NAME ...
	}
	// stays returns a name with prefix that goes to the same server in both.
	stays := func(prefix string) string {
		t.Helper()
		for i := range 50 {
			k := prefix + strconv.Itoa(i)
			if route(two, k) == route(three, k) {
				return k
			}
		}
		t.Fatalf("no %s* stays on its server from 2 to 3 servers", prefix)
		return ""
	}
	key, channel := stays("txkey"), stays("news")

	confPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(confPath, []byte(conf(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	out, _ := startGroup(t, cmd)
	waitListening(t, listen, out)
	waitListening(t, adminAddr, out)

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", listen, timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(timeout))
		return c, bufio.NewReader(c)
	}
	rt := func(c net.Conn, r *bufio.Reader, cmd string, want string) {
		t.Helper()
		if _, err := c.Write([]byte(cmd)); err != nil {
			t.Fatalf("write %q: %v", cmd, err)
		}
		got, err := readRESP(r)
		if err != nil || got != want {
			t.Fatalf("%q: got %q (%v); want %q\noutput:\n%s", cmd, got, err, want, out)
		}
	}
	tx, txr := dial()
	sub, subr := dial()
	pub, pubr := dial()
	rt(tx, txr, respCmd("MULTI"), "+OK\r\n")
	rt(tx, txr, respCmd("SET", key, "before"), "+QUEUED\r\n")
	rt(sub, subr, respCmd("SUBSCRIBE", channel), "*3\r\n$9\r\nsubscribe\r\n$"+strconv.Itoa(len(channel))+"\r\n"+channel+"\r\n:1\r\n")

	if err := os.WriteFile(confPath, []byte(conf(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: timeout}).Post("http://"+adminAddr+"/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("pool \"r\": server r3 added (%s weight 1)\n", rds[2].Addr); resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("POST /reload: got %d %q; want 200 %q\noutput:\n%s", resp.StatusCode, body, want, out)
	}

	// The transaction goes on and commits; the subscriber hears a message
	// published after the reload and still answers.
	rt(tx, txr, respCmd("SET", key, "after"), "+QUEUED\r\n")
	rt(tx, txr, respCmd("EXEC"), "*2\r\n+OK\r\n+OK\r\n")
	rt(tx, txr, respCmd("GET", key), "$5\r\nafter\r\n")
	rt(pub, pubr, respCmd("PUBLISH", channel, "hello"), ":1\r\n")
	if got, err := readRESP(subr); err != nil || got != "*3\r\n$7\r\nmessage\r\n$"+strconv.Itoa(len(channel))+"\r\n"+channel+"\r\n$5\r\nhello\r\n" {
		t.Fatalf("subscriber: got %q (%v); want the message\noutput:\n%s", got, err, out)
	}
	rt(sub, subr, respCmd("PING"), "*2\r\n$4\r\npong\r\n$0\r\n\r\n")

	// The third server takes keys.
	for i := range 100 {
		rt(pub, pubr, respCmd("SET", "k"+strconv.Itoa(i), "v"), "+OK\r\n")
	}
	r3, err := net.DialTimeout("tcp", rds[2].Addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	_ = r3.SetDeadline(time.Now().Add(timeout))
	if _, err := r3.Write([]byte(respCmd("DBSIZE"))); err != nil {
		t.Fatal(err)
	}
	if got, err := readRESP(bufio.NewReader(r3)); err != nil || got == ":0\r\n" {
		t.Errorf("the third server's DBSIZE after the reload: got %q (%v); want keys", got, err)
	}
}
