package config

import (
	"fmt"
	"math"
)

// FDReserve is how many file descriptors DefaultMaxClients keeps aside
// beyond the backend connections: listeners, the admin and stats listeners
// and their clients, the admin poller's connections to the servers, the log
// file, the runtime's epoll and event descriptors, DNS lookups. Under a
// small limit it keeps a quarter of the limit instead, at least
// minFDReserve.
const FDReserve = 64

// minFDReserve is the least DefaultMaxClients keeps aside: what a running
// proxy holds beyond its clients and backends (measured at about 20).
const minFDReserve = 32

// fdReserve is the reserve for a limit of nofile.
func fdReserve(nofile uint64) uint64 {
	return min(FDReserve, max(minFDReserve, nofile/4))
}

// BackendConns returns how many backend connections the proxy opens at most
// with loops event loops: every loop keeps server_connections connections to
// every server and to each of its replicas, and one more to each for
// clients with big replies (dialed when first needed). RESP3 clients of a
// Redis pool get a second set like it, opened when first needed, which this
// does not count. Redis clients in pub/sub, a
// blocking command or a transaction hold a connection of their own on top
// (one descriptor more per such client), which this does not count.
func (c *Config) BackendConns(loops int) int {
	n := 0
	for i := range c.Pools {
		p := &c.Pools[i]
		conns := max(p.ServerConnections, 1) + 1 // and the bulk one
		for _, s := range p.Servers {
			n += conns * (1 + len(s.Replicas))
		}
	}
	return max(loops, 1) * n
}

// DefaultMaxClients returns how many client connections, across all pools,
// fit in a file-descriptor limit of nofile (the soft RLIMIT_NOFILE) once
// BackendConns(loops) and FDReserve are set aside: the default for a proxy
// whose pools leave limits.max_clients at 0, so that accepting clients can
// never take the descriptors the proxy needs to reach its servers. It
// returns an error when nofile leaves no room for clients at all. An
// unlimited nofile (RLIM_INFINITY) gives math.MaxInt.
func (c *Config) DefaultMaxClients(nofile uint64, loops int) (int, error) {
	reserve := uint64(c.BackendConns(loops)) + fdReserve(nofile)
	if nofile <= reserve {
		return 0, fmt.Errorf("file-descriptor limit %d leaves no room for clients: %d backend connections (%d loops) and %d reserved need %d; raise the limit (ulimit -n, LimitNOFILE=)",
			nofile, c.BackendConns(loops), max(loops, 1), fdReserve(nofile), reserve)
	}
	if n := nofile - reserve; n < math.MaxInt {
		return int(n), nil
	}
	return math.MaxInt, nil
}
