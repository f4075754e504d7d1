package config

import (
	"strings"
	"testing"
	"time"
)

// TestClientTimeoutKeys: client_idle_timeout (default off) and
// client_request_timeout (default 30s) parse as durations, are 0 or at
// least 1s, and belong to the native shape only.
func TestClientTimeoutKeys(t *testing.T) {
	pool := func(extra string) string {
		return "pools:\n  a:\n    listen: 127.0.0.1:22121\n" + extra + "    servers: [127.0.0.1:11211:1]\n"
	}
	for _, tc := range []struct {
		name, text    string
		idle, request time.Duration
		err           string
	}{
		{"defaults", pool(""), 0, 30 * time.Second, ""},
		{"set", pool("    client_idle_timeout: 5m\n    client_request_timeout: 10s\n"), 5 * time.Minute, 10 * time.Second, ""},
		{"milliseconds", pool("    client_idle_timeout: 1500\n"), 1500 * time.Millisecond, 30 * time.Second, ""},
		{"request off", pool("    client_request_timeout: 0\n"), 0, 0, ""},
		{"redis", pool("    protocol: redis\n    client_idle_timeout: 1s\n"), time.Second, 30 * time.Second, ""},
		{"idle negative", pool("    client_idle_timeout: -1s\n"), 0, 0,
			`4: pool "a": client_idle_timeout: -1s: must be 0 (off) or at least 1s (clients are checked once a second)`},
		{"request too short", pool("    client_request_timeout: 100ms\n"), 0, 0,
			`4: pool "a": client_request_timeout: 100ms: must be 0 (off) or at least 1s`},
		{"bad", pool("    client_request_timeout: soon\n"), 0, 0, `4: pool "a": client_request_timeout:`},
		{"twemproxy shape", "a:\n  listen: 127.0.0.1:22121\n  client_idle_timeout: 10s\n  servers:\n   - 127.0.0.1:11211:1\n", 0, 0,
			`3: pool "a": client_idle_timeout: unknown key in a nutcracker.yml file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Load(writeFile(t, tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Load: %v; want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			p := cfg.Pools[0]
			if p.ClientIdleTimeout != tc.idle || p.ClientRequestTimeout != tc.request {
				t.Errorf("client_idle_timeout %v, client_request_timeout %v; want %v, %v",
					p.ClientIdleTimeout, p.ClientRequestTimeout, tc.idle, tc.request)
			}
		})
	}
}

// TestClientTimeoutDefaultsInCode: a pool built with NewPool has the
// request timeout on and the idle timeout off, as a loaded file does.
func TestClientTimeoutDefaultsInCode(t *testing.T) {
	if p := NewPool("a", ProtocolRedis); p.ClientRequestTimeout != DefaultClientRequestTimeout || p.ClientIdleTimeout != 0 {
		t.Fatalf("NewPool: client_idle_timeout %v, client_request_timeout %v; want 0, %v",
			p.ClientIdleTimeout, p.ClientRequestTimeout, DefaultClientRequestTimeout)
	}
}

// TestClientTimeoutDiff: a reload that changes either timeout says so.
func TestClientTimeoutDiff(t *testing.T) {
	a, b := mustParse(t, diffBase), mustParse(t, diffBase)
	b.Pool("mc").ClientIdleTimeout = time.Minute
	b.Pool("mc").ClientRequestTimeout = 5 * time.Second
	var got []string
	for _, c := range Diff(a, b) {
		got = append(got, c.String())
	}
	want := []string{`pool "mc": client_idle_timeout 0s -> 1m0s`, `pool "mc": client_request_timeout 30s -> 5s`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Diff: %q; want %q", got, want)
	}
}
