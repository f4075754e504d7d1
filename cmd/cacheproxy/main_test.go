package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// placementSample is the sample from design/placement.md: the same three
// servers with and without names.
const placementSample = `mc_ketama:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:21211:1
   - 127.0.0.1:21212:1
   - 127.0.0.1:21213:1
mc_named:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:21211:1 server1
   - 127.0.0.1:21212:1 server2
   - 127.0.0.1:21213:1 server3
`

const nativeSample = `admin:
  listen: 127.0.0.1:9121
pools:
  store:
    listen: 127.0.0.1:6390
    protocol: redis
    hash: murmur
    hash_tag: "{}"
    distribution: modula
    client_connections: 10
    servers:
      - name: shard1
        addr: 127.0.0.1:6379
        replicas: [127.0.0.1:6380]
      - 127.0.0.1:6381:1 shard2
  rand:
    listen: 127.0.0.1:6391
    distribution: random
    servers: [127.0.0.1:11211:1]
`

const badSample = `a:
  listen: 127.0.0.1:22121
  hash: fnv2
  servers:
   - 127.0.0.1:11211:0
`

func TestRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	placement := write("placement.yml", placementSample)
	native := write("native.yml", nativeSample)
	bad := write("bad.yml", badSample)
	missing := filepath.Join(dir, "missing.yml")
	statsPool := write("stats-pool.yml", "a:\n  listen: 127.0.0.1:22222\n  servers:\n   - 127.0.0.1:11211:1\n")
	replicated := write("replicated.yml", "pools:\n  mc:\n    listen: 127.0.0.1:22333\n    read_policy: prefer_replica\n"+
		"    servers:\n      - name: s1\n        addr: 127.0.0.1:21211\n        replicas: [127.0.0.1:21311, {name: r2, addr: 127.0.0.1:21411}]\n")
	misindented := write("misindented.yml", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n  - 127.0.0.1:11212:1\n")

	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderr    string // exact, unless stderrHas is set
		stderrHas string
		stdoutHas string
	}{
		{name: "test good nutcracker.yml", args: []string{"-t", "-c", placement}, code: 0,
			stdout: "cacheproxy: configuration file '" + placement + "' syntax is ok\n" +
				"stats 127.0.0.1:22222\n" +
				"pools 2\n" +
				"pool mc_ketama: memcache listen 127.0.0.1:22121 distribution ketama hash fnv1a_64 servers 3\n" +
				"  server 127.0.0.1:21211 addr 127.0.0.1:21211 weight 1\n" +
				"  server 127.0.0.1:21212 addr 127.0.0.1:21212 weight 1\n" +
				"  server 127.0.0.1:21213 addr 127.0.0.1:21213 weight 1\n" +
				"pool mc_named: memcache listen 127.0.0.1:22122 distribution ketama hash fnv1a_64 servers 3\n" +
				"  server server1 addr 127.0.0.1:21211 weight 1\n" +
				"  server server2 addr 127.0.0.1:21212 weight 1\n" +
				"  server server3 addr 127.0.0.1:21213 weight 1\n",
			stderr: ""},
		{name: "test good native with a warning, long flags", args: []string{"--test-conf", "--conf-file", native}, code: 0,
			stdout: "cacheproxy: configuration file '" + native + "' syntax is ok\n" +
				"admin 127.0.0.1:9121\n" +
				"pools 2\n" +
				"pool rand: memcache listen 127.0.0.1:6391 distribution random hash fnv1a_64 servers 1\n" +
				"  server 127.0.0.1 addr 127.0.0.1:11211 weight 1\n" +
				"pool store: redis listen 127.0.0.1:6390 distribution modula hash murmur hash_tag \"{}\" servers 2\n" +
				"  server shard1 addr 127.0.0.1:6379 weight 1 replicas 127.0.0.1:6380\n" +
				"  server shard2 addr 127.0.0.1:6381 weight 1\n",
			stderr: "warning: " + native + ":10: pool \"store\": client_connections: accepted for twemproxy compatibility and ignored, as twemproxy ignores it; limits.max_clients caps clients\n"},
		{name: "test bad file", args: []string{"-t", "-c", bad}, code: 1, stdout: "",
			stderr: bad + ":3: pool \"a\": hash: unknown hash \"fnv2\" (want one of crc16, crc32, crc32a, fnv1_32, fnv1_64, fnv1a_32, fnv1a_64, hsieh, jenkins, md5, murmur, one_at_a_time)\n" +
				bad + ":5: pool \"a\": servers[0]: weight 0: must be > 0\n" +
				"cacheproxy: configuration file '" + bad + "' syntax is invalid\n"},
		{name: "test missing file", args: []string{"-t", "-c", missing}, code: 1, stdout: "",
			stderr: "config: open " + missing + ": no such file or directory\n" +
				"cacheproxy: configuration file '" + missing + "' syntax is invalid\n"},
		{name: "stats and admin flags", args: []string{"-t", "-c", placement, "-s", "22299", "--admin", "127.0.0.1:9999"}, code: 0,
			stdoutHas: "admin 127.0.0.1:9999\nstats 127.0.0.1:22299\npools 2\n", stderr: ""},
		{name: "stats address alone", args: []string{"-t", "-c", placement, "-a", "::1", "-i", "10000", "-v", "7"}, code: 0,
			stdoutHas: "\nstats [::1]:22222\npools 2\n", stderr: ""},
		{name: "admin flag collides with a pool", args: []string{"-t", "-c", placement, "--admin", "127.0.0.1:22122"}, code: 1, stdout: "",
			stderr: "with the command-line listeners:\n" +
				placement + ":10: pool \"mc_named\": listen: 127.0.0.1:22122 is also the listen address of admin.listen\n" +
				"cacheproxy: configuration file '" + placement + "' syntax is invalid\n"},

		// --route: the servers are those of the placement.md table, which
		// comes from real twemproxy.
		{name: "route foo", args: []string{"--route", "foo", "-c", placement}, code: 0, stderr: "",
			stdout: "pool mc_ketama: server 127.0.0.1:21211 addr 127.0.0.1:21211 hash 0xfed9d577 point 0xff2ba8d1\n" +
				"pool mc_named: server server1 addr 127.0.0.1:21211 hash 0xfed9d577 point 0xffa9d194\n"},
		{name: "route bar", args: []string{"--route=bar", "-c", placement}, code: 0, stderr: "",
			stdout: "pool mc_ketama: server 127.0.0.1:21213 addr 127.0.0.1:21213 hash 0x1339461a point 0x13716766\n" +
				"pool mc_named: server server2 addr 127.0.0.1:21212 hash 0x1339461a point 0x13c62a6c\n"},
		{name: "route a", args: []string{"-c", placement, "--route", "a"}, code: 0, stderr: "",
			stdout: "pool mc_ketama: server 127.0.0.1:21211 addr 127.0.0.1:21211 hash 0x8601ec8c point 0x8638ad9c\n" +
				"pool mc_named: server server3 addr 127.0.0.1:21213 hash 0x8601ec8c point 0x86e2b230\n"},
		{name: "route key:999", args: []string{"-c", placement, "--route", "key:999"}, code: 0, stderr: "",
			stdout: "pool mc_ketama: server 127.0.0.1:21212 addr 127.0.0.1:21212 hash 0xe7ce03c3 point 0xe7daca4d\n" +
				"pool mc_named: server server1 addr 127.0.0.1:21211 hash 0xe7ce03c3 point 0xe7d38b0b\n"},
		{name: "route native", args: []string{"-c", native, "--route", "{user1}:cart"}, code: 0,
			stdoutHas: "\npool store: server ", stderrHas: "client_connections"},
		{name: "route with replicas", args: []string{"-c", replicated, "--route", "foo"}, code: 0, stderr: "",
			stdout: "pool mc: server s1 addr 127.0.0.1:21211 hash 0x00000000 point 0x017e47db\n" +
				"  replica s1/127.0.0.1:21311 addr 127.0.0.1:21311\n" +
				"  replica s1/r2 addr 127.0.0.1:21411\n" +
				"  reads: replicas 127.0.0.1:21311, r2 (one per client connection); the primary while none is up\n"},
		{name: "route bad file", args: []string{"-c", bad, "--route", "foo"}, code: 1, stdout: "",
			stderrHas: ":5: pool \"a\": servers[0]: weight 0: must be > 0\n"},

		{name: "version", args: []string{"-V"}, code: 0, stdoutHas: "cacheproxy ", stderr: ""},
		{name: "help", args: []string{"--help"}, code: 0, stdoutHas: "\n      --route string ", stderr: ""},
		{name: "help short", args: []string{"-h"}, code: 0, stdoutHas: "Usage: cacheproxy [-c FILE]", stderr: ""},
		{name: "nutcracker.yml stats off", args: []string{"-t", "-c", placement, "-s", "0"}, code: 0,
			stdoutHas: "syntax is ok\npools 2\n", stderr: ""},
		{name: "nutcracker.yml stats address", args: []string{"-t", "-c", placement, "-a", "0.0.0.0"}, code: 0,
			stdoutHas: "syntax is ok\nstats 0.0.0.0:22222\npools 2\n", stderr: ""},
		{name: "nutcracker.yml default stats collides", args: []string{"-t", "-c", statsPool}, code: 1, stdout: "",
			stderr: "with the default stats listener 127.0.0.1:22222 (nutcracker's port; -s changes it, -s 0 turns it off):\n" +
				statsPool + ":2: pool \"a\": listen: 127.0.0.1:22222 is also the listen address of stats.listen\n" +
				"cacheproxy: configuration file '" + statsPool + "' syntax is invalid\n"},
		{name: "mis-indented servers", args: []string{"-t", "-c", misindented}, code: 1, stdout: "",
			stderr: misindented + ":5: pool \"a\": servers: list item indented 2 spaces where the first item has 3 spaces: indent every item alike\n" +
				"cacheproxy: configuration file '" + misindented + "' syntax is invalid\n"},
		{name: "unknown flag", args: []string{"-x"}, code: 2, stdout: "", stderrHas: "cacheproxy: unknown shorthand flag: 'x' in -x\nUsage: cacheproxy"},
		{name: "daemonize refused", args: []string{"-d", "-c", placement}, code: 2, stdout: "", stderrHas: "-d (daemonize) is not supported"},
		{name: "nutcracker -m accepted", args: []string{"-t", "-m", "512", "-c", placement}, code: 0, stdoutHas: "syntax is ok"},
		{name: "stray argument", args: []string{"-c", placement, "extra"}, code: 2, stdout: "", stderrHas: "cacheproxy: unexpected argument \"extra\"\n"},
		{name: "-t with --route", args: []string{"-t", "--route", "k", "-c", placement}, code: 2, stdout: "",
			stderr: "cacheproxy: -t and --route do not go together\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr, nil)
			if code != tc.code {
				t.Errorf("exit: got %d; want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if tc.stdoutHas != "" {
				if !strings.Contains(stdout.String(), tc.stdoutHas) {
					t.Errorf("stdout: got %q; want it to contain %q", stdout.String(), tc.stdoutHas)
				}
			} else if got := stdout.String(); got != tc.stdout {
				t.Errorf("stdout:\ngot  %q\nwant %q", got, tc.stdout)
			}
			if tc.stderrHas != "" {
				if !strings.Contains(stderr.String(), tc.stderrHas) {
					t.Errorf("stderr: got %q; want it to contain %q", stderr.String(), tc.stderrHas)
				}
			} else if got := stderr.String(); got != tc.stderr {
				t.Errorf("stderr:\ngot  %q\nwant %q", got, tc.stderr)
			}
		})
	}
}

func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		v    int
		want string
	}{{0, "ERROR"}, {3, "ERROR"}, {4, "WARN"}, {5, "INFO"}, {6, "INFO"}, {7, "DEBUG"}, {11, "DEBUG"}} {
		if got := logLevel(tc.v).String(); got != tc.want {
			t.Errorf("logLevel(%d): got %q; want %q", tc.v, got, tc.want)
		}
	}
}

func TestEnvironmentOverridesFileButNotFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(path, []byte("pools:\n  p:\n    listen: 127.0.0.1:22121\n    servers: [\"127.0.0.1:11211:1\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CACHEPROXY_CONF_FILE", path)
	t.Setenv("CACHEPROXY_ADMIN", "127.0.0.1:9999")
	var out, errb bytes.Buffer
	if code := run([]string{"-t"}, &out, &errb, nil); code != 0 {
		t.Fatalf("-t with CACHEPROXY_CONF_FILE: exit %d; stderr %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "admin 127.0.0.1:9999") {
		t.Fatalf("CACHEPROXY_ADMIN not applied: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"-t", "--admin", "127.0.0.1:9998"}, &out, &errb, nil); code != 0 || !strings.Contains(out.String(), "admin 127.0.0.1:9998") {
		t.Fatalf("--admin must win over CACHEPROXY_ADMIN: exit %d: %s", code, out.String())
	}
}

// notFoundResolver says no name resolves, naming a resolver address that a
// client must never see.
type notFoundResolver struct{}

func (notFoundResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.9.9.9:53", IsNotFound: true}
}

func TestTestConfWarnsUnresolvable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - cache1.example:11211:1\n   - 127.0.0.1:11212:1 two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-t", "-c", path}, &stdout, &stderr, notFoundResolver{}); code != 0 {
		t.Errorf("exit: got %d; want 0 (a warning only)", code)
	}
	want := "warning: " + path + `:4: pool "a": servers[0]: server "cache1.example": host "cache1.example" does not resolve (requests to it fail until it resolves): lookup cache1.example on 10.9.9.9:53: no such host` + "\n"
	if got := stderr.String(); got != want {
		t.Errorf("stderr:\ngot  %q\nwant %q", got, want)
	}
	if !strings.HasPrefix(stdout.String(), "cacheproxy: configuration file '"+path+"' syntax is ok\n") {
		t.Errorf("stdout: got %q; want syntax is ok", stdout.String())
	}
}
