package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path, fills in defaults and
// validates it. The error, when not nil, is an *Error listing every problem
// (or a wrapped I/O error if the file cannot be read). Warnings are returned
// whether or not there are errors.
func Load(path string) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for a file's contents; file names the file in messages and
// becomes Config.File.
func Parse(file string, data []byte) (*Config, []Warning, error) {
	if probs := misindentedServers(file, data); len(probs) > 0 {
		// The YAML parser's own report of these names the wrong line.
		return nil, nil, &Error{Problems: probs}
	}
	p := &parser{file: file, pos: &positions{lines: map[posKey]int{}, bad: map[posKey]bool{}}}
	cfg := p.parse(data)
	if cfg != nil {
		probs, warns := cfg.check()
		p.probs = append(p.probs, probs...)
		p.warns = append(p.warns, warns...)
	}
	slices.SortStableFunc(p.probs, func(a, b Problem) int { return byLine(a.Line, b.Line) })
	slices.SortStableFunc(p.warns, func(a, b Warning) int { return byLine(a.Line, b.Line) })
	if len(p.probs) > 0 {
		return nil, p.warns, &Error{Problems: p.probs}
	}
	return cfg, p.warns, nil
}

// parser turns the YAML tree into a Config, reporting what does not fit.
type parser struct {
	file  string
	pos   *positions
	probs []Problem
	warns []Warning
}

func (p *parser) fail(n *yaml.Node, pool, key, format string, args ...any) {
	p.probs = append(p.probs, Problem{File: p.file, Line: line(n), Pool: pool, Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (p *parser) warn(n *yaml.Node, pool, key, format string, args ...any) {
	p.warns = append(p.warns, Warning{File: p.file, Line: line(n), Pool: pool, Key: key, Reason: fmt.Sprintf(format, args...)})
}

func line(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (p *parser) parse(data []byte) *Config {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.fail(nil, "", "", "the file is empty: no pools")
			return nil
		}
		p.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.fail(&extra, "", "", "a second YAML document: the file must hold exactly one")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		p.fail(root, "", "", "the top level must be a mapping: pool names to pools (nutcracker.yml), or a pools: section")
		return nil
	}
	cfg := &Config{File: p.file, pos: p.pos}
	native := false
	for i := 0; i < len(root.Content); i += 2 {
		if root.Content[i].Value == "pools" {
			native = true
		}
	}
	cfg.Nutcracker = !native
	if native {
		p.native(root, cfg)
	} else {
		p.pools(root, cfg, false)
	}
	slices.SortFunc(cfg.Pools, func(a, b Pool) int { return strings.Compare(a.Name, b.Name) })
	return cfg
}

func (p *parser) yamlError(err error) {
	msg := err.Error()
	l := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		l, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: l, Reason: "YAML: " + strings.TrimPrefix(msg, "yaml: ")})
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// poolSection parses pool's mapping m at key name (tls, limits...): a
// node that is not a mapping fails with want (and poolSection reports
// false); else fn is called with each key's full name (tls.cert_file),
// whose line is kept for later messages.
func (p *parser) poolSection(m *yaml.Node, pool, name, want string, fn func(key string, k, v *yaml.Node)) bool {
	if m.Kind != yaml.MappingNode {
		p.fail(m, pool, name, "%s", want)
		return false
	}
	p.each(m, pool, name+".", func(k, v *yaml.Node) {
		key := name + "." + k.Value
		p.pos.lines[posKey{pool, key}] = k.Line
		fn(key, k, v)
	})
	return true
}

// each calls fn for every key of mapping m, reporting keys that are not
// scalars or appear twice.
func (p *parser) each(m *yaml.Node, pool, prefix string, fn func(k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k, pool, prefix, "a key must be a plain string")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.fail(k, pool, prefix+k.Value, "given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k, v)
	}
}

func (p *parser) native(root *yaml.Node, cfg *Config) {
	p.each(root, "", "", func(k, v *yaml.Node) {
		switch k.Value {
		case "pools":
			if v.Kind != yaml.MappingNode {
				p.fail(v, "", "pools", "must be a mapping of pool names to pools")
				return
			}
			p.pools(v, cfg, true)
		case "admin":
			p.admin(v, &cfg.Admin)
		case "stats":
			cfg.Stats.Listen = p.section(k, v, "stats")
		case "max_memory":
			p.pos.lines[posKey{"", "max_memory"}] = k.Line
			s, ok := p.scalar(v, "", "max_memory")
			if !ok {
				return
			}
			n, err := parseSize(s)
			if err != nil {
				p.fail(v, "", "max_memory", "%v", err)
				return
			}
			cfg.MaxMemory = int64(n)
		default:
			p.fail(k, "", k.Value, "unknown key (the top level of the native shape has admin, stats, max_memory and pools)")
		}
	})
}

// section parses a proxy-wide section with one key, listen.
func (p *parser) section(k, v *yaml.Node, name string) string {
	if v.Kind != yaml.MappingNode {
		p.fail(v, "", name, "must be a mapping with the key listen")
		return ""
	}
	var listen string
	p.each(v, "", name+".", func(k, v *yaml.Node) {
		key := name + "." + k.Value
		if k.Value != "listen" {
			p.fail(k, "", key, "unknown key (%s has only listen)", name)
			return
		}
		p.pos.lines[posKey{"", key}] = k.Line
		listen, _ = p.str(v, "", key)
	})
	return canonicalListen(listen)
}

// admin parses the admin section: listen, token, token_file and pprof.
func (p *parser) admin(v *yaml.Node, a *Admin) {
	if v.Kind != yaml.MappingNode {
		p.fail(v, "", "admin", "must be a mapping with keys such as listen")
		return
	}
	p.each(v, "", "admin.", func(k, v *yaml.Node) {
		key := "admin." + k.Value
		p.pos.lines[posKey{"", key}] = k.Line
		switch k.Value {
		case "listen":
			s, _ := p.str(v, "", key)
			a.Listen = canonicalListen(s)
		case "token":
			a.Token, _ = p.str(v, "", key)
		case "token_file":
			a.TokenFile, _ = p.str(v, "", key)
		case "pprof":
			a.Pprof = p.bool(v, "", key, false)
		default:
			p.fail(k, "", key, "unknown key (admin has listen, token, token_file and pprof)")
		}
	})
}

func (p *parser) pools(m *yaml.Node, cfg *Config, native bool) {
	p.each(m, "", "", func(k, v *yaml.Node) {
		name := k.Value
		if name == "" {
			p.fail(k, "", "", "a pool with an empty name")
			return
		}
		p.pos.lines[posKey{name, ""}] = k.Line
		if v.Kind != yaml.MappingNode {
			p.fail(v, name, "", "must be a mapping of keys such as listen and servers")
			return
		}
		cfg.Pools = append(cfg.Pools, p.pool(name, v, native))
	})
}

// nativeOnly are the pool keys only the native shape has.
var nativeOnly = map[string]bool{"protocol": true, "read_policy": true, "write_policy": true, "read_repair": true, "warmup": true, "limits": true,
	"client_idle_timeout": true, "client_request_timeout": true,
	"allow_commands": true, "hot_keys": true, "sentinels": true, "sentinel_auth": true, "role_check": true, "discovery": true,
	"tls": true, "server_tls": true, "cluster": true, "cluster_refresh": true,
	"users": true, "server_user": true, "server_password": true, "auth_file": true}

func (p *parser) pool(name string, m *yaml.Node, native bool) Pool {
	pool := NewPool(name, ProtocolMemcache)
	var (
		protoNode, redisNode *yaml.Node
		redis                bool
		limits               = map[string]int{}
	)
	p.each(m, name, "", func(k, v *yaml.Node) {
		key := k.Value
		p.pos.lines[posKey{name, key}] = k.Line
		if nativeOnly[key] && !native {
			p.fail(k, name, key, "unknown key in a nutcracker.yml file (cacheproxy's own keys need the native shape: put the pools under pools:)")
			return
		}
		switch key {
		case "listen":
			pool.Listen, _ = p.str(v, name, key)
			pool.Listen = canonicalListen(pool.Listen)
		case "hash":
			pool.Hash, _ = p.str(v, name, key)
		case "hash_tag":
			pool.HashTag, _ = p.str(v, name, key)
		case "distribution":
			pool.Distribution, _ = p.str(v, name, key)
		case "timeout":
			pool.Timeout = p.duration(v, name, key, pool.Timeout)
		case "client_idle_timeout":
			pool.ClientIdleTimeout = p.duration(v, name, key, pool.ClientIdleTimeout)
		case "client_request_timeout":
			pool.ClientRequestTimeout = p.duration(v, name, key, pool.ClientRequestTimeout)
		case "backlog":
			pool.Backlog = p.int(v, name, key, pool.Backlog)
			p.warn(k, name, key, "accepted for twemproxy compatibility; the listener always uses the system's maximum backlog (net.core.somaxconn)")
		case "preconnect":
			pool.Preconnect = p.bool(v, name, key, pool.Preconnect)
		case "redis":
			redis = p.bool(v, name, key, false)
			redisNode = k
		case "redis_auth":
			pool.RedisAuth, _ = p.str(v, name, key)
		case "redis_db":
			pool.RedisDB = p.int(v, name, key, pool.RedisDB)
		case "server_user":
			pool.ServerUser, _ = p.str(v, name, key)
		case "server_password":
			pool.ServerPassword, _ = p.str(v, name, key)
		case "users":
			pool.Users = p.users(v, name)
		case "auth_file":
			pool.AuthFile, _ = p.str(v, name, key)
		case "server_connections":
			pool.ServerConnections = p.int(v, name, key, pool.ServerConnections)
		case "auto_eject_hosts":
			pool.AutoEjectHosts = p.bool(v, name, key, pool.AutoEjectHosts)
		case "server_retry_timeout":
			pool.ServerRetryTimeout = p.duration(v, name, key, pool.ServerRetryTimeout)
		case "server_failure_limit":
			pool.ServerFailureLimit = p.int(v, name, key, pool.ServerFailureLimit)
		case "client_connections":
			p.int(v, name, key, 0)
			hint := ""
			if native {
				hint = "; limits.max_clients caps clients"
			}
			p.warn(k, name, key, "accepted for twemproxy compatibility and ignored, as twemproxy ignores it%s", hint)
		case "servers":
			pool.Servers = p.servers(v, name, native)
		case "protocol":
			s, ok := p.str(v, name, key)
			if ok {
				pool.Protocol = Protocol(s)
				protoNode = k
			}
		case "read_policy":
			pool.ReadPolicy, _ = p.str(v, name, key)
		case "write_policy":
			pool.WritePolicy, _ = p.str(v, name, key)
		case "read_repair":
			pool.ReadRepair = p.bool(v, name, key, pool.ReadRepair)
		case "warmup":
			pool.Warmup = p.duration(v, name, key, pool.Warmup)
		case "limits":
			p.limits(v, name, limits)
		case "hot_keys":
			pool.HotKeys = p.hotKeys(v, name)
		case "sentinels":
			if v.Kind != yaml.SequenceNode {
				p.fail(v, name, key, "want a list of host:port")
				return
			}
			for _, c := range v.Content {
				if s, ok := p.str(c, name, key); ok {
					pool.Sentinels = append(pool.Sentinels, s)
				}
			}
		case "sentinel_auth":
			pool.SentinelAuth = p.sentinelAuth(v, name)
		case "role_check":
			pool.RoleCheck = p.duration(v, name, key, pool.RoleCheck)
		case "discovery":
			pool.Discovery = p.discovery(v, name)
		case "tls":
			pool.TLS = p.tls(v, name)
		case "server_tls":
			pool.ServerTLS = p.serverTLS(v, name)
		case "cluster":
			pool.Cluster = p.bool(v, name, key, pool.Cluster)
		case "cluster_refresh":
			pool.ClusterRefresh = p.duration(v, name, key, pool.ClusterRefresh)
		case "allow_commands":
			if v.Kind != yaml.SequenceNode {
				p.fail(v, name, key, "want a list of command names")
				return
			}
			for _, c := range v.Content {
				if s, ok := p.str(c, name, key); ok {
					pool.AllowCommands = append(pool.AllowCommands, strings.ToLower(s))
				}
			}
		default:
			p.fail(k, name, key, "unknown key")
		}
	})
	if redisNode != nil {
		want := ProtocolMemcache
		if redis {
			want = ProtocolRedis
		}
		if protoNode != nil && pool.Protocol != want {
			p.fail(redisNode, name, "redis", "redis: %t conflicts with protocol: %s", redis, pool.Protocol)
		}
		pool.Protocol = want
	}
	pool.Limits = DefaultLimits(pool.Protocol)
	for key, n := range limits {
		switch key {
		case "max_key_length":
			pool.Limits.MaxKeyLength = n
		case "max_value_size":
			pool.Limits.MaxValueSize = n
		case "max_multibulk":
			pool.Limits.MaxMultibulk = n
		case "max_in_flight":
			pool.Limits.MaxInFlight = n
		case "max_client_buffer":
			pool.Limits.MaxClientBuffer = n
		case "max_clients":
			pool.Limits.MaxClients = n
		}
	}
	return pool
}

// users parses a pool's users: a list of mappings with name, password or
// password_sha256, and commands.
func (p *parser) users(v *yaml.Node, pool string) []RedisUser {
	if v.Kind != yaml.SequenceNode {
		p.fail(v, pool, "users", "want a list of {name, password, commands}")
		return nil
	}
	var out []RedisUser
	for i, m := range v.Content {
		at := fmt.Sprintf("users[%d]", i)
		p.pos.lines[posKey{pool, at}] = m.Line
		if m.Kind != yaml.MappingNode {
			p.fail(m, pool, at, "want a mapping with name, password (or password_sha256) and commands")
			continue
		}
		var u RedisUser
		p.each(m, pool, at+".", func(k, val *yaml.Node) {
			key := at + "." + k.Value
			switch k.Value {
			case "name":
				u.Name, _ = p.str(val, pool, key)
			case "password":
				u.Password, _ = p.str(val, pool, key)
			case "password_sha256":
				u.PasswordSHA256, _ = p.str(val, pool, key)
			case "commands":
				if val.Kind != yaml.SequenceNode {
					p.fail(val, pool, key, "want a list of ACL rules such as +@read, -@dangerous, +get")
					return
				}
				u.Commands = []string{}
				for _, c := range val.Content {
					if s, ok := p.str(c, pool, key); ok {
						u.Commands = append(u.Commands, s)
					}
				}
			default:
				p.fail(k, pool, key, "unknown key (a user has name, password, password_sha256 and commands)")
			}
		})
		out = append(out, u)
	}
	return out
}

// sentinelAuth parses sentinel_auth: a password, or a mapping with user
// and password.
func (p *parser) sentinelAuth(v *yaml.Node, pool string) SentinelAuth {
	if v.Kind == yaml.ScalarNode {
		pw, _ := p.str(v, pool, "sentinel_auth")
		return SentinelAuth{Password: pw}
	}
	if v.Kind != yaml.MappingNode {
		p.fail(v, pool, "sentinel_auth", "want a password, or a mapping with user and password")
		return SentinelAuth{}
	}
	var a SentinelAuth
	p.each(v, pool, "sentinel_auth.", func(k, val *yaml.Node) {
		key := "sentinel_auth." + k.Value
		switch k.Value {
		case "user":
			a.User, _ = p.str(val, pool, key)
		case "password":
			a.Password, _ = p.str(val, pool, key)
		default:
			p.fail(k, pool, key, "unknown key (sentinel_auth has user and password)")
		}
	})
	return a
}

// limitKeys are the keys of a pool's limits section; the sizes may carry a
// KiB, MiB or GiB suffix.
var limitKeys = map[string]bool{
	"max_key_length": true, "max_value_size": true, "max_multibulk": true,
	"max_in_flight": true, "max_client_buffer": true, "max_clients": true,
}

func (p *parser) limits(m *yaml.Node, pool string, into map[string]int) {
	p.poolSection(m, pool, "limits", "must be a mapping", func(key string, k, v *yaml.Node) {
		if !limitKeys[k.Value] {
			p.fail(k, pool, key, "unknown key (want one of max_key_length, max_value_size, max_multibulk, max_in_flight, max_client_buffer, max_clients)")
			return
		}
		s, ok := p.scalar(v, pool, key)
		if !ok {
			return
		}
		n, err := parseSize(s)
		if err != nil {
			p.fail(v, pool, key, "%v", err)
			return
		}
		into[k.Value] = n
	})
}

// discovery parses a pool's discovery mapping.
func (p *parser) discovery(m *yaml.Node, pool string) Discovery {
	d := Discovery{Interval: DefaultDiscoveryInterval}
	ok := p.poolSection(m, pool, "discovery", "must be a mapping with endpoint (and interval)", func(key string, k, v *yaml.Node) {
		switch k.Value {
		case "endpoint":
			d.Endpoint, _ = p.str(v, pool, key)
		case "interval":
			d.Interval = p.duration(v, pool, key, d.Interval)
		default:
			p.fail(k, pool, key, "unknown key (discovery has endpoint and interval)")
		}
	})
	if ok && d.Endpoint == "" && !p.pos.isBad(pool, "discovery.endpoint") {
		p.fail(m, pool, "discovery.endpoint", "missing: the cluster's configuration endpoint, host:port")
	}
	return d
}

// tls parses a pool's tls mapping.
func (p *parser) tls(m *yaml.Node, pool string) TLS {
	var t TLS
	p.poolSection(m, pool, "tls", "must be a mapping with cert_file and key_file (and client_ca_file, min_version)", func(key string, k, v *yaml.Node) {
		switch k.Value {
		case "cert_file":
			t.CertFile, _ = p.str(v, pool, key)
		case "key_file":
			t.KeyFile, _ = p.str(v, pool, key)
		case "client_ca_file":
			t.ClientCAFile, _ = p.str(v, pool, key)
		case "min_version":
			t.MinVersion, _ = p.scalar(v, pool, key)
		default:
			p.fail(k, pool, key, "unknown key (tls has cert_file, key_file, client_ca_file and min_version)")
		}
	})
	return t
}

// serverTLS parses a pool's server_tls mapping.
func (p *parser) serverTLS(m *yaml.Node, pool string) ServerTLS {
	t := ServerTLS{Enabled: true}
	p.poolSection(m, pool, "server_tls", "must be a mapping (ca_file, server_name, cert_file, key_file, insecure_skip_verify)", func(key string, k, v *yaml.Node) {
		switch k.Value {
		case "ca_file":
			t.CAFile, _ = p.str(v, pool, key)
		case "server_name":
			t.ServerName, _ = p.str(v, pool, key)
		case "cert_file":
			t.CertFile, _ = p.str(v, pool, key)
		case "key_file":
			t.KeyFile, _ = p.str(v, pool, key)
		case "insecure_skip_verify":
			t.InsecureSkipVerify = p.bool(v, pool, key, false)
		default:
			p.fail(k, pool, key, "unknown key (server_tls has ca_file, server_name, cert_file, key_file and insecure_skip_verify)")
		}
	})
	return t
}

// hotKeys parses a pool's hot_keys mapping.
func (p *parser) hotKeys(m *yaml.Node, pool string) HotKeys {
	var h HotKeys
	p.poolSection(m, pool, "hot_keys", "must be a mapping", func(key string, k, v *yaml.Node) {
		switch k.Value {
		case "enabled":
			h.Enabled = p.bool(v, pool, key, false)
		case "ttl":
			h.TTL = p.duration(v, pool, key, 0)
		case "cache_size":
			if s, ok := p.scalar(v, pool, key); ok {
				n, err := parseSize(s)
				if err != nil {
					p.fail(v, pool, key, "%v", err)
					return
				}
				h.CacheSize = int64(n)
			}
		case "min_rate":
			if s, ok := p.scalar(v, pool, key); ok {
				f, err := strconv.ParseFloat(s, 64)
				if err != nil {
					p.fail(v, pool, key, "%q is not a number", s)
					return
				}
				h.MinRate = f
			}
		case "ttl_jitter":
			if s, ok := p.scalar(v, pool, key); ok {
				f, err := parsePercent(s)
				if err != nil {
					p.fail(v, pool, key, "%v", err)
					return
				}
				h.TTLJitter = f
			}
		default:
			p.fail(k, pool, key, "unknown key (want one of enabled, ttl, cache_size, min_rate, ttl_jitter)")
		}
	})
	return h
}

// parsePercent parses "10%" (or a plain fraction such as "0.1") into a
// fraction.
func parsePercent(s string) (float64, error) {
	t := strings.TrimSpace(s)
	div := 1.0
	if strings.HasSuffix(t, "%") {
		t, div = strings.TrimSpace(strings.TrimSuffix(t, "%")), 100
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a percentage such as 10%%", s)
	}
	return f / div, nil
}

// parseSize parses an integer with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int, error) {
	mult := 1
	num := s
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: want an integer, optionally followed by KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

func (p *parser) servers(v *yaml.Node, pool string, native bool) []Server {
	if v.Kind != yaml.SequenceNode {
		p.fail(v, pool, "servers", "must be a list of servers")
		p.pos.bad[posKey{pool, "servers"}] = true
		return nil
	}
	out := make([]Server, 0, len(v.Content))
	for i, e := range v.Content {
		e = deref(e)
		key := fmt.Sprintf("servers[%d]", i)
		p.pos.lines[posKey{pool, key}] = e.Line
		var (
			s   Server
			err error
		)
		switch {
		case e.Kind == yaml.ScalarNode:
			s, err = ParseServer(e.Value)
			if err != nil {
				p.fail(e, pool, key, "%v", err)
			}
		case e.Kind == yaml.MappingNode && native:
			var ok bool
			s, ok = p.serverMap(e, pool, key)
			if !ok {
				err = errors.New("bad entry")
			}
		default:
			err = errors.New("bad entry")
			if native {
				p.fail(e, pool, key, "want a server line (host:port:weight [name]) or a mapping with addr, and optionally name, weight and replicas")
			} else {
				p.fail(e, pool, key, "want a server line: host:port:weight [name] or /path/to.sock:weight [name]")
			}
		}
		if err != nil {
			p.pos.bad[posKey{pool, key}] = true
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) serverMap(m *yaml.Node, pool, key string) (Server, bool) {
	var (
		name, addr string
		named      bool
		weight     = 1
		replicas   []Replica
		ok         = true
	)
	p.each(m, pool, key+".", func(k, v *yaml.Node) {
		sub := key + "." + k.Value
		switch k.Value {
		case "name":
			var good bool
			name, good = p.str(v, pool, sub)
			named = true
			ok = ok && good
		case "addr":
			var good bool
			addr, good = p.str(v, pool, sub)
			ok = ok && good
		case "weight":
			weight = p.int(v, pool, sub, weight)
		case "replicas":
			if v.Kind != yaml.SequenceNode {
				p.fail(v, pool, sub, "must be a list of addresses or {name, addr} mappings")
				ok = false
				return
			}
			for j, r := range v.Content {
				rep, good := p.replica(deref(r), pool, fmt.Sprintf("%s[%d]", sub, j))
				if good {
					replicas = append(replicas, rep)
				}
				ok = ok && good
			}
		default:
			p.fail(k, pool, sub, "unknown key (a server has name, addr, weight and replicas)")
			ok = false
		}
	})
	if !ok {
		return Server{}, false
	}
	if addr == "" {
		if !named {
			p.fail(m, pool, key, "addr is missing (a server with a name and no addr is a Sentinel master: give the pool sentinels)")
			return Server{}, false
		}
		if name == "" || strings.ContainsAny(name, " \t") {
			p.fail(m, pool, key+".name", "%q: want a non-empty name without spaces", name)
			return Server{}, false
		}
		// A Sentinel master: its address (and replicas) come from the
		// pool's sentinels; Validate checks there are some.
		return Server{Name: name, Network: "tcp", Weight: weight, Replicas: replicas}, true
	}
	s, err := parseAddr(addr)
	if err != nil {
		p.fail(m, pool, key+".addr", "%v", err)
		return Server{}, false
	}
	if named {
		if name == "" || strings.ContainsAny(name, " \t") {
			p.fail(m, pool, key+".name", "%q: want a non-empty name without spaces", name)
			return Server{}, false
		}
		s.Name = name
	}
	s.Weight = weight
	s.Replicas = replicas
	return s, true
}

// replica parses one entry of a server's replicas: a plain address, or a
// mapping with addr and an optional name.
func (p *parser) replica(n *yaml.Node, pool, key string) (Replica, bool) {
	if n.Kind == yaml.ScalarNode {
		addr, ok := p.str(n, pool, key)
		if !ok {
			return Replica{}, false
		}
		return NewReplica(addr), true
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, pool, key, "want an address (host:port) or a mapping with addr and optionally name")
		return Replica{}, false
	}
	var (
		name, addr string
		named      bool
		ok         = true
	)
	p.each(n, pool, key+".", func(k, v *yaml.Node) {
		sub := key + "." + k.Value
		var good bool
		switch k.Value {
		case "name":
			name, good = p.str(v, pool, sub)
			named = true
		case "addr":
			addr, good = p.str(v, pool, sub)
		default:
			p.fail(k, pool, sub, "unknown key (a replica has name and addr)")
		}
		ok = ok && good
	})
	if !ok {
		return Replica{}, false
	}
	if addr == "" {
		p.fail(n, pool, key, "addr is missing")
		return Replica{}, false
	}
	r := NewReplica(addr)
	if named {
		if name == "" || strings.ContainsAny(name, " \t/") {
			p.fail(n, pool, key+".name", "%q: want a non-empty name without spaces or '/'", name)
			return Replica{}, false
		}
		r.Name = name
	}
	return r, true
}

// ParseServer parses a twemproxy server line, "host:port:weight [name]" or
// "/path/to.sock:weight [name]", splitting from the right as twemproxy does
// (so "::1:6379:1" is host ::1). The ring name follows twemproxy: the name
// if given, else the "host:port" text as written, else just the host when
// the port is 11211; for a unix socket without a name, the path followed by
// ":". The weight is not checked here (Validate wants it > 0).
func ParseServer(line string) (Server, error) {
	malformed := fmt.Errorf("malformed server %q: want host:port:weight [name] or /path/to.sock:weight [name]", line)
	rest, name, named := line, "", false
	if i := strings.LastIndexByte(line, ' '); i >= 0 {
		rest, name, named = line[:i], line[i+1:], true
		if name == "" {
			return Server{}, malformed
		}
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Server{}, malformed
	}
	addr, weight := rest[:i], rest[i+1:]
	w, err := strconv.Atoi(weight)
	if err != nil {
		return Server{}, fmt.Errorf("%w (weight %q is not an integer)", malformed, weight)
	}
	s := Server{Weight: w}
	if strings.HasPrefix(addr, "/") {
		if strings.IndexByte(addr, ':') >= 0 {
			return Server{}, fmt.Errorf("%w (a socket path may not contain ':')", malformed)
		}
		s.Network, s.Addr, s.Name = "unix", addr, addr+":"
	} else {
		j := strings.LastIndexByte(addr, ':')
		if j < 0 {
			return Server{}, malformed
		}
		host, port := addr[:j], addr[j+1:]
		dialHost := host
		if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
			dialHost = host[1 : len(host)-1]
		}
		if dialHost == "" || strings.ContainsAny(host, " \t") {
			return Server{}, fmt.Errorf("%w (empty host)", malformed)
		}
		if err := checkPort(port); err != nil {
			return Server{}, fmt.Errorf("%w (%v)", malformed, err)
		}
		s.Network, s.Addr, s.Name = "tcp", joinHostPort(dialHost, port), addr
		if n, _ := strconv.Atoi(port); n == 11211 {
			s.Name = host
		}
	}
	if named {
		s.Name = name
	}
	return s, nil
}

func (p *parser) scalar(v *yaml.Node, pool, key string) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.fail(v, pool, key, "must be a single value, not a %s", kindName(v.Kind))
		return "", false
	}
	if v.Tag == "!!null" {
		p.fail(v, pool, key, "has no value")
		return "", false
	}
	return v.Value, true
}

func (p *parser) str(v *yaml.Node, pool, key string) (string, bool) {
	return p.scalar(v, pool, key)
}

func (p *parser) int(v *yaml.Node, pool, key string, def int) int {
	s, ok := p.scalar(v, pool, key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail(v, pool, key, "%q is not an integer", s)
		return def
	}
	return n
}

func (p *parser) bool(v *yaml.Node, pool, key string, def bool) bool {
	s, ok := p.scalar(v, pool, key)
	if !ok {
		return def
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(v, pool, key, "%q: want true or false", s)
	return def
}

// duration parses integer milliseconds (twemproxy's form) or a Go duration
// string such as "400ms".
func (p *parser) duration(v *yaml.Node, pool, key string, def time.Duration) time.Duration {
	s, ok := p.scalar(v, pool, key)
	if !ok {
		return def
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.fail(v, pool, key, "%v", err)
		return def
	}
	return d
}

// ParseDuration parses integer milliseconds (twemproxy's form, "400") or a
// Go duration string ("400ms", "1.5s").
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > int64(1<<63-1)/int64(time.Millisecond) || n < -int64(1<<63-1)/int64(time.Millisecond) {
			return 0, fmt.Errorf("bad duration %q: too large", s)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: want integer milliseconds or a duration such as 400ms", s)
	}
	return d, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// parseAddr parses a server address in the mapping form: "host:port" (IPv6
// hosts bracketed) or a unix socket path. The ring name it gives is the one
// the equivalent server line would get, so converting a line to a mapping
// keeps placement.
func parseAddr(addr string) (Server, error) {
	if strings.HasPrefix(addr, "/") {
		if strings.ContainsAny(addr, ": \t") {
			return Server{}, fmt.Errorf("%q: a socket path may not contain ':' or spaces", addr)
		}
		return Server{Network: "unix", Addr: addr, Name: addr + ":"}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(addr, " \t") {
		return Server{}, fmt.Errorf("%q: want host:port ([host]:port for IPv6) or a socket path", addr)
	}
	if err := checkPort(port); err != nil {
		return Server{}, fmt.Errorf("%q: %w", addr, err)
	}
	s := Server{Network: "tcp", Addr: joinHostPort(host, port), Name: addr}
	if n, _ := strconv.Atoi(port); n == 11211 {
		s.Name = addr[:strings.LastIndexByte(addr, ':')]
	}
	return s, nil
}
