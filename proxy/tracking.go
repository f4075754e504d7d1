package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// Redis tracking (docs/hotkeys.md, "Redis tracking"): a Redis pool with
// hot_keys enabled keeps, per server and per proxy, one plain net.Conn in
// RESP3 with CLIENT TRACKING ON BCAST. The server pushes the name of every
// key written on it (by anyone) to that connection, and a null for a
// flush; the proxy drops those keys from the near cache (cause tracking).
// While a server's connection is not up (not yet connected, lost,
// reconnecting), lookup neither serves nor fills that server's keys, and
// losing it empties the near cache. The connections are not on the data
// path: one goroutine each, owned by Run's context, started and stopped by
// syncTracking as versions are published (servers added or removed, hot
// keys turned on or off) and by stopTracking when the pool is removed.

const (
	// trackDialTimeout bounds a tracking connection's dial and handshake.
	trackDialTimeout = time.Second
	// trackPingEvery is how often an idle tracking connection is pinged;
	// one that has said nothing for trackDeadAfter is given up.
	trackPingEvery = time.Second
	trackDeadAfter = 3 * time.Second
	// trackRetryMax is the longest wait between reconnection attempts.
	trackRetryMax = time.Second
)

// poolTracking is a pool's tracking connections (poolLive.tracking).
type poolTracking struct {
	// bySlot is read by lookup on the event loops: the tracker of each
	// server slot (nil: none). Replaced, never modified.
	bySlot atomic.Pointer[[]*serverTracker]
	// inval counts the keys (and flushes) the connections invalidated.
	inval atomic.Int64
	// running is guarded by Proxy.reloadMu.
	running map[int]*serverTracker
}

// serverTracker is one server's tracking connection and its goroutine.
type serverTracker struct {
	slot   int
	info   slotInfo
	up     atomic.Bool // tracking is on: the near cache may serve its keys
	cancel context.CancelFunc
	done   chan struct{}
}

// trackingWanted reports whether version pr needs tracking connections.
func trackingWanted(pr *poolRT) bool {
	return pr.hk != nil && pr.cfg.Protocol == config.ProtocolRedis
}

// trackedUp reports whether the near cache may serve or fill the keys of
// server slot s of a Redis pool: only while its tracking connection is up.
func (live *poolLive) trackedUp(s int) bool {
	ts := live.tracking.bySlot.Load()
	if ts == nil || s < 0 || s >= len(*ts) {
		return false
	}
	t := (*ts)[s]
	return t != nil && t.up.Load()
}

// syncTracking starts the tracking connections version pr needs and stops
// the others. Called with Proxy.reloadMu held, once Run has started, each
// time a version is published.
func (live *poolLive) syncTracking(pr *poolRT) {
	want := map[int]bool{}
	if trackingWanted(pr) {
		for _, s := range pr.slot {
			want[s] = true
		}
	}
	if live.tracking.running == nil {
		live.tracking.running = map[int]*serverTracker{}
	}
	for s, t := range live.tracking.running {
		if !want[s] {
			t.stop()
			delete(live.tracking.running, s)
		}
	}
	for s := range want {
		if live.tracking.running[s] == nil {
			live.tracking.running[s] = live.startTracker(s)
		}
	}
	live.publishTracking()
}

// stopTracking stops every tracking connection of a removed pool. Called
// with Proxy.reloadMu held.
func (live *poolLive) stopTracking() {
	for s, t := range live.tracking.running {
		t.stop()
		delete(live.tracking.running, s)
	}
	live.publishTracking()
}

// publishTracking publishes the running trackers by slot.
func (live *poolLive) publishTracking() {
	n := 0
	for s := range live.tracking.running {
		n = max(n, s+1)
	}
	ts := make([]*serverTracker, n)
	for s, t := range live.tracking.running {
		ts[s] = t
	}
	live.tracking.bySlot.Store(&ts)
}

// startTracker starts the tracking goroutine of server slot s.
func (live *poolLive) startTracker(s int) *serverTracker {
	p := live.p
	ctx, cancel := context.WithCancel(p.ctx)
	t := &serverTracker{slot: s, info: live.slots[s], cancel: cancel, done: make(chan struct{})}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer close(t.done)
		live.runTracker(ctx, t)
	}()
	return t
}

// stop ends t's goroutine and waits for it, so that its up flag is down
// and its connection closed when stop returns.
func (t *serverTracker) stop() {
	t.cancel()
	<-t.done
}

// runTracker keeps server t's tracking connection up until ctx ends.
func (live *poolLive) runTracker(ctx context.Context, t *serverTracker) {
	name := t.info.name
	if name == "" {
		name = t.info.addr
	}
	wait := 50 * time.Millisecond
	failing := false // an attempt failed since the last session was up: log once
	for {
		start := time.Now()
		err := live.trackSession(ctx, t)
		wasUp := t.up.Swap(false)
		if wasUp {
			// Writes may have been missed: nothing cached may stay.
			if hk := live.hk.Load(); hk != nil {
				hk.Cache().InvalidateAll()
				live.tracking.inval.Add(1)
			}
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case wasUp:
			failing = false
			live.p.log.Warn("redis tracking connection lost; near cache bypassed for its keys until it is back",
				"pool", live.name, "server", name, "error", err)
		case !failing:
			failing = true
			live.p.log.Warn("redis tracking connection failed; near cache bypassed for its keys, retrying",
				"pool", live.name, "server", name, "error", err)
		}
		if time.Since(start) > 10*trackRetryMax {
			wait = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, trackRetryMax)
	}
}

// trackSession dials server t, turns tracking on, marks t up and applies
// the invalidations it pushes until the connection fails or ctx ends.
func (live *poolLive) trackSession(ctx context.Context, t *serverTracker) error {
	network := t.info.network
	if network == "" {
		network = "tcp"
	}
	conn, err := dialServer(ctx, &net.Dialer{Timeout: trackDialTimeout}, live.cur.Load().stls, network, t.info.addr, t.info.tlsName)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	unhook := context.AfterFunc(sctx, func() { _ = conn.Close() })
	defer unhook()

	var hs [][]byte
	if auth := serverAuth(live.cur.Load().cfg); auth != nil {
		hs = append(hs, auth)
	}
	hs = append(hs,
		resp.AppendCommand(nil, []byte("HELLO"), []byte("3")),
		resp.AppendCommand(nil, []byte("CLIENT"), []byte("TRACKING"), []byte("ON"), []byte("BCAST")))
	var out []byte
	for _, c := range hs {
		out = append(out, c...)
	}
	_ = conn.SetDeadline(time.Now().Add(trackDialTimeout))
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	br := bufio.NewReader(conn)
	for range hs {
		v, err := readR3(br)
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if v.typ == '>' {
			return errors.New("handshake: unexpected push")
		}
		if v.typ == '-' || v.typ == '!' {
			return fmt.Errorf("handshake: %s", v.str)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	t.up.Store(true)

	// A pinger proves the connection alive; the reader gives it up after
	// trackDeadAfter of silence.
	go func() {
		tk := time.NewTicker(trackPingEvery)
		defer tk.Stop()
		ping := resp.AppendCommand(nil, []byte("PING"))
		for {
			select {
			case <-sctx.Done():
				return
			case <-tk.C:
				_ = conn.SetWriteDeadline(time.Now().Add(trackDeadAfter))
				if _, err := conn.Write(ping); err != nil {
					cancel()
					return
				}
			}
		}
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(trackDeadAfter))
		v, err := readR3(br)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if v.typ != '>' || len(v.elems) != 2 || string(v.elems[0].str) != "invalidate" {
			continue // PONG, or a push of another kind
		}
		hk := live.hk.Load()
		if hk == nil {
			continue
		}
		c := hk.Cache()
		keys := v.elems[1]
		if keys.typ == '_' || keys.null {
			c.InvalidateAll()
			live.tracking.inval.Add(1)
			continue
		}
		for _, k := range keys.elems {
			c.Invalidate(k.str)
		}
		live.tracking.inval.Add(int64(len(keys.elems)))
	}
}

// r3 is one RESP3 value as the tracking connection reads it.
type r3 struct {
	typ   byte
	null  bool
	str   []byte // strings, numbers, errors: the text
	elems []r3   // aggregates (a map's keys and values in turn)
}

// maxR3Len bounds a string or aggregate read on a tracking connection.
const maxR3Len = 512 << 20

// readR3 reads one RESP3 value (attributes skipped).
func readR3(br *bufio.Reader) (r3, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return r3{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return r3{}, errors.New("protocol error: bad line")
	}
	v := r3{typ: line[0]}
	body := line[1 : len(line)-2]
	switch v.typ {
	case '+', '-', ':', ',', '#', '(':
		v.str = append([]byte(nil), body...)
		return v, nil
	case '_':
		v.null = true
		return v, nil
	}
	n, err := strconv.Atoi(string(body))
	if err != nil || n > maxR3Len {
		return r3{}, fmt.Errorf("protocol error: bad length %q", body)
	}
	if n < 0 {
		v.null = true
		return v, nil
	}
	switch v.typ {
	case '$', '!', '=':
		v.str = make([]byte, n+2)
		if _, err := io.ReadFull(br, v.str); err != nil {
			return r3{}, err
		}
		v.str = v.str[:n]
		return v, nil
	case '*', '>', '~', '%', '|':
		if v.typ == '%' || v.typ == '|' {
			n *= 2
		}
		for range n {
			e, err := readR3(br)
			if err != nil {
				return r3{}, err
			}
			v.elems = append(v.elems, e)
		}
		if v.typ == '|' { // an attribute precedes the value it describes
			return readR3(br)
		}
		return v, nil
	}
	return r3{}, fmt.Errorf("protocol error: type %q", v.typ)
}
