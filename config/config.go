// Package config loads and validates cacheproxy's configuration.
//
// Two file shapes are accepted, told apart by a top-level "pools" key:
//
//   - twemproxy's nutcracker.yml, unchanged: a map of pool name to pool, with
//     twemproxy's keys and defaults. Placement is bit-identical to twemproxy.
//   - the native shape (what the shipped config.yaml uses): the same pool
//     keys under "pools:", cacheproxy's own pool keys (protocol, read_policy,
//     limits, servers written as maps with replicas), and the proxy-wide
//     sections "admin" and "stats".
//
// Every key has a documented default. Unknown keys are errors, and so is a
// key given twice. Durations are integer milliseconds (twemproxy's form) or
// Go duration strings such as "400ms". twemproxy's client_connections is
// accepted and reported as a Warning, because twemproxy ignores it too.
//
// Load reports every problem it finds at once, each naming the file, the
// line, the pool and the key:
//
//	config.yaml:14: pool "sessions": servers[2]: weight 0: must be > 0
//
// Validate also rejects listen addresses that cannot all bind at once
// (0.0.0.0:P beside 127.0.0.1:P, one unix socket path twice), which
// twemproxy's -t passes and its start then fails on. CheckHosts looks up the
// host names a file uses and warns about those that do not resolve.
package config

import (
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
)

// Config is a loaded configuration.
type Config struct {
	// File is the path the configuration was loaded from ("" when built in
	// code).
	File string
	// Admin is the admin HTTP listener.
	Admin Admin
	// Stats is the twemproxy-compatible JSON stats listener.
	Stats Stats
	// Pools are the server pools, sorted by Name.
	Pools []Pool
	// Nutcracker is true when the file has twemproxy's nutcracker.yml shape
	// (no top-level pools: key). Such a file has no stats section, so the
	// command serves stats where nutcracker does unless told otherwise.
	Nutcracker bool
	// MaxMemory bounds the reply bytes the whole proxy holds at once (partial
	// replies collected from servers, replies waiting for their turn, and
	// output queued to clients that read slowly). A reply that would take the
	// proxy over it is answered with an out-of-memory error instead. If zero,
	// DefaultMaxMemory() is used. Native shape only: top-level max_memory.
	MaxMemory int64

	// pos maps (pool, key) to the file line it came from, so Validate can
	// name lines; nil for a Config built in code.
	pos *positions
}

// DefaultMaxMemoryCap is the default max_memory when the process has no
// smaller memory limit (see DefaultMaxMemory).
const DefaultMaxMemoryCap = 1 << 30

// MinMaxMemory is the smallest max_memory accepted.
const MinMaxMemory = 1 << 20

// DefaultMaxMemory returns the max_memory used when none is configured:
// 1 GiB, or half the cgroup v2 memory limit (memory.max) when that is
// smaller, so the proxy refuses replies well before the kernel would kill it.
func DefaultMaxMemory() int64 {
	return defaultMaxMemory(cgroupMemoryMax())
}

func defaultMaxMemory(cgroupMax int64) int64 {
	m := int64(DefaultMaxMemoryCap)
	if cgroupMax > 0 && cgroupMax/2 < m {
		m = max(cgroupMax/2, MinMaxMemory)
	}
	return m
}

// cgroupMemoryMax reads the cgroup v2 memory limit of the process, 0 when
// there is none (or it cannot be read).
func cgroupMemoryMax() int64 {
	data, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil { // "max": no limit
		return 0
	}
	return n
}

// MemoryBudget is MaxMemory, or DefaultMaxMemory() when it is zero.
func (c *Config) MemoryBudget() int64 {
	if c.MaxMemory > 0 {
		return c.MaxMemory
	}
	return DefaultMaxMemory()
}

// Admin configures the admin HTTP listener (/metrics, /healthz, /readyz,
// /hotkeys, /reload and, with Pprof, /debug/pprof/).
type Admin struct {
	// Listen is the host:port to serve on. If empty, the admin listener is
	// off (unless the --admin flag sets it). The default is empty; the shipped
	// config.yaml sets 127.0.0.1:9121.
	Listen string
	// Token, if not empty, is the bearer token every admin request but
	// /healthz and /readyz must carry (Authorization: Bearer <token>). It
	// is admin.token, or the contents of admin.token_file (surrounding
	// white space trimmed), which Parse reads.
	Token string
	// TokenFile is the file admin.token_file names ("" if none), as
	// written; a relative name is relative to the working directory.
	TokenFile string
	// Pprof serves /debug/pprof/ on the admin listener (admin.pprof;
	// default false).
	Pprof bool
}

// Stats configures twemproxy's JSON stats listener.
type Stats struct {
	// Listen is the host:port to serve twemproxy-compatible JSON stats on. If
	// empty, stats are off (unless the -s/-a flags set it). A nutcracker.yml
	// has no stats section: the command then defaults it to 127.0.0.1:22222,
	// nutcracker's port (see Config.Nutcracker).
	Listen string
}

// Protocol is the protocol a pool speaks, to clients and to its servers.
type Protocol string

// The protocols.
const (
	ProtocolMemcache Protocol = "memcache"
	ProtocolRedis    Protocol = "redis"
)

// Read policies for pools whose servers have replicas.
const (
	ReadPrimary       = "primary"        // reads go to the primary (default)
	ReadPreferPrimary = "prefer_primary" // the primary; a replica while it is down
	ReadReplica       = "replica"        // a replica only
	ReadPreferReplica = "prefer_replica" // a replica; the primary when none is up
	ReadAny           = "any"            // the primary or any replica
)

// ReadPolicies lists the valid read_policy values.
func ReadPolicies() []string {
	return []string{ReadPrimary, ReadPreferPrimary, ReadReplica, ReadPreferReplica, ReadAny}
}

// Write policies for memcache pools whose servers have replicas (mcrouter's
// AllSync and AllAsync routes).
const (
	WritePrimary  = "primary"   // writes go to the primary only
	WriteAll      = "all"       // to every live copy; the primary's reply answers
	WriteAllAsync = "all_async" // to every live copy; the first reply answers
)

// WritePolicies lists the valid write_policy values.
func WritePolicies() []string { return []string{WritePrimary, WriteAll, WriteAllAsync} }

// Defaults shared by both file shapes (twemproxy's, where twemproxy has one).
const (
	DefaultHash               = "fnv1a_64"
	DefaultDistribution       = "ketama"
	DefaultBacklog            = 512
	DefaultServerConnections  = 1
	DefaultServerRetryTimeout = 30 * time.Second
	DefaultServerFailureLimit = 2
	DefaultReadPolicy         = ReadPrimary
	// DefaultClientRequestTimeout is client_request_timeout's default: a
	// request's first byte to its last (or to the next RequestProgress
	// bytes of a big one) within 30s. No client library leaves a request
	// half-sent that long (each writes a request whole); only a stalled or
	// hostile client does.
	DefaultClientRequestTimeout = 30 * time.Second
	// RequestProgress is how many bytes of a request still arriving
	// restart client_request_timeout's clock: a 32 MiB value is never cut
	// while it arrives at more than about 2 KiB/s.
	RequestProgress = 64 << 10
	// ClientTimeoutMin is the shortest client_idle_timeout and
	// client_request_timeout other than 0: the proxy checks clients once a
	// second, so a timeout fires up to a second late.
	ClientTimeoutMin = time.Second

	// MemcacheMaxKeyLength is the memcached protocol's own key limit;
	// Limits.MaxKeyLength may not exceed it for a memcache pool.
	MemcacheMaxKeyLength = 250
)

// Pool is one server pool: a listener, a protocol, a ring of servers.
type Pool struct {
	// Name is the pool's name (the YAML key), case preserved.
	Name string
	// Listen is where clients connect: "host:port", or "/path.sock" with
	// optional octal permissions ("/path.sock 0666"), as twemproxy accepts.
	// Required. See ParseListen.
	Listen string
	// Protocol is memcache (the default) or redis. twemproxy's `redis: true`
	// sets ProtocolRedis.
	Protocol Protocol
	// Hash is the key hash (one of hashring.HashNames). Default fnv1a_64,
	// twemproxy's default.
	Hash string
	// HashTag is "" (hash the whole key) or exactly two characters such as
	// "{}": only the text between them is hashed.
	HashTag string
	// Distribution is ketama (default), modula, random or jump.
	Distribution string
	// Timeout bounds how long a request may wait for its server's reply. 0
	// (the default, as in twemproxy) waits forever.
	Timeout time.Duration
	// ClientIdleTimeout closes a client that has had nothing in flight,
	// nothing owed and no input for this long, silently, as redis-server's
	// `timeout` and memcached's idle_timeout do. Subscribed clients and
	// blocking commands (BLPOP, ...) are never idle. 0 (the default, as in
	// twemproxy): off. Clients are checked once a second.
	ClientIdleTimeout time.Duration
	// ClientRequestTimeout closes a client that started sending a request
	// and did not finish it within this long (slowloris), after an error
	// reply when it is owed nothing else. A request still arriving (a big
	// value) restarts the clock with every RequestProgress bytes. 0: off.
	// NewPool and a loaded file default to DefaultClientRequestTimeout.
	// Clients are checked once a second.
	ClientRequestTimeout time.Duration
	// Backlog is twemproxy's listen backlog. It is accepted for
	// compatibility and not applied: listeners always use the system's
	// maximum (net.core.somaxconn). Default 512.
	Backlog int
	// Preconnect connects to every server at start instead of on first use.
	// Default false.
	Preconnect bool
	// RedisAuth is twemproxy's redis_auth: the password clients must send
	// with AUTH (the "default" user's, with every command), and, unless
	// ServerPassword is set, the one sent with AUTH to each redis server.
	// Default "" (none).
	RedisAuth string
	// ServerUser and ServerPassword are the credentials the proxy sends
	// (AUTH [user] password) on every connection to a redis server and with
	// every health probe, apart from what clients send. ServerUser needs
	// ServerPassword. Default "": ServerPassword falls back to RedisAuth
	// (twemproxy's behaviour), and no user is named. Native shape, redis
	// pools only.
	ServerUser     string
	ServerPassword string
	// AuthFile (memcache pools) is a file of user:password lines, as
	// memcached's -Y option reads: clients must authenticate as memcached
	// 1.6 with -Y expects (docs/security.md) before anything else is
	// served. Validate reads it into AuthUsers; a reload reads it again.
	// Default "": no authentication. Native shape.
	AuthFile string
	// AuthUsers are AuthFile's entries, filled in by Validate.
	AuthUsers []MemcacheUser
	// Users are the pool's client accounts (Redis ACL users): a client
	// authenticates with AUTH user password or HELLO ... AUTH user password
	// and may then run what the user's Commands allow. With users and no
	// RedisAuth, clients must authenticate (a user named "default" answers
	// AUTH password). Default none. Native shape, redis pools only
	// (docs/security.md).
	Users []RedisUser
	// RedisDB is the database index selected on each redis server. Default 0.
	RedisDB int
	// ServerConnections is the number of shared connections to each server
	// (per event loop). Default 1; 0 is an error, as in twemproxy. The
	// proxy keeps one more per server and loop for clients with big
	// replies (BackendConns).
	ServerConnections int
	// AutoEjectHosts takes a server out of the ring after
	// ServerFailureLimit consecutive failures, for ServerRetryTimeout.
	// Default false.
	AutoEjectHosts bool
	// ServerRetryTimeout is how long an ejected server stays out. Default 30s.
	ServerRetryTimeout time.Duration
	// ServerFailureLimit is the consecutive failures that eject a server.
	// Default 2.
	ServerFailureLimit int
	// ReadPolicy chooses where reads go when servers have replicas: primary
	// (default), prefer_primary, replica, prefer_replica or any.
	ReadPolicy string
	// WritePolicy chooses where memcached writes go when servers have
	// replicas: primary, all or all_async. Empty means the default: all
	// for a memcache pool with replicas, else primary (see Writes).
	WritePolicy string
	// ReadRepair retries on the primary a read that missed on a copy
	// known to be behind (re-admitted after an ejection). Default false.
	ReadRepair bool
	// Warmup (memcache pools) is how long, after a new version whose ring
	// differs from the previous one (servers added by a reload or by
	// discovery), a single-key read that misses on its key's new server
	// is asked of the server that owned the key under the previous ring,
	// and a hit copied to the new server with add. 0 (the default): off.
	Warmup time.Duration
	// Limits bound what one client may ask of the proxy.
	Limits Limits
	// AllowCommands opens Redis commands the proxy refuses by default
	// (FLUSHALL, FLUSHDB, CONFIG, ...), lower-case; "config|get" names one
	// subcommand, "config" all of them. A command with keys is sent to their
	// server (all must share one); one without keys is sent to every server
	// and answered with the first server's reply, or the first error.
	// Default none. Native shape, redis pools only.
	AllowCommands []string
	// HotKeys detects the pool's hot keys and serves them from a near cache
	// inside the proxy (see docs/hotkeys.md). Default off. Native shape.
	HotKeys HotKeys
	// Sentinels are Redis Sentinels ("host:port"), asked in order, that
	// tell where the primary and replicas of each server written without an
	// address are: such a server's name is the Sentinel master name. Default
	// none. Native shape, redis pools only (docs/sentinel.md).
	Sentinels []string
	// SentinelAuth is sent to every Sentinel. Default none.
	SentinelAuth SentinelAuth
	// RoleCheck, when > 0, polls ROLE on every address of each server (its
	// own and its replicas') this often and makes whichever answers master
	// the primary. Default 0: off. Native shape, redis pools without
	// sentinels only.
	RoleCheck time.Duration
	// Discovery follows an ElastiCache memcached cluster's node list
	// (auto discovery) in addition to Servers. Default: off (Endpoint
	// empty). Native shape, memcache pools only (docs/discovery.md).
	Discovery Discovery
	// TLS, when its CertFile is set, makes the pool's listener speak TLS:
	// a client that does not complete a TLS handshake is served nothing.
	// Default off. Native shape (docs/security.md).
	TLS TLS
	// ServerTLS, when Enabled, makes the pool reach its servers (and probe
	// them) over TLS. Default off: plaintext. Native shape.
	ServerTLS ServerTLS
	// Cluster makes the pool a Redis Cluster client: Servers are seed
	// nodes asked for the slot map (CLUSTER SHARDS, or CLUSTER SLOTS before
	// Redis 7), and the running pool's servers are the cluster's masters,
	// with their replicas, each key placed by its hash slot. Default false.
	// Native shape, redis pools without sentinels, role_check or discovery
	// (docs/redis-cluster.md).
	Cluster bool
	// ClusterRefresh is how often a cluster pool asks for the slot map
	// again (it also asks after a MOVED redirect and a lost connection).
	// Default DefaultClusterRefresh.
	ClusterRefresh time.Duration
	// Servers are the pool's backends in configuration order. Ring indexes
	// (hashring.Ring.Pick) are indexes into this slice.
	Servers []Server
}

// DefaultClusterRefresh is how often a cluster pool asks for the slot map
// when cluster_refresh is not given.
const DefaultClusterRefresh = 10 * time.Second

// Discovery is a pool's discovery settings.
type Discovery struct {
	// Endpoint is the cluster's configuration endpoint, "host:port".
	Endpoint string
	// Interval is how often the endpoint is asked. Default
	// DefaultDiscoveryInterval.
	Interval time.Duration
}

// TLS versions a pool's tls.min_version accepts.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// TLS is a pool's client-side TLS (tls:). File names are as written; a
// relative name is relative to the working directory. The files are read
// when the pool starts, on reload, and again by the proxy when they change.
type TLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and private key
	// the listener presents. Both or neither; TLS is on when they are set.
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of CAs: every client must then
	// present a certificate signed by one of them (mutual TLS). Default:
	// no client certificate is asked for.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted, "1.2" or "1.3". If
	// empty, "1.2" is used.
	MinVersion string
}

// Enabled reports whether the pool's listener speaks TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// ServerTLS is a pool's backend-side TLS (server_tls:), for ElastiCache
// in-transit encryption and redis-server's tls-port.
type ServerTLS struct {
	// Enabled turns TLS to the servers on. Parse sets it when a
	// server_tls mapping is present (an empty mapping means TLS verified
	// against the system's roots).
	Enabled bool
	// CAFile is a PEM bundle of the CAs that sign the servers'
	// certificates. If empty, the system's roots are used.
	CAFile string
	// ServerName is the name verified in the servers' certificates. If
	// empty, each server's host as written is used.
	ServerName string
	// CertFile and KeyFile are a client certificate and key for servers
	// that require one (redis-server's tls-auth-clients yes). Both or
	// neither. Default none.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any server certificate: encryption without
	// authentication. Default false; logged as a warning at start and on
	// every reload while set.
	InsecureSkipVerify bool
}

// DefaultDiscoveryInterval is how often a discovery endpoint is asked when
// discovery.interval is not given.
const DefaultDiscoveryInterval = 60 * time.Second

// Enabled reports whether the pool follows a configuration endpoint.
func (d Discovery) Enabled() bool { return d.Endpoint != "" }

// MemcacheUser is one line of a memcache pool's auth_file.
type MemcacheUser struct {
	Name, Password string
}

// RedisUser is one client account of a Redis pool.
type RedisUser struct {
	// Name is the user name (AUTH's first argument); "default" is the one
	// AUTH with a password alone checks. Required, no white space.
	Name string
	// Password is the user's password, or PasswordSHA256 its SHA-256 in
	// hex (64 digits, as Redis's #<hash> rule); exactly one is set.
	Password       string
	PasswordSHA256 string
	// Commands are Redis ACL command rules applied in order, starting
	// from none, as ACL SETUSER applies them: "+@read", "-@dangerous",
	// "+get", "-flushall", "+config|get", "allcommands" ("+@all"),
	// "nocommands". Keys and channels are not restricted.
	Commands []string
}

// ServerAuth returns the credentials sent to the pool's redis servers:
// ServerUser and ServerPassword, or no user and RedisAuth when
// ServerPassword is empty.
func (p *Pool) ServerAuth() (user, password string) {
	if p.ServerPassword != "" {
		return p.ServerUser, p.ServerPassword
	}
	return "", p.RedisAuth
}

// SentinelAuth are the credentials sent to Sentinels: AUTH password, or
// AUTH user password when User is set.
type SentinelAuth struct {
	User     string
	Password string
}

// Followed reports whether s is a Sentinel master: a server written with a
// name and no address, whose address the pool's Sentinels tell.
func (s *Server) Followed() bool { return s.Addr == "" }

// HotKeys are a pool's hot_keys settings. Zero values mean the documented
// defaults (the hotkey package applies them).
type HotKeys struct {
	// Enabled turns on detection and the near cache. Default false.
	Enabled bool
	// TTL is the longest a cached reply is served without hearing from its
	// server. Default 0: 1s.
	TTL time.Duration
	// CacheSize bounds the pool's near cache, in bytes, per proxy. Default
	// 0: 64 MiB.
	CacheSize int64
	// MinRate is the read rate (per second) below which no key is
	// promoted. Default 0: 100.
	MinRate float64
	// TTLJitter is the +/- share (0 to 0.5) by which the relative expiry of
	// sets is spread (memcached exptime, Redis EX/PX; docs/hotkeys.md).
	// Default 0 (none). Applied only while Enabled; otherwise Validate warns.
	TTLJitter float64
}

// Limits bound what one client may ask of the proxy. Hitting one gets the
// client an error reply, or a close for input that cannot be skipped. Zero
// values are replaced by DefaultLimits when a file is loaded; Validate
// rejects them in a Config built in code.
type Limits struct {
	// MaxKeyLength is the longest key accepted. Default 250 for memcache (the
	// protocol's own limit, which may not be raised) and 65536 for redis.
	MaxKeyLength int
	// MaxValueSize is the largest value (memcache data block, redis bulk
	// string) accepted. Default 1 MiB for memcache (memcached's default item
	// size) and 32 MiB for redis (Redis itself allows 512 MiB; a proxy that
	// buffers that much per client is a memory hazard, so raise it only if
	// you need to).
	MaxValueSize int
	// MaxMultibulk is the most arguments in one redis command, or the most
	// keys in one memcache retrieval command (get, gets, gat, gats). Default
	// 1048576 (1024*1024).
	MaxMultibulk int
	// MaxInFlight is the most requests one client may have outstanding; the
	// proxy stops reading from a client at this depth. Default 1024.
	MaxInFlight int
	// MaxClientBuffer is the most bytes of unparsed input held for one
	// client; beyond it the client is closed with an error. It must leave
	// room for the largest request (MaxValueSize + MaxKeyLength + 1 KiB).
	// Default 64 MiB.
	MaxClientBuffer int
	// MaxClients is the most client connections the pool accepts at once;
	// further connections are closed at once. Default 0: unlimited (only the
	// process's file-descriptor limit applies), as in twemproxy.
	MaxClients int
}

// DefaultLimits returns the default limits for protocol p.
func DefaultLimits(p Protocol) Limits {
	l := Limits{
		MaxKeyLength:    MemcacheMaxKeyLength,
		MaxValueSize:    1 << 20,
		MaxMultibulk:    1 << 20,
		MaxInFlight:     1024,
		MaxClientBuffer: 64 << 20,
		MaxClients:      0,
	}
	if p == ProtocolRedis {
		l.MaxKeyLength = 64 << 10
		l.MaxValueSize = 32 << 20
	}
	return l
}

// Writes returns the pool's write policy: WritePolicy when set, else all
// for a memcache pool any of whose servers has replicas, else primary.
func (p *Pool) Writes() string {
	if p.WritePolicy != "" {
		return p.WritePolicy
	}
	if p.Protocol == ProtocolMemcache {
		for _, s := range p.Servers {
			if len(s.Replicas) > 0 {
				return WriteAll
			}
		}
	}
	return WritePrimary
}

// Replicated reports whether the pool writes every copy of a shard
// (a memcache pool with replicas and write_policy all or all_async).
func (p *Pool) Replicated() bool {
	w := p.Writes()
	if w != WriteAll && w != WriteAllAsync || p.Protocol != ProtocolMemcache {
		return false
	}
	for _, s := range p.Servers {
		if len(s.Replicas) > 0 {
			return true
		}
	}
	return false
}

// NewPool returns a pool with every default filled in: what a file that gives
// only the pool's name would load to (Listen and Servers are still empty).
func NewPool(name string, p Protocol) Pool {
	return Pool{
		Name:               name,
		Protocol:           p,
		Hash:               DefaultHash,
		Distribution:       DefaultDistribution,
		Backlog:            DefaultBacklog,
		ServerConnections:  DefaultServerConnections,
		ServerRetryTimeout: DefaultServerRetryTimeout,
		ClusterRefresh:     DefaultClusterRefresh,
		ServerFailureLimit: DefaultServerFailureLimit,
		ReadPolicy:         DefaultReadPolicy,
		Limits:             DefaultLimits(p),

		ClientRequestTimeout: DefaultClientRequestTimeout,
	}
}

// Server is one backend.
type Server struct {
	// Name is the server's ring name: the configured name, else "host:port",
	// else just "host" when the port is 11211 (libmemcached compatibility).
	// For a unix socket without a name it is the path followed by ":", which
	// is what twemproxy hashes. The name decides placement.
	Name string
	// Addr is where to connect: "host:port" (IPv6 hosts bracketed) or a unix
	// socket path.
	Addr string
	// Network is "tcp" or "unix".
	Network string
	// Weight is the server's share of the ring, > 0.
	Weight int
	// Replicas are the server's replicas, in configuration order. Native
	// shape only.
	Replicas []Replica
	// TLSName is the host name verified in the server's certificate under
	// server_tls without a server_name; "" verifies the host of Addr. Set
	// for nodes learnt by discovery (dialled at their IP, known by host
	// name); never in the file.
	TLSName string
	// Slots are the Redis Cluster hash slots the server owns: learnt from
	// the cluster by a cluster pool, never configured.
	Slots []hashring.SlotRange
}

// Replica is one replica of a server: written as a plain address
// ("host:port" or a unix socket path) or as a mapping with addr and an
// optional name.
type Replica struct {
	// Name names the replica in metrics, stats and logs ("r1"); when the
	// configuration gives none it is the address as written. It never
	// affects placement.
	Name string
	// Addr is where to connect: "host:port" (IPv6 hosts bracketed) or a unix
	// socket path.
	Addr string
	// Network is "tcp" or "unix".
	Network string
}

// NewReplica returns the replica at addr ("host:port" or a socket path),
// named by its address.
func NewReplica(addr string) Replica {
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	return Replica{Name: addr, Addr: addr, Network: network}
}

// ReplicaAddrs returns the addresses of s's replicas, in order.
func (s *Server) ReplicaAddrs() []string {
	out := make([]string, len(s.Replicas))
	for i, r := range s.Replicas {
		out[i] = r.Addr
	}
	return out
}

// Clone returns a deep copy of p: no slice of the copy shares memory with
// p's, so the proxy can keep it while the caller reuses its Config.
func (p *Pool) Clone() Pool {
	c := *p
	c.AllowCommands = append([]string(nil), p.AllowCommands...)
	c.AuthUsers = append([]MemcacheUser(nil), p.AuthUsers...)
	c.Users = make([]RedisUser, len(p.Users))
	for i, u := range p.Users {
		u.Commands = append([]string(nil), u.Commands...)
		c.Users[i] = u
	}
	c.Sentinels = append([]string(nil), p.Sentinels...)
	c.Servers = make([]Server, len(p.Servers))
	for i, s := range p.Servers {
		s.Replicas = append([]Replica(nil), s.Replicas...)
		s.Slots = append([]hashring.SlotRange(nil), s.Slots...)
		c.Servers[i] = s
	}
	return c
}

// RingServers returns the pool's servers as the ring sees them, in
// configuration order.
func (p *Pool) RingServers() []hashring.Server {
	out := make([]hashring.Server, len(p.Servers))
	for i, s := range p.Servers {
		out[i] = hashring.Server{Name: s.Name, Weight: s.Weight}
	}
	return out
}

// Ring builds the pool's ring with every server live.
func (p *Pool) Ring() (hashring.Ring, error) {
	r, err := hashring.New(hashring.Options{
		Distribution: p.Distribution,
		Hash:         p.Hash,
		HashTag:      p.HashTag,
		Servers:      p.RingServers(),
	})
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", p.Name, err)
	}
	return r, nil
}

// Pool returns the pool named name, or nil.
func (c *Config) Pool(name string) *Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

// ListenAddr is a parsed listen address.
type ListenAddr struct {
	// Network is "tcp" or "unix".
	Network string
	// Addr is "host:port" (IPv6 hosts bracketed) or the socket path.
	Addr string
	// Perm is the unix socket's permission bits; 0 means not given (leave
	// the umask's).
	Perm fs.FileMode
}

// ParseListen parses a listen address as twemproxy does: a value starting
// with "/" is a unix socket path, optionally followed by a space and octal
// permissions no greater than 0777; anything else is "host:port", split at
// the last colon.
func ParseListen(s string) (ListenAddr, error) {
	if s == "" {
		return ListenAddr{}, fmt.Errorf("empty address")
	}
	if s[0] == '/' {
		path, perm, ok := strings.Cut(s, " ")
		if !ok {
			return ListenAddr{Network: "unix", Addr: s}, nil
		}
		m, err := strconv.ParseUint(perm, 8, 32)
		if err != nil || m > 0o777 {
			return ListenAddr{}, fmt.Errorf("%q: permissions %q: want octal 0 to 0777", s, perm)
		}
		return ListenAddr{Network: "unix", Addr: path, Perm: fs.FileMode(m)}, nil
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return ListenAddr{}, fmt.Errorf("%q: %w", s, err)
	}
	return ListenAddr{Network: "tcp", Addr: joinHostPort(host, port)}, nil
}

// splitHostPort splits s at its last colon and checks the port, as
// twemproxy does (so "::1:6379" is host "::1", port 6379). A bracketed
// "[::1]:6379" is accepted too.
func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("want host:port")
	}
	host, port = s[:i], s[i+1:]
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return "", "", fmt.Errorf("want host:port: empty host")
	}
	if err := checkPort(port); err != nil {
		return "", "", err
	}
	return host, port, nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || port[0] == '+' || port[0] == '-' || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return nil
}

func joinHostPort(host, port string) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}
