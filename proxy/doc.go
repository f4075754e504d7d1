// Package proxy is cacheproxy's data path: one gnet engine serves every
// pool's listener; each event loop owns its clients, its backend connections
// and its scratch space, so the hot path takes no locks.
//
//	client ──► OnTraffic(client)            adopt the pool's current version, then
//	             │ codec.serve              parse every complete request in place
//	             │                          (proxy/memcache or proxy/resp); local
//	             │                          commands answered at once (version, mn, ...)
//	             │ routing seam (route.go)  see below
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
// The routing seam. Every forwarded request of both protocols leaves through
// route.go; the codecs keep parsing, splitting keys by server, framing,
// merging and error replies:
//
//	codec (mccodec.go, respcodec.go, respdedicated.go)
//	  │ pr.pick(key) ─────────────► slot   ring index (configuration order) → slot
//	  │ pr.observe(l, key) ───────► hot-key detector (reads; hotkeys.go)
//	  │ pr.lookup(l, key) ────────► near cache: plain get/GET/MGET or value-only mg of a hot key
//	  │ pr.written(l, r, key|nil) ► detector + near-cache invalidation, before
//	  │                              queueing and again at r's reply: every
//	  │                              keyed write, script keys, queued
//	  │                              transaction commands, flushes (nil)
//	  ├─ one server:  route(cl, pr, r, slot, read, frame)
//	  ├─ several:     newFragment / fanoutFragments ─► sendFragments ─► route per fragment
//	  └─ client's own connection (MULTI, blocking, pub/sub): sendOn(b, r, frame)
//	                     │
//	  route: read? loop.readBackendFor (read_policy, replicas) : loop.backendFor
//	         (connection = client id % server_connections, or the bulk one
//	          for a client whose replies are big: lane.go)
//	  sendOn: server down? fail r now (refuse) : frame into b.wbuf, b.enqueue(r)
//
// Pool versions and reload (pool.go, loop.go, reload.go). A pool is a
// poolLive (name, listener, client count, stable server slots: one per server
// name+address for the pool's life) holding its current version, a poolRT,
// behind an atomic pointer. A version is immutable: a copy of the pool's
// configuration, its ring, health, codec, dialer. Reload builds new versions
// (health carried over by server name), and, if every pool can take its
// change, publishes them:
//
//	Reload ──► newVersion(cfg, prev) ──► live.cur.Store(v2) ──► health(v1) stops
//	                                          │
//	        each loop, on its own goroutine (Execute, or a client's next read):
//	        loop.version ─► adopt(v2): connections by slot
//	             kept slot ─────► same backend (no re-dial), follows v2
//	             new slot ──────► new backend (dialed on first use / preconnect)
//	             removed slot ──► retired: closes once its FIFO is empty
//	        clients switch to v2 before parsing their next request; a request
//	        parsed under v1 finishes on the backend it was queued on.
//
// A version whose ring differs from its predecessor's may warm up
// (warmup.go): for warmup, a get/mg miss on a moved key's new server is
// sent again to its old one (as read_repair does for copies, replica.go)
// and a hit copied with add, each step a request handled in a reply
// callback.
//
// A removed pool stops accepting and its clients drain as on shutdown; its
// connections retire once the loop has none of its clients left.
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
// Who may do what: a Redis pool's accounts (redis_auth and users) are
// built once per pool version (respauth.go); each user's ACL rules are a
// bitmap over the command table (resp.ACL), checked per command in
// respCodec.dispatch. A memcache pool with an auth_file lets a client in
// only after memcached -Y's authentication set (mcauth.go). Backend
// connections authenticate with the pool's server credentials.
//
// Failures: a backend connection that errors, closes or times out fails every
// request in flight on it with a protocol error reply (SERVER_ERROR / -ERR),
// is closed, and counts toward the server's ejection (package pool). A
// request for a server whose connection is down fails at once.
package proxy
