package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/cacheproxy/cacheproxy/hotkey"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// memcacheCodec serves a memcached pool: text and meta protocol.
type memcacheCodec struct {
	pr     *poolRT
	limits memcache.Limits
	// users are auth_file's users (nil: no authentication), by name, with
	// the SHA-256 of each password.
	users map[string][][sha256.Size]byte
}

// mcScratch is per-client scratch for routing multi-key requests (clients
// belong to one loop; keeping it per client keeps the codec stateless).
type mcScratch struct {
	key     []byte  // a decoded (base64) key
	fragOf  []int   // server -> fragment index, -1 if none
	fragIdx [][]int // fragment -> indexes of its keys
	servers []int   // key -> server
	cursor  []int
	// hot keys: per key of a multi-get, its cached reply block (nil: none)
	// and whether its reply should fill the near cache.
	cached [][]byte
	fills  []bool
}

// hashKey returns the bytes to hash for key i of req, decoding a base64 key
// into the scratch buffer (never into the input, which the result of a
// plain key points to).
func (sc *mcScratch) hashKey(req *memcache.Request, i int) []byte {
	if !req.Base64 {
		return req.Keys[i]
	}
	k := req.HashKey(i, sc.key[:0])
	if cap(k) > cap(sc.key) {
		sc.key = k[:0]
	}
	return k
}

func newMemcacheCodec(pr *poolRT) *memcacheCodec {
	lim := pr.cfg.Limits
	return &memcacheCodec{pr: pr, users: mcUsers(pr.cfg), limits: memcache.Limits{
		MaxKeyLength: lim.MaxKeyLength,
		MaxValueSize: lim.MaxValueSize,
		MaxKeys:      lim.MaxMultibulk,
	}}
}

func (m *memcacheCodec) initClient(cl *client) {
	cl.mp = memcache.NewParser(m.limits)
	cl.mcAuthed = m.users == nil
}

func (m *memcacheCodec) probeRequest() ([]byte, string) {
	return []byte("version\r\n"), "VERSION "
}

func (m *memcacheCodec) errorReply(dst []byte, msg string) []byte {
	return memcache.AppendError(dst, memcache.KindServerError, msg)
}

// tooManyClients is memcached's own refusal at its connection limit (-c).
func (m *memcacheCodec) tooManyClients() []byte {
	return memcache.AppendError(nil, memcache.KindError, "Too many open connections")
}

func (m *memcacheCodec) serve(cl *client, buf []byte) int {
	off := 0
	for off < len(buf) && !cl.closed && !cl.quitting {
		if cl.full() {
			cl.paused = true
			break
		}
		if !cl.mcAuthed && m.users != nil {
			n := m.authStep(cl, buf[off:])
			if n == 0 {
				break
			}
			off += n
			continue
		}
		n, err := cl.mp.Parse(buf[off:], &cl.mreq)
		// Whatever an earlier incomplete parse needed is stale now: a
		// refused block (bad chunk) must not leave its size behind, or
		// the client stalls waiting for input that never comes.
		cl.need = 0
		if err != nil {
			var pe *memcache.Error
			if !errors.As(err, &pe) || pe.Close || pe.Skip <= 0 {
				reply := []byte(nil)
				if pe != nil {
					reply = pe.Reply
				} else {
					reply = memcache.AppendError(nil, memcache.KindClientError, err.Error())
				}
				pc := cl.l.pools[m.pr.idx]
				pc.rejected[RejectProtocol].Add(1)
				pc.errors[ClassInvalid].Add(1)
				pc.clientErr.Add(1)
				cl.closeWith(reply)
				return len(buf)
			}
			if pe.Answer {
				m.local(cl, pe.Reply, false)
			} else {
				m.reject(cl, pe.Reply)
			}
			off += pe.Skip
			continue
		}
		if n == 0 {
			cl.need = cl.mp.Need()
			break
		}
		m.dispatch(cl, &cl.mreq)
		off += n
	}
	return off
}

// dispatch routes one parsed request.
func (m *memcacheCodec) dispatch(cl *client, req *memcache.Request) {
	class := req.Cmd.Class()
	if req.Cmd == memcache.CmdGet && len(req.Keys) == 1 && string(req.Keys[0]) == memcache.ClusterKey {
		m.local(cl, memcache.AppendClusterValue(nil, 1, []memcache.ClusterNode{m.self(cl)}), false)
		return
	}
	if len(m.pr.slot) == 0 && class != memcache.ClassLocal {
		m.noServers(cl, req)
		return
	}
	switch class {
	case memcache.ClassLocal:
		m.answer(cl, req)
	case memcache.ClassKey:
		m.forwardKey(cl, req, -1)
	case memcache.ClassMultiKey:
		m.forwardMulti(cl, req)
	case memcache.ClassAll:
		m.forwardAll(cl, req)
	default:
		m.reject(cl, memcache.AppendError(nil, memcache.KindClientError, "command not supported by proxy"))
	}
}

// reject answers a request the proxy refuses, counting why.
func (m *memcacheCodec) reject(cl *client, reply []byte) {
	reason := RejectProtocol
	switch {
	case bytes.Contains(reply, []byte("not supported")):
		reason = RejectRefused
	case bytes.Contains(reply, []byte("too large")), bytes.Contains(reply, []byte("too long")),
		bytes.Contains(reply, []byte("too many")):
		reason = RejectLimit
	}
	cl.refuse(reason, reply)
}

// header copies the scalar fields of req that replies depend on.
func header(req *memcache.Request) memcache.Request {
	return memcache.Request{Cmd: req.Cmd, Noreply: req.Noreply, Quiet: req.Quiet}
}

// local queues a reply the proxy makes itself, in order behind the client's
// outstanding requests.
func (m *memcacheCodec) local(cl *client, reply []byte, silent bool) {
	cl.answer(ClassLocal, reply, silent)
}

// answer replies to the commands the proxy answers itself.
func (m *memcacheCodec) answer(cl *client, req *memcache.Request) {
	switch req.Cmd {
	case memcache.CmdVersion:
		m.local(cl, memcache.AppendVersion(nil, Version), false)
	case memcache.CmdVerbosity:
		m.local(cl, memcache.AppendOK(nil), req.Noreply)
	case memcache.CmdQuit:
		cl.quitting = true
		cl.maybeClose()
	case memcache.CmdMetaNoop:
		m.local(cl, memcache.AppendMetaNoop(nil), false)
	case memcache.CmdStats:
		if len(req.Args) == 1 && string(req.Args[0]) == "hotkeys" {
			m.local(cl, m.statsHotKeys(cl), false)
			return
		}
		m.local(cl, m.stats(cl, req), false)
	case memcache.CmdConfigGet:
		m.local(cl, m.clusterConfig(cl), false)
	default:
		m.local(cl, memcache.AppendError(nil, memcache.KindClientError, "command not supported by proxy"), false)
	}
}

// forwardKey sends a single-key request (or a multi-key one whose keys all
// live on server s, when s >= 0) to its server.
func (m *memcacheCodec) forwardKey(cl *client, req *memcache.Request, s int) {
	l := cl.l
	pr := m.pr
	var fillKey, metaFill []byte
	if pr.hk != nil && s < 0 && mcClass(req) == ClassRead && (!req.Base64 || req.Cmd == memcache.CmdMetaGet) {
		key := cl.scratch().hashKey(req, 0) // the key itself, when sent base64
		pr.observe(l, key)
		if req.Cmd == memcache.CmdMetaGet {
			if m.metaHit(cl, req, key, &metaFill) {
				return
			}
		} else if req.Cmd == memcache.CmdGet {
			v, hot := pr.lookup(l, key)
			if v != nil {
				r := l.newRequest()
				r.class = ClassRead
				r.reply = append(append(r.reply[:0], v...), "END\r\n"...)
				cl.push(r)
				cl.complete(r)
				pr.refreshAhead(cl, key, pr.pick(cl.scratch().hashKey(req, 0)), 0, func(r *request) {
					r.mc = header(req)
					r.nkeys = 1
				}, func(dst []byte, _ int) []byte { return req.AppendForward(dst) })
				return
			}
			if hot {
				fillKey = key
			}
		}
	}
	if s < 0 {
		s = m.pr.pick(cl.scratch().hashKey(req, 0))
	}
	r := l.newRequest()
	r.mc = header(req)
	r.class = mcClass(req)
	if r.class != ClassWrite {
		r.nkeys = len(req.Keys)
	}
	cl.push(r)
	if s < 0 {
		failRequest(r, m.pr, "no server available")
		return
	}
	var ttl int64 // a spread expiry to send instead of req's (jitter.go), 0: none
	if r.class == ClassWrite {
		for i := range req.Keys {
			m.pr.written(l, r, cl.scratch().hashKey(req, i)) // the key itself, when sent base64
		}
		ttl = l.mcTTL(pr, req)
		if pr.replicated && pr.hasCopies(s) {
			m.writeCopies(cl, r, s, req, ttl) // every copy gets the same expiry
			return
		}
	} else if fillKey != nil && pr.coalesce(l, r, fillKey, s, 0) {
		return // waits for the same key's read in flight
	} else if metaFill != nil && !pr.hc.Closed(metaFill) {
		pr.markFill(r, metaFill) // an mg miss asking v and f: its hit fills
	}
	if r.class == ClassRead && fillKey == nil && metaFill == nil && r.hkFlight == nil && warmable(req) {
		if w := pr.warming(l); w != nil {
			w.startWarm(r, req, req.Keys[0], s, cl.lane()) // a miss asks the key's old server
		}
	}
	if pr.replicated && pr.cfg.ReadRepair && r.class == ClassRead && mcReplicaRead(req) {
		r.repair = true
		r.raw = req.AppendForward(r.raw[:0]) // to send again on a miss
	}
	route(cl, m.pr, r, s, mcReplicaRead(req), func(dst []byte, _ int) []byte {
		if ttl > 0 {
			return req.AppendForwardTTL(dst, ttl)
		}
		return req.AppendForward(dst)
	}, -1)
}

// metaHit answers req, an mg of key (decoded when sent base64) in a
// hot-key pool, from the near cache when its flags ask only for what a
// cached get reply holds (memcache.Request.NearMetaGet) and the key is
// cached; it reports whether it answered. Otherwise, when the key is hot
// and req asks for the value and client flags, *fill is set to key: the
// server's hit fills the cache.
func (m *memcacheCodec) metaHit(cl *client, req *memcache.Request, key []byte, fill *[]byte) bool {
	ok, fills := req.NearMetaGet()
	if !ok {
		return false
	}
	l, pr := cl.l, m.pr
	v, hot := pr.lookup(l, key)
	if v == nil {
		if hot && fills {
			*fill = key
		}
		return false
	}
	flags, data, ok := memcache.ValueBlock(v)
	if !ok {
		return false // not a block the proxy filled; never served
	}
	r := l.newRequest()
	r.class = ClassRead
	r.reply = req.AppendMetaHit(r.reply[:0], flags, data)
	cl.push(r)
	cl.complete(r)
	if !req.Base64 {
		// Refreshed by a plain get, whose reply (and flight) a get of the
		// key shares; a base64 key is refreshed by its next miss.
		pr.refreshAhead(cl, key, pr.pick(key), 0, func(r *request) {
			r.mc = memcache.Request{Cmd: memcache.CmdGet}
			r.nkeys = 1
		}, func(dst []byte, _ int) []byte {
			return append(append(append(dst, "get "...), key...), "\r\n"...)
		})
	}
	return true
}

// writeCopies sends write r (req) to every live copy of server s, as a
// replicated write (replica.go), with expiry ttl in place of req's own
// when ttl > 0 (jitter.go).
func (m *memcacheCodec) writeCopies(cl *client, r *request, s int, req *memcache.Request, ttl int64) {
	r.repl = true
	r.async = m.pr.async
	copyFragments(cl.l, m.pr, r, s)
	for _, f := range r.frags {
		f.mc = header(req)
	}
	sendFragments(cl, m.pr, r, func(dst []byte, _ int) []byte {
		if ttl > 0 {
			return req.AppendForwardTTL(dst, ttl)
		}
		return req.AppendForward(dst)
	})
}

// forwardMulti splits get/gets/gat/gats over the servers of its keys.
func (m *memcacheCodec) forwardMulti(cl *client, req *memcache.Request) {
	if len(req.Keys) == 1 {
		m.forwardKey(cl, req, -1)
		return
	}
	sc := cl.scratch()
	nServers := len(m.pr.slots) // fragOf is indexed by slot
	sc.servers = sc.servers[:0]
	same := true
	for i := range req.Keys {
		s := m.pr.pick(sc.hashKey(req, i))
		sc.servers = append(sc.servers, s)
		if s != sc.servers[0] {
			same = false
		}
	}
	hot := false
	if pr := m.pr; pr.hk != nil && !req.Base64 {
		sc.cached, sc.fills = sc.cached[:0], sc.fills[:0]
		all := true
		for _, k := range req.Keys {
			pr.observe(cl.l, k)
			var v []byte
			var h bool
			if req.Cmd == memcache.CmdGet {
				v, h = pr.lookup(cl.l, k)
			}
			sc.cached = append(sc.cached, v)
			sc.fills = append(sc.fills, h && v == nil)
			hot = hot || h
			all = all && v != nil
		}
		if all {
			r := cl.l.newRequest()
			r.class = ClassMulti
			for _, v := range sc.cached {
				r.reply = append(r.reply, v...)
			}
			r.reply = append(r.reply, "END\r\n"...)
			clear(sc.cached)
			cl.push(r)
			cl.complete(r)
			return
		}
	}
	if same && !hot {
		m.forwardKey(cl, req, sc.servers[0])
		return
	}
	l := cl.l
	parent := l.newRequest()
	parent.mc = header(req)
	parent.class = ClassMulti
	cl.push(parent)
	if cap(sc.fragOf) < nServers {
		sc.fragOf = make([]int, nServers)
	}
	sc.fragOf = sc.fragOf[:nServers]
	for i := range sc.fragOf {
		sc.fragOf[i] = -1
	}
	sc.fragIdx = sc.fragIdx[:0]
	for i, s := range sc.servers {
		parent.keys = append(parent.keys, req.Keys[i]...)
		parent.keyEnds = append(parent.keyEnds, len(parent.keys))
		if hot {
			parent.hkCached = append(parent.hkCached, sc.cached[i])
			parent.hkFills = append(parent.hkFills, sc.fills[i])
			var g hotkey.Gen
			if sc.fills[i] {
				g = m.pr.hc.Begin(req.Keys[i])
				parent.hkc = m.pr.hc
			}
			parent.hkGens = append(parent.hkGens, g)
			if sc.cached[i] != nil {
				parent.keyFrag = append(parent.keyFrag, -2) // answered from the near cache
				continue
			}
			if fl := m.joinable(l, req, i, sc.fills[i]); fl != nil {
				// A hot miss whose read is in flight on this loop: a
				// fragment of its own waits for that read's reply
				// (which fills the cache), instead of reading again.
				parent.hkFills[i] = false
				fi := len(parent.frags)
				w := newFragment(l, parent, fl.s)
				w.mc = header(req)
				w.read = true
				w.nkeys = 1
				fl.wait(w, req.Keys[i])
				for len(sc.fragIdx) <= fi {
					sc.fragIdx = append(sc.fragIdx, nil)
				}
				sc.fragIdx[fi] = sc.fragIdx[fi][:0]
				parent.keyFrag = append(parent.keyFrag, fi)
				continue
			}
		}
		if s < 0 {
			parent.keyFrag = append(parent.keyFrag, -1)
			continue
		}
		fi := sc.fragOf[s]
		if fi < 0 {
			fi = len(parent.frags)
			sc.fragOf[s] = fi
			f := newFragment(l, parent, s)
			f.mc = header(req)
			f.read = req.Cmd == memcache.CmdGet
			if len(sc.fragIdx) <= fi {
				sc.fragIdx = append(sc.fragIdx, nil)
			}
			sc.fragIdx[fi] = sc.fragIdx[fi][:0]
		}
		sc.fragIdx[fi] = append(sc.fragIdx[fi], i)
		parent.keyFrag = append(parent.keyFrag, fi)
		parent.frags[fi].nkeys++
	}
	if hot {
		clear(sc.cached)
	}
	sendFragments(cl, m.pr, parent, func(dst []byte, fi int) []byte {
		return req.AppendMultiGet(dst, sc.fragIdx[fi])
	})
}

// joinable returns the read in flight on l that key i of req, a multi-get,
// may wait for: req is a plain get and key i a hot miss (miss), see
// poolRT.joinable.
func (m *memcacheCodec) joinable(l *loop, req *memcache.Request, i int, miss bool) *flight {
	if req.Cmd != memcache.CmdGet || !miss {
		return nil
	}
	return m.pr.joinable(l, req.Keys[i], 0)
}

// forwardAll sends flush_all to every live server.
func (m *memcacheCodec) forwardAll(cl *client, req *memcache.Request) {
	l := cl.l
	parent := l.newRequest()
	parent.mc = header(req)
	parent.class = ClassFanout
	cl.push(parent)
	fanoutFragments(l, m.pr, parent, true) // an ejected server takes no keys
	for _, f := range parent.frags {
		f.mc = header(req)
	}
	m.pr.flushed(l, parent)
	if m.pr.hc != nil && len(req.Args) > 0 {
		if d, err := strconv.ParseInt(string(req.Args[0]), 10, 64); err == nil && d > 0 {
			// Memcached's rule: up to 30 days is relative, more is a unix time.
			at := time.Now().Add(time.Duration(d) * time.Second)
			if d > 30*24*3600 {
				at = time.Unix(d, 0)
			}
			m.pr.hc.FlushAt(at)
		}
	}
	sendFragments(cl, m.pr, parent, func(dst []byte, _ int) []byte {
		return req.AppendForward(dst)
	})
}

// reply frames a backend reply for r and delivers it.
func (m *memcacheCodec) reply(b *backend, buf []byte, r *request) (int, error) {
	parse := memcache.ParseReply
	if r.mc.Quiet {
		parse = memcache.ParseQuietReply // the request went with "mn" after it
	}
	n, rep, err := parse(buf, r.mc.Cmd)
	if err != nil || n == 0 {
		return n, err
	}
	deliver := buf[:n]
	if r.mc.Quiet {
		deliver = buf[:rep.Body]
	}
	if r.nkeys > 0 && !rep.Status.IsError() {
		sc := b.counters
		hits := min(rep.Hits, r.nkeys)
		sc.hits.Add(int64(hits))
		sc.misses.Add(int64(r.nkeys - hits))
		if hits < r.nkeys && b.pr.replicated && b.readmitted() {
			sc.readmittedMisses.Add(int64(r.nkeys - hits))
			if r.repair && r.parent == nil && r.hkFlight == nil && repairRead(b, r) {
				return n, nil // asked again of another copy; this reply is dropped
			}
		}
	}
	if r.warm != nil && r.parent == nil && warmReply(b, r, buf[:n], rep) {
		return n, nil // asked again of the key's old server, or the proxy's own request
	}
	if r.parent != nil {
		switch rep.Status {
		case memcache.StatusError, memcache.StatusClientError, memcache.StatusServerError:
			r.failed = true
			r.reply = append(r.reply[:0], buf[:n]...)
		default:
			r.ok = rep.Status == memcache.StatusOK
			if r.mc.Cmd.Class() == memcache.ClassMultiKey {
				r.reply = append(r.reply[:0], buf[:rep.Body]...)
			} else {
				r.reply = append(r.reply[:0], deliver...)
				r.silent = memcache.Suppress(&r.mc, rep) // a replicated write's copy
			}
		}
		fragmentDone(r, m)
		return n, nil
	}
	if r.hkFill && rep.Hits == 1 && !rep.Status.IsError() {
		switch {
		case r.mc.Cmd == memcache.CmdGet && bytes.HasSuffix(buf[:n], []byte("\r\nEND\r\n")):
			b.pr.fill(b.l, r.hkc, r.keys, r.hkGen, buf[:n-len("END\r\n")])
		case r.mc.Cmd == memcache.CmdMetaGet && rep.Status == memcache.StatusVA:
			b.pr.fillMeta(b.l, r.hkc, r.keys, r.hkGen, buf[:rep.Body])
		}
	}
	if r.hkFlight != nil {
		land(r, deliver)
	}
	cl := r.cl
	switch {
	case memcache.Suppress(&r.mc, rep):
		r.silent = true
	case cl != nil && !cl.closed && cl.fifo.Len() > 0 && frontIs(cl, r):
		// At the head: straight to the output, skipping a copy.
		cl.out = append(cl.out, deliver...)
		r.silent = true
		cl.l.markClient(cl)
	default:
		r.reply = append(r.reply[:0], deliver...)
	}
	if cl != nil {
		cl.complete(r)
	} else {
		r.done = true
	}
	return n, nil
}

func frontIs(cl *client, r *request) bool {
	f, _ := cl.fifo.Front()
	return f == r
}

// merge builds a multi-key or fan-out request's reply from its fragments.
//
// get family: values in the order of the requested keys, one END. A
// fragment whose server failed contributes misses (as libmemcached and
// mcrouter do), unless every fragment failed: then the first error is the
// reply. flush_all: OK when every server said OK, else the first other
// reply.
func (m *memcacheCodec) merge(p *request) {
	cl := p.cl
	if p.repl {
		mergeCopies(cl, m.pr, p)
		return
	}
	p.reply = p.reply[:0]
	if p.mc.Cmd.Class() == memcache.ClassMultiKey {
		m.mergeGets(cl, p)
	} else {
		var first []byte
		for _, f := range p.frags {
			if !f.ok && first == nil {
				first = f.reply
			}
		}
		if first == nil {
			p.reply = append(p.reply, "OK\r\n"...)
		} else {
			p.reply = append(p.reply, first...)
		}
		p.silent = p.mc.Noreply
	}
	cl.complete(p)
}

func (m *memcacheCodec) mergeGets(cl *client, p *request) {
	allFailed := true
	for _, f := range p.frags {
		if f.failed {
			fragmentFailed(cl, m.pr, f, p.mc.Cmd.String())
		} else {
			allFailed = false
		}
	}
	if f := oomFragment(p); f != nil {
		cl.l.pools[m.pr.idx].errors[p.class].Add(1)
		p.reply = append(p.reply, f.reply...)
		return
	}
	if allFailed && len(p.frags) > 0 && !slices.ContainsFunc(p.hkCached, func(v []byte) bool { return v != nil }) {
		cl.l.pools[m.pr.idx].errors[p.class].Add(1)
		p.reply = append(p.reply, p.frags[0].reply...)
		return
	}
	w := replyBuilder{r: p}
	sc := cl.scratch()
	sc.cursor = sc.cursor[:0]
	for range p.frags {
		sc.cursor = append(sc.cursor, 0)
	}
	for i, fi := range p.keyFrag {
		if fi == -2 {
			w.add(p.hkCached[i])
			continue
		}
		if fi < 0 {
			continue
		}
		f := p.frags[fi]
		if f.failed {
			continue
		}
		body := f.reply[sc.cursor[fi]:]
		if len(body) == 0 {
			continue
		}
		key, n, ok := valueBlock(body)
		if !ok {
			sc.cursor[fi] = len(f.reply) // malformed: drop the rest
			continue
		}
		if bytes.Equal(key, p.key(i)) {
			if p.hkc != nil && p.hkFills[i] {
				m.pr.fill(cl.l, p.hkc, key, p.hkGens[i], body[:n])
			}
			w.add(body[:n])
			sc.cursor[fi] += n
		}
	}
	w.add([]byte("END\r\n"))
	w.done()
}

// stats answers "stats" with the proxy's own counters.
func (m *memcacheCodec) stats(cl *client, _ *memcache.Request) []byte {
	p := cl.l.p
	var ps PoolStats
	for _, st := range p.Stats() {
		if st.Name == m.pr.cfg.Name {
			ps = st
		}
	}
	var requests, errs, timeouts, hits, misses, ejected int64
	for c := range ps.Requests {
		requests += ps.Requests[c]
		errs += ps.Errors[c]
	}
	for _, s := range ps.Servers {
		timeouts += s.Timeouts
		hits += s.Hits
		misses += s.Misses
		if s.State == pool.StateEjected {
			ejected++
		}
	}
	u := func(v int64) uint64 { return uint64(max(v, 0)) }
	b := memcache.AppendStatUint(nil, "pid", uint64(os.Getpid()))
	b = memcache.AppendStatUint(b, "uptime", uint64(p.Uptime()/time.Second))
	b = memcache.AppendStatUint(b, "time", uint64(time.Now().Unix()))
	b = memcache.AppendStat(b, "version", Version)
	b = memcache.AppendStatUint(b, "curr_connections", u(ps.ClientConnections))
	b = memcache.AppendStatUint(b, "total_connections", u(ps.ClientConnectionsTotal))
	b = memcache.AppendStatUint(b, "cmd_total", u(requests))
	b = memcache.AppendStatUint(b, "get_hits", u(hits))
	b = memcache.AppendStatUint(b, "get_misses", u(misses))
	b = memcache.AppendStatUint(b, "fragments", u(ps.Fragments))
	b = memcache.AppendStatUint(b, "errors", u(errs))
	b = memcache.AppendStatUint(b, "timeouts", u(timeouts))
	b = memcache.AppendStatUint(b, "servers", uint64(len(ps.Servers)))
	b = memcache.AppendStatUint(b, "servers_ejected", u(ejected))
	return memcache.AppendEnd(b)
}

// statsHotKeys answers "stats hotkeys": one line per hot key of the pool,
// hottest first: STAT <key> rate=<reads+writes/s> server=<name> cached=<0|1>
// (key cut to 64 bytes, other than printable ASCII escaped as \xNN).
func (m *memcacheCodec) statsHotKeys(cl *client) []byte {
	var b []byte
	for _, h := range cl.l.p.poolHotKeys(m.pr.live) {
		cached := "0"
		if h.Cached {
			cached = "1"
		}
		b = memcache.AppendStat(b, DisplayKey(h.Key), "rate="+strconv.FormatFloat(h.Rate, 'f', 1, 64)+
			" server="+h.Server+" cached="+cached)
	}
	return memcache.AppendEnd(b)
}

// clusterConfig answers "config get cluster" in the ElastiCache discovery
// format, naming the proxy itself as the only node.
func (m *memcacheCodec) clusterConfig(cl *client) []byte {
	return memcache.AppendConfigCluster(nil, 1, []memcache.ClusterNode{m.self(cl)})
}

// self is the proxy as a cluster node, as the client reached it: the
// address the client connected to (the listener's, or the interface's
// when it listens on all of them), named by the listen address's host when
// that is a name. The version of the answer stays 1: the node never changes.
func (m *memcacheCodec) self(cl *client) memcache.ClusterNode {
	node := memcache.ClusterNode{Host: "127.0.0.1", IP: "127.0.0.1"}
	if a, ok := cl.laddr.(*net.TCPAddr); ok {
		ip := a.IP.String()
		node = memcache.ClusterNode{Host: ip, IP: ip, Port: a.Port}
		if h, _, err := net.SplitHostPort(m.pr.cfg.Listen); err == nil && h != "" && net.ParseIP(h) == nil {
			node.Host = h
		}
	}
	return node
}

// noServers fails req of a pool that has no server yet: a discovery pool
// before its endpoint's first answer.
func (m *memcacheCodec) noServers(cl *client, req *memcache.Request) {
	pc := cl.l.pools[m.pr.idx]
	class := mcClass(req)
	pc.errors[class].Add(1)
	msg := "no servers yet: waiting for the first answer of discovery endpoint " + m.pr.cfg.Discovery.Endpoint
	if !m.pr.cfg.Discovery.Enabled() {
		msg = "the pool has no servers"
	}
	cl.answer(class, memcache.AppendError(nil, memcache.KindServerError, msg), req.Noreply)
}

// mcClass is the counter class of a single-key memcached request.
// mcReplicaRead reports whether read_policy may send req to a replica: a
// get, an mg whose flags neither write nor ask for the CAS value, or an me.
// gets, gat and gats (CAS tokens, touches) go to the primary.
func mcReplicaRead(req *memcache.Request) bool {
	switch req.Cmd {
	case memcache.CmdGet, memcache.CmdMetaDebug:
		return true
	case memcache.CmdMetaGet:
		return !req.Primary
	}
	return false
}

func mcClass(req *memcache.Request) CmdClass {
	switch req.Cmd {
	case memcache.CmdGet, memcache.CmdGets, memcache.CmdGat, memcache.CmdGats:
		if len(req.Keys) > 1 {
			return ClassMulti
		}
		return ClassRead
	case memcache.CmdMetaGet, memcache.CmdMetaDebug:
		return ClassRead
	}
	return ClassWrite
}

func (m *memcacheCodec) onConnect(*backend)    {}
func (m *memcacheCodec) push(*backend, []byte) {}
func (m *memcacheCodec) pushFrame([]byte) (int, error) {
	return 0, errors.New("memcached has no push replies")
}
func (m *memcacheCodec) closeClient(*client)    {}
func (m *memcacheCodec) inSession(*client) bool { return false }
