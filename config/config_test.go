package config

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// readmeSample is a nutcracker.yml in the shape of the example in
// twemproxy's README: several pools, redis and memcache, names, a unix
// socket listener and unix socket servers.
const readmeSample = `alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:6379:1

beta:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  auto_eject_hosts: false
  timeout: 400
  redis: true
  servers:
   - 127.0.0.1:6380:1 server1
   - 127.0.0.1:6381:1 server2
   - 127.0.0.1:6382:1 server3
   - 127.0.0.1:6383:1 server4

gamma:
  listen: 127.0.0.1:22123
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  backlog: 1024
  preconnect: true
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  servers:
   - 127.0.0.1:11212:1
   - 127.0.0.1:11213:1

delta:
  listen: 127.0.0.1:22124
  hash: fnv1a_64
  distribution: ketama
  timeout: 100
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:11214:1
   - 127.0.0.1:11215:1
   - 127.0.0.1:11216:1

omega:
  listen: /tmp/gamma 0666
  hash: hsieh
  distribution: ketama
  auto_eject_hosts: false
  servers:
   - /tmp/memcached.sock:1

sigma:
  listen: 127.0.0.1:22125
  hash: murmur
  distribution: modula
  redis: true
  redis_auth: secret
  redis_db: 3
  server_connections: 4
  servers:
   - 127.0.0.1:11211:2
   - 10.0.0.2:11211:1 named
`

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "conf.yml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

func TestLoadReadmeSample(t *testing.T) {
	path := writeFile(t, readmeSample)
	cfg, warns, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warns) != 1 || warns[0].Key != "backlog" {
		t.Errorf("warnings: got %q; want one, for backlog (accepted, not applied)", warns)
	}
	if cfg.File != path {
		t.Errorf("File: got %q; want %q", cfg.File, path)
	}
	var names []string
	for _, p := range cfg.Pools {
		names = append(names, p.Name)
	}
	if got, want := strings.Join(names, " "), "alpha beta delta gamma omega sigma"; got != want {
		t.Errorf("pools: got %q; want %q", got, want)
	}
	if cfg.Admin.Listen != "" || cfg.Stats.Listen != "" {
		t.Errorf("admin, stats: got %q, %q; want both empty", cfg.Admin.Listen, cfg.Stats.Listen)
	}

	alpha := NewPool("alpha", ProtocolRedis)
	alpha.Listen = "127.0.0.1:22121"
	alpha.AutoEjectHosts = true
	alpha.ServerRetryTimeout = 2 * time.Second
	alpha.ServerFailureLimit = 1
	alpha.Servers = []Server{{Name: "127.0.0.1:6379", Addr: "127.0.0.1:6379", Network: "tcp", Weight: 1}}

	gamma := NewPool("gamma", ProtocolMemcache)
	gamma.Listen = "127.0.0.1:22123"
	gamma.Timeout = 400 * time.Millisecond
	gamma.Backlog = 1024
	gamma.Preconnect = true
	gamma.AutoEjectHosts = true
	gamma.ServerRetryTimeout = 2 * time.Second
	gamma.ServerFailureLimit = 3
	gamma.Servers = []Server{
		{Name: "127.0.0.1:11212", Addr: "127.0.0.1:11212", Network: "tcp", Weight: 1},
		{Name: "127.0.0.1:11213", Addr: "127.0.0.1:11213", Network: "tcp", Weight: 1},
	}

	omega := NewPool("omega", ProtocolMemcache)
	omega.Listen = "/tmp/gamma 0666"
	omega.Hash = "hsieh"
	omega.Servers = []Server{{Name: "/tmp/memcached.sock:", Addr: "/tmp/memcached.sock", Network: "unix", Weight: 1}}

	sigma := NewPool("sigma", ProtocolRedis)
	sigma.Listen = "127.0.0.1:22125"
	sigma.Hash = "murmur"
	sigma.Distribution = "modula"
	sigma.RedisAuth = "secret"
	sigma.RedisDB = 3
	sigma.ServerConnections = 4
	sigma.Servers = []Server{
		{Name: "127.0.0.1", Addr: "127.0.0.1:11211", Network: "tcp", Weight: 2},
		{Name: "named", Addr: "10.0.0.2:11211", Network: "tcp", Weight: 1},
	}

	for _, want := range []Pool{alpha, gamma, omega, sigma} {
		got := cfg.Pool(want.Name)
		if got == nil {
			t.Errorf("pool %q missing", want.Name)
			continue
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("pool %q:\ngot  %+v\nwant %+v", want.Name, *got, want)
		}
	}
	beta := cfg.Pool("beta")
	if beta.HashTag != "{}" || beta.Timeout != 400*time.Millisecond || len(beta.Servers) != 4 || beta.Servers[3].Name != "server4" {
		t.Errorf("beta: got %+v", *beta)
	}
	if l, err := ParseListen(omega.Listen); err != nil || l != (ListenAddr{Network: "unix", Addr: "/tmp/gamma", Perm: 0o666}) {
		t.Errorf("ParseListen(%q): got %+v, %v", omega.Listen, l, err)
	}

	// The sample is a real nutcracker.yml: twemproxy itself accepts it.
	if code, out := nutcrackerTest(t, path); code != 0 {
		t.Errorf("nutcracker -t: exit %d; want 0\n%s", code, out)
	}
}

// nutcrackerTest runs twemproxy's own configuration check on path.
func nutcrackerTest(t *testing.T, path string) (int, string) {
	t.Helper()
	bin := testserver.Require(t, "nutcracker")
	out, err := exec.Command(bin, "-t", "-c", path).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run nutcracker -t: %v", err)
	}
	return 0, string(out)
}

const nativeSample = `# native shape
admin:
  listen: 127.0.0.1:9121
stats:
  listen: 127.0.0.1:22222
pools:
  Sessions:
    listen: 127.0.0.1:22121
    protocol: memcache
    hash: murmur
    distribution: ketama
    timeout: 400ms
    server_retry_timeout: 1500
    servers:
      - 127.0.0.1:11211:1 mc1
      - name: mc2
        addr: 127.0.0.1:11212
      - addr: "[::1]:11213"
        weight: 3
    limits:
      max_value_size: 2MiB
      max_client_buffer: 16MiB
      max_clients: 1000
  store:
    listen: 127.0.0.1:6390
    protocol: redis
    distribution: jump
    read_policy: prefer_replica
    servers:
      - name: shard1
        addr: 127.0.0.1:6379
        replicas: [127.0.0.1:6380, {name: r2, addr: /tmp/r.sock}]
      - addr: 127.0.0.1:11211
`

func TestLoadNative(t *testing.T) {
	cfg, warns, err := Load(writeFile(t, nativeSample))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: got %q; want none", warns)
	}
	if cfg.Admin.Listen != "127.0.0.1:9121" || cfg.Stats.Listen != "127.0.0.1:22222" {
		t.Errorf("admin, stats: got %q, %q", cfg.Admin.Listen, cfg.Stats.Listen)
	}
	if len(cfg.Pools) != 2 || cfg.Pools[0].Name != "Sessions" || cfg.Pools[1].Name != "store" {
		t.Fatalf("pools: got %+v; want Sessions (case kept) and store", cfg.Pools)
	}
	s := NewPool("Sessions", ProtocolMemcache)
	s.Listen = "127.0.0.1:22121"
	s.Hash = "murmur"
	s.Timeout = 400 * time.Millisecond
	s.ServerRetryTimeout = 1500 * time.Millisecond
	s.Limits.MaxValueSize = 2 << 20
	s.Limits.MaxClientBuffer = 16 << 20
	s.Limits.MaxClients = 1000
	s.Servers = []Server{
		{Name: "mc1", Addr: "127.0.0.1:11211", Network: "tcp", Weight: 1},
		{Name: "mc2", Addr: "127.0.0.1:11212", Network: "tcp", Weight: 1},
		{Name: "[::1]:11213", Addr: "[::1]:11213", Network: "tcp", Weight: 3},
	}
	if !reflect.DeepEqual(cfg.Pools[0], s) {
		t.Errorf("Sessions:\ngot  %+v\nwant %+v", cfg.Pools[0], s)
	}
	r := NewPool("store", ProtocolRedis)
	r.Listen = "127.0.0.1:6390"
	r.Distribution = "jump"
	r.ReadPolicy = ReadPreferReplica
	r.Servers = []Server{
		{Name: "shard1", Addr: "127.0.0.1:6379", Network: "tcp", Weight: 1, Replicas: []Replica{NewReplica("127.0.0.1:6380"), {Name: "r2", Addr: "/tmp/r.sock", Network: "unix"}}},
		{Name: "127.0.0.1", Addr: "127.0.0.1:11211", Network: "tcp", Weight: 1},
	}
	if !reflect.DeepEqual(cfg.Pools[1], r) {
		t.Errorf("store:\ngot  %+v\nwant %+v", cfg.Pools[1], r)
	}
	want := []hashring.Server{{Name: "mc1", Weight: 1}, {Name: "mc2", Weight: 1}, {Name: "[::1]:11213", Weight: 3}}
	if got := cfg.Pools[0].RingServers(); !reflect.DeepEqual(got, want) {
		t.Errorf("RingServers: got %+v; want %+v", got, want)
	}
}

// problems renders an error's problems without the file name (a temp path),
// each as "line: rest".
func problems(t *testing.T, err error, file string) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T): want *config.Error", err, err)
	}
	var out []string
	for _, p := range e.Problems {
		if p.File != file {
			t.Errorf("problem %q: File got %q; want %q", p, p.File, file)
		}
		p.File = ""
		out = append(out, fmt.Sprintf("%d: %s", p.Line, p))
	}
	return out
}

func TestLoadBad(t *testing.T) {
	hashes := strings.Join(hashring.HashNames(), ", ")
	// twemproxyAccepts marks a file nutcracker -t passes that then fails
	// when nutcracker starts (we reject it up front).
	const twemproxyRejects, twemproxyAccepts, notTwemproxy = 1, 0, -1
	for _, tc := range []struct {
		name string
		text string
		want []string
		// twemproxy is nutcracker -t's exit code for the same file, so the
		// table also checks that we reject what twemproxy rejects.
		twemproxy int
	}{
		{"unknown hash", "a:\n  listen: 127.0.0.1:22121\n  hash: fnv2\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": hash: unknown hash "fnv2" (want one of ` + hashes + `)`}, twemproxyRejects},
		{"unknown distribution", "a:\n  listen: 127.0.0.1:22121\n  distribution: ring\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": distribution: unknown distribution "ring" (want one of ketama, modula, random, jump)`}, twemproxyRejects},
		{"server without weight", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211\n",
			[]string{`4: pool "a": servers[0]: malformed server "127.0.0.1:11211": want host:port:weight [name] or /path/to.sock:weight [name]`}, twemproxyRejects},
		{"server bad port", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:99999:1\n",
			[]string{`4: pool "a": servers[0]: malformed server "127.0.0.1:99999:1": want host:port:weight [name] or /path/to.sock:weight [name] (port "99999": want 1 to 65535)`}, twemproxyRejects},
		{"server weight word", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:x\n",
			[]string{`4: pool "a": servers[0]: malformed server "127.0.0.1:11211:x": want host:port:weight [name] or /path/to.sock:weight [name] (weight "x" is not an integer)`}, twemproxyRejects},
		{"weight zero", "sessions:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:11212:1\n   - 127.0.0.1:11213:0\n",
			[]string{`6: pool "sessions": servers[2]: weight 0: must be > 0`}, twemproxyRejects},
		{"weight negative", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:-2\n",
			[]string{`4: pool "a": servers[0]: weight -2: must be > 0`}, twemproxyRejects},
		{"duplicate names by the 11211 rule", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:11212:1 127.0.0.1\n",
			[]string{`5: pool "a": servers[1]: duplicate server name "127.0.0.1" (also servers[0]); names decide placement and must be unique`}, twemproxyRejects},
		{"duplicate given names", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11212:1 x\n   - 127.0.0.1:11213:1 y\n   - 127.0.0.1:11214:1 x\n",
			[]string{`6: pool "a": servers[2]: duplicate server name "x" (also servers[0]); names decide placement and must be unique`}, twemproxyRejects},
		{"missing listen", "a:\n  hash: md5\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`1: pool "a": listen: missing: every pool needs a listen address`}, twemproxyRejects},
		{"duplicate listen", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: 127.0.0.1:22121 is also the listen address of pool "a"`}, twemproxyRejects},
		{"wildcard and loopback listen", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: 0.0.0.0:22121\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: 0.0.0.0:22121 overlaps 127.0.0.1:22121, the listen address of pool "a" (0.0.0.0:22121 binds the port on every IPv4 address)`}, twemproxyAccepts},
		{"loopback after wildcard listen", "a:\n  listen: 0.0.0.0:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: 127.0.0.1:22121 overlaps 0.0.0.0:22121, the listen address of pool "a" (0.0.0.0:22121 binds the port on every IPv4 address)`}, twemproxyAccepts},
		{"IPv6 wildcard and loopback listen", "a:\n  listen: ::1:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: :::22121\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: [::]:22121 overlaps [::1]:22121, the listen address of pool "a" ([::]:22121 binds the port on every IPv6 address)`}, twemproxyAccepts},
		{"IPv4-mapped listen", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: \"[::ffff:127.0.0.1]:22121\"\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: [::ffff:127.0.0.1]:22121 is the same address as 127.0.0.1:22121, the listen address of pool "a"`}, notTwemproxy},
		{"same host name listen", "a:\n  listen: LocalHost:22121\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: localhost:22121\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: localhost:22121 is the same address as LocalHost:22121, the listen address of pool "a"`}, notTwemproxy},
		{"duplicate unix listen", "a:\n  listen: /tmp/cacheproxy-test.sock\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: /tmp//cacheproxy-test.sock 0666\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`6: pool "b": listen: /tmp//cacheproxy-test.sock is the same address as /tmp/cacheproxy-test.sock, the listen address of pool "a"`}, twemproxyAccepts},
		{"bad listen port", "a:\n  listen: 127.0.0.1:0\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`2: pool "a": listen: "127.0.0.1:0": port "0": want 1 to 65535`}, twemproxyRejects},
		{"bad duration", "a:\n  listen: 127.0.0.1:22121\n  timeout: 4 seconds\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": timeout: bad duration "4 seconds": want integer milliseconds or a duration such as 400ms`}, twemproxyRejects},
		{"negative duration", "a:\n  listen: 127.0.0.1:22121\n  server_retry_timeout: -5\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": server_retry_timeout: -5ms: must be >= 0`}, twemproxyRejects},
		{"unknown key", "a:\n  listen: 127.0.0.1:22121\n  listn: 127.0.0.1:22122\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": listn: unknown key`}, twemproxyRejects},
		{"native key in nutcracker shape", "a:\n  listen: 127.0.0.1:22121\n  protocol: redis\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": protocol: unknown key in a nutcracker.yml file (cacheproxy's own keys need the native shape: put the pools under pools:)`}, twemproxyRejects},
		{"hash_tag one char", "a:\n  listen: 127.0.0.1:22121\n  hash_tag: \"{\"\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": hash_tag: "{": must be exactly two characters, such as "{}"`}, twemproxyRejects},
		{"redis_db negative", "a:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_db: -1\n  servers:\n   - 127.0.0.1:6379:1\n",
			[]string{`4: pool "a": redis_db: -1: must be >= 0`}, twemproxyRejects},
		{"server_connections zero", "a:\n  listen: 127.0.0.1:22121\n  server_connections: 0\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": server_connections: 0: must be > 0`}, twemproxyRejects},
		{"bool", "a:\n  listen: 127.0.0.1:22121\n  preconnect: yes\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": preconnect: "yes": want true or false`}, twemproxyRejects},
		{"key twice", "a:\n  listen: 127.0.0.1:22121\n  hash: md5\n  hash: murmur\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`4: pool "a": hash: given twice (first on line 3)`}, twemproxyRejects},
		{"no servers", "a:\n  listen: 127.0.0.1:22121\n  hash: md5\n",
			[]string{`1: pool "a": servers: none: a pool needs at least one server`}, twemproxyRejects},
		{"servers not a list", "a:\n  listen: 127.0.0.1:22121\n  servers: 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": servers: must be a list of servers`}, twemproxyRejects},
		{"every problem at once", "b:\n  listen: 127.0.0.1:22122\n  hash: nope\n  servers:\n   - 127.0.0.1:11211:0\n   - bad\na:\n  listen: 127.0.0.1:22122\n  colour: red\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{
				`2: pool "b": listen: 127.0.0.1:22122 is also the listen address of pool "a"`,
				`3: pool "b": hash: unknown hash "nope" (want one of ` + hashes + `)`,
				`5: pool "b": servers[0]: weight 0: must be > 0`,
				`6: pool "b": servers[1]: malformed server "bad": want host:port:weight [name] or /path/to.sock:weight [name]`,
				`9: pool "a": colour: unknown key`,
			}, twemproxyRejects},
		{"empty file", "", []string{`0: the file is empty: no pools`}, notTwemproxy},
		{"yaml syntax", "a:\n  listen: [\n", []string{`2: YAML: did not find expected node content`}, twemproxyRejects},
		{"two documents", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n---\nb: {}\n",
			[]string{`5: a second YAML document: the file must hold exactly one`}, twemproxyRejects},
		{"top level list", "- a\n", []string{`1: the top level must be a mapping: pool names to pools (nutcracker.yml), or a pools: section`}, notTwemproxy},

		// The native shape.
		{"native unknown top-level key", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers: [127.0.0.1:11211:1]\nlogging: {}\n",
			[]string{`5: logging: unknown key (the top level of the native shape has admin, stats, max_memory and pools)`}, notTwemproxy},
		{"native protocol conflicts with redis", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: memcache\n    redis: true\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`5: pool "a": redis: redis: true conflicts with protocol: memcache`}, notTwemproxy},
		{"native unknown protocol", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: http\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": protocol: "http": want memcache or redis`}, notTwemproxy},
		{"native server map without addr", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - name: x\n",
			[]string{`5: pool "a": servers[0]: addr is missing (server "x" without addr is a Sentinel master, and the pool has no sentinels)`}, notTwemproxy},
		{"sentinel master with replicas", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    sentinels: [127.0.0.1:26379]\n    servers:\n      - name: m1\n        replicas: [127.0.0.1:6380]\n",
			[]string{`7: pool "a": servers[0].replicas: server "m1" is a Sentinel master: its replicas are learnt from the sentinels, not configured`}, notTwemproxy},
		{"sentinels on memcache", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    sentinels: [127.0.0.1:26379]\n    servers:\n      - name: m1\n",
			[]string{`4: pool "a": sentinels: only a redis pool can follow Sentinels`}, notTwemproxy},
		{"sentinels and role_check", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    role_check: 1s\n    sentinels: [127.0.0.1:26379, nope]\n    servers:\n      - name: m1\n",
			[]string{`5: pool "a": role_check: a pool follows Sentinels or polls ROLE, not both: remove role_check or sentinels`,
				`6: pool "a": sentinels: "nope": want host:port`}, notTwemproxy},
		{"sentinel_auth bad", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    sentinels: [127.0.0.1:26379]\n    sentinel_auth: {user: u, pass: p}\n    servers:\n      - name: m1\n",
			[]string{`6: pool "a": sentinel_auth.pass: unknown key (sentinel_auth has user and password)`,
				`6: pool "a": sentinel_auth: user "u" without a password`}, notTwemproxy},
		{"cluster on memcache", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    cluster: true\n    servers: [127.0.0.1:7000:1]\n",
			[]string{`4: pool "a": cluster: only a redis pool can be a Redis Cluster client`}, notTwemproxy},
		{"cluster with others", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    cluster: true\n    cluster_refresh: 0s\n" +
			"    distribution: jump\n    redis_db: 2\n    read_policy: replica\n    role_check: 1s\n    servers:\n      - {addr: 127.0.0.1:7000, replicas: [127.0.0.1:7001]}\n",
			[]string{`6: pool "a": cluster_refresh: 0s: must be > 0`,
				`7: pool "a": distribution: jump: a cluster pool places keys by Redis Cluster hash slot; remove distribution`,
				`8: pool "a": redis_db: 2: Redis Cluster has database 0 only`,
				`10: pool "a": role_check: a cluster pool learns its masters from the cluster: remove role_check or cluster`,
				`12: pool "a": servers[0].replicas: a cluster pool learns replicas from the cluster: list seed nodes only`}, notTwemproxy},
		{"cluster in a nutcracker file", "a:\n  listen: 127.0.0.1:22121\n  redis: true\n  cluster: true\n  servers:\n   - 127.0.0.1:7000:1\n",
			[]string{`4: pool "a": cluster: unknown key in a nutcracker.yml file (cacheproxy's own keys need the native shape: put the pools under pools:)`}, notTwemproxy},
		{"discovery on redis", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    discovery: {endpoint: cfg.example:11211}\n",
			[]string{`5: pool "a": discovery: only a memcache pool can follow ElastiCache auto discovery`}, notTwemproxy},
		{"discovery bad endpoint and interval", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    discovery:\n      endpoint: nope\n      interval: 0s\n",
			[]string{`5: pool "a": discovery.endpoint: "nope": want host:port`, `6: pool "a": discovery.interval: 0s: must be > 0`}, notTwemproxy},
		{"discovery without endpoint", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    discovery: {interval: 5s, port: 1}\n",
			[]string{`2: pool "a": servers: none: a pool needs at least one server`, `4: pool "a": discovery.port: unknown key (discovery has endpoint and interval)`,
				`4: pool "a": discovery.endpoint: missing: the cluster's configuration endpoint, host:port`}, notTwemproxy},
		{"discovery in a nutcracker file", "a:\n  listen: 127.0.0.1:22121\n  discovery: {endpoint: cfg.example:11211}\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": discovery: unknown key in a nutcracker.yml file (cacheproxy's own keys need the native shape: put the pools under pools:)`}, notTwemproxy},
		{"negative role_check", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    role_check: -1s\n    servers:\n      - 127.0.0.1:6379:1\n",
			[]string{`5: pool "a": role_check: -1s: must be >= 0 (0: off)`}, notTwemproxy},
		{"native server map unknown key", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - addr: 127.0.0.1:6379\n        port: 1\n",
			[]string{`6: pool "a": servers[0].port: unknown key (a server has name, addr, weight and replicas)`}, notTwemproxy},
		{"native bad replica", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [127.0.0.1]\n",
			[]string{`5: pool "a": servers[0].replicas[0]: "127.0.0.1": want host:port ([host]:port for IPv6) or a socket path`}, notTwemproxy},
		{"native duplicate replica name", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [{name: r1, addr: 127.0.0.1:6380}, {name: r1, addr: 127.0.0.1:6381}]\n",
			[]string{`5: pool "a": servers[0].replicas[1]: duplicate replica name "r1" (also replicas[0])`}, notTwemproxy},
		{"native replica unknown key", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [{addr: 127.0.0.1:6380, weight: 2}]\n",
			[]string{`6: pool "a": servers[0].replicas[0].weight: unknown key (a replica has name and addr)`}, notTwemproxy},
		{"native replica without addr", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [{name: r1}]\n",
			[]string{`6: pool "a": servers[0].replicas[0]: addr is missing`}, notTwemproxy},
		{"native read_policy replica without replicas", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    read_policy: replica\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [127.0.0.1:6380]\n      - addr: 127.0.0.1:6381\n",
			[]string{`5: pool "a": read_policy: replica: servers[1] (127.0.0.1:6381) has no replicas to read from`}, notTwemproxy},
		{"native unknown read_policy", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    read_policy: nearest\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": read_policy: "nearest": want one of primary, prefer_primary, replica, prefer_replica, any`}, notTwemproxy},
		{"native write_policy all on redis", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    write_policy: all\n    servers:\n      - addr: 127.0.0.1:6379\n        replicas: [127.0.0.1:6380]\n",
			[]string{`5: pool "a": write_policy: all: a Redis pool writes its primaries only (Redis replicates itself); want primary`}, notTwemproxy},
		{"native unknown write_policy", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    write_policy: quorum\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": write_policy: "quorum": want one of primary, all, all_async`}, notTwemproxy},
		{"native limits", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers: [127.0.0.1:11211:1]\n    limits:\n      max_key_length: 300\n      max_in_flight: 0\n      max_value_size: 1GiB\n      max_clients: lots\n      max_conns: 5\n",
			[]string{
				`5: pool "a": limits.max_client_buffer: 67108864: must be at least max_value_size + max_key_length + 1024 = 1073743148, so the largest request fits`,
				`6: pool "a": limits.max_key_length: 300: the memcached protocol allows at most 250`,
				`7: pool "a": limits.max_in_flight: 0: must be > 0`,
				`9: pool "a": limits.max_clients: "lots": want an integer, optionally followed by KiB, MiB or GiB`,
				`10: pool "a": limits.max_conns: unknown key (want one of max_key_length, max_value_size, max_multibulk, max_in_flight, max_client_buffer, max_clients)`,
			}, notTwemproxy},
		{"native listen reused by admin", "admin:\n  listen: 127.0.0.1:22121\npools:\n  a:\n    listen: 127.0.0.1:22121\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`5: pool "a": listen: 127.0.0.1:22121 is also the listen address of admin.listen`}, notTwemproxy},
		{"native admin wildcard is dual-stack", "admin:\n  listen: 0.0.0.0:22121\npools:\n  a:\n    listen: \"[::1]:22121\"\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`5: pool "a": listen: [::1]:22121 overlaps 0.0.0.0:22121, the listen address of admin.listen (admin.listen opens 0.0.0.0:22121 dual-stack: it binds the port on every IPv4 and IPv6 address)`}, notTwemproxy},
		{"native pool under the admin's dual-stack wildcard", "admin:\n  listen: 0.0.0.0:22121\npools:\n  a:\n    listen: \"[::1]:22121\"\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`5: pool "a": listen: [::1]:22121 overlaps 0.0.0.0:22121, the listen address of admin.listen (admin.listen opens 0.0.0.0:22121 dual-stack: it binds the port on every IPv4 and IPv6 address)`}, notTwemproxy},
		{"native admin unknown key", "admin:\n  port: 9121\npools:\n  a:\n    listen: 127.0.0.1:22121\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`2: admin.port: unknown key (admin has listen, token, token_file and pprof)`}, notTwemproxy},
		{"native pools not a map", "pools: [a]\n", []string{`1: pools: must be a mapping of pool names to pools`, `0: no pools`}, notTwemproxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.text)
			cfg, _, err := Load(path)
			if err == nil {
				t.Fatalf("Load: got %+v, no error; want %q", cfg, tc.want)
			}
			if cfg != nil {
				t.Errorf("Load: got a config with an error")
			}
			got := problems(t, err, path)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\ngot  %q\nwant %q", got, tc.want)
			}
			if !strings.Contains(err.Error(), path+":") {
				t.Errorf("error %q does not name the file", err)
			}
			if tc.twemproxy != notTwemproxy {
				if code, out := nutcrackerTest(t, path); code != tc.twemproxy {
					t.Errorf("nutcracker -t: got exit %d; want %d\n%s", code, tc.twemproxy, out)
				}
			}
		})
	}
}

func TestLoadWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"client_connections", "a:\n  listen: 127.0.0.1:22121\n  client_connections: 100\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": client_connections: accepted for twemproxy compatibility and ignored, as twemproxy ignores it`}},
		{"client_connections native", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    client_connections: 100\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": client_connections: accepted for twemproxy compatibility and ignored, as twemproxy ignores it; limits.max_clients caps clients`}},
		{"redis keys on memcache", "a:\n  listen: 127.0.0.1:22121\n  redis_auth: pw\n  redis_db: 2\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": redis_auth: ignored: this is a memcache pool`, `4: pool "a": redis_db: ignored: this is a memcache pool`}},
		{"weights under jump", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    distribution: jump\n    servers: [127.0.0.1:11211:1, 127.0.0.1:11212:2]\n",
			[]string{`5: pool "a": servers[1]: weight 2 is ignored by distribution jump`}},
		{"read policy without replicas", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    read_policy: any\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": read_policy: any has no effect: no server has replicas`}},
		{"ttl_jitter without hot keys", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    hot_keys:\n      ttl_jitter: 10%\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`5: pool "a": hot_keys.ttl_jitter: 10% is not applied: hot_keys.enabled is false`}},
		{"ttl_jitter with hot keys off", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    hot_keys: {enabled: false, ttl_jitter: 5%}\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": hot_keys.ttl_jitter: 5% is not applied: hot_keys.enabled is false`}},
		{"hash_tag in a cluster pool", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    cluster: true\n    hash_tag: \"{}\"\n    servers: [127.0.0.1:7000:1]\n",
			[]string{`6: pool "a": hash_tag: "{}" is ignored: a cluster pool hashes {tags} as Redis Cluster does`}},
		{"ttl_jitter 0 without hot keys", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    hot_keys: {ttl_jitter: 0%}\n    servers: [127.0.0.1:11211:1]\n",
			nil},
		{"write policy without replicas", "pools:\n  a:\n    listen: 127.0.0.1:22121\n    write_policy: all_async\n    read_repair: true\n    servers: [127.0.0.1:11211:1]\n",
			[]string{`4: pool "a": write_policy: all_async has no effect: no server has replicas`,
				`5: pool "a": read_repair: has no effect: the pool is not a replicated memcache pool (servers with replicas, write_policy all or all_async)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.text)
			cfg, warns, err := Load(path)
			if err != nil || cfg == nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, w := range warns {
				w.File = ""
				got = append(got, fmt.Sprintf("%d: %s", w.Line, w))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("warnings:\ngot  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yml")
	_, _, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load: got %v; want an error wrapping os.ErrNotExist", err)
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Server
	}{
		{"127.0.0.1:21211:1", Server{Name: "127.0.0.1:21211", Addr: "127.0.0.1:21211", Network: "tcp", Weight: 1}},
		{"127.0.0.1:11211:1", Server{Name: "127.0.0.1", Addr: "127.0.0.1:11211", Network: "tcp", Weight: 1}},
		{"cache.local:11211:5 mc1", Server{Name: "mc1", Addr: "cache.local:11211", Network: "tcp", Weight: 5}},
		{"::1:6379:2", Server{Name: "::1:6379", Addr: "[::1]:6379", Network: "tcp", Weight: 2}},
		{"[::1]:11211:1", Server{Name: "[::1]", Addr: "[::1]:11211", Network: "tcp", Weight: 1}},
		{"/tmp/mc.sock:1", Server{Name: "/tmp/mc.sock:", Addr: "/tmp/mc.sock", Network: "unix", Weight: 1}},
		{"/tmp/mc.sock:3 local", Server{Name: "local", Addr: "/tmp/mc.sock", Network: "unix", Weight: 3}},
		{"127.0.0.1:21211:0", Server{Name: "127.0.0.1:21211", Addr: "127.0.0.1:21211", Network: "tcp", Weight: 0}},
	} {
		got, err := ParseServer(tc.line)
		if err != nil {
			t.Errorf("ParseServer(%q): %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseServer(%q): got %+v; want %+v", tc.line, got, tc.want)
		}
	}
	for _, line := range []string{"", "127.0.0.1", "127.0.0.1:1", ":11211:1", "127.0.0.1:11211:1 ", "host:port:1",
		"/tmp/a:b.sock:1", "127.0.0.1:11211:1 two words", "127.0.0.1:11211:1.5"} {
		if s, err := ParseServer(line); err == nil {
			t.Errorf("ParseServer(%q): got %+v; want an error", line, s)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"400", 400 * time.Millisecond}, {"0", 0}, {"400ms", 400 * time.Millisecond}, {"1.5s", 1500 * time.Millisecond}, {"-5", -5 * time.Millisecond},
	} {
		if got, err := ParseDuration(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q): got %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "4 seconds", "400 ms", "99999999999999999"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): got %v; want an error", in, got)
		}
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	p := NewPool("mc", ProtocolMemcache)
	p.Listen = "127.0.0.1:22121"
	p.Servers = []Server{{Name: "a", Addr: "127.0.0.1:11211", Network: "tcp", Weight: 1}}
	c := &Config{Pools: []Pool{p}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Pools[0].Servers = append(c.Pools[0].Servers, Server{Name: "a", Addr: "db:1", Network: "udp", Weight: 1})
	c.Pools[0].Limits = Limits{}
	err := c.Validate()
	want := []string{
		`0: pool "mc": limits.max_key_length: 0: must be > 0`,
		`0: pool "mc": limits.max_value_size: 0: must be > 0`,
		`0: pool "mc": limits.max_multibulk: 0: must be > 0`,
		`0: pool "mc": limits.max_in_flight: 0: must be > 0`,
		`0: pool "mc": limits.max_client_buffer: 0: must be > 0`,
		`0: pool "mc": servers[1]: duplicate server name "a" (also servers[0]); names decide placement and must be unique`,
		`0: pool "mc": servers[1]: network "udp": want tcp or unix`,
	}
	if got := problems(t, err, ""); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\ngot  %q\nwant %q", got, want)
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "config.yaml", Line: 14, Pool: "sessions", Key: "servers[2]", Reason: "weight 0: must be > 0"}, `config.yaml:14: pool "sessions": servers[2]: weight 0: must be > 0`},
		{Problem{File: "config.yaml", Pool: "sessions", Key: "servers[2]", Reason: "weight 0: must be > 0"}, `config.yaml: pool "sessions": servers[2]: weight 0: must be > 0`},
		{Problem{File: "c.yml", Line: 2, Key: "admin.listen", Reason: "bad"}, `c.yml:2: admin.listen: bad`},
		{Problem{Reason: "no pools"}, `no pools`},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String: got %q; want %q", got, tc.want)
		}
	}
}

// FuzzParse checks that no input panics, and that whatever loads also
// passes Validate and builds a ring for every pool that lists servers (a
// discovery pool may list none: its ring is built from the first answer).
func FuzzParse(f *testing.F) {
	f.Add([]byte(readmeSample))
	f.Add([]byte(nativeSample))
	f.Add([]byte("a:\n  listen: 127.0.0.1:1\n  servers:\n   - /x:1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse("fuzz.yml", data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded, then Validate: %v", err)
		}
		for i := range cfg.Pools {
			if len(cfg.Pools[i].Servers) == 0 && cfg.Pools[i].Discovery.Endpoint != "" {
				continue
			}
			if _, err := cfg.Pools[i].Ring(); err != nil {
				t.Fatalf("loaded, then Ring: %v", err)
			}
		}
	})
}

// TestShippedConfig checks the repository's config.yaml: it loads without
// warnings and points at the backends deploy/run-local.sh starts.
func TestShippedConfig(t *testing.T) {
	cfg, warns, err := Load(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: got %q; want none", warns)
	}
	if want := (Admin{Listen: "127.0.0.1:9121"}); cfg.Admin != want {
		t.Errorf("admin: got %+v; want %+v (no token, pprof off)", cfg.Admin, want)
	}
	mc := cfg.Pool("mc")
	if mc == nil {
		t.Fatal("no pool mc")
	}
	got := fmt.Sprintf("%s %s %s %s %v %v", mc.Listen, mc.Protocol, mc.Hash, mc.Distribution, mc.Timeout, mc.AutoEjectHosts)
	if want := "127.0.0.1:22121 memcache murmur ketama 400ms true"; got != want {
		t.Errorf("mc: got %q; want %q", got, want)
	}
	rd := cfg.Pool("redis")
	if rd == nil {
		t.Fatal("no pool redis")
	}
	if got, want := fmt.Sprintf("%s %s", rd.Listen, rd.Protocol), "127.0.0.1:22122 redis"; got != want {
		t.Errorf("redis: got %q; want %q", got, want)
	}
	for _, tc := range []struct {
		p    *Pool
		want []string
	}{
		{mc, []string{"127.0.0.1:21211", "127.0.0.1:21212", "127.0.0.1:21213"}},
		{rd, []string{"127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"}},
	} {
		var addrs []string
		for _, s := range tc.p.Servers {
			addrs = append(addrs, s.Addr)
		}
		if !reflect.DeepEqual(addrs, tc.want) {
			t.Errorf("pool %s servers: got %q; want %q", tc.p.Name, addrs, tc.want)
		}
	}
	// Every default is spelled out: the file's limits equal the defaults.
	for _, p := range []*Pool{mc, rd} {
		if want := DefaultLimits(p.Protocol); p.Limits != want {
			t.Errorf("pool %s limits: got %+v; want the defaults %+v", p.Name, p.Limits, want)
		}
	}
}

func TestAllowCommands(t *testing.T) {
	path := writeFile(t, `pools:
  r:
    listen: 127.0.0.1:6390
    protocol: redis
    allow_commands: [FLUSHDB, config|get]
    servers: ["127.0.0.1:6379:1"]
  m:
    listen: 127.0.0.1:6391
    allow_commands: [flushdb]
    servers: ["127.0.0.1:11211:1"]
`)
	cfg, warns, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := strings.Join(cfg.Pool("r").AllowCommands, ","), "flushdb,config|get"; got != want {
		t.Errorf("allow_commands: got %q; want %q", got, want)
	}
	if len(warns) != 1 || warns[0].Pool != "m" || warns[0].Key != "allow_commands" {
		t.Errorf("warnings: got %q; want one for pool m allow_commands", warns)
	}
	bad := writeFile(t, "pools:\n  r:\n    listen: 127.0.0.1:6390\n    protocol: redis\n    allow_commands: flushdb\n    servers: [\"127.0.0.1:6379:1\"]\n")
	if _, _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "allow_commands: want a list") {
		t.Errorf("scalar allow_commands: got %v; want a 'want a list' error", err)
	}
}

func TestMaxMemory(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int64
		err  string
	}{
		{"max_memory: 256MiB\n", 256 << 20, ""},
		{"max_memory: 2GiB\n", 2 << 30, ""},
		{"", 0, ""},
		{"max_memory: 1000\n", 0, "max_memory: 1000: must be at least 1048576 (1MiB), or 0 for the default"},
		{"max_memory: lots\n", 0, `max_memory: "lots": want an integer, optionally followed by KiB, MiB or GiB`},
	} {
		src := tc.yaml + "pools:\n  mc:\n    listen: 127.0.0.1:22121\n    servers:\n      - 127.0.0.1:11211:1\n"
		cfg, _, err := Parse("t.yaml", []byte(src))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got error %v; want one containing %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if cfg.MaxMemory != tc.want {
			t.Errorf("%q: got MaxMemory %d; want %d", tc.yaml, cfg.MaxMemory, tc.want)
		}
	}
}

func TestDefaultMaxMemory(t *testing.T) {
	for _, tc := range []struct{ cgroup, want int64 }{
		{0, 1 << 30},
		{8 << 30, 1 << 30},
		{512 << 20, 256 << 20},
		{1 << 20, 1 << 20},
	} {
		if got := defaultMaxMemory(tc.cgroup); got != tc.want {
			t.Errorf("defaultMaxMemory(%d) = %d; want %d", tc.cgroup, got, tc.want)
		}
	}
}

func TestHotKeys(t *testing.T) {
	path := writeFile(t, `pools:
  m:
    listen: 127.0.0.1:6391
    hot_keys: {enabled: true}
    servers: ["127.0.0.1:11211:1"]
  n:
    listen: 127.0.0.1:6392
    hot_keys:
      enabled: true
      ttl: 250ms
      cache_size: 8MiB
      min_rate: 50.5
      ttl_jitter: 10%
    servers: ["127.0.0.1:11211:1"]
`)
	cfg, warns, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: got %q; want none", warns)
	}
	if got, want := cfg.Pool("m").HotKeys, (HotKeys{Enabled: true}); got != want {
		t.Errorf("m: got %+v; want %+v", got, want)
	}
	if got, want := cfg.Pool("n").HotKeys, (HotKeys{Enabled: true, TTL: 250 * time.Millisecond, CacheSize: 8 << 20, MinRate: 50.5, TTLJitter: 0.1}); got != want {
		t.Errorf("n: got %+v; want %+v", got, want)
	}
	for _, c := range []struct{ body, want string }{
		{"hot_keys: yes", "hot_keys: must be a mapping"},
		{"hot_keys: {enabled: maybe}", `hot_keys.enabled: "maybe": want true or false`},
		{"hot_keys: {size: 1}", "hot_keys.size: unknown key"},
		{"hot_keys: {ttl: -1s}", "hot_keys.ttl: -1s: must be >= 0"},
		{"hot_keys: {cache_size: 100}", "hot_keys.cache_size: 100: must be at least 65536"},
		{"hot_keys: {min_rate: fast}", `hot_keys.min_rate: "fast" is not a number`},
		{"hot_keys: {ttl_jitter: 80%}", "hot_keys.ttl_jitter: 80: must be between 0% and 50%"},
	} {
		bad := writeFile(t, "pools:\n  m:\n    listen: 127.0.0.1:6391\n    "+c.body+"\n    servers: [\"127.0.0.1:11211:1\"]\n")
		if _, _, err := Load(bad); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v; want an error containing %q", c.body, err, c.want)
		}
	}
}

// TestLoadSentinel: a Sentinel pool's keys load, and a server written with
// a name and no addr is a Sentinel master placed by its name.
func TestLoadSentinel(t *testing.T) {
	const text = `pools:
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    sentinels: [127.0.0.1:26379, "[::1]:26380"]
    sentinel_auth: {user: watcher, password: pw}
    read_policy: replica  # the replicas are learnt
    servers:
      - {name: m1}
      - {name: m2, weight: 2}
  q:
    listen: 127.0.0.1:22123
    protocol: redis
    role_check: 5s
    servers:
      - {name: s1, addr: redis-a:6379, replicas: [redis-b:6379]}
  p:
    listen: 127.0.0.1:22124
    protocol: redis
    sentinels: [127.0.0.1:26379]
    sentinel_auth: only-a-password
    servers:
      - {name: m1}
`
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	r := cfg.Pool("r")
	if want := []string{"127.0.0.1:26379", "[::1]:26380"}; !reflect.DeepEqual(r.Sentinels, want) {
		t.Fatalf("sentinels %q, want %q", r.Sentinels, want)
	}
	if r.SentinelAuth != (SentinelAuth{User: "watcher", Password: "pw"}) {
		t.Fatalf("sentinel_auth %+v", r.SentinelAuth)
	}
	want := []Server{{Name: "m1", Network: "tcp", Weight: 1}, {Name: "m2", Network: "tcp", Weight: 2}}
	if !reflect.DeepEqual(r.Servers, want) || !r.Servers[0].Followed() {
		t.Fatalf("servers %+v, want %+v", r.Servers, want)
	}
	if q := cfg.Pool("q"); q.RoleCheck != 5*time.Second || q.Servers[0].Followed() {
		t.Fatalf("pool q: role_check %v, followed %v", q.RoleCheck, q.Servers[0].Followed())
	}
	if p := cfg.Pool("p"); p.SentinelAuth != (SentinelAuth{Password: "only-a-password"}) {
		t.Fatalf("pool p: sentinel_auth %+v", p.SentinelAuth)
	}
	// Placement is by name: the same names with addresses make the same ring.
	withAddr := r.Clone()
	withAddr.Sentinels = nil
	withAddr.Servers[0].Addr, withAddr.Servers[1].Addr = "127.0.0.1:7001", "127.0.0.1:7002"
	r1, err1 := r.Ring()
	r2, err2 := withAddr.Ring()
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for i := 0; i < 1000; i++ {
		k := []byte(fmt.Sprintf("key:%d", i))
		if r1.Pick(k) != r2.Pick(k) {
			t.Fatalf("key %s placed differently once addresses are known", k)
		}
	}
	// A twemproxy file does not take the native keys.
	if _, _, err := Parse("n.yml", []byte("a:\n  listen: 127.0.0.1:22121\n  redis: true\n  sentinels: [127.0.0.1:26379]\n  servers:\n   - 127.0.0.1:6379:1\n")); err == nil {
		t.Fatal("a nutcracker.yml with sentinels loaded")
	}
}

func TestLoadDiscovery(t *testing.T) {
	const text = `pools:
  only:
    listen: 127.0.0.1:22122
    discovery: {endpoint: "mycluster.cfg.use1.cache.amazonaws.com:11211"}
  both:
    listen: 127.0.0.1:22123
    discovery:
      endpoint: 127.0.0.1:11311
      interval: 5s
    servers:
      - 127.0.0.1:11211:1
`
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	want := Discovery{Endpoint: "mycluster.cfg.use1.cache.amazonaws.com:11211", Interval: 60 * time.Second}
	if o := cfg.Pool("only"); o.Discovery != want || len(o.Servers) != 0 || !o.Discovery.Enabled() {
		t.Fatalf("pool only: %+v, %d servers", o.Discovery, len(o.Servers))
	}
	if b := cfg.Pool("both"); b.Discovery != (Discovery{Endpoint: "127.0.0.1:11311", Interval: 5 * time.Second}) || len(b.Servers) != 1 {
		t.Fatalf("pool both: %+v, %d servers", b.Discovery, len(b.Servers))
	}
}

func TestLoadCluster(t *testing.T) {
	const text = `pools:
  rc:
    listen: 127.0.0.1:22122
    protocol: redis
    cluster: true
    servers: [127.0.0.1:7000:1, 127.0.0.1:7001:1]
  fast:
    listen: 127.0.0.1:22123
    protocol: redis
    cluster: true
    cluster_refresh: 2s
    servers: [127.0.0.1:7000:1]
`
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	if p := cfg.Pool("rc"); !p.Cluster || p.ClusterRefresh != DefaultClusterRefresh || len(p.Servers) != 2 {
		t.Fatalf("pool rc: cluster %v refresh %v, %d servers", p.Cluster, p.ClusterRefresh, len(p.Servers))
	}
	if p := cfg.Pool("fast"); !p.Cluster || p.ClusterRefresh != 2*time.Second {
		t.Fatalf("pool fast: cluster %v refresh %v", p.Cluster, p.ClusterRefresh)
	}
	// A reload that changes them says so.
	next := cfg.Pool("rc").Clone()
	next.ClusterRefresh = time.Second
	var got []string
	for _, c := range diffPool(cfg.Pool("rc"), &next) {
		got = append(got, c.What)
	}
	if strings.Join(got, ",") != "cluster_refresh" {
		t.Errorf("diff: %v; want cluster_refresh", got)
	}
}
