// Package proxy is cacheproxy's data path: one gnet engine serves every
// pool's listener; each event loop owns its clients, its backend connections
// and its scratch space, so the hot path takes no locks.
//
//	client ──► OnTraffic(client)            parse every complete request in place
//	             │ codec.serve              (proxy/memcache or proxy/resp)
//	             │  route: ring.Pick(key) ─► server, conn = client id % server_connections
//	             │  local commands answered at once (version, stats, mn, ...)
//	             ▼
//	           request ──► client FIFO      replies leave only from the head: in order
//	             │
//	             ├─► backend FIFO + write buffer (fragments for multi-key requests)
//	             ▼
//	           loop flush task              one write per dirty backend connection per
//	             │                          event-loop iteration, batched across clients
//	             ▼
//	backend ──► OnTraffic(backend)          frame each complete reply, complete the FIFO
//	             │                          head, merge fragments, drop quiet replies
//	             ▼
//	           client FIFO head done? ──►  append to the client's output, one write per
//	                                        client per callback
//
// Accepting: the proxy accepts clients itself, one goroutine per pool
// listener, and hands each connection to an event loop (Engine.Register):
// gnet's own acceptor stops the engine when accept fails, as it does when the
// descriptor limit is reached; here a failed accept is counted and retried
// after a backoff while open clients are served (accept.go).
//
// Half-closed clients: gnet closes a connection at read EOF; a client that
// shut down its writing side with replies owed lives on, written through a
// duplicate of its socket, until it has every reply (halfclose.go).
//
// Big replies (over 64 KiB, stream.go) are not gathered whole: a cursor frames
// them as they arrive; at the head of the client's FIFO they are written
// through, otherwise collected once at their announced size and queued to the
// client by reference, written paced (client.pump). max_memory bounds every
// reply byte held; past it a reply is refused, or cut where memcached would.
//
// Failures: a backend connection that errors, closes or times out fails every
// request in flight on it with a protocol error reply (SERVER_ERROR / -ERR),
// is closed, and counts toward the server's ejection (package pool). A
// request for a server whose connection is down fails at once.
package proxy
