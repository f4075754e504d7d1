package proxy

import (
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

// pubsubState is a subscribed client's subscriptions.
type pubsubState struct {
	channels map[string]int  // channel -> server (SUBSCRIBE, SSUBSCRIBE)
	patterns map[string]bool // PSUBSCRIBE, on every server
	// pattern -> confirmations still expected (one per server)
	pending map[string]int
}

func (ps *pubsubState) count() int { return len(ps.channels) + len(ps.patterns) }

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
	if b == nil {
		b = newBackend(cl.l, rc.pr, s)
		b.owner = cl
		b.push = push
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
		b.owner = nil
		if c := b.c; c != nil {
			b.detach(c)
			_ = b.l.el.Close(c)
		} else if b.state == stateConnecting {
			b.gen++ // the pending dial is abandoned; onOpen closes it
		}
		b.failAll("client closed")
	}
	cl.rs.dedicated = nil
}

// resetSession ends a transaction and subscriptions (RESET).
func (rc *respCodec) resetSession(cl *client) {
	rc.closeDedicated(cl)
	cl.rs.txn = nil
	cl.rs.sub = nil
}

// sendDedicated queues req on the client's connection to s and the reply
// goes to the client.
func (rc *respCodec) sendDedicated(cl *client, args [][]byte, raw *resp.Request, s int, class CmdClass, internal bool) {
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
		b.unavailable()
		rc.fail(r, "server "+b.name()+" unavailable")
		return
	}
	n := len(b.wbuf)
	if raw != nil {
		b.wbuf = raw.AppendForward(b.wbuf)
	} else {
		b.wbuf = resp.AppendCommand(b.wbuf, args...)
	}
	b.enqueue(r, len(b.wbuf)-n)
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
		s := rc.keyServer(cl, req, cmd)
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
		s := rc.keyServer(cl, req, cmd)
		if s == -2 {
			rc.reject(cl, resp.ErrCrossSlot(nil), RejectRefused)
			return
		}
		rc.sendDedicated(cl, nil, req, max(s, 0), ClassRead, false)
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
		s = rc.keyServer(cl, req, cmd)
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
// servers (so a client that saw one can rely on the subscription) with the
// subscription count rewritten to the client's total across servers.
func (rc *respCodec) subscribe(cl *client, req *resp.Request, cmd *resp.Command) {
	rs := cl.rs
	if rs.sub == nil {
		rs.sub = &pubsubState{channels: map[string]int{}, patterns: map[string]bool{}, pending: map[string]int{}}
	}
	ps := rs.sub
	cl.l.pools[rc.pr.idx].requests[ClassWrite].Add(1)
	kind := []byte(strings.ToUpper(cmd.Name))
	names := req.Args[1:]
	switch cmd.Name {
	case "subscribe", "ssubscribe":
		for _, ch := range names {
			s := rc.pr.pick(ch)
			rc.pushSend(cl, s, kind, ch)
		}
	case "psubscribe":
		for _, pat := range names {
			ps.pending[string(pat)] += len(rc.pr.cfg.Servers)
			for s := range rc.pr.cfg.Servers {
				rc.pushSend(cl, s, kind, pat)
			}
		}
	case "unsubscribe", "sunsubscribe":
		if len(names) == 0 {
			for ch := range ps.channels {
				names = append(names, []byte(ch))
			}
			if len(names) == 0 {
				rc.pushLocal(cl, strings.ToLower(string(kind)), nil, ps.count())
				return
			}
		}
		for _, ch := range names {
			s, ok := ps.channels[string(ch)]
			if !ok {
				rc.pushLocal(cl, strings.ToLower(string(kind)), ch, ps.count())
				continue
			}
			rc.pushSend(cl, s, kind, ch)
		}
	case "punsubscribe":
		if len(names) == 0 {
			for p := range ps.patterns {
				names = append(names, []byte(p))
			}
			if len(names) == 0 {
				rc.pushLocal(cl, "punsubscribe", nil, ps.count())
				return
			}
		}
		for _, pat := range names {
			if !ps.patterns[string(pat)] {
				rc.pushLocal(cl, "punsubscribe", pat, ps.count())
				continue
			}
			ps.pending[string(pat)] += len(rc.pr.cfg.Servers)
			for s := range rc.pr.cfg.Servers {
				rc.pushSend(cl, s, kind, pat)
			}
		}
	}
	if ps.count() == 0 && len(ps.pending) == 0 && cmd.Name != "subscribe" && cmd.Name != "ssubscribe" &&
		cmd.Name != "psubscribe" {
		rs.sub = nil
	}
}

// pushSend sends one (UN)SUBSCRIBE to server s on the client's push connection.
func (rc *respCodec) pushSend(cl *client, s int, kind, name []byte) {
	if cl.quitting || cl.closed {
		return
	}
	b := rc.dedicatedConn(cl, s, true)
	if !b.usable() {
		b.unavailable()
		cl.closeWith(resp.AppendError(nil, "ERR server "+b.name()+" unavailable for pub/sub"))
		return
	}
	cl.rs.awaitPush++
	b.wbuf = resp.AppendCommand(b.wbuf, kind, name)
	if b.state == stateConnected {
		b.l.markBackend(b)
	}
}

// pushLocal writes a subscription confirmation the proxy makes itself.
func (rc *respCodec) pushLocal(cl *client, kind string, name []byte, count int) {
	b := resp.AppendArrayHeader(nil, 3)
	b = resp.AppendBulkString(b, kind)
	if name == nil {
		b = resp.AppendNullBulk(b)
	} else {
		b = resp.AppendBulk(b, name)
	}
	b = resp.AppendInt(b, int64(count))
	rc.local(cl, b)
}

// push handles one reply from a push (subscribed) connection.
func (rc *respCodec) push(b *backend, reply []byte) {
	cl := b.owner
	if cl == nil || cl.closed || cl.rs.sub == nil {
		return
	}
	ps := cl.rs.sub
	it := resp.NewElements(reply)
	if !it.Next() {
		return
	}
	_, k, _ := resp.ParseReply(it.Elem())
	kind := strings.ToLower(string(k.Data))
	var name []byte
	if it.Next() {
		_, nrep, _ := resp.ParseReply(it.Elem())
		name = nrep.Data
	}
	switch kind {
	case "subscribe", "ssubscribe", "unsubscribe", "sunsubscribe", "psubscribe", "punsubscribe":
		if cl.rs.awaitPush > 0 {
			cl.rs.awaitPush--
		}
		if cl.rs.awaitPush == 0 && cl.waitIdle && cl.fifo.Len() == 0 {
			cl.waitIdle = false
			_ = cl.c.Wake(nil) // parse what waited for the confirmations
		}
	}
	switch kind {
	case "subscribe", "ssubscribe":
		ps.channels[string(name)] = b.server
	case "unsubscribe", "sunsubscribe":
		delete(ps.channels, string(name))
	case "psubscribe", "punsubscribe":
		key := string(name)
		ps.pending[key]--
		if ps.pending[key] > 0 {
			return // wait for every server
		}
		delete(ps.pending, key)
		if kind == "psubscribe" {
			ps.patterns[key] = true
		} else {
			delete(ps.patterns, key)
		}
	default: // message, pmessage, smessage, pong: pass on as is
		cl.out = append(cl.out, reply...)
		cl.l.markClient(cl)
		return
	}
	out := resp.AppendArrayHeader(cl.out, 3)
	out = resp.AppendBulkString(out, kind)
	out = resp.AppendBulk(out, name)
	cl.out = resp.AppendInt(out, int64(ps.count()))
	cl.l.markClient(cl)
	if ps.count() == 0 && len(ps.pending) == 0 {
		cl.rs.sub = nil
	}
}
