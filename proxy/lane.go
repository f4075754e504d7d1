package proxy

// Lanes. A backend answers each connection in order, so a request shares
// the wait of everything queued ahead of it on its connection. A client
// whose replies are big (a 1 MiB value takes about 5 ms to pass through the
// proxy on the 2-core VMs here) would make every other client of its loop
// wait behind its replies; one that pipelines gets of a big value without
// reading them did so for the whole attack (docs/security.md). So each
// server has, besides its server_connections shared connections, one bulk
// connection per loop: a client whose replies average bulkReply or more
// sends its requests there, and the shared connections carry only small
// replies. The bulk connection is dialed when first used (never by
// preconnect), so a pool without big replies never opens it.
//
// A client changes lanes only when it has nothing in flight (nothing in its
// FIFO, and no all_async copy of a write it was answered for), so its
// requests to one server always travel on one connection at a time and stay
// ordered (a set followed by a get of the same key is answered in that
// order).

// bulkReply is the average reply size from which a client uses the bulk
// connections.
const bulkReply = 64 << 10

// bulkLane marks a lane (see client.lane) as the bulk one; client ids never
// reach it.
const bulkLane = 1 << 63

// lanes is how many connections per server and loop a pool with
// server_connections n keeps: n shared and one bulk.
func lanes(n int) int { return max(n, 1) + 1 }

// lane is what routing picks cl's connections by: its id, marked as bulk
// while it uses the bulk connections.
func (cl *client) lane() uint64 {
	if cl.bulk {
		return cl.id | bulkLane
	}
	return cl.id
}

// chooseLane sets whether cl's next requests use the bulk connections, by
// the size of its recent replies; called when it has none in flight.
func (cl *client) chooseLane() {
	cl.bulk = cl.avgReply >= bulkReply
}

// shared is how many shared connections pr keeps to each server.
func (pr *poolRT) shared() int { return pr.conns - 1 }

// connIndex is which of a server's connections lane uses: the last one for
// the bulk lane, else one of the shared ones, by client id.
func (pr *poolRT) connIndex(lane uint64) int {
	if lane&bulkLane != 0 {
		return pr.conns - 1
	}
	return int(lane % uint64(pr.shared()))
}

// spread is what lane's choice among replicas goes by: the client id, over
// the shared connections, so that clients spread over replicas as they do
// over connections.
func (pr *poolRT) spread(lane uint64) uint64 {
	return (lane &^ bulkLane) / uint64(pr.shared())
}

// isBulk reports whether connection index c of a server is its bulk one.
func (pr *poolRT) isBulk(c int) bool { return c == pr.conns-1 }
