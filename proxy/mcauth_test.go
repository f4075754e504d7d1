package proxy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// mcAuthFile writes an auth_file (memcached -Y's format) and returns its path.
func mcAuthFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(path, []byte("app:secret\nops:p:w\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMemcacheAuthMatchesMemcached sends the same bytes to memcached -Y
// <auth_file> and to a proxy whose pool has that auth_file (over a plain
// memcached: backends are unaffected); the replies must be the same bytes,
// before, during and after authentication. Each step is one request,
// sent once the previous one's reply is in: memcached 1.6.18 answers
// several unauthenticated lines that arrive in one read with a single
// reply (it reuses one response object), which the proxy does not copy
// (it answers each; docs/security.md).
func TestMemcacheAuthMatchesMemcached(t *testing.T) {
	file := mcAuthFile(t)
	direct := testserver.Memcached(t, "-Y", file)
	pool := proxytest.MemcachePool(t, "mc", testserver.Memcached(t))
	pool.AuthFile = file
	proxytest.Start(t, proxy.Options{}, pool)

	for _, conn := range [][]struct {
		send  string
		lines int // reply lines the step gets
	}{
		{
			{"get k\r\n", 1},                                 // CLIENT_ERROR unauthenticated
			{"version\r\n", 1},                               // the same
			{"mg k v\r\n", 1},                                // the same
			{"set x 0 0 3\r\nabc\r\n", 1},                    // bad authentication token format
			{"set x 0 0 9\r\napp wrong\r\n", 1},              // authentication failure
			{"set x 0 0 10\r\nnoone pass\r\n", 1},            // authentication failure
			{"set x 0 0 10\r\napp secretXX", 1},              // bad command line termination
			{"add k 0 0 1\r\n", 1},                           // unauthenticated
			{"v\r\n", 1},                                     // and its data line too
			{"SET x 0 0 10\r\n", 1},                          // not "set": unauthenticated
			{"app secret\r\n", 1},                            // and the data line
			{"set auth 0 0 10 noreply\r\napp secret\r\n", 1}, // STORED (noreply does not apply)
			{"set k 0 0 1\r\nv\r\n", 1},                      // STORED: a real set now
			{"get k\r\n", 3},
			{"mg k v\r\n", 2},
			{"set x 0 0 10\r\napp secret\r\n", 1}, // an ordinary set of key x
			{"get x\r\n", 3},
		},
		{
			{"set a 0 0 13\r\nops p:w extra\r\n", 1}, // a colon in the password; a third word ignored
			{"get k\r\n", 3},
		},
	} {
		d, p := proxytest.Dial(t, direct.Addr), proxytest.Dial(t, pool.Listen)
		for _, step := range conn {
			d.Send(step.send)
			p.Send(step.send)
			var dr, pr string
			for range step.lines {
				dr += d.Line()
				pr += p.Line()
			}
			if dr != pr {
				t.Errorf("%q: through the proxy %q; memcached -Y %q", step.send, pr, dr)
			}
		}
	}
}

// TestMemcacheAuthGuessingClosed: the 10th wrong password in a row is
// answered and the connection closed (memcached itself keeps it open: the
// proxy's guard against guessing at pipeline speed, as for Redis).
func TestMemcacheAuthGuessingClosed(t *testing.T) {
	pool := proxytest.MemcachePool(t, "mc", testserver.Memcached(t))
	pool.AuthFile = mcAuthFile(t)
	p := proxytest.Start(t, proxy.Options{}, pool)
	const failure = "CLIENT_ERROR authentication failure\r\n"
	c := proxytest.Dial(t, pool.Listen)
	for i := 1; i < proxy.MaxAuthFailures; i++ {
		c.RoundTrip("set a 0 0 9\r\napp guess\r\n", failure)
	}
	c.Send("set a 0 0 9\r\napp guess\r\nget k\r\n")
	lines, err := readToEnd(t, c)
	if len(lines) != 1 || lines[0] != failure || !closedByPeer(err) {
		t.Fatalf("wrong password #%d: got %q then %v; want one failure and the connection closed", proxy.MaxAuthFailures, lines, err)
	}
	if got := authFailures(p, "mc"); got != proxy.MaxAuthFailures {
		t.Errorf("AuthFailures: %d; want %d", got, proxy.MaxAuthFailures)
	}
	// Another client logs in and is served.
	ok := proxytest.Dial(t, pool.Listen)
	ok.RoundTrip("set a 0 0 10\r\napp secret\r\n", "STORED\r\n")
	ok.RoundTrip("get nosuch\r\n", "END\r\n")
}

// TestMemcacheAuthFileReload: a reload reads auth_file again (changed
// contents), and may remove or add it. Clients already logged in, and
// clients that connected while the pool had no auth_file, stay served
// (docs/security.md); new clients follow the new version.
func TestMemcacheAuthFileReload(t *testing.T) {
	file := mcAuthFile(t) // app:secret, ops:p:w
	pool := proxytest.MemcachePool(t, "mc", testserver.Memcached(t))
	pool.AuthFile = file
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{pool}})
	reload := func(authFile string) {
		t.Helper()
		next := pool.Clone()
		next.AuthFile = authFile
		cfg := &config.Config{Pools: []config.Pool{next}}
		if err := cfg.Validate(); err != nil { // reads the file, as a reload from disk does
			t.Fatal(err)
		}
		if err := p.Reload(cfg); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	login := "set auth 0 0 10\r\napp secret\r\n"

	old := proxytest.Dial(t, pool.Listen)
	old.RoundTrip(login, "STORED\r\n")
	old.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")

	// The file now names another user only.
	if err := os.WriteFile(file, []byte("other:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload(file)
	old.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip(login, "CLIENT_ERROR authentication failure\r\n")
	c.RoundTrip("set auth 0 0 8\r\nother pw\r\n", "STORED\r\n")
	c.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")

	// No auth_file: new clients are served at once.
	reload("")
	open := proxytest.Dial(t, pool.Listen)
	open.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")

	// Added again: the client that came while there was none stays
	// served; a new one must log in.
	reload(file)
	open.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	n := proxytest.Dial(t, pool.Listen)
	n.RoundTrip("get k\r\n", "CLIENT_ERROR unauthenticated\r\n")
	n.RoundTrip("set auth 0 0 8\r\nother pw\r\n", "STORED\r\n")
	n.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
}
