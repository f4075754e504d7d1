package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// Validate checks c and returns an *Error listing every problem, or nil.
// Load calls it; call it yourself on a Config built or changed in code (for
// example after a flag overrides a listen address). It does not fill in
// defaults: start pools from NewPool for that.
func (c *Config) Validate() error {
	probs, _ := c.check()
	if len(probs) == 0 {
		return nil
	}
	slices.SortStableFunc(probs, func(a, b Problem) int { return byLine(a.Line, b.Line) })
	return &Error{Problems: probs}
}

// Warnings returns what Validate would not reject but deserves attention.
func (c *Config) Warnings() []Warning {
	_, warns := c.check()
	return warns
}

// checker collects problems for one Config.
type checker struct {
	c     *Config
	probs []Problem
	warns []Warning
}

func (v *checker) fail(pool, key, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.c.File, Line: v.c.pos.line(pool, key), Pool: pool, Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (v *checker) warn(pool, key, format string, args ...any) {
	v.warns = append(v.warns, Warning{File: v.c.File, Line: v.c.pos.line(pool, key), Pool: pool, Key: key, Reason: fmt.Sprintf(format, args...)})
}

// maxTokenFile bounds the admin token file read: a token is a line.
const maxTokenFile = 4096

// adminToken checks admin.token and admin.token_file and reads the file
// into Admin.Token.
func (v *checker) adminToken() {
	a := &v.c.Admin
	if a.TokenFile == "" {
		if strings.ContainsAny(a.Token, " \t\r\n") {
			v.fail("", "admin.token", "must not contain white space (it is sent as Authorization: Bearer <token>)")
		}
		return
	}
	if a.Token != "" {
		v.fail("", "admin.token_file", "set admin.token or admin.token_file, not both")
		return
	}
	f, err := os.Open(a.TokenFile)
	if err != nil {
		v.fail("", "admin.token_file", "%v", err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		v.fail("", "admin.token_file", "%s: %v", a.TokenFile, err)
		return
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case len(data) > maxTokenFile:
		v.fail("", "admin.token_file", "%s: longer than %d bytes (want one line, the token)", a.TokenFile, maxTokenFile)
	case tok == "":
		v.fail("", "admin.token_file", "%s: empty (want one line, the token)", a.TokenFile)
	case strings.ContainsAny(tok, " \t\r\n"):
		v.fail("", "admin.token_file", "%s: the token must be one word on one line", a.TokenFile)
	default:
		a.Token = tok
	}
}

func (c *Config) check() ([]Problem, []Warning) {
	v := &checker{c: c}
	if len(c.Pools) == 0 {
		v.fail("", "", "no pools")
	}
	// listeners holds every listen address so far, to catch two that
	// cannot both bind (see claim).
	listeners := &claims{report: func(pool, key, reason string) { v.fail(pool, key, "%s", reason) }}
	for _, s := range []struct{ key, listen string }{{"admin.listen", c.Admin.Listen}, {"stats.listen", c.Stats.Listen}} {
		if s.listen == "" {
			continue
		}
		l, err := ParseListen(s.listen)
		if err != nil || l.Network != "tcp" {
			v.fail("", s.key, "%q: want host:port", s.listen)
			continue
		}
		if l.Addr != s.listen {
			v.fail("", s.key, "%q: write it %s (IPv6 hosts bracketed, no others)", s.listen, l.Addr)
			continue
		}
		listeners.add("", s.key, newClaim(s.key, l, true)) // Go's net.Listen: a wildcard is dual-stack
	}
	v.adminToken()
	if c.MaxMemory != 0 && c.MaxMemory < MinMaxMemory {
		v.fail("", "max_memory", "%d: must be at least %d (1MiB), or 0 for the default", c.MaxMemory, MinMaxMemory)
	}
	names := map[string]bool{}
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.Name == "" {
			v.fail("", "", "pools[%d]: empty pool name", i)
		} else if names[p.Name] {
			v.fail(p.Name, "", "two pools have this name")
		}
		names[p.Name] = true
		if p.Listen == "" {
			v.fail(p.Name, "listen", "missing: every pool needs a listen address")
		} else if l, err := ParseListen(p.Listen); err != nil {
			v.fail(p.Name, "listen", "%v", err)
		} else if l.Network == "tcp" && l.Addr != p.Listen {
			// Load writes it so; a Config built in code may not have.
			v.fail(p.Name, "listen", "%q: write it %s (IPv6 hosts bracketed, no others)", p.Listen, l.Addr)
		} else {
			listeners.add(p.Name, "listen", newClaim(fmt.Sprintf("pool %q", p.Name), l, false))
		}
		v.pool(p)
	}
	return v.probs, v.warns
}

func (v *checker) pool(p *Pool) {
	before := len(v.probs)
	name := p.Name
	switch p.Protocol {
	case ProtocolMemcache, ProtocolRedis:
	default:
		v.fail(name, "protocol", "%q: want memcache or redis", p.Protocol)
	}
	if _, ok := hashring.Hash(p.Hash); !ok {
		v.fail(name, "hash", "unknown hash %q (want one of %s)", p.Hash, strings.Join(hashring.HashNames(), ", "))
	}
	if !slices.Contains(hashring.Distributions(), p.Distribution) {
		v.fail(name, "distribution", "unknown distribution %q (want one of %s)", p.Distribution, strings.Join(hashring.Distributions(), ", "))
	}
	if p.HashTag != "" && len(p.HashTag) != 2 {
		v.fail(name, "hash_tag", "%q: must be exactly two characters, such as \"{}\"", p.HashTag)
	}
	if p.Timeout < 0 {
		v.fail(name, "timeout", "%v: must be >= 0 (0 waits forever)", p.Timeout)
	}
	for _, f := range []struct {
		key string
		d   time.Duration
	}{{"client_idle_timeout", p.ClientIdleTimeout}, {"client_request_timeout", p.ClientRequestTimeout}} {
		if f.d != 0 && f.d < ClientTimeoutMin {
			v.fail(name, f.key, "%v: must be 0 (off) or at least %v (clients are checked once a second)", f.d, ClientTimeoutMin)
		}
	}
	if p.Warmup < 0 {
		v.fail(name, "warmup", "%v: must be >= 0", p.Warmup)
	} else if p.Warmup > 0 && p.Protocol != ProtocolMemcache {
		v.fail(name, "warmup", "%v: warm-up is for memcache pools only (a Redis pool's data moves with its servers)", p.Warmup)
	}
	if p.ServerRetryTimeout < 0 {
		v.fail(name, "server_retry_timeout", "%v: must be >= 0", p.ServerRetryTimeout)
	}
	if p.Backlog <= 0 {
		v.fail(name, "backlog", "%d: must be > 0", p.Backlog)
	}
	if p.ServerConnections <= 0 {
		v.fail(name, "server_connections", "%d: must be > 0", p.ServerConnections)
	}
	if p.ServerFailureLimit < 0 {
		v.fail(name, "server_failure_limit", "%d: must be >= 0", p.ServerFailureLimit)
	}
	if p.RedisDB < 0 {
		v.fail(name, "redis_db", "%d: must be >= 0", p.RedisDB)
	}
	if p.Protocol == ProtocolMemcache {
		if p.RedisAuth != "" {
			v.warn(name, "redis_auth", "ignored: this is a memcache pool")
		}
		if p.RedisDB > 0 {
			v.warn(name, "redis_db", "ignored: this is a memcache pool")
		}
		if len(p.AllowCommands) > 0 {
			v.warn(name, "allow_commands", "ignored: this is a memcache pool")
		}
	}
	v.redisAuth(p)
	v.limits(p)
	v.hotKeys(p)
	v.failover(p)
	v.discovery(p)
	v.tls(p)
	v.cluster(p)
	v.servers(p)
	if len(v.probs) == before && !v.c.pos.anyBad(name) && len(p.Servers) > 0 {
		// Anything the ring itself refuses that the checks above missed.
		_, err := hashring.New(hashring.Options{Distribution: p.Distribution, Hash: p.Hash, HashTag: p.HashTag, Servers: p.RingServers()})
		if err != nil {
			v.fail(name, "", "%v", err)
		}
	}
}

func (v *checker) limits(p *Pool) {
	l, name := p.Limits, p.Name
	for _, f := range []struct {
		key string
		n   int
	}{
		{"limits.max_key_length", l.MaxKeyLength},
		{"limits.max_value_size", l.MaxValueSize},
		{"limits.max_multibulk", l.MaxMultibulk},
		{"limits.max_in_flight", l.MaxInFlight},
		{"limits.max_client_buffer", l.MaxClientBuffer},
	} {
		if f.n <= 0 {
			v.fail(name, f.key, "%d: must be > 0", f.n)
		}
	}
	if l.MaxClients < 0 {
		v.fail(name, "limits.max_clients", "%d: must be >= 0 (0 is unlimited)", l.MaxClients)
	}
	if p.Protocol == ProtocolMemcache && l.MaxKeyLength > MemcacheMaxKeyLength {
		v.fail(name, "limits.max_key_length", "%d: the memcached protocol allows at most %d", l.MaxKeyLength, MemcacheMaxKeyLength)
	}
	if need := l.MaxValueSize + l.MaxKeyLength + 1024; l.MaxValueSize > 0 && l.MaxKeyLength > 0 && l.MaxClientBuffer > 0 && l.MaxClientBuffer < need {
		v.fail(name, "limits.max_client_buffer", "%d: must be at least max_value_size + max_key_length + 1024 = %d, so the largest request fits", l.MaxClientBuffer, need)
	}
}

func (v *checker) servers(p *Pool) {
	name := p.Name
	if len(p.Servers) == 0 && !p.Discovery.Enabled() && !v.c.pos.isBad(name, "servers") {
		v.fail(name, "servers", "none: a pool needs at least one server")
	}
	seen := map[string]int{}
	withReplicas := 0
	for i, s := range p.Servers {
		key := fmt.Sprintf("servers[%d]", i)
		if v.c.pos.isBad(name, key) {
			continue // already reported when the entry was parsed
		}
		switch {
		case s.Name == "":
			v.fail(name, key, "empty name")
		case strings.ContainsAny(s.Name, " \t"):
			v.fail(name, key, "name %q: may not contain spaces", s.Name)
		}
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			v.fail(name, key, "duplicate server name %q (also servers[%d]); names decide placement and must be unique", s.Name, j)
		} else {
			seen[s.Name] = i
		}
		if s.Weight <= 0 {
			v.fail(name, key, "weight %d: must be > 0", s.Weight)
		} else if s.Weight != 1 && (p.Distribution == "jump" || p.Distribution == "random") {
			v.warn(name, key, "weight %d is ignored by distribution %s", s.Weight, p.Distribution)
		}
		if s.Followed() {
			if len(p.Sentinels) == 0 {
				v.fail(name, key, "addr is missing (server %q without addr is a Sentinel master, and the pool has no sentinels)", s.Name)
			} else if len(s.Replicas) > 0 {
				v.fail(name, key+".replicas", "server %q is a Sentinel master: its replicas are learnt from the sentinels, not configured", s.Name)
			}
		} else if err := checkAddr(s.Network, s.Addr); err != nil {
			v.fail(name, key, "%v", err)
		}
		names := map[string]int{}
		for j, r := range s.Replicas {
			rkey := fmt.Sprintf("%s.replicas[%d]", key, j)
			if _, err := parseAddr(r.Addr); err != nil {
				v.fail(name, rkey, "%v", err)
			}
			if k, dup := names[r.Name]; dup {
				v.fail(name, rkey, "duplicate replica name %q (also replicas[%d])", r.Name, k)
			} else {
				names[r.Name] = j
			}
		}
		if len(s.Replicas) > 0 {
			withReplicas++
		}
	}
	// A Sentinel master's replicas are learnt at run time: read_policy
	// applies to them then.
	switch p.ReadPolicy {
	case ReadPrimary:
	case ReadReplica:
		for i, s := range p.Servers {
			if len(s.Replicas) == 0 && !s.Followed() && !p.Cluster && !v.c.pos.isBad(name, fmt.Sprintf("servers[%d]", i)) {
				v.fail(name, "read_policy", "replica: servers[%d] (%s) has no replicas to read from", i, s.Name)
			}
		}
	case ReadPreferPrimary, ReadPreferReplica, ReadAny:
		if withReplicas == 0 && len(p.Servers) > 0 && len(p.Sentinels) == 0 && !p.Cluster {
			v.warn(name, "read_policy", "%s has no effect: no server has replicas", p.ReadPolicy)
		}
	default:
		v.fail(name, "read_policy", "%q: want one of %s", p.ReadPolicy, strings.Join(ReadPolicies(), ", "))
	}
	switch p.WritePolicy {
	case "", WritePrimary:
	case WriteAll, WriteAllAsync:
		if p.Protocol == ProtocolRedis {
			v.fail(name, "write_policy", "%s: a Redis pool writes its primaries only (Redis replicates itself); want primary", p.WritePolicy)
		} else if withReplicas == 0 && len(p.Servers) > 0 {
			v.warn(name, "write_policy", "%s has no effect: no server has replicas", p.WritePolicy)
		}
	default:
		v.fail(name, "write_policy", "%q: want one of %s", p.WritePolicy, strings.Join(WritePolicies(), ", "))
	}
	if p.Warmup > 0 && p.Replicated() {
		v.warn(name, "warmup", "%v has no effect: a replicated pool (write_policy all or all_async) is not warmed", p.Warmup)
	}
	if p.ReadRepair && !p.Replicated() {
		v.warn(name, "read_repair", "has no effect: the pool is not a replicated memcache pool (servers with replicas, write_policy all or all_async)")
	}
}

// discovery checks a pool's discovery settings.
func (v *checker) discovery(p *Pool) {
	d, name := p.Discovery, p.Name
	if !d.Enabled() {
		return
	}
	if p.Protocol != ProtocolMemcache {
		v.fail(name, "discovery", "only a memcache pool can follow ElastiCache auto discovery")
	}
	if _, _, err := splitHostPort(d.Endpoint); err != nil {
		v.fail(name, "discovery.endpoint", "%q: %v", d.Endpoint, err)
	}
	if d.Interval <= 0 {
		v.fail(name, "discovery.interval", "%v: must be > 0", d.Interval)
	}
	if p.Replicated() || p.ReadPolicy != "" && p.ReadPolicy != ReadPrimary {
		v.fail(name, "discovery", "discovered nodes have no replicas: remove replicas, read_policy and write_policy, or discovery")
	}
}

// cluster checks cluster and cluster_refresh.
func (v *checker) cluster(p *Pool) {
	name := p.Name
	if !p.Cluster {
		return
	}
	if p.Protocol != ProtocolRedis {
		v.fail(name, "cluster", "only a redis pool can be a Redis Cluster client")
		return
	}
	if p.ClusterRefresh <= 0 {
		v.fail(name, "cluster_refresh", "%v: must be > 0", p.ClusterRefresh)
	}
	if len(p.Sentinels) > 0 {
		v.fail(name, "sentinels", "a cluster pool learns its masters from the cluster: remove sentinels or cluster")
	}
	if p.RoleCheck != 0 {
		v.fail(name, "role_check", "a cluster pool learns its masters from the cluster: remove role_check or cluster")
	}
	if p.Distribution != DefaultDistribution {
		v.fail(name, "distribution", "%s: a cluster pool places keys by Redis Cluster hash slot; remove distribution", p.Distribution)
	}
	if p.HashTag != "" {
		v.warn(name, "hash_tag", "%q is ignored: a cluster pool hashes {tags} as Redis Cluster does", p.HashTag)
	}
	if p.RedisDB != 0 {
		v.fail(name, "redis_db", "%d: Redis Cluster has database 0 only", p.RedisDB)
	}
	if p.ServerTLS.Enabled {
		v.fail(name, "server_tls", "not supported with cluster yet (the slot map is asked in plaintext)")
	}
	for i, s := range p.Servers {
		if len(s.Replicas) > 0 {
			v.fail(name, fmt.Sprintf("servers[%d].replicas", i), "a cluster pool learns replicas from the cluster: list seed nodes only")
		}
		if s.Network == "unix" {
			v.fail(name, fmt.Sprintf("servers[%d]", i), "a cluster seed is a host:port (cluster nodes talk TCP)")
		}
	}
}

// redisAuth checks users, server_user and server_password.
func (v *checker) redisAuth(p *Pool) {
	name := p.Name
	if p.AuthFile != "" {
		if p.Protocol != ProtocolMemcache {
			v.fail(name, "auth_file", "only a memcache pool reads an auth_file (a redis pool has users and redis_auth)")
		} else {
			v.authFile(p)
		}
	}
	if p.Protocol != ProtocolRedis {
		// Refused rather than ignored: a memcache pool would serve
		// everyone while its file seemed to ask for passwords.
		if len(p.Users) > 0 {
			v.fail(name, "users", "only a redis pool has users (see docs/security.md for memcache pools)")
		}
		if p.ServerPassword != "" {
			v.fail(name, "server_password", "only a redis pool sends credentials to its servers")
		} else if p.ServerUser != "" {
			v.fail(name, "server_user", "only a redis pool sends credentials to its servers")
		}
		return
	}
	if p.ServerUser != "" && p.ServerPassword == "" {
		v.fail(name, "server_user", "%q without server_password", p.ServerUser)
	}
	seen := map[string]bool{}
	for i, u := range p.Users {
		at := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			v.fail(name, at+".name", "missing")
		case strings.ContainsAny(u.Name, " \t\r\n"):
			v.fail(name, at+".name", "%q: must not contain white space", u.Name)
		case seen[u.Name]:
			v.fail(name, at+".name", "%q given twice", u.Name)
		case u.Name == "default" && p.RedisAuth != "":
			v.fail(name, at+".name", "a user named default conflicts with redis_auth (which is the default user's password): remove one")
		}
		seen[u.Name] = true
		switch {
		case u.Password == "" && u.PasswordSHA256 == "":
			v.fail(name, at+".password", "user %q: set password or password_sha256", u.Name)
		case u.Password != "" && u.PasswordSHA256 != "":
			v.fail(name, at+".password", "user %q: set password or password_sha256, not both", u.Name)
		case u.PasswordSHA256 != "" && !isSHA256Hex(u.PasswordSHA256):
			v.fail(name, at+".password_sha256", "user %q: want 64 hex digits (sha256sum of the password)", u.Name)
		}
		if u.Commands == nil {
			v.fail(name, at+".commands", "user %q: missing (a user starts with no commands: list ACL rules such as +@read, +@write, -@dangerous)", u.Name)
		} else if _, err := resp.NewACL(u.Commands); err != nil {
			v.fail(name, at+".commands", "user %q: %v", u.Name, err)
		}
	}
}

// maxAuthFile bounds the auth_file read.
const maxAuthFile = 1 << 20

// authFile reads a memcache pool's auth_file into AuthUsers: user:password
// lines, as memcached -Y reads them (split at the first colon; a line
// without one is an error; a trailing \r is not part of the password).
func (v *checker) authFile(p *Pool) {
	f, err := os.Open(p.AuthFile)
	if err != nil {
		v.fail(p.Name, "auth_file", "%v", err)
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAuthFile+1))
	if err != nil {
		v.fail(p.Name, "auth_file", "%s: %v", p.AuthFile, err)
		return
	}
	if len(data) > maxAuthFile {
		v.fail(p.Name, "auth_file", "%s: longer than %d bytes", p.AuthFile, maxAuthFile)
		return
	}
	var users []MemcacheUser
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		line = strings.TrimSuffix(line, "\r")
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || strings.ContainsAny(user, " ") {
			v.fail(p.Name, "auth_file", "%s:%d: want user:password (a user name without spaces)", p.AuthFile, i+1)
			return
		}
		if pass == "" || strings.ContainsAny(pass, " ") {
			v.fail(p.Name, "auth_file", "%s:%d: the password of %q is empty or has a space: memcached's protocol cannot send it", p.AuthFile, i+1, user)
			return
		}
		users = append(users, MemcacheUser{Name: user, Password: pass})
	}
	if len(users) == 0 {
		v.fail(p.Name, "auth_file", "%s: no user:password lines", p.AuthFile)
		return
	}
	p.AuthUsers = users
}

// isSHA256Hex reports whether s is 64 hex digits.
func isSHA256Hex(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 2*sha256.Size && err == nil
}

// failover checks sentinels, sentinel_auth and role_check.
func (v *checker) failover(p *Pool) {
	name := p.Name
	if p.RoleCheck < 0 {
		v.fail(name, "role_check", "%v: must be >= 0 (0: off)", p.RoleCheck)
	}
	if p.Protocol != ProtocolRedis {
		if len(p.Sentinels) > 0 {
			v.fail(name, "sentinels", "only a redis pool can follow Sentinels")
		}
		if p.RoleCheck != 0 {
			v.fail(name, "role_check", "only a redis pool can poll ROLE")
		}
		return
	}
	if len(p.Sentinels) > 0 && p.RoleCheck != 0 {
		v.fail(name, "role_check", "a pool follows Sentinels or polls ROLE, not both: remove role_check or sentinels")
	}
	seen := map[string]bool{}
	for _, s := range p.Sentinels {
		if _, _, err := splitHostPort(s); err != nil {
			v.fail(name, "sentinels", "%q: %v", s, err)
		} else if seen[s] {
			v.fail(name, "sentinels", "%q given twice", s)
		}
		seen[s] = true
	}
	followed := 0
	for i := range p.Servers {
		if p.Servers[i].Followed() {
			followed++
		}
	}
	if len(p.Sentinels) > 0 && followed == 0 {
		v.warn(name, "sentinels", "no server is a Sentinel master (written {name: NAME} without addr): the sentinels are not asked")
	}
	if len(p.Sentinels) == 0 && p.SentinelAuth != (SentinelAuth{}) {
		v.warn(name, "sentinel_auth", "ignored: the pool has no sentinels")
	}
	if p.SentinelAuth.User != "" && p.SentinelAuth.Password == "" {
		v.fail(name, "sentinel_auth", "user %q without a password", p.SentinelAuth.User)
	}
}

func checkAddr(network, addr string) error {
	switch network {
	case "tcp":
		if _, _, err := splitHostPort(addr); err != nil {
			return fmt.Errorf("address %q: %w", addr, err)
		}
	case "unix":
		if !strings.HasPrefix(addr, "/") {
			return fmt.Errorf("address %q: a unix socket path must be absolute", addr)
		}
	default:
		return fmt.Errorf("network %q: want tcp or unix", network)
	}
	return nil
}

// hotKeys checks a pool's hot_keys settings (zero values mean defaults).
func (v *checker) hotKeys(p *Pool) {
	h, name := &p.HotKeys, p.Name
	if h.TTL < 0 {
		v.fail(name, "hot_keys.ttl", "%s: must be >= 0 (0: the default, 1s)", h.TTL)
	}
	if h.CacheSize < 0 || (h.CacheSize > 0 && h.CacheSize < 1<<16) {
		v.fail(name, "hot_keys.cache_size", "%d: must be at least 65536 (64KiB), or 0 for the default", h.CacheSize)
	}
	if h.MinRate < 0 || h.MinRate != h.MinRate {
		v.fail(name, "hot_keys.min_rate", "%v: must be >= 0 (0: the default, 100)", h.MinRate)
	}
	if h.TTLJitter < 0 || h.TTLJitter > 0.5 || h.TTLJitter != h.TTLJitter {
		v.fail(name, "hot_keys.ttl_jitter", "%v: must be between 0%% and 50%%", h.TTLJitter*100)
	} else if h.TTLJitter > 0 && !h.Enabled {
		v.warn(name, "hot_keys.ttl_jitter", "%v%% is not applied: hot_keys.enabled is false", h.TTLJitter*100)
	}
}

// tls checks a pool's tls and server_tls: both halves of each key pair,
// the version, and that every file named is there and parses, so that a
// typo fails the load (or the reload) rather than the first handshake.
func (v *checker) tls(p *Pool) {
	name := p.Name
	t := p.TLS
	if t != (TLS{}) {
		if t.CertFile == "" || t.KeyFile == "" {
			v.fail(name, "tls", "set both cert_file and key_file")
		} else if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.fail(name, "tls.cert_file", "%v", err)
		}
		if t.ClientCAFile != "" {
			if err := checkCAFile(t.ClientCAFile); err != nil {
				v.fail(name, "tls.client_ca_file", "%v", err)
			}
		}
		switch t.MinVersion {
		case "", TLSVersion12, TLSVersion13:
		default:
			v.fail(name, "tls.min_version", "%q: want %q or %q", t.MinVersion, TLSVersion12, TLSVersion13)
		}
	}
	s := p.ServerTLS
	if !s.Enabled {
		return
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v.fail(name, "server_tls", "set both cert_file and key_file, or neither")
	} else if s.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile); err != nil {
			v.fail(name, "server_tls.cert_file", "%v", err)
		}
	}
	if s.CAFile != "" {
		if err := checkCAFile(s.CAFile); err != nil {
			v.fail(name, "server_tls.ca_file", "%v", err)
		}
	}
	if s.InsecureSkipVerify {
		v.warn(name, "server_tls.insecure_skip_verify", "the servers' certificates are not verified: traffic is encrypted but anyone on the path can impersonate a server")
	}
}

// checkCAFile reads a PEM bundle and reports an error unless it holds at
// least one certificate.
func checkCAFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return nil
}
