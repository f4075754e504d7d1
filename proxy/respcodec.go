package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/hotkey"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// redisVersion is the server version the proxy reports in HELLO and INFO:
// the command table's (Redis 7.0), so clients enable what it has.
const redisVersion = "7.0.15"

// respCodec serves a Redis pool.
type respCodec struct {
	pr     *poolRT
	limits resp.Limits
	// handshake is sent on every new backend connection: AUTH and SELECT.
	handshake [][]byte
	// users are the version's client accounts (redis_auth and users).
	users *respUsers
}

// respState is a Redis client's session state.
type respState struct {
	parser *resp.Parser
	req    resp.Request
	authed bool
	// user is who the client authenticated as (nil while !authed), and
	// usersOf the pool version whose accounts it came from: after a
	// reload the client follows the new version's (followUsers).
	user    *aclUser
	usersOf *respUsers
	// authFails counts wrong AUTH passwords since the last right one; at
	// MaxAuthFailures the connection is closed.
	authFails int
	name      []byte
	// resp3 is set by HELLO 3 (cleared by HELLO 2 and RESET): the client's
	// requests travel on backend connections that did HELLO 3 (see
	// loop.clientBackend), and the replies the proxy makes are RESP3.
	resp3 bool
	// scratch for splitting
	keyIdx  []int
	servers []int
	fragOf  []int
	// cluster pools: each key's hash slot, each fragment's
	hslots   []int
	fragSlot []int
	fragArg  [][][]byte
	iters    []resp.Elements
	scanArgs [][]byte
	// hot keys: per key of an MGET, its cached bulk (nil: none) and
	// whether its reply should fill the near cache.
	cached [][]byte
	fills  []bool

	txn *txnState // non-nil between MULTI (or WATCH) and EXEC/DISCARD
	// awaitPush counts (un)subscribe confirmations the servers still owe;
	// parsing waits until they are in, so replies stay in order.
	awaitPush int
	sub       *pubsubState // non-nil once the client subscribed
	// dedicated connections (transactions, blocking commands, pub/sub), by server.
	dedicated map[int]*backend
	// lane is where the client's latest forwarded request went: the shared
	// connections or its dedicated ones. Requests on different connections
	// can run out of order at the server, so a request for the other lane
	// waits until the client has nothing in flight (see laneOf).
	lane lane
}

// lane is the kind of backend connection a request travels on.
type lane uint8

const (
	laneNone      lane = iota // answered by the proxy: no backend
	laneShared                // the loop's shared, pipelined connections
	laneDedicated             // the client's own (transactions, blocking commands)
)

func newRespCodec(pr *poolRT) (*respCodec, error) {
	lim := pr.cfg.Limits
	users, err := newRespUsers(pr.cfg)
	if err != nil {
		return nil, err
	}
	c := &respCodec{pr: pr, limits: resp.Limits{MaxMultibulk: lim.MaxMultibulk, MaxBulk: lim.MaxValueSize}, users: users}
	if auth := serverAuth(pr.cfg); auth != nil {
		c.handshake = append(c.handshake, auth)
	}
	if pr.cfg.RedisDB != 0 {
		c.handshake = append(c.handshake, resp.AppendCommand(nil, []byte("SELECT"), []byte(strconv.Itoa(pr.cfg.RedisDB))))
	}
	return c, nil
}

func (rc *respCodec) initClient(cl *client) {
	cl.rs = &respState{parser: resp.NewParser(rc.limits), usersOf: rc.users}
	if rc.users.open {
		cl.rs.authed, cl.rs.user = true, rc.users.def
	}
}

func (rc *respCodec) probeRequest() ([]byte, string) {
	if auth := serverAuth(rc.pr.cfg); auth != nil {
		// AUTH answers +OK when the credentials are right; a server
		// without them configured answers an error, and the probe fails
		// loudly.
		return auth, "+OK"
	}
	return []byte("PING\r\n"), "+PONG"
}

func (rc *respCodec) errorReply(dst []byte, msg string) []byte {
	return resp.AppendError(dst, "ERR "+msg)
}

// tooManyClients is redis-server's own refusal at maxclients.
func (rc *respCodec) tooManyClients() []byte {
	return resp.AppendError(nil, "ERR max number of clients reached")
}

// hello3 switches a backend connection to RESP3.
const hello3 = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"

// onConnect queues the connection handshake (AUTH, SELECT, and HELLO 3 on
// a connection for RESP3 clients) ahead of any request; its replies are
// checked and swallowed.
func (rc *respCodec) onConnect(b *backend) {
	for _, h := range rc.handshake {
		rc.handshakeStep(b, h)
	}
	if b.resp3 {
		rc.handshakeStep(b, []byte(hello3)) // after AUTH: HELLO needs an authenticated connection
	}
	if b.replica >= 0 && rc.pr.cfg.Cluster {
		rc.handshakeStep(b, []byte(readonlyCmd)) // a cluster replica serves reads of its master's slots
	}
}

// handshakeStep queues one handshake request h on b; its reply is checked
// (replyFits) and dropped.
func (rc *respCodec) handshakeStep(b *backend, h []byte) {
	r := b.l.newRequest()
	r.internal = true
	b.wbuf = append(b.wbuf, h...)
	b.enqueue(r, len(h))
}

func (rc *respCodec) serve(cl *client, buf []byte) int {
	rs := cl.rs
	off := 0
	for off < len(buf) && !cl.closed && !cl.quitting && !cl.waitIdle {
		if rs.awaitPush > 0 {
			// Subscription confirmations still to come from the servers
			// must reach the client before any later reply.
			cl.waitIdle = true
			break
		}
		if cl.full() {
			cl.paused = true
			break
		}
		rs.parser.Unauthenticated = !rs.authed
		n, err := rs.parser.Parse(buf[off:], &rs.req)
		if err != nil {
			var pe *resp.Error
			reply := []byte(nil)
			if errors.As(err, &pe) {
				reply = pe.Reply
			} else {
				reply = resp.AppendError(nil, "ERR Protocol error: "+err.Error())
			}
			pc := cl.l.pools[rc.pr.idx]
			pc.rejected[RejectProtocol].Add(1)
			pc.errors[ClassInvalid].Add(1)
			if pe == nil || pe.Close {
				pc.clientErr.Add(1)
				cl.closeWith(reply)
				return len(buf)
			}
			rc.reject(cl, reply, RejectProtocol)
			rs.parser.Reset()
			return len(buf) // a non-closing protocol error leaves no way to resynchronise within buf
		}
		if n == 0 {
			cl.need = rs.parser.Need()
			break
		}
		cl.need = 0
		if len(rs.req.Args) > 0 && cl.fifo.Len() > 0 && (isSubscribe(rs.req.Cmd) || switchesProtocol(&rs.req)) {
			// Subscription replies bypass the FIFO, and a HELLO that
			// names a version moves the client to other connections
			// and other reply forms: wait until every earlier reply is
			// out, then parse this request again.
			cl.waitIdle = true
			rs.parser.Reset()
			break
		}
		if len(rs.req.Args) > 0 {
			if ln := rs.laneOf(&rs.req); ln != laneNone {
				if ln != rs.lane && cl.fifo.Len() > 0 {
					// One Redis runs a client's commands in order; here
					// the shared and the dedicated connections would
					// race (a GET overtaking the EXEC before it, a SET
					// landing after the BLPOP behind it). Wait until
					// the client has nothing in flight, then parse this
					// request again.
					cl.waitIdle = true
					rs.parser.Reset()
					break
				}
				rs.lane = ln
			}
		}
		off += n
		if len(rs.req.Args) == 0 {
			continue // an empty line or *0: skipped, as Redis does
		}
		if securityWarning(rs.req.Args[0]) {
			// Redis takes "POST" and "Host:" for an HTTP request sent to
			// it (a cross-protocol attack) and closes the connection
			// without a reply; so does the proxy, after the replies owed.
			cl.closeWith(nil)
			return len(buf)
		}
		rc.dispatch(cl, &rs.req)
	}
	return off
}

// laneOf tells which connections req will travel on.
func (rs *respState) laneOf(req *resp.Request) lane {
	cmd := req.Cmd
	if cmd == nil {
		return laneNone
	}
	if cmd.IsContainer() && len(req.Args) >= 2 {
		if sub := cmd.Resolve(req.Args); sub != nil {
			cmd = sub
		}
	}
	switch {
	case cmd.Class == resp.ClassLocal:
		return laneNone
	case rs.txn != nil && rs.txn.inMulti || cmd.Class == resp.ClassDedicated:
		// Between WATCH and MULTI other commands run as usual, on the
		// shared connections.
		return laneDedicated
	}
	return laneShared
}

// securityWarning reports whether name is one Redis refuses as a likely
// HTTP request ("POST", "Host:", any case, compared as C strings).
func securityWarning(name []byte) bool {
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return bytes.EqualFold(name, []byte("post")) || bytes.EqualFold(name, []byte("host:"))
}

// reject answers with an error the proxy makes, counting why. Inside MULTI
// a refused command dooms the transaction: EXEC answers -EXECABORT, as
// Redis does for a command refused while queueing.
func (rc *respCodec) reject(cl *client, reply []byte, reason RejectReason) {
	if t := cl.rs.txn; t != nil && t.inMulti {
		t.abort(reply)
	}
	cl.refuse(reason, reply)
}

// local queues a reply the proxy makes itself.
func (rc *respCodec) local(cl *client, reply []byte) {
	cl.answer(ClassLocal, reply, false)
}

// dispatch routes one request by its command's class.
func (rc *respCodec) dispatch(cl *client, req *resp.Request) {
	rs := cl.rs
	if rs.usersOf != rc.users {
		rc.followUsers(cl) // a reload
	}
	cmd := req.Cmd
	if cmd == nil && strings.EqualFold(string(req.Args[0]), "cacheproxy") && rs.authed && rs.txn == nil {
		if scan := resp.Lookup([]byte("scan")); !rs.user.allows(scan) {
			// It lists key names, as SCAN does: a user needs SCAN's
			// permission for it.
			rc.reject(cl, resp.ErrNoPermName(nil, "cacheproxy"), RejectRefused)
			return
		}
		rc.proxyCommand(cl, req)
		return
	}
	if cmd == nil {
		rc.reject(cl, resp.ErrUnknownCommand(nil, req.Args[0], req.Args[1:]), RejectProtocol)
		return
	}
	if cmd.IsContainer() && !(cmd.Name == "command" && len(req.Args) == 1) { // bare COMMAND lists every command
		if len(req.Args) < 2 {
			rc.reject(cl, resp.ErrWrongArity(nil, cmd.Name), RejectProtocol)
			return
		}
		sub := cmd.Resolve(req.Args)
		if sub == nil {
			rc.reject(cl, resp.ErrUnknownSubcommand(nil, req.Args[1], strings.ToUpper(cmd.Name)), RejectProtocol)
			return
		}
		cmd = sub
	}
	if !cmd.CheckArity(len(req.Args)) {
		rc.reject(cl, resp.ErrWrongArity(nil, cmd.Name), RejectProtocol)
		return
	}
	if !rs.authed && !authExempt(cmd.Name) {
		rc.reject(cl, resp.AppendError(nil, "NOAUTH Authentication required."), RejectRefused)
		return
	}
	if rs.user != nil && !rs.user.allows(cmd) {
		// The user's ACL rules, checked where Redis checks them: after
		// authentication, before anything else about the command.
		rc.reject(cl, resp.ErrNoPerm(nil, cmd), RejectRefused)
		return
	}
	if rs.sub != nil && rs.sub.count() > 0 && !rs.resp3 && !rc.allowedSubscribed(cmd.Name) {
		// (In RESP3 a subscribed client may run any command, as in Redis:
		// messages arrive as pushes, out of band.)
		rc.reject(cl, resp.AppendError(nil, "ERR Can't execute '"+cmd.Name+
			"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"), RejectRefused)
		return
	}
	if rc.pr.cfg.Cluster && cmd.Parent != nil && cmd.Parent.Name == "cluster" && rs.txn == nil && rc.clusterCommand(cl, req, cmd) {
		return // CLUSTER INFO, SLOTS, ...: the proxy is a one-node cluster (cluster.go)
	}
	// The key positions, found once: the limit check and routing use them.
	rs.keyIdx = rs.keyIdx[:0]
	if cmd.Class != resp.ClassLocal {
		rs.keyIdx = cmd.KeyIndexes(req.Args, rs.keyIdx)
	}
	if max := rc.pr.cfg.Limits.MaxKeyLength; max > 0 {
		for _, i := range rs.keyIdx {
			if len(req.Args[i]) > max {
				rc.reject(cl, resp.AppendError(nil, "ERR key too long: "+strconv.Itoa(len(req.Args[i]))+
					" bytes, the limit is "+strconv.Itoa(max)+" (limits.max_key_length)"), RejectLimit)
				return
			}
		}
	}
	if t := rs.txn; t != nil && t.inMulti && cmd.Class == resp.ClassLocal {
		// Inside MULTI Redis queues these too (+QUEUED) and answers them
		// in EXEC's array: answered here, the client would take +PONG for
		// the QUEUED it expects.
		switch cmd.Name {
		case "ping", "echo", "time":
			rc.txnCommand(cl, req, cmd) // any server answers them
			return
		case "quit", "reset":
			// As before: they end the transaction with the connection.
		default:
			rc.reject(cl, resp.AppendError(nil, "ERR command '"+cmd.Name+
				"' can not be used in a transaction through the proxy"), RejectRefused)
			return
		}
	}
	if rs.txn != nil && cmd.Class != resp.ClassLocal {
		rc.txnCommand(cl, req, cmd)
		return
	}
	switch cmd.Class {
	case resp.ClassLocal:
		rc.answer(cl, req, cmd)
	case resp.ClassSingle:
		rc.forwardKeyed(cl, req, cmd, false)
	case resp.ClassSameServer:
		rc.forwardKeyed(cl, req, cmd, true)
	case resp.ClassAny:
		rc.forwardTo(cl, req, rc.pr.anyServer(), ClassRead, nil)
	case resp.ClassSplit:
		rc.split(cl, req, cmd)
	case resp.ClassFanout:
		if cmd.Merge == resp.MergeScan {
			rc.scan(cl, req)
		} else {
			rc.fanout(cl, req, cmd)
		}
	case resp.ClassDedicated:
		rc.dedicatedCommand(cl, req, cmd)
	case resp.ClassRefused:
		if rc.pr.allowed(cmd) {
			if len(rs.keyIdx) == 0 {
				rc.fanoutAll(cl, req)
				return
			}
			rc.forwardKeyed(cl, req, cmd, true)
			return
		}
		rc.reject(cl, resp.ErrNotAllowed(nil, cmd.Name), RejectRefused)
	case resp.ClassUnsupported:
		switch cmd.Name {
		case "client|tracking", "client|caching", "client|getredir", "client|trackinginfo":
			rc.reject(cl, resp.ErrTracking(nil, cmd.Name), RejectRefused)
		default:
			rc.reject(cl, resp.ErrUnsupported(nil, cmd.Name, cmd.Reason), RejectRefused)
		}
	default:
		rc.reject(cl, resp.ErrUnknownCommand(nil, req.Args[0], req.Args[1:]), RejectProtocol)
	}
}

// authExempt lists the commands a client may send before AUTH.
func authExempt(name string) bool {
	switch name {
	case "auth", "hello", "quit", "reset":
		return true
	}
	return false
}

// proxyCommand answers the proxy's own command: CACHEPROXY HOTKEYS lists
// the pool's hot keys, hottest first, as an array of [key, rate, server,
// cached] (key cut to 64 bytes with other than printable ASCII escaped
// as \xNN; rate a bulk string, reads and writes per second; cached 1 or 0).
func (rc *respCodec) proxyCommand(cl *client, req *resp.Request) {
	if len(req.Args) != 2 || !strings.EqualFold(string(req.Args[1]), "hotkeys") {
		rc.reject(cl, resp.AppendError(nil, "ERR unknown CACHEPROXY subcommand: try CACHEPROXY HOTKEYS"), RejectProtocol)
		return
	}
	list := cl.l.p.poolHotKeys(rc.pr.live)
	b := resp.AppendArrayHeader(nil, len(list))
	for _, h := range list {
		b = resp.AppendArrayHeader(b, 4)
		b = resp.AppendBulkString(b, DisplayKey(h.Key))
		b = resp.AppendBulk(b, strconv.AppendFloat(nil, h.Rate, 'f', 1, 64))
		b = resp.AppendBulkString(b, h.Server)
		if h.Cached {
			b = resp.AppendInt(b, 1)
		} else {
			b = resp.AppendInt(b, 0)
		}
	}
	rc.local(cl, b)
}

// keyServer returns the server all of req's keys hash to: -1 when it has no
// keys, -2 when they span servers. It reads the key positions dispatch found.
func (rc *respCodec) keyServer(cl *client, req *resp.Request) int {
	rs := cl.rs
	s := -1
	for _, i := range rs.keyIdx {
		ks := rc.pr.pick(req.Args[i])
		if ks < 0 {
			ks = rc.pr.anyServer() // no live server cannot happen: Health keeps one
		}
		if s == -1 {
			s = ks
		} else if ks != s {
			return -2
		}
	}
	return s
}

// forwardKeyed sends a request to the server of its key(s).
func (rc *respCodec) forwardKeyed(cl *client, req *resp.Request, cmd *resp.Command, same bool) {
	s := rc.keyServer(cl, req)
	switch {
	case s == -2:
		rc.reject(cl, rc.crossSlot(), RejectRefused)
		return
	case s == -1:
		s = rc.pr.anyServer() // no keys (EVAL with numkeys 0): any server does
	}
	class := ClassWrite
	var fillKey []byte
	if cmd.Flags&resp.FlagReadonly != 0 {
		class = ClassRead
		if pr := rc.pr; pr.hk != nil {
			for _, i := range cl.rs.keyIdx {
				pr.observe(cl.l, req.Args[i])
			}
			if cmd.Name == "get" {
				key := req.Args[1]
				v, hot := pr.lookup(cl.l, key)
				if v != nil {
					r := cl.l.newRequest()
					r.class = ClassRead
					r.reply = append(r.reply[:0], v...)
					cl.push(r)
					cl.complete(r)
					proto := int8(2)
					if cl.rs.resp3 {
						proto = 3
					}
					pr.refreshAhead(cl, key, s, proto, func(r *request) { r.replies = cmd.Replies },
						func(dst []byte, _ int) []byte { return req.AppendForward(dst) })
					return
				}
				if hot {
					fillKey = key
				}
			}
		}
	}
	rc.forwardTo(cl, req, s, class, fillKey)
}

// forwardTo sends req as is to server s. A write's keys (found by
// dispatch) pass the written hook; fillKey, when not nil, is a hot key
// whose reply fills the near cache.
func (rc *respCodec) forwardTo(cl *client, req *resp.Request, s int, class CmdClass, fillKey []byte) {
	r := cl.l.newRequest()
	r.class = class
	var ji int    // the argument holding a spread expiry (jitter.go), 0: none
	var ttl int64 // the spread expiry
	if cmd := req.Cmd; cmd != nil {
		if sub := cmd.Resolve(req.Args); sub != nil {
			cmd = sub
		}
		r.replies = cmd.Replies
		if class == ClassWrite {
			ji, ttl = cl.l.respTTL(rc.pr, cmd.Name, req)
		}
	}
	cl.push(r)
	if class == ClassWrite {
		rc.writtenKeys(cl, r, req)
	} else if fillKey != nil {
		proto := int8(2)
		if cl.rs.resp3 {
			proto = 3
		}
		if rc.pr.coalesce(cl.l, r, fillKey, s, proto) {
			return // waits for the same key's read in flight
		}
	}
	route(cl, rc.pr, r, s, class == ClassRead, func(dst []byte, _ int) []byte {
		if ji > 0 {
			return req.AppendForwardArg(dst, ji, ttl)
		}
		return req.AppendForward(dst)
	}, -1)
}

// writtenKeys passes the keys of a write (found by dispatch) to the
// pool's written hook; r (nil: none) carries them.
func (rc *respCodec) writtenKeys(cl *client, r *request, req *resp.Request) {
	for _, i := range cl.rs.keyIdx {
		rc.pr.written(cl.l, r, req.Args[i])
	}
}

// split sends MGET, MSET, DEL, UNLINK, EXISTS, TOUCH as one request per
// server and merges the replies.
func (rc *respCodec) split(cl *client, req *resp.Request, cmd *resp.Command) {
	rs := cl.rs
	step := 1
	if cmd.Name == "mset" {
		step = 2
		if (len(req.Args)-1)%2 != 0 {
			rc.reject(cl, resp.ErrWrongArity(nil, cmd.Name), RejectProtocol)
			return
		}
	}
	nServers := len(rc.pr.slots) // fragOf is indexed by slot
	rs.servers = rs.servers[:0]
	same := true
	// A cluster node takes the keys of one hash slot per command: a
	// cluster pool splits by hash slot, not by server.
	cluster := rc.pr.cfg.Cluster
	rs.hslots, rs.fragSlot = rs.hslots[:0], rs.fragSlot[:0]
	for i := 1; i < len(req.Args); i += step {
		s := rc.pr.pick(req.Args[i])
		if s < 0 {
			rc.reject(cl, resp.AppendError(nil, "ERR no server available"), RejectRefused)
			return
		}
		rs.servers = append(rs.servers, s)
		if s != rs.servers[0] {
			same = false
		}
		if cluster {
			rs.hslots = append(rs.hslots, hashring.KeySlot(req.Args[i]))
			if rs.hslots[len(rs.hslots)-1] != rs.hslots[0] {
				same = false
			}
		}
	}
	class := ClassWrite
	if cmd.Name == "mget" || cmd.Name == "exists" {
		class = ClassRead
	}
	pr := rc.pr
	hot := false
	if pr.hk != nil && class == ClassRead {
		rs.cached, rs.fills = rs.cached[:0], rs.fills[:0]
		all := true
		for i := 1; i < len(req.Args); i++ {
			k := req.Args[i]
			pr.observe(cl.l, k)
			var v []byte
			var h bool
			if cmd.Name == "mget" {
				v, h = pr.lookup(cl.l, k)
			}
			rs.cached = append(rs.cached, v)
			rs.fills = append(rs.fills, h && v == nil)
			hot = hot || h
			all = all && v != nil
		}
		if all && cmd.Name == "mget" {
			r := cl.l.newRequest()
			r.class = ClassMulti
			r.reply = resp.AppendArrayHeader(r.reply[:0], len(rs.cached))
			for _, v := range rs.cached {
				r.reply = append(r.reply, v...)
			}
			clear(rs.cached)
			cl.push(r)
			cl.complete(r)
			return
		}
	}
	if same && !hot {
		rc.forwardTo(cl, req, rs.servers[0], class, nil)
		return
	}
	l := cl.l
	parent := l.newRequest()
	parent.class = ClassMulti
	parent.merge = cmd.Merge
	parent.name = cmd.Name
	cl.push(parent)
	if cap(rs.fragOf) < nServers {
		rs.fragOf = make([]int, nServers)
	}
	rs.fragOf = rs.fragOf[:nServers]
	for i := range rs.fragOf {
		rs.fragOf[i] = -1
	}
	for k, s := range rs.servers {
		if hot {
			key := req.Args[1+k]
			parent.keys = append(parent.keys, key...)
			parent.keyEnds = append(parent.keyEnds, len(parent.keys))
			parent.hkCached = append(parent.hkCached, rs.cached[k])
			parent.hkFills = append(parent.hkFills, rs.fills[k])
			var g hotkey.Gen
			if rs.fills[k] {
				g = pr.hc.Begin(key)
				parent.hkc = pr.hc
			}
			parent.hkGens = append(parent.hkGens, g)
			if rs.cached[k] != nil {
				parent.keyFrag = append(parent.keyFrag, -2) // answered from the near cache
				continue
			}
		}
		fi := rs.fragOf[s]
		if cluster {
			fi = slices.Index(rs.fragSlot, rs.hslots[k]) // the fragments are few
		}
		if fi < 0 {
			fi = len(parent.frags)
			if cluster {
				rs.fragSlot = append(rs.fragSlot, rs.hslots[k])
			} else {
				rs.fragOf[s] = fi
			}
			f := newFragment(l, parent, s)
			f.read = class == ClassRead
			if len(rs.fragArg) <= fi {
				rs.fragArg = append(rs.fragArg, nil)
			}
			rs.fragArg[fi] = append(rs.fragArg[fi][:0], req.Args[0])
		}
		i := 1 + k*step
		rs.fragArg[fi] = append(rs.fragArg[fi], req.Args[i:i+step]...)
		parent.keyFrag = append(parent.keyFrag, fi)
		if class == ClassWrite {
			pr.written(l, parent.frags[fi], req.Args[i])
		}
	}
	if hot {
		clear(rs.cached)
	}
	sendFragments(cl, rc.pr, parent, func(dst []byte, fi int) []byte {
		return resp.AppendCommand(dst, rs.fragArg[fi]...)
	})
}

// fanoutAll sends an opened administrative command to every server: the
// reply is the first server's, or the first error.
func (rc *respCodec) fanoutAll(cl *client, req *resp.Request) {
	rc.fanoutTo(cl, req, resp.MergeSame, false)
}

// fanout sends req to every server and merges the replies. Read-only
// figures (DBSIZE, KEYS, RANDOMKEY) skip ejected servers, which hold no
// keys now.
func (rc *respCodec) fanout(cl *client, req *resp.Request, cmd *resp.Command) {
	skip := cmd.Merge == resp.MergeSum || cmd.Merge == resp.MergeConcat || cmd.Merge == resp.MergeAnyNonNull
	rc.fanoutTo(cl, req, cmd.Merge, skip)
}

// fanoutTo sends req to every server (but ejected ones when skipEjected)
// and merges the replies as merge says.
func (rc *respCodec) fanoutTo(cl *client, req *resp.Request, merge resp.Merge, skipEjected bool) {
	l := cl.l
	parent := l.newRequest()
	parent.class = ClassFanout
	parent.merge = merge
	cl.push(parent)
	fanoutFragments(l, rc.pr, parent, skipEjected)
	if cmd := req.Cmd; cmd != nil {
		if sub := cmd.Resolve(req.Args); sub != nil {
			cmd = sub
		}
		if cmd.Flags&resp.FlagWrite != 0 {
			rc.pr.flushed(l, parent) // FLUSHALL, FLUSHDB, ...: every key
		}
	}
	sendFragments(cl, rc.pr, parent, func(dst []byte, _ int) []byte {
		return req.AppendForward(dst)
	})
}

// scan runs SCAN on one server at a time; the client's cursor carries the
// server index: cursor = serverCursor*nServers + server.
func (rc *respCodec) scan(cl *client, req *resp.Request) {
	n := uint64(len(rc.pr.cfg.Servers))
	c, err := strconv.ParseUint(string(req.Args[1]), 10, 64)
	if err != nil {
		rc.reject(cl, resp.AppendError(nil, "ERR invalid cursor"), RejectProtocol)
		return
	}
	s, bc := rc.pr.slot[c%n], c/n
	r := cl.l.newRequest()
	r.class = ClassRead
	r.merge = resp.MergeScan
	r.server = s
	cl.push(r)
	rs := cl.rs
	args := append(rs.scanArgs[:0], req.Args[0], strconv.AppendUint(nil, bc, 10))
	args = append(args, req.Args[2:]...)
	rs.scanArgs = args[:0]
	route(cl, rc.pr, r, s, false, func(dst []byte, _ int) []byte {
		return resp.AppendCommand(dst, args...)
	}, -1)
}

// reply frames a backend reply for r and delivers it.
func (rc *respCodec) reply(b *backend, buf []byte, r *request) (int, error) {
	// An incomplete reply is always carried over to the start of the next
	// buffer (backend.onTraffic), so the framing state stays valid.
	var n int
	var rep resp.Reply
	var err error
	if b.resp3 {
		n, rep, err = resp.ParseReplyResume(buf, &b.rstate)
	} else {
		n, rep, err = resp.ParseReplyRESP2(buf, &b.rstate)
	}
	if err != nil || n == 0 {
		return n, err
	}
	if err := replyFits(r, rep); err != nil {
		return 0, err
	}
	if rep.Type == '-' && clusterRedirect(b, r, buf[:n]) {
		return n, nil // sent on to the master the cluster named
	}
	if r.internal {
		if resp.IsError(buf[:n]) {
			return 0, &handshakeError{reply: string(rep.Data)}
		}
		r.done = true
		return n, nil
	}
	if r.parent != nil {
		r.failed = resp.IsError(buf[:n])
		r.reply = append(r.reply[:0], buf[:n]...)
		fragmentDone(r, rc)
		return n, nil
	}
	if r.hkFill && rep.Type == '$' && !bytes.HasPrefix(buf, []byte("$-1")) {
		b.pr.fill(b.l, r.hkc, r.keys, r.hkGen, buf[:n])
	}
	if r.hkFlight != nil {
		land(r, buf[:n])
	}
	if r.merge == resp.MergeScan && rep.Type == '*' {
		rc.scanReply(r, buf[:n])
	} else if r.cl != nil && !r.cl.closed && frontIs(r.cl, r) {
		r.cl.out = append(r.cl.out, buf[:n]...)
		r.silent = true
		r.cl.l.markClient(r.cl)
	} else {
		r.reply = append(r.reply[:0], buf[:n]...)
	}
	if r.cl != nil {
		r.cl.complete(r)
	} else {
		r.done = true
	}
	return n, nil
}

// replyFits checks that rep can answer r, the request at the head of the
// connection's FIFO, where the proxy knows what it asked: the connection
// handshake, the fragments of split and fanned-out requests (an MGET
// fragment's array must hold one element per key it asked for), SCAN, and
// the common data commands (resp.Command.Replies: INCR an integer, GET a
// bulk...). An error reply answers anything. A reply that does not fit
// means the connection is out of step (or the server misbehaves): the
// caller closes it and fails its requests rather than hand a client
// someone else's value.
//
// On a RESP3 connection the same replies come typed (a map where RESP2 has
// an array, '_' for a null, ',' for a double...), and a push ('>') is never
// a reply: tracking and pub/sub, the only sources of pushes, are not enabled
// on these connections, so a push means the connection is out of step.
func replyFits(r *request, rep resp.Reply) error {
	switch rep.Type {
	case '-', '!':
		return nil
	case '>':
		return errors.New("push where a reply was due")
	}
	want := byte(0)
	count := -1 // the array length wanted, when known
	switch {
	case r.internal:
		want = '+'
		if rep.Type == '%' {
			want = '%' // HELLO 3's map
		}
	case r.parent != nil:
		p := r.parent
		switch p.merge {
		case resp.MergeKeyOrder:
			want, count = '*', 0
			fi := slices.Index(p.frags, r)
			for _, k := range p.keyFrag {
				if k == fi {
					count++
				}
			}
		case resp.MergeSum:
			want = ':'
		case resp.MergeAllOK:
			want = '+'
		case resp.MergeConcat, resp.MergeAllArray:
			want = '*'
		case resp.MergeAnyNonNull, mergeInfo:
			want = '$'
			if rep.Type == '_' || rep.Type == '=' {
				want = rep.Type // RANDOMKEY's null, INFO's verbatim text in RESP3
			}
		}
	case r.merge == resp.MergeScan:
		want, count = '*', 2
	case !r.replies.Allows(rep.Type):
		return fmt.Errorf("reply of type %q cannot answer the request", rep.Type)
	}
	switch {
	case want == 0:
		return nil
	case rep.Type != want:
		return fmt.Errorf("reply of type %q where %q was due", rep.Type, want)
	case want == '*' && rep.Len < 0 || count >= 0 && rep.Len != count:
		return fmt.Errorf("array of %d elements where %d were due", rep.Len, count)
	}
	return nil
}

// scanReply rewrites a server's SCAN reply cursor into the proxy's.
func (rc *respCodec) scanReply(r *request, reply []byte) {
	it := resp.NewElements(reply)
	var cur, keys []byte
	if it.Next() {
		cur = it.Elem()
	}
	if it.Next() {
		keys = it.Elem()
	}
	_, crep, err := resp.ParseReply(cur)
	bc, perr := strconv.ParseUint(string(crep.Data), 10, 64)
	if err != nil || perr != nil || keys == nil {
		r.reply = append(r.reply[:0], reply...)
		return
	}
	n := uint64(len(rc.pr.cfg.Servers))
	// The proxy's cursor numbers servers by their index in the version
	// the reply arrives under; a server a reload removed ends the scan.
	si := rc.pr.indexOf(r.server)
	var next uint64
	switch {
	case si < 0:
	case bc != 0:
		next = bc*n + uint64(si)
	case uint64(si)+1 < n:
		next = uint64(si) + 1
	}
	r.reply = resp.AppendArrayHeader(r.reply[:0], 2)
	r.reply = resp.AppendBulk(r.reply, strconv.AppendUint(nil, next, 10))
	r.reply = append(r.reply, keys...)
}

// merge builds a split or fanned-out request's reply from its fragments.
// The first error among them is the reply, except for RANDOMKEY, which takes
// any server's key.
func (rc *respCodec) merge(p *request) {
	cl := p.cl
	p.reply = p.reply[:0]
	var firstErr []byte
	for _, f := range p.frags {
		if f.failed {
			if firstErr == nil {
				firstErr = f.reply
			}
			if p.class == ClassMulti {
				fragmentFailed(cl, rc.pr, f, p.name)
			}
		}
	}
	switch {
	case len(p.frags) == 0:
		p.reply = resp.AppendError(p.reply, "ERR no server available")
	case firstErr != nil && p.merge != resp.MergeAnyNonNull && p.merge != mergeInfo:
		p.reply = append(p.reply, firstErr...)
		cl.l.pools[rc.pr.idx].errors[p.class].Add(1)
	default:
		rc.mergeOK(cl, p)
	}
	cl.complete(p)
}

func (rc *respCodec) mergeOK(cl *client, p *request) {
	switch p.merge {
	case resp.MergeKeyOrder:
		rs := cl.rs
		rs.iters = rs.iters[:0]
		for _, f := range p.frags {
			rs.iters = append(rs.iters, resp.NewElements(f.reply))
		}
		p.reply = resp.AppendArrayHeader(p.reply, len(p.keyFrag))
		w := replyBuilder{r: p} // big values are not copied
		for k, fi := range p.keyFrag {
			if fi == -2 {
				w.add(p.hkCached[k])
				continue
			}
			if rs.iters[fi].Next() {
				e := rs.iters[fi].Elem()
				if p.hkc != nil && p.hkFills[k] && len(e) > 0 && e[0] == '$' && !bytes.HasPrefix(e, []byte("$-1")) {
					rc.pr.fill(cl.l, p.hkc, p.key(k), p.hkGens[k], e)
				}
				w.add(e)
			} else if p.segs == nil {
				p.reply = resp.AppendNull(p.reply, rs.resp3)
			} else {
				w.add(resp.AppendNull(nil, rs.resp3))
			}
		}
		w.done()
	case resp.MergeSum:
		var sum int64
		for _, f := range p.frags {
			_, rep, err := resp.ParseReply(f.reply)
			if err == nil && rep.Type == ':' {
				sum += rep.Int
			}
		}
		p.reply = resp.AppendInt(p.reply, sum)
	case resp.MergeAllOK:
		p.reply = resp.AppendSimple(p.reply, "OK")
		for _, f := range p.frags {
			if !bytes.Equal(f.reply, []byte("+OK\r\n")) {
				p.reply = append(p.reply[:0], f.reply...)
				break
			}
		}
	case resp.MergeConcat:
		total := 0
		for _, f := range p.frags {
			_, rep, _ := resp.ParseReply(f.reply)
			total += max(rep.Len, 0)
		}
		p.reply = resp.AppendArrayHeader(p.reply, total)
		for _, f := range p.frags {
			it := resp.NewElements(f.reply)
			for it.Next() {
				p.reply = append(p.reply, it.Elem()...)
			}
		}
	case resp.MergeAllArray:
		var acc []int64
		for i, f := range p.frags {
			it := resp.NewElements(f.reply)
			j := 0
			for it.Next() {
				_, rep, _ := resp.ParseReply(it.Elem())
				if i == 0 {
					acc = append(acc, rep.Int)
				} else if j < len(acc) && rep.Int == 0 {
					acc[j] = 0
				}
				j++
			}
		}
		p.reply = resp.AppendArrayHeader(p.reply, len(acc))
		for _, v := range acc {
			p.reply = resp.AppendInt(p.reply, v)
		}
	case resp.MergeAnyNonNull:
		for _, f := range p.frags {
			if !f.failed && !bytes.HasPrefix(f.reply, []byte("$-1")) && !bytes.HasPrefix(f.reply, []byte("_")) {
				p.reply = append(p.reply, f.reply...)
				return
			}
		}
		p.reply = resp.AppendNull(p.reply, cl.rs.resp3)
	case mergeInfo:
		var sb strings.Builder
		sb.WriteString(rc.infoText(cl, p.info))
		mergeKeyspace(&sb, p.frags)
		p.reply = resp.AppendVerbatim(p.reply, sb.String(), cl.rs.resp3)
	default: // MergeSame and anything else: the first reply
		p.reply = append(p.reply, p.frags[0].reply...)
	}
}

// answer replies to the commands the proxy answers itself.
func (rc *respCodec) answer(cl *client, req *resp.Request, cmd *resp.Command) {
	rs := cl.rs
	args := req.Args
	var b []byte
	if rs.resp3 && (cmd.Name == "command" || cmd.Name == "command|info" || cmd.Name == "command|docs") {
		// Their RESP3 forms (flags as sets, docs as maps, key specs as
		// maps) have shapes of their own: the server's answer is exact.
		rc.forwardTo(cl, req, rc.pr.anyServer(), ClassRead, nil)
		return
	}
	switch cmd.Name {
	case "ping":
		if len(args) > 2 {
			b = resp.ErrWrongArity(nil, cmd.Name) // PING checks its own arity (-1 in the table)
		} else if rs.sub != nil && !rs.resp3 {
			b = resp.AppendArrayHeader(nil, 2)
			b = resp.AppendBulkString(b, "pong")
			if len(args) > 1 {
				b = resp.AppendBulk(b, args[1])
			} else {
				b = resp.AppendBulkString(b, "")
			}
		} else if len(args) > 1 {
			b = resp.AppendBulk(nil, args[1])
		} else {
			b = resp.AppendSimple(nil, "PONG")
		}
	case "echo":
		b = resp.AppendBulk(nil, args[1])
	case "quit":
		rc.local(cl, resp.AppendSimple(nil, "OK"))
		cl.quitting = true
		cl.maybeClose()
		return
	case "reset":
		rc.resetSession(cl)
		// RESET authenticates as the default user, if it needs no password.
		rs.authed, rs.user = false, nil
		if rc.users.open {
			rs.authed, rs.user = true, rc.users.def
		}
		rs.name = nil
		rs.resp3 = false
		b = resp.AppendSimple(nil, "RESET")
	case "auth":
		b = rc.auth(cl, args[1:])
		if rs.authFails >= MaxAuthFailures {
			rc.closeGuesser(cl, b)
			return
		}
	case "hello":
		b = rc.hello(cl, args[1:])
		if rs.authFails >= MaxAuthFailures {
			rc.closeGuesser(cl, b)
			return
		}
	case "acl|whoami":
		b = resp.AppendBulkString(nil, rs.user.name)
	case "select":
		db, err := strconv.Atoi(string(args[1]))
		switch {
		case err != nil:
			b = resp.AppendError(nil, "ERR value is not an integer or out of range")
		case db == rc.pr.cfg.RedisDB:
			b = resp.AppendSimple(nil, "OK")
		default:
			b = resp.AppendError(nil, "ERR SELECT is not allowed through the proxy: this pool serves database "+
				strconv.Itoa(rc.pr.cfg.RedisDB))
		}
	case "time":
		now := time.Now()
		b = resp.AppendArrayHeader(nil, 2)
		b = resp.AppendBulk(b, strconv.AppendInt(nil, now.Unix(), 10))
		b = resp.AppendBulk(b, strconv.AppendInt(nil, int64(now.Nanosecond()/1000), 10))
	case "info":
		rc.infoCommand(cl, args[1:])
		return
	case "command":
		b = resp.AppendCommandAll(nil)
	case "command|count":
		b = resp.AppendCommandCount(nil)
	case "command|info":
		b = resp.AppendCommandInfo(nil, args[2:])
	case "command|docs":
		b = resp.AppendCommandDocs(nil, args[2:])
	case "command|list":
		b = resp.AppendCommandList(nil)
	case "command|getkeys", "command|getkeysandflags":
		b = resp.AppendCommandGetKeys(nil, args[2:])
	case "client|setname":
		if bytes.ContainsAny(args[2], " \n") {
			b = resp.AppendError(nil, "ERR Client names cannot contain spaces, newlines or special characters.")
		} else {
			rs.name = append(rs.name[:0], args[2]...)
			b = resp.AppendSimple(nil, "OK")
		}
	case "client|getname":
		if len(rs.name) == 0 {
			b = resp.AppendNull(nil, rs.resp3)
		} else {
			b = resp.AppendBulk(nil, rs.name)
		}
	case "client|setinfo":
		b = resp.AppendSimple(nil, "OK")
	case "client|id":
		b = resp.AppendInt(nil, int64(cl.id))
	case "client|info":
		b = resp.AppendVerbatim(nil, "id="+strconv.FormatUint(cl.id, 10)+" addr="+cl.raddr.String()+
			" laddr="+cl.laddr.String()+" name="+string(rs.name)+" db="+strconv.Itoa(rc.pr.cfg.RedisDB)+
			" resp="+strconv.Itoa(rc.proto(cl))+"\n", rs.resp3)
	default:
		b = resp.ErrUnknownSubcommand(nil, args[len(args)-1], strings.ToUpper(cmd.Name))
	}
	rc.local(cl, b)
}

// auth checks AUTH [user] password against the pool's accounts: the
// default user (redis_auth, or the user named default) when no user is
// named, else the users.
func (rc *respCodec) auth(cl *client, args [][]byte) []byte {
	if len(args) > 2 {
		return resp.AppendError(nil, "ERR syntax error")
	}
	wrong := resp.AppendError(nil, "WRONGPASS invalid username-password pair or user is disabled.")
	us := rc.users
	if us.open {
		// The default user has no password: the one-argument form is an
		// error, the two-argument one takes any password for "default".
		if len(args) == 1 {
			return resp.AppendError(nil, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		}
		if string(args[0]) != "default" {
			return wrong
		}
		return resp.AppendSimple(nil, "OK")
	}
	u := us.def
	if len(args) == 2 {
		u = us.lookup(args[0])
	}
	if u == nil || !u.check(args[len(args)-1]) {
		// A failed AUTH leaves the client as it was, as in Redis (but
		// counted: see closeGuesser).
		rc.authFailed(cl)
		return wrong
	}
	cl.rs.authed, cl.rs.user, cl.rs.usersOf = true, u, us
	cl.rs.authFails = 0
	return resp.AppendSimple(nil, "OK")
}

// MaxAuthFailures is how many wrong AUTH passwords in a row a client of a
// Redis pool with redis_auth or users may send on one connection: the last one's
// WRONGPASS reply is written and the connection closed, so that a
// password is not guessed at the speed of a pipeline.
const MaxAuthFailures = 10

// authLogEvery bounds the failed-AUTH log lines: at most one per loop
// per second, counting the failures it did not log.
const authLogEvery = int64(time.Second)

// authFailed counts a wrong password and logs the peer, rate-limited.
func (rc *respCodec) authFailed(cl *client) {
	cl.rs.authFails++
	cl.authFailed(rc.pr, cl.rs.authFails)
}

// authFailed counts a wrong password (the fails-th in a row on this
// connection) for pool pr and logs the peer, at most once per
// authLogEvery per loop.
func (cl *client) authFailed(pr *poolRT, fails int) {
	cl.l.pools[pr.idx].authFailures.Add(1)
	l := cl.l
	now := int64(time.Since(l.p.start))
	if l.authLogAt != 0 && now-l.authLogAt < authLogEvery {
		l.authUnlogged++
		return
	}
	l.p.log.Warn("authentication with a wrong password", "pool", pr.cfg.Name, "remote", cl.raddr.String(),
		"failures_on_connection", fails, "closing", fails >= MaxAuthFailures,
		"unlogged_since_last", l.authUnlogged)
	l.authLogAt, l.authUnlogged = now, 0
}

// closeGuesser answers the client's MaxAuthFailures-th wrong password with
// reply (Redis's WRONGPASS) and closes the connection once it is written;
// the pipelined input after it is dropped.
func (rc *respCodec) closeGuesser(cl *client, reply []byte) {
	cl.l.pools[rc.pr.idx].clientErr.Add(1)
	cl.closeWith(reply)
}

// proto is the client's protocol version, 2 or 3.
func (rc *respCodec) proto(cl *client) int {
	if cl.rs.resp3 {
		return 3
	}
	return 2
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] as
// redis-server 7.0 does: the version is checked, then the options, then
// AUTH, then that the client is authenticated; only then are the name and
// the protocol set, and the reply is a map in RESP3, an array in RESP2.
func (rc *respCodec) hello(cl *client, args [][]byte) []byte {
	rs := cl.rs
	resp3 := rs.resp3
	var name, user, pass []byte
	if len(args) > 0 {
		v, err := strconv.ParseInt(string(args[0]), 10, 64)
		if err != nil {
			return resp.AppendError(nil, "ERR Protocol version is not an integer or out of range")
		}
		if v < 2 || v > 3 {
			return resp.AppendError(nil, "NOPROTO unsupported protocol version")
		}
		resp3 = v == 3
		for i := 1; i < len(args); i++ {
			more := len(args) - 1 - i
			switch opt := strings.ToLower(string(args[i])); {
			case opt == "auth" && more >= 2:
				user, pass = args[i+1], args[i+2]
				i += 2
			case opt == "setname" && more >= 1:
				name = args[i+1]
				if bytes.ContainsAny(name, " \n") {
					return resp.AppendError(nil, "ERR Client names cannot contain spaces, newlines or special characters.")
				}
				i++
			default:
				return resp.AppendError(nil, "ERR Syntax error in HELLO option '"+string(args[i])+"'")
			}
		}
	}
	if pass != nil {
		if r := rc.auth(cl, [][]byte{user, pass}); r[0] == '-' {
			return r
		}
	}
	if !rs.authed {
		return resp.AppendError(nil, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	if resp3 != rs.resp3 {
		if rs.sub != nil || rs.txn != nil {
			// Its dedicated connections speak the old version and hold
			// state (subscriptions, a WATCH) that a new one would lose.
			return resp.AppendError(nil, "ERR HELLO cannot change the protocol version through the proxy while the connection has subscriptions or a WATCH; RESET first")
		}
		rs.resp3 = resp3
	}
	if name != nil {
		rs.name = append(rs.name[:0], name...)
	}
	var b []byte
	if rs.resp3 {
		b = resp.AppendMapHeader(nil, 7)
	} else {
		b = resp.AppendArrayHeader(nil, 14)
	}
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, redisVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, int64(rc.proto(cl)))
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, int64(cl.id))
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, "standalone")
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	b = resp.AppendArrayHeader(b, 0)
	return b
}

// INFO sections the proxy answers, as bits of request.info.
const (
	infoServer = 1 << iota
	infoClients
	infoPersistence
	infoProxy
	infoKeyspace
	infoAll = infoServer | infoClients | infoPersistence | infoProxy | infoKeyspace
)

// mergeInfo is the proxy's own merge kind for INFO: the servers' keyspace
// lines summed per database, after the proxy's sections.
const mergeInfo = resp.Merge(255)

// infoCommand answers INFO [section ...]: the server, clients, persistence
// and proxy sections from the proxy, and a keyspace section summed over
// every server (fetched with INFO keyspace) when asked for.
func (rc *respCodec) infoCommand(cl *client, args [][]byte) {
	want := 0
	if len(args) == 0 {
		want = infoAll
	}
	for _, a := range args {
		switch strings.ToLower(string(a)) {
		case "all", "everything", "default":
			want |= infoAll
		case "server":
			want |= infoServer
		case "clients":
			want |= infoClients
		case "persistence":
			want |= infoPersistence
		case "proxy":
			want |= infoProxy
		case "keyspace":
			want |= infoKeyspace
		}
	}
	if want&infoKeyspace == 0 {
		rc.local(cl, resp.AppendVerbatim(nil, rc.infoText(cl, want), cl.rs.resp3))
		return
	}
	l := cl.l
	parent := l.newRequest()
	parent.class = ClassLocal
	parent.merge = mergeInfo
	parent.info = want
	cl.push(parent)
	fanoutFragments(l, rc.pr, parent, true)
	sendFragments(cl, rc.pr, parent, func(dst []byte, _ int) []byte {
		return resp.AppendCommand(dst, []byte("INFO"), []byte("keyspace"))
	})
}

// infoText is the proxy's own INFO sections.
func (rc *respCodec) infoText(cl *client, want int) string {
	p := cl.l.p
	var sb strings.Builder
	section := func(name string) {
		if sb.Len() > 0 {
			sb.WriteString("\r\n")
		}
		sb.WriteString("# " + name + "\r\n")
	}
	if want&infoServer != 0 {
		section("Server")
		sb.WriteString("redis_version:" + redisVersion + "\r\nredis_mode:standalone\r\n")
		sb.WriteString("cacheproxy_version:" + Version + "\r\n")
		sb.WriteString("uptime_in_seconds:" + strconv.FormatInt(int64(time.Since(p.start).Seconds()), 10) + "\r\n")
	}
	if want&infoClients != 0 {
		section("Clients")
		sb.WriteString("connected_clients:" + strconv.FormatInt(p.clients.Load(), 10) + "\r\n")
	}
	if want&infoPersistence != 0 {
		section("Persistence")
		sb.WriteString("loading:0\r\n") // clients such as ioredis wait while loading is 1
	}
	if want&infoProxy != 0 {
		section("Proxy")
		sb.WriteString("pool:" + rc.pr.cfg.Name + "\r\nservers:" + strconv.Itoa(len(rc.pr.cfg.Servers)) + "\r\n")
		for s, srv := range rc.pr.cfg.Servers {
			sb.WriteString("server" + strconv.Itoa(s) + ":name=" + srv.Name + ",addr=" + srv.Addr + ",state=" +
				rc.pr.health.State(s).String() + "\r\n")
		}
	}
	return sb.String()
}

// mergeKeyspace sums the servers' "dbN:keys=K,expires=E,avg_ttl=T" lines
// per database (avg_ttl: the largest) and appends the keyspace section.
func mergeKeyspace(sb *strings.Builder, frags []*request) {
	type dbStat struct{ keys, expires, ttl int64 }
	dbs := map[int]*dbStat{}
	for _, f := range frags {
		_, rep, err := resp.ParseReply(f.reply)
		if err != nil || rep.Type != '$' && rep.Type != '=' {
			continue
		}
		text := rep.Data
		if rep.Type == '=' && len(text) >= 4 {
			text = text[4:] // "txt:"
		}
		for _, line := range strings.Split(string(text), "\n") {
			line = strings.TrimSpace(line)
			name, rest, ok := strings.Cut(line, ":")
			if !ok || !strings.HasPrefix(name, "db") {
				continue
			}
			n, err := strconv.Atoi(name[2:])
			if err != nil {
				continue
			}
			d := dbs[n]
			if d == nil {
				d = &dbStat{}
				dbs[n] = d
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				x, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "keys":
					d.keys += x
				case "expires":
					d.expires += x
				case "avg_ttl":
					d.ttl = max(d.ttl, x)
				}
			}
		}
	}
	if sb.Len() > 0 {
		sb.WriteString("\r\n")
	}
	sb.WriteString("# Keyspace\r\n")
	ids := make([]int, 0, len(dbs))
	for n := range dbs {
		ids = append(ids, n)
	}
	slices.Sort(ids)
	for _, n := range ids {
		d := dbs[n]
		fmt.Fprintf(sb, "db%d:keys=%d,expires=%d,avg_ttl=%d\r\n", n, d.keys, d.expires, d.ttl)
	}
}

// pushFrame frames a message on a subscribed connection: an array in
// RESP2, a push in RESP3 (a message or a confirmation; the connection did
// HELLO 3 when its client did), or an error (a refused subscription),
// nothing else.
func (rc *respCodec) pushFrame(buf []byte) (int, error) {
	var st resp.ReplyState
	n, rep, err := resp.ParseReplyResume(buf, &st)
	if err == nil && n > 0 && !resp.IsError(buf[:n]) && (rep.Type != '*' && rep.Type != '>' || rep.Len < 1) {
		return 0, fmt.Errorf("%q reply where no reply was due", rep.Type)
	}
	return n, err
}

func (rc *respCodec) closeClient(cl *client) { rc.closeDedicated(cl) }

// switchesProtocol reports whether req is a HELLO naming a protocol version:
// requests after it may travel on other connections (those of the other
// version), and replies the proxy makes change form.
func switchesProtocol(req *resp.Request) bool {
	return req.Cmd != nil && req.Cmd.Name == "hello" && len(req.Args) > 1
}

// isSubscribe reports whether cmd is one of the SUBSCRIBE family.
func isSubscribe(cmd *resp.Command) bool {
	if cmd == nil {
		return false
	}
	switch cmd.Name {
	case "subscribe", "ssubscribe", "psubscribe", "unsubscribe", "sunsubscribe", "punsubscribe":
		return true
	}
	return false
}

func (rc *respCodec) inSession(cl *client) bool {
	if cl.rs == nil {
		return false
	}
	t := cl.rs.txn
	return t != nil && (t.multiSent || t.watchFirst) || cl.rs.sub != nil
}

// handshakeError is a server's error reply to the connection handshake
// (AUTH redis_auth, SELECT redis_db).
type handshakeError struct{ reply string }

func (e *handshakeError) Error() string { return "handshake refused: " + e.reply }
