package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Change is one difference between two configurations, as Diff reports it.
type Change struct {
	// Pool is the pool the change is in, or "" for a proxy-wide key.
	Pool string
	// What names what changed: a key ("timeout", "limits.max_clients",
	// "admin.listen"), "pool" for a pool added or removed, or "server" for
	// a server added, removed or changed.
	What string
	// Server is the server's name when What is "server".
	Server string
	// Old and New are the values before and after; "" for a pool or server
	// that did not exist on that side. Secrets (redis_auth, server_password, users' passwords, sentinel_auth, admin.token) are never
	// given: both are "" and Secret is set.
	Old, New string
	// Secret marks a change whose values are not shown.
	Secret bool
}

// String formats the change for a log line, for example
// `pool "mc": timeout 400ms -> 1s`, `pool "mc": server mc4 added (127.0.0.1:11214 weight 1)`
// or `pool "r": redis_auth changed`.
func (c Change) String() string {
	var b strings.Builder
	if c.Pool != "" {
		fmt.Fprintf(&b, "pool %q", c.Pool)
		if c.What == "pool" {
			if c.Old == "" {
				fmt.Fprintf(&b, " added (%s)", c.New)
			} else {
				fmt.Fprintf(&b, " removed (%s)", c.Old)
			}
			return b.String()
		}
		b.WriteString(": ")
	}
	if c.What == "server" {
		fmt.Fprintf(&b, "server %s ", c.Server)
		switch {
		case c.Old == "":
			fmt.Fprintf(&b, "added (%s)", c.New)
		case c.New == "":
			fmt.Fprintf(&b, "removed (%s)", c.Old)
		default:
			fmt.Fprintf(&b, "%s -> %s", c.Old, c.New)
		}
		return b.String()
	}
	b.WriteString(c.What)
	if c.Secret {
		b.WriteString(" changed")
		return b.String()
	}
	fmt.Fprintf(&b, " %s -> %s", show(c.Old), show(c.New))
	return b.String()
}

// show quotes an empty value so that "off" reads as such.
func show(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// Changes is the list Diff returns.
type Changes []Change

// String joins the changes with "; " on one line, or says "no change".
func (cs Changes) String() string {
	if len(cs) == 0 {
		return "no change"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}

// Diff returns what differs from prev to next: the proxy-wide keys, the pools
// added and removed, and for each pool in both the keys that changed and the
// servers added, removed or changed (a server is known by its name, so a
// changed address or weight is a change of that server, and a renamed
// server is one removed and one added). The order of the servers matters to
// modula and jump (a ring index is a position in the list): a reordering
// with the same servers is reported as "servers order". redis_auth and
// sentinel_auth are reported as changed without their values. Diff is a pure function: it reads
// prev and next and keeps nothing.
func Diff(prev, next *Config) Changes {
	var cs Changes
	key := func(pool, what, o, n string) {
		if o != n {
			cs = append(cs, Change{Pool: pool, What: what, Old: o, New: n})
		}
	}
	key("", "admin.listen", prev.Admin.Listen, next.Admin.Listen)
	key("", "admin.token_file", prev.Admin.TokenFile, next.Admin.TokenFile)
	if prev.Admin.Token != next.Admin.Token {
		cs = append(cs, Change{What: "admin.token", Secret: true})
	}
	key("", "admin.pprof", strconv.FormatBool(prev.Admin.Pprof), strconv.FormatBool(next.Admin.Pprof))
	key("", "stats.listen", prev.Stats.Listen, next.Stats.Listen)
	key("", "max_memory", size(prev.MaxMemory), size(next.MaxMemory))

	for i := range prev.Pools {
		if next.Pool(prev.Pools[i].Name) == nil {
			cs = append(cs, Change{Pool: prev.Pools[i].Name, What: "pool", Old: poolSummary(&prev.Pools[i])})
		}
	}
	for i := range next.Pools {
		np := &next.Pools[i]
		op := prev.Pool(np.Name)
		if op == nil {
			cs = append(cs, Change{Pool: np.Name, What: "pool", New: poolSummary(np)})
			continue
		}
		cs = append(cs, diffPool(op, np)...)
	}
	return cs
}

// size formats a byte count ("0" for the default).
func size(n int64) string { return strconv.FormatInt(n, 10) }

func poolSummary(p *Pool) string {
	return fmt.Sprintf("%s listen %s, %d servers", p.Protocol, p.Listen, len(p.Servers))
}

// diffPool compares two versions of one pool.
func diffPool(o, n *Pool) Changes {
	var cs Changes
	key := func(what, ov, nv string) {
		if ov != nv {
			cs = append(cs, Change{Pool: n.Name, What: what, Old: ov, New: nv})
		}
	}
	itoa := strconv.Itoa
	btoa := strconv.FormatBool
	key("listen", o.Listen, n.Listen)
	key("protocol", string(o.Protocol), string(n.Protocol))
	key("hash", o.Hash, n.Hash)
	key("hash_tag", o.HashTag, n.HashTag)
	key("distribution", o.Distribution, n.Distribution)
	key("timeout", o.Timeout.String(), n.Timeout.String())
	key("client_idle_timeout", o.ClientIdleTimeout.String(), n.ClientIdleTimeout.String())
	key("client_request_timeout", o.ClientRequestTimeout.String(), n.ClientRequestTimeout.String())
	key("backlog", itoa(o.Backlog), itoa(n.Backlog))
	key("preconnect", btoa(o.Preconnect), btoa(n.Preconnect))
	if o.RedisAuth != n.RedisAuth {
		cs = append(cs, Change{Pool: n.Name, What: "redis_auth", Secret: true})
	}
	key("redis_db", itoa(o.RedisDB), itoa(n.RedisDB))
	key("server_user", o.ServerUser, n.ServerUser)
	if o.ServerPassword != n.ServerPassword {
		cs = append(cs, Change{Pool: n.Name, What: "server_password", Secret: true})
	}
	cs = append(cs, diffUsers(o, n)...)
	key("auth_file", o.AuthFile, n.AuthFile)
	if !slices.Equal(o.AuthUsers, n.AuthUsers) {
		cs = append(cs, Change{Pool: n.Name, What: "auth_file contents", Secret: true})
	}
	key("server_connections", itoa(o.ServerConnections), itoa(n.ServerConnections))
	key("auto_eject_hosts", btoa(o.AutoEjectHosts), btoa(n.AutoEjectHosts))
	key("server_retry_timeout", o.ServerRetryTimeout.String(), n.ServerRetryTimeout.String())
	key("server_failure_limit", itoa(o.ServerFailureLimit), itoa(n.ServerFailureLimit))
	key("read_policy", o.ReadPolicy, n.ReadPolicy)
	key("write_policy", o.Writes(), n.Writes())
	key("read_repair", btoa(o.ReadRepair), btoa(n.ReadRepair))
	key("warmup", o.Warmup.String(), n.Warmup.String())
	key("limits.max_key_length", itoa(o.Limits.MaxKeyLength), itoa(n.Limits.MaxKeyLength))
	key("limits.max_value_size", itoa(o.Limits.MaxValueSize), itoa(n.Limits.MaxValueSize))
	key("limits.max_multibulk", itoa(o.Limits.MaxMultibulk), itoa(n.Limits.MaxMultibulk))
	key("limits.max_in_flight", itoa(o.Limits.MaxInFlight), itoa(n.Limits.MaxInFlight))
	key("limits.max_client_buffer", itoa(o.Limits.MaxClientBuffer), itoa(n.Limits.MaxClientBuffer))
	key("limits.max_clients", itoa(o.Limits.MaxClients), itoa(n.Limits.MaxClients))
	ftoa := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	key("hot_keys.enabled", btoa(o.HotKeys.Enabled), btoa(n.HotKeys.Enabled))
	key("hot_keys.ttl", o.HotKeys.TTL.String(), n.HotKeys.TTL.String())
	key("hot_keys.cache_size", size(o.HotKeys.CacheSize), size(n.HotKeys.CacheSize))
	key("hot_keys.min_rate", ftoa(o.HotKeys.MinRate), ftoa(n.HotKeys.MinRate))
	key("hot_keys.ttl_jitter", ftoa(o.HotKeys.TTLJitter), ftoa(n.HotKeys.TTLJitter))
	if !slices.Equal(o.Sentinels, n.Sentinels) {
		cs = append(cs, Change{Pool: n.Name, What: "sentinels",
			Old: strings.Join(o.Sentinels, ","), New: strings.Join(n.Sentinels, ",")})
	}
	if o.SentinelAuth != n.SentinelAuth {
		cs = append(cs, Change{Pool: n.Name, What: "sentinel_auth", Secret: true})
	}
	key("role_check", o.RoleCheck.String(), n.RoleCheck.String())
	key("discovery.endpoint", o.Discovery.Endpoint, n.Discovery.Endpoint)
	key("discovery.interval", o.Discovery.Interval.String(), n.Discovery.Interval.String())
	key("tls.cert_file", o.TLS.CertFile, n.TLS.CertFile)
	key("tls.key_file", o.TLS.KeyFile, n.TLS.KeyFile)
	key("tls.client_ca_file", o.TLS.ClientCAFile, n.TLS.ClientCAFile)
	key("tls.min_version", o.TLS.MinVersion, n.TLS.MinVersion)
	key("server_tls", btoa(o.ServerTLS.Enabled), btoa(n.ServerTLS.Enabled))
	key("server_tls.ca_file", o.ServerTLS.CAFile, n.ServerTLS.CAFile)
	key("server_tls.server_name", o.ServerTLS.ServerName, n.ServerTLS.ServerName)
	key("server_tls.cert_file", o.ServerTLS.CertFile, n.ServerTLS.CertFile)
	key("server_tls.key_file", o.ServerTLS.KeyFile, n.ServerTLS.KeyFile)
	key("server_tls.insecure_skip_verify", btoa(o.ServerTLS.InsecureSkipVerify), btoa(n.ServerTLS.InsecureSkipVerify))
	key("cluster", btoa(o.Cluster), btoa(n.Cluster))
	key("cluster_refresh", o.ClusterRefresh.String(), n.ClusterRefresh.String())
	if !slices.Equal(o.AllowCommands, n.AllowCommands) {
		cs = append(cs, Change{Pool: n.Name, What: "allow_commands",
			Old: fmt.Sprintf("%q", o.AllowCommands), New: fmt.Sprintf("%q", n.AllowCommands)})
	}
	return append(cs, diffServers(o, n)...)
}

// diffUsers compares the users of two versions of one pool by name: users
// added and removed, rules changed, and passwords changed (not shown).
func diffUsers(o, n *Pool) Changes {
	var cs Changes
	names := func(us []RedisUser) []string {
		out := make([]string, len(us))
		for i, u := range us {
			out[i] = u.Name
		}
		return out
	}
	if on, nn := names(o.Users), names(n.Users); !slices.Equal(on, nn) {
		cs = append(cs, Change{Pool: n.Name, What: "users", Old: strings.Join(on, ","), New: strings.Join(nn, ",")})
	}
	for _, nu := range n.Users {
		i := slices.IndexFunc(o.Users, func(u RedisUser) bool { return u.Name == nu.Name })
		if i < 0 {
			continue
		}
		ou := o.Users[i]
		if !slices.Equal(ou.Commands, nu.Commands) {
			cs = append(cs, Change{Pool: n.Name, What: "users." + nu.Name + ".commands",
				Old: strings.Join(ou.Commands, " "), New: strings.Join(nu.Commands, " ")})
		}
		if ou.Password != nu.Password || ou.PasswordSHA256 != nu.PasswordSHA256 {
			cs = append(cs, Change{Pool: n.Name, What: "users." + nu.Name + ".password", Secret: true})
		}
	}
	return cs
}

// diffServers compares the servers of two versions of one pool by name.
func diffServers(o, n *Pool) Changes {
	var cs Changes
	byName := func(ss []Server) map[string]*Server {
		m := make(map[string]*Server, len(ss))
		for i := range ss {
			m[ss[i].Name] = &ss[i]
		}
		return m
	}
	oldBy, newBy := byName(o.Servers), byName(n.Servers)
	var kept []string // names in both, in the old order
	for i := range o.Servers {
		s := &o.Servers[i]
		if _, ok := newBy[s.Name]; !ok {
			cs = append(cs, Change{Pool: n.Name, What: "server", Server: s.Name, Old: serverSummary(s)})
		} else {
			kept = append(kept, s.Name)
		}
	}
	var keptNew []string // names in both, in the new order
	for i := range n.Servers {
		s := &n.Servers[i]
		ps, ok := oldBy[s.Name]
		if !ok {
			cs = append(cs, Change{Pool: n.Name, What: "server", Server: s.Name, New: serverSummary(s)})
			continue
		}
		keptNew = append(keptNew, s.Name)
		if ov, nv := serverSummary(ps), serverSummary(s); ov != nv {
			cs = append(cs, Change{Pool: n.Name, What: "server", Server: s.Name, Old: ov, New: nv})
		}
	}
	if !slices.Equal(kept, keptNew) {
		cs = append(cs, Change{Pool: n.Name, What: "servers order",
			Old: strings.Join(kept, ","), New: strings.Join(keptNew, ",")})
	}
	return cs
}

// serverSummary is what Diff compares of a server: its address (with the
// network when it is not tcp), weight and replicas.
func serverSummary(s *Server) string {
	var b strings.Builder
	if s.Followed() {
		b.WriteString("(sentinel master)")
	}
	b.WriteString(s.Addr)
	if s.Network != "" && s.Network != "tcp" {
		b.WriteString(" (" + s.Network + ")")
	}
	b.WriteString(" weight " + strconv.Itoa(s.Weight))
	if len(s.Replicas) > 0 {
		b.WriteString(" replicas ")
		for i, r := range s.Replicas {
			if i > 0 {
				b.WriteByte(',')
			}
			if r.Name != r.Addr {
				b.WriteString(r.Name + "=")
			}
			b.WriteString(r.Addr)
		}
	}
	return b.String()
}
