package config

import (
	"strings"
	"testing"
	"time"
)

// TestWarmupKey: warmup parses as a duration (default 0), is memcache
// only, >= 0, and a no-op (warned) on a replicated pool.
func TestWarmupKey(t *testing.T) {
	pool := func(extra string) string {
		return "pools:\n  a:\n    listen: 127.0.0.1:22121\n" + extra + "    servers: [127.0.0.1:11211:1]\n"
	}
	for _, tc := range []struct {
		name, text string
		want       time.Duration
		err, warn  string
	}{
		{"default", pool(""), 0, "", ""},
		{"duration", pool("    warmup: 60s\n"), time.Minute, "", ""},
		{"milliseconds", pool("    warmup: 1500\n"), 1500 * time.Millisecond, "", ""},
		{"negative", pool("    warmup: -1s\n"), 0, `4: pool "a": warmup: -1s: must be >= 0`, ""},
		{"bad", pool("    warmup: soon\n"), 0, `4: pool "a": warmup:`, ""},
		{"redis", pool("    protocol: redis\n    warmup: 10s\n"), 0,
			`5: pool "a": warmup: 10s: warm-up is for memcache pools only`, ""},
		{"replicated", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    warmup: 10s\n    servers:\n      - addr: 127.0.0.1:11211\n        replicas: [127.0.0.1:11212]\n",
			10 * time.Second, "", `4: pool "a": warmup: 10s has no effect: a replicated pool`},
		{"twemproxy shape", "a:\n  listen: 127.0.0.1:22121\n  warmup: 10s\n  servers:\n   - 127.0.0.1:11211:1\n", 0, "warmup", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warns, err := Load(writeFile(t, tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Load: %v; want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := cfg.Pools[0].Warmup; got != tc.want {
				t.Errorf("Warmup %v; want %v", got, tc.want)
			}
			var ws []string
			for _, w := range warns {
				ws = append(ws, w.String())
			}
			if got := strings.Join(ws, "\n"); (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
				t.Errorf("warnings %q; want %q", got, tc.warn)
			}
		})
	}
}

// TestWarmupDiff: a reload that changes warmup says so.
func TestWarmupDiff(t *testing.T) {
	a, b := mustParse(t, diffBase), mustParse(t, diffBase)
	b.Pool("mc").Warmup = time.Minute
	cs := Diff(a, b)
	if len(cs) != 1 || !strings.Contains(cs[0].String(), "warmup 0s -> 1m0s") {
		t.Fatalf("Diff: %v; want one change, warmup 0s -> 1m0s", cs)
	}
}
