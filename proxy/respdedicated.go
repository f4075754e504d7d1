package proxy

import (
	"bytes"
	"slices"
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
	if b == nil {
		b = newBackend(cl.l, rc.pr, s)
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
	if !b.usable() {
		b.refuse(r)
		return nil
	}
	n := len(b.wbuf)
	if raw != nil {
		b.wbuf = raw.AppendForward(b.wbuf)
	} else {
		b.wbuf = resp.AppendCommand(b.wbuf, args...)
	}
	b.enqueue(r, len(b.wbuf)-n)
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
			rc.reject(cl, resp.ErrCrossSlot(nil), RejectRefused)
			return
		}
		if rs.txn == nil {
			rs.txn = &txnState{server: s}
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
			rc.reject(cl, resp.ErrCrossSlot(nil), RejectRefused)
			return
		}
		if r := rc.sendDedicated(cl, nil, req, max(s, 0), ClassRead, false); r != nil {
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
			rc.sendDedicated(cl, nil, req, t.server, ClassWrite, false)
			return
		case t.watchFirst && t.server >= 0:
			// WATCH without queued commands: release the watch.
			rc.sendDedicated(cl, [][]byte{[]byte("UNWATCH")}, nil, t.server, ClassWrite, true)
		}
		switch {
		case t.aborted && cmd.Name == "exec":
			rc.local(cl, resp.AppendError(nil, "EXECABORT Transaction discarded because of previous errors."))
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
	switch cmd.Class {
	case resp.ClassFanout, resp.ClassRefused, resp.ClassUnsupported:
		t.aborted = true
		rc.reject(cl, resp.AppendError(nil, "ERR command '"+cmd.Name+"' can not be used in a transaction through the proxy"), RejectRefused)
		return
	default:
		s = rc.keyServer(cl, req)
	}
	if s == -2 || s >= 0 && t.server >= 0 && s != t.server {
		t.aborted = true
		rc.reject(cl, resp.ErrCrossSlot(nil), RejectRefused)
		return
	}
	if t.server < 0 {
		t.server = max(s, 0)
	}
	if !t.multiSent {
		t.multiSent = true
		rc.sendDedicated(cl, [][]byte{[]byte("MULTI")}, nil, t.server, ClassWrite, true)
	}
	rc.sendDedicated(cl, nil, req, t.server, ClassWrite, false)
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
	all := make([]int, len(rc.pr.cfg.Servers))
	for i := range all {
		all[i] = i
	}
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
