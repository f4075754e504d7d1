package proxy_test

import (
	"os"
	"path/filepath"
	"testing"

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
