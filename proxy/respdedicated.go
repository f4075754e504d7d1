package proxy

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// Transactions, blocking commands and pub/sub need a backend connection of
// the client's own: a transaction on a shared connection would take in other
// clients' commands, a blocking command would hold everyone behind it, and a
// subscribed connection answers nothing but messages. Such a connection lives
// on the client's loop and closes with the client.

// txnState is a client's WATCH/MULTI state.
type txnState struct {
	server     int  // pinned server, -1 until the first key decides it
	inMulti    bool // MULTI seen
	multiSent  bool // MULTI forwarded to the pinned server
	aborted    bool // a command was refused: EXEC must fail
	watchFirst bool // WATCH pinned the server before MULTI
	// What pinned the server, for messages: its first key, or (a keyless
	// command such as PING first) that command's name.
	firstKey []byte
	firstCmd string
	// hkKeys are the keys written by the queued commands, for the near
	// cache's invalidation at EXEC's reply (hot keys on).
	hkKeys [][]byte
	// Why the transaction is doomed, for EXEC's EXECABORT: keys refused
	// because they go to another server than the pinned one, commands
	// whose own keys span servers, and other refusals, in order.
	away     []keyPlace
	awayMore int // keys refused beyond those in away
	spanned  []string
	refused  []string
	example  [2]string // two keys on different servers, for the hash tag hint
}

// keyPlace is a key and the server it hashes to.
type keyPlace struct {
	key    string
	server int
}

// pubsubState is a subscribed client's subscriptions and the (un)subscribe
// confirmations it is owed, in the order the client asked for them.
type pubsubState struct {
	channels map[string]int  // channel -> server (SUBSCRIBE, SSUBSCRIBE)
	patterns map[string]bool // PSUBSCRIBE, on every server
	expect   []*pushExpect   // confirmations owed, oldest first
}

// pushExpect is one confirmation the client is owed: for a channel, one
// server's; for a pattern, every server's; for a name the proxy answers
// itself (unsubscribing from something not subscribed), none.
type pushExpect struct {
	kind    string // subscribe, unsubscribe, psubscribe, ... (lower case)
	name    []byte // nil: "unsubscribe from everything" with nothing to leave
	waiting []int  // servers that still have to confirm
	server  int    // a channel's server (where it was sent)
	err     []byte // the first error reply a server sent instead
}

func (ps *pubsubState) count() int { return len(ps.channels) + len(ps.patterns) }

// names lists the subscribed patterns (or channels), sorted.
func (ps *pubsubState) names(pattern bool) [][]byte {
	var out [][]byte
	if pattern {
		for p := range ps.patterns {
			out = append(out, []byte(p))
		}
	} else {
		for c := range ps.channels {
			out = append(out, []byte(c))
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// dedicatedConn returns the client's own connection to server s, creating
// it. push connections carry pub/sub traffic.
func (rc *respCodec) dedicatedConn(cl *client, s int, push bool) *backend {
	rs := cl.rs
	if rs.dedicated == nil {
		rs.dedicated = map[int]*backend{}
	}
	key := s
	if push {
		key = -1 - s
	}
	b := rs.dedicated[key]
	if b != nil && b.resp3 != rs.resp3 && b.fifo.Len() == 0 {
		// The client switched protocol (HELLO) since: this one goes, a
		// connection that speaks the client's version replaces it.
		rc.closeConn(b)
		b = nil
	}
	if b != nil && b.pr != rc.pr && b.fifo.Len() == 0 {
		// A reload made a new version of the pool: the connection stays
		// (with whatever session it holds), but when it has to reconnect
		// it does so as the new version says (redis_auth, redis_db,
		// timeouts), as the shared connections do.
		b.pr = rc.pr
	}
	if b == nil {
		b = newBackend(cl.l, rc.pr, s) // counted with the server's other connections
		b.owner = cl
		b.push = push
		b.resp3 = rs.resp3 // a RESP3 client's replies and pushes come from the server as RESP3
		rs.dedicated[key] = b
	}
	return b
}

// closeDedicated closes every dedicated connection of a closing client.
func (rc *respCodec) closeDedicated(cl *client) {
	if cl.rs == nil {
		return
	}
	for _, b := range cl.rs.dedicated {
		rc.closeConn(b)
	}
	cl.rs.dedicated = nil
}

// closeConn closes one of a client's dedicated connections.
func (rc *respCodec) closeConn(b *backend) {
	b.owner = nil
	if c := b.c; c != nil {
		b.detach(c)
		_ = b.l.el.Close(c)
	} else if b.state == stateConnecting {
		b.gen++ // the pending dial is abandoned; onOpen closes it
	}
	b.failAll("client closed")
}

// resetSession ends a transaction and subscriptions (RESET).
func (rc *respCodec) resetSession(cl *client) {
	rc.closeDedicated(cl)
	cl.rs.txn = nil
	cl.rs.sub = nil
}

// sendDedicated queues req on the client's connection to s and the reply
// goes to the client. It returns the request queued, or nil when the
// server is down and the request already failed (and was recycled).
func (rc *respCodec) sendDedicated(cl *client, args [][]byte, raw *resp.Request, s int, class CmdClass, internal bool) *request {
	b := rc.dedicatedConn(cl, s, false)
	r := cl.l.newRequest()
	r.class = class
	r.dedicated = true
	if internal {
		r.internal = true
	} else {
		cl.push(r)
	}
	if !sendOn(b, r, func(dst []byte, _ int) []byte {
		if raw != nil {
			return raw.AppendForward(dst)
		}
		return resp.AppendCommand(dst, args...)
	}, -1) {
		return nil
	}
	return r
}

// dedicatedCommand handles MULTI, EXEC, DISCARD, WATCH, UNWATCH, blocking
// commands and the SUBSCRIBE family outside a transaction.
func (rc *respCodec) dedicatedCommand(cl *client, req *resp.Request, cmd *resp.Command) {
	rs := cl.rs
	switch cmd.Name {
	case "multi":
		if rs.txn == nil {
			rs.txn = &txnState{server: -1}
		}
		rs.txn.inMulti = true
		if rs.txn.server >= 0 {
			rs.txn.multiSent = true
			rc.sendDedicated(cl, nil, req, rs.txn.server, ClassWrite, false)
			return
		}
		rc.local(cl, resp.AppendSimple(nil, "OK"))
	case "exec":
		rc.local(cl, resp.AppendError(nil, "ERR EXEC without MULTI"))
	case "discard":
		rc.local(cl, resp.AppendError(nil, "ERR DISCARD without MULTI"))
	case "watch":
		s := rc.keyServer(cl, req)
		if s == -2 || rs.txn != nil && rs.txn.server >= 0 && s != rs.txn.server {
			// Refused, but as in Redis a failed WATCH dooms nothing.
			rc.reject(cl, resp.AppendError(nil, "CROSSSLOT "+rc.crossText(cl, rs.txn, cmd.Name, req, false)), RejectRefused)
			return
		}
		if rs.txn == nil {
			rs.txn = &txnState{server: -1}
		}
		if rs.txn.server < 0 {
			rs.txn.firstKey = append([]byte(nil), req.Args[rs.keyIdx[0]]...)
		}
		rs.txn.server = s
		rs.txn.watchFirst = true
		rc.sendDedicated(cl, nil, req, s, ClassWrite, false)
	case "unwatch":
		if rs.txn != nil && rs.txn.server >= 0 {
			s := rs.txn.server
			rs.txn = nil
			rc.sendDedicated(cl, nil, req, s, ClassWrite, false)
			return
		}
		rs.txn = nil
		rc.local(cl, resp.AppendSimple(nil, "OK"))
	case "subscribe", "ssubscribe", "psubscribe", "unsubscribe", "sunsubscribe", "punsubscribe":
		rc.subscribe(cl, req, cmd)
	default: // blocking commands
		s := rc.keyServer(cl, req)
		if s == -2 {
			rc.reject(cl, rc.crossSlot(), RejectRefused)
			return
		}
		if s < 0 {
			s = rc.pr.anyServer()
		}
		if r := rc.sendDedicated(cl, nil, req, s, ClassRead, false); r != nil {
			r.blocking = true // see waitsOnServer
		}
	}
}

// txnCommand handles a command inside MULTI.
func (rc *respCodec) txnCommand(cl *client, req *resp.Request, cmd *resp.Command) {
	t := cl.rs.txn
	switch cmd.Name {
	case "exec", "discard":
		if !t.inMulti {
			cl.rs.txn = nil
			rc.dedicatedCommand(cl, req, cmd)
			return
		}
		cl.rs.txn = nil
		switch {
		case t.multiSent && t.aborted:
			rc.sendDedicated(cl, [][]byte{[]byte("DISCARD")}, nil, t.server, ClassWrite, true)
		case t.multiSent:
			r := rc.sendDedicated(cl, nil, req, t.server, ClassWrite, false)
			if r != nil && rc.pr.hk != nil {
				for _, k := range t.hkKeys {
					rc.pr.markWrite(r, k) // again when EXEC's reply comes
				}
			}
			return
		case t.watchFirst && t.server >= 0:
			// WATCH without queued commands: release the watch.
			rc.sendDedicated(cl, [][]byte{[]byte("UNWATCH")}, nil, t.server, ClassWrite, true)
		}
		switch {
		case t.aborted && cmd.Name == "exec":
			rc.local(cl, resp.AppendError(nil, rc.execAbortText(t)))
		case cmd.Name == "exec":
			rc.local(cl, resp.AppendArrayHeader(nil, 0))
		default:
			rc.local(cl, resp.AppendSimple(nil, "OK"))
		}
		return
	case "multi":
		if t.inMulti {
			rc.local(cl, resp.AppendError(nil, "ERR MULTI calls can not be nested"))
			return
		}
		rc.dedicatedCommand(cl, req, cmd)
		return
	case "watch":
		if t.inMulti {
			rc.local(cl, resp.AppendError(nil, "ERR WATCH inside MULTI is not allowed"))
			return
		}
		rc.dedicatedCommand(cl, req, cmd)
		return
	case "unwatch":
		if !t.inMulti {
			// Releases the WATCH on the pinned server (and the pin).
			rc.dedicatedCommand(cl, req, cmd)
			return
		}
	}
	if !t.inMulti {
		// WATCH pinned a server but no MULTI yet: other commands run as usual.
		saved := cl.rs.txn
		cl.rs.txn = nil
		rc.dispatch(cl, req)
		if cl.rs.txn == nil {
			cl.rs.txn = saved
		}
		return
	}
	var s int
	switch {
	case isSubscribe(cmd):
		// Queued, its confirmation would come in EXEC's array and its
		// messages on a connection the proxy does not read as pub/sub.
		rc.reject(cl, resp.AppendError(nil, "ERR command '"+cmd.Name+"' can not be used in a transaction through the proxy"), RejectRefused)
		return
	case cmd.Class == resp.ClassFanout, cmd.Class == resp.ClassRefused, cmd.Class == resp.ClassUnsupported:
		rc.reject(cl, resp.AppendError(nil, "ERR command '"+cmd.Name+"' can not be used in a transaction through the proxy"), RejectRefused)
		return
	default:
		s = rc.keyServer(cl, req)
	}
	if s == -2 || s >= 0 && t.server >= 0 && s != t.server {
		// Refused while queueing: as in Redis, the transaction is doomed
		// (reject) and EXEC says why.
		rc.reject(cl, resp.AppendError(nil, "CROSSSLOT "+rc.crossText(cl, t, cmd.Name, req, true)), RejectRefused)
		return
	}
	if t.server < 0 {
		t.server = s
		if s >= 0 {
			t.firstKey = append([]byte(nil), req.Args[cl.rs.keyIdx[0]]...)
		} else {
			t.server = rc.pr.anyServer()
			t.firstCmd = cmd.Name
		}
	}
	if cmd.Flags&resp.FlagReadonly == 0 {
		rc.writtenKeys(cl, nil, req) // queued in the transaction: written at EXEC
		if rc.pr.hk != nil {
			for _, i := range cl.rs.keyIdx {
				t.hkKeys = append(t.hkKeys, append([]byte(nil), req.Args[i]...))
			}
		}
	}
	if !t.multiSent {
		t.multiSent = true
		rc.sendDedicated(cl, [][]byte{[]byte("MULTI")}, nil, t.server, ClassWrite, true)
	}
	rc.sendDedicated(cl, nil, req, t.server, ClassWrite, false)
}

// abort dooms the transaction for a command refused while queueing (the
// error reply the client got), as Redis does; EXEC repeats why. A
// CROSSSLOT refusal was noted in detail by crossText.
func (t *txnState) abort(reply []byte) {
	t.aborted = true
	why := strings.TrimSuffix(strings.TrimPrefix(string(reply), "-"), "\r\n")
	if strings.HasPrefix(why, "CROSSSLOT ") || strings.HasPrefix(why, "NOPERM ") {
		// (NOPERM is Redis's own refusal: EXEC's words are Redis's too.)
		return
	}
	why = strings.TrimPrefix(why, "ERR ")
	if len(t.refused) < maxKeysInMessage && !slices.Contains(t.refused, why) {
		t.refused = append(t.refused, why)
	}
}

// Error messages about keys on other servers quote at most
// maxKeysInMessage keys, each clipped to maxKeyInMessage bytes.
const (
	maxKeysInMessage = 8
	maxKeyInMessage  = 64
)

// quoteKey quotes a key for an error message, clipped.
func quoteKey(k string) string {
	if len(k) > maxKeyInMessage {
		return "'" + k[:maxKeyInMessage] + "...'"
	}
	return "'" + k + "'"
}

// crossText explains why req (command name) cannot join transaction t (nil:
// none yet) and how to fix it: the keys that go to another server than the
// one t runs on, or, when t has no server yet, where the keys of req go.
// When record is set, t remembers the explanation for EXEC.
func (rc *respCodec) crossText(cl *client, t *txnState, name string, req *resp.Request, record bool) string {
	var places []keyPlace
	for _, i := range cl.rs.keyIdx {
		places = append(places, keyPlace{key: string(req.Args[i]), server: max(rc.pr.pick(req.Args[i]), 0)})
	}
	var msg string
	var example [2]string
	if t != nil && t.server >= 0 {
		var away []keyPlace
		for _, kp := range places {
			if kp.server != t.server {
				away = append(away, kp)
			}
		}
		example = [2]string{string(t.firstKey), away[0].key}
		if t.firstKey == nil && len(places) > len(away) {
			example[0] = places[slices.IndexFunc(places, func(kp keyPlace) bool { return kp.server == t.server })].key
		}
		msg = rc.awayText(t, away, 0)
		if record {
			for _, kp := range away {
				switch {
				case slices.Contains(t.away, kp):
				case len(t.away) < maxKeysInMessage:
					t.away = append(t.away, kp)
				default:
					t.awayMore++
				}
			}
		}
	} else {
		msg = rc.spanText(name, places)
		other := slices.IndexFunc(places, func(kp keyPlace) bool { return kp.server != places[0].server })
		example = [2]string{places[0].key, places[other].key}
		if record && len(t.spanned) < maxKeysInMessage {
			t.spanned = append(t.spanned, msg)
		}
	}
	if record && t.example[1] == "" {
		t.example = example
	}
	return msg + "; " + rc.tagHint(example)
}

// awayText: key 'user:2' goes to server redis-2 but this transaction runs on
// redis-1 (its first key 'user:1'). more counts keys not listed.
func (rc *respCodec) awayText(t *txnState, away []keyPlace, more int) string {
	var sb strings.Builder
	for i, kp := range away {
		if i == maxKeysInMessage {
			more += len(away) - i
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("key " + quoteKey(kp.key) + " goes to server " + rc.pr.serverName(kp.server))
	}
	if more > 0 {
		sb.WriteString(" and " + strconv.Itoa(more) + " more keys to other servers")
	}
	sb.WriteString(" but this transaction runs on " + rc.pr.serverName(t.server))
	switch {
	case t.firstKey != nil:
		sb.WriteString(" (its first key " + quoteKey(string(t.firstKey)) + ")")
	case t.firstCmd != "":
		sb.WriteString(" (where its first command, '" + t.firstCmd + "', went)")
	}
	return sb.String()
}

// spanText: keys of 'mset' go to different servers: 'user:1' to redis-1,
// 'user:2' to redis-2, and a transaction runs on one server.
func (rc *respCodec) spanText(name string, places []keyPlace) string {
	var sb strings.Builder
	sb.WriteString("keys of '" + name + "' go to different servers: ")
	for i, kp := range places {
		if i == maxKeysInMessage {
			sb.WriteString(", and " + strconv.Itoa(len(places)-i) + " more")
			break
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(quoteKey(kp.key) + " to " + rc.pr.serverName(kp.server))
	}
	sb.WriteString(", and a transaction runs on one server")
	return sb.String()
}

// tagHint says how to keep keys that change together on one server:
// put keys that must change together under one hash tag, e.g. {user}:1 and
// {user}:2 (this pool's hash_tag is "{}"). The example is made from
// example's two keys.
func (rc *respCodec) tagHint(example [2]string) string {
	tag := rc.pr.cfg.HashTag
	where := "this pool's hash_tag is \"" + tag + "\""
	if len(tag) != 2 {
		tag = "{}"
		where = "this pool has no hash_tag; set hash_tag: \"{}\""
	}
	a, b := tagged(example[0], example[1], tag)
	return "put keys that must change together under one hash tag, e.g. " + a + " and " + b + " (" + where + ")"
}

// tagged returns keys a and b under one hash tag (two characters): their
// common prefix before a ':' when they have one ({user}:1 and {user}:2 for
// user:1 and user:2), else a tag of its own ({tag}:a and {tag}:b).
func tagged(a, b, tag string) (string, string) {
	if a == "" || b == "" {
		a, b = "user:1", "user:2"
	}
	i, j := strings.IndexByte(a, ':'), strings.IndexByte(b, ':')
	if i > 0 && i == j && a[:i] == b[:j] {
		return tag[:1] + a[:i] + tag[1:] + a[i:], tag[:1] + b[:j] + tag[1:] + b[j:]
	}
	return tag[:1] + "tag" + tag[1:] + ":" + a, tag[:1] + "tag" + tag[1:] + ":" + b
}

// execAbortText is EXEC's answer to a doomed transaction: Redis's
// EXECABORT sentence (clients match on its start) and why, so a client
// that shows only EXEC's error tells the user what happened.
func (rc *respCodec) execAbortText(t *txnState) string {
	const prefix = "EXECABORT Transaction discarded because of previous errors"
	var parts []string
	if len(t.away) > 0 {
		parts = append(parts, rc.awayText(t, t.away, t.awayMore))
	}
	parts = append(parts, t.spanned...)
	if len(parts) > 0 {
		parts = append(parts, rc.tagHint(t.example))
	}
	parts = append(parts, t.refused...)
	if len(parts) == 0 {
		return prefix + "."
	}
	return prefix + ": " + strings.Join(parts, "; ")
}

// allowedSubscribed lists the commands a subscribed client may send.
func (rc *respCodec) allowedSubscribed(name string) bool {
	switch name {
	case "subscribe", "ssubscribe", "psubscribe", "unsubscribe", "sunsubscribe", "punsubscribe",
		"ping", "quit", "reset":
		return true
	}
	return false
}

// subscribe handles the SUBSCRIBE family. Confirmations come from the
// servers (so a client that saw one can rely on the subscription), in the
// order the client named channels, each with the client's subscription count
// across servers as it stands after that confirmation, as Redis counts.
// Until every confirmation owed is written, the client's next requests wait
// (respState.awaitPush), so nothing overtakes them.
func (rc *respCodec) subscribe(cl *client, req *resp.Request, cmd *resp.Command) {
	rs := cl.rs
	if rs.sub == nil {
		rs.sub = &pubsubState{channels: map[string]int{}, patterns: map[string]bool{}}
	}
	ps := rs.sub
	cl.l.pools[rc.pr.idx].requests[ClassWrite].Add(1)
	kind := strings.ToLower(cmd.Name)
	wire := []byte(strings.ToUpper(cmd.Name))
	pattern := kind == "psubscribe" || kind == "punsubscribe"
	all := slices.Clone(rc.pr.slot)
	// A channel lives on the server it hashes to (PUBLISH goes there too),
	// a pattern on every server.
	where := func(name []byte) []int {
		if pattern {
			return all
		}
		return []int{rc.pr.pick(name)}
	}
	names := req.Args[1:]
	switch kind {
	case "subscribe", "ssubscribe", "psubscribe":
		for _, n := range names {
			rc.expectPush(cl, kind, n, where(n), wire)
		}
	default: // the unsubscribes
		if len(names) == 0 {
			// Everything subscribed, in name order; nothing: one reply.
			names = ps.names(pattern)
			if len(names) == 0 {
				rc.expectPush(cl, kind, nil, nil, wire)
			}
		}
		for _, n := range names {
			switch s, ok := ps.channels[string(n)]; {
			case pattern && ps.patterns[string(n)]:
				rc.expectPush(cl, kind, n, all, wire)
			case !pattern && ok:
				rc.expectPush(cl, kind, n, []int{s}, wire) // where it was subscribed
			default: // not subscribed: the proxy answers
				rc.expectPush(cl, kind, n, nil, wire)
			}
		}
	}
	rc.flushPush(cl)
}

// expectPush records a confirmation the client is owed and sends the
// command to each server in servers (none: the proxy answers it).
func (rc *respCodec) expectPush(cl *client, kind string, name []byte, servers []int, wire []byte) {
	if cl.quitting || cl.closed {
		return
	}
	e := &pushExpect{kind: kind, waiting: append([]int(nil), servers...)}
	if len(servers) == 1 {
		e.server = servers[0]
	}
	if name != nil {
		e.name = append([]byte{}, name...)
	}
	ps := cl.rs.sub
	ps.expect = append(ps.expect, e)
	cl.rs.awaitPush = len(ps.expect)
	for _, s := range servers {
		b := rc.dedicatedConn(cl, s, true)
		if !b.usable() {
			b.unavailable()
			cl.closeWith(resp.AppendError(nil, "ERR server "+b.name()+" unavailable for pub/sub"))
			return
		}
		b.wbuf = resp.AppendCommand(b.wbuf, wire, name)
		if b.state == stateConnected {
			b.l.markBackend(b)
		}
	}
}

// push handles one reply from a push (subscribed) connection: a message is
// passed on as it is; a confirmation, or an error instead of one, settles
// the oldest confirmation owed that waits for this server.
func (rc *respCodec) push(b *backend, reply []byte) {
	cl := b.owner
	if cl == nil || cl.closed {
		return
	}
	kind := ""
	it := resp.NewElements(reply)
	if it.Next() {
		_, k, _ := resp.ParseReply(it.Elem())
		kind = strings.ToLower(string(k.Data))
	}
	isErr := resp.IsError(reply)
	switch kind {
	case "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe", "punsubscribe":
	default:
		if !isErr {
			// message, pmessage, smessage: pass on as is.
			cl.out = append(cl.out, reply...)
			cl.l.markClient(cl)
			return
		}
	}
	ps := cl.rs.sub
	if ps == nil {
		return
	}
	for _, e := range ps.expect {
		if i := slices.Index(e.waiting, b.server); i >= 0 {
			e.waiting = slices.Delete(e.waiting, i, i+1)
			if isErr && e.err == nil {
				e.err = append([]byte{}, reply...)
			}
			break
		}
	}
	rc.flushPush(cl)
}

// flushPush writes the confirmations owed from the head of the queue while
// they are settled, updating the subscriptions as each one takes effect.
func (rc *respCodec) flushPush(cl *client) {
	ps := cl.rs.sub
	if ps == nil {
		return
	}
	wrote := false
	for len(ps.expect) > 0 && len(ps.expect[0].waiting) == 0 {
		e := ps.expect[0]
		ps.expect[0] = nil
		ps.expect = ps.expect[1:]
		wrote = true
		if e.err != nil {
			cl.out = append(cl.out, e.err...)
			continue
		}
		switch e.kind {
		case "subscribe", "ssubscribe":
			ps.channels[string(e.name)] = e.server
		case "unsubscribe", "sunsubscribe":
			delete(ps.channels, string(e.name))
		case "psubscribe":
			ps.patterns[string(e.name)] = true
		case "punsubscribe":
			delete(ps.patterns, string(e.name))
		}
		var out []byte
		if cl.rs.resp3 {
			out = resp.AppendPushHeader(cl.out, 3) // as the server sends it to a RESP3 client
		} else {
			out = resp.AppendArrayHeader(cl.out, 3)
		}
		out = resp.AppendBulkString(out, e.kind)
		if e.name == nil {
			out = resp.AppendNullBulk(out)
		} else {
			out = resp.AppendBulk(out, e.name)
		}
		cl.out = resp.AppendInt(out, int64(ps.count()))
	}
	if wrote {
		cl.l.markClient(cl)
	}
	cl.rs.awaitPush = len(ps.expect)
	if len(ps.expect) == 0 {
		if ps.count() == 0 {
			cl.rs.sub = nil // out of subscribed mode, as Redis at count 0
		}
		if cl.waitIdle && cl.fifo.Len() == 0 {
			cl.waitIdle = false
			_ = cl.w.Wake(nil) // parse what waited for the confirmations
		}
	}
}
