package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/config"
)

// The proxy accepts client connections itself, in one goroutine per pool
// listener, and hands each to an event loop with Engine.Register. gnet's own
// acceptor shuts the whole engine down when accept fails (EMFILE when the
// descriptor limit is reached, ENFILE, ENOBUFS), which would drop every
// client and exit the process; here a failed accept is counted, logged once
// per episode and retried after a backoff while existing clients are served.
//
// gnet still needs one listener of its own to run; it gets a unix socket in a
// private directory that nothing connects to.

// Accept backoff after a failed accept: doubling from acceptBackoffMin up to
// acceptBackoffMax, as net/http's server does.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptedConn is the gnet context of a client connection the proxy
// accepted, until OnOpen replaces it with the client.
type acceptedConn struct {
	live *poolLive
	// raddr and laddr are a TLS client's addresses (nil for a plaintext
	// client): gnet sees only its bridge's socket pair.
	raddr, laddr net.Addr
}

// listen opens every pool's listener (poolLive.ln). Called with reloadMu
// held.
func (p *Proxy) listen(ctx context.Context) ([]net.Listener, error) {
	var lns []net.Listener
	for _, live := range p.activePools() {
		ln, err := listenPool(ctx, live.cur.Load())
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, err
		}
		live.ln = ln
		lns = append(lns, ln)
	}
	return lns, nil
}

// listenPool opens pool pr's listener. A unix socket gets the permissions
// its listen line gives ("/path.sock 0666"), if any.
func listenPool(ctx context.Context, pr *poolRT) (net.Listener, error) {
	la, err := config.ParseListen(pr.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("pool %q: listen: %w", pr.cfg.Name, err)
	}
	network := la.Network
	if network == "unix" {
		removeStaleSocket(la.Addr)
	} else {
		network = tcpFamily(la.Addr)
	}
	lc := net.ListenConfig{KeepAlive: time.Minute}
	ln, err := lc.Listen(ctx, network, la.Addr)
	if err != nil {
		return nil, fmt.Errorf("pool %q: listen %s: %w", pr.cfg.Name, la.Addr, err)
	}
	if la.Network == "unix" && la.Perm != 0 {
		if err := os.Chmod(la.Addr, la.Perm); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("pool %q: listen %s: permissions: %w", pr.cfg.Name, la.Addr, err)
		}
	}
	return ln, nil
}

// tcpFamily is the network to listen on addr with: an IPv4 address gets an
// IPv4 socket and an IPv6 one an IPv6-only socket (so 0.0.0.0:P and [::1]:P
// can both be served, as twemproxy and gnet open them); a name gets both.
func tcpFamily(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return "tcp4"
		}
		return "tcp6"
	}
	return "tcp"
}

// removeStaleSocket removes a unix socket file left by an earlier process,
// so that listening on its path works; anything else at path is left for
// listen to report.
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close() // someone serves it: leave it, listen will fail
			return
		}
		_ = os.Remove(path)
	}
}

// acceptLoop accepts clients on ln for pool pr until ln is closed.
func (p *Proxy) acceptLoop(ctx context.Context, live *poolLive, ln net.Listener) {
	ep := episode{p: p, live: live}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			if !ep.fail(ctx, err) {
				return
			}
			continue
		}
		if p.draining.Load() {
			_ = c.Close()
			continue
		}
		// gnet duplicates the descriptor and closes c, even when the
		// duplicate fails; make sure a descriptor is free first, holding
		// the client (and the listener) while none is.
		for !spareDescriptor(c) {
			if !ep.fail(ctx, syscall.EMFILE) {
				_ = c.Close()
				return
			}
		}
		ep.recovered()
		if lt := live.cur.Load().ltls; lt != nil {
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.acceptTLS(ctx, live, lt, c) }()
			continue
		}
		if err := p.registerConn(ctx, &acceptedConn{live: live}, c); err != nil {
			live.acceptErrors.Add(1)
			p.log.Warn("client connection not registered", "pool", live.name, "error", err)
		}
	}
}

// episode is a run of failed accepts on one listener: counted, logged at
// its start and end, and retried after a doubling backoff.
type episode struct {
	p       *Proxy
	live    *poolLive
	failed  int64
	backoff time.Duration
}

// fail counts a failure and waits out the backoff; it reports false if ctx
// ended meanwhile.
func (e *episode) fail(ctx context.Context, err error) bool {
	e.live.acceptErrors.Add(1)
	e.failed++
	if e.failed == 1 {
		e.p.log.Error("accepting clients failed; retrying with backoff while serving open clients",
			"pool", e.live.name, "listen", e.live.cur.Load().cfg.Listen, "error", err, "clients", e.p.clients.Load())
	}
	e.backoff = min(max(2*e.backoff, acceptBackoffMin), acceptBackoffMax)
	t := time.NewTimer(e.backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// recovered ends an episode, if one was running.
func (e *episode) recovered() {
	if e.failed > 0 {
		e.p.log.Info("accepting clients again", "pool", e.live.name, "failed_attempts", e.failed)
		e.failed, e.backoff = 0, 0
	}
}

// registerConn hands an accepted connection to an event loop and waits
// until the loop has opened it (or failed to). gnet duplicates the
// descriptor and closes c.
func (p *Proxy) registerConn(ctx context.Context, ac *acceptedConn, c net.Conn) error {
	rctx := gnet.NewNetConnContext(gnet.NewContext(ctx, ac), c)
	p.regMu.Lock()
	ch, err := p.eng.Register(rctx)
	p.regMu.Unlock()
	if err != nil {
		_ = c.Close()
		return err
	}
	return enrolled(ctx, ch)
}

// enrolled waits for the result of enrolling a connection in an event loop.
// It gives up when ctx ends: a loop that stopped meanwhile never answers.
func enrolled(ctx context.Context, ch <-chan gnet.RegisteredResult) error {
	select {
	case res, ok := <-ch:
		if !ok {
			return errors.New("enroll: no result")
		}
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("enroll: %w", ctx.Err())
	}
}

// deriveMaxClients is the proxy-wide client limit used when none is set:
// config.DefaultMaxClients for the soft RLIMIT_NOFILE (Go raises it to the
// hard limit at start). It is at least 1.
func (p *Proxy) deriveMaxClients(cfg *config.Config) int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0 // unknown: no derived limit
	}
	n, err := cfg.DefaultMaxClients(rl.Cur, p.opts.Loops)
	if err != nil {
		p.log.Warn("client limit", "max_clients", 1, "error", err)
		return 1
	}
	return int64(n)
}

// awaitLoops connects to gnet's private listener and waits until an event
// loop has opened the connection, so the engine's loops are running.
func (p *Proxy) awaitLoops(private string, engErr <-chan error) error {
	c, err := net.DialTimeout("unix", private, 10*time.Second)
	if err != nil {
		return fmt.Errorf("start event loops: %w", err)
	}
	defer c.Close()
	select {
	case <-p.running:
		return nil
	case err := <-engErr:
		if err == nil {
			err = errors.New("engine stopped before it ran")
		}
		return fmt.Errorf("start event loops: %w", err)
	case <-time.After(10 * time.Second):
		return errors.New("start event loops: no loop opened a connection within 10s")
	}
}

// spareDescriptor reports whether one more descriptor can be opened now, by
// duplicating c's and closing the duplicate again.
func spareDescriptor(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	spare := true
	_ = rc.Control(func(fd uintptr) {
		nfd, err := syscall.Dup(int(fd))
		if err != nil {
			spare = !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE)
			return
		}
		_ = syscall.Close(nfd)
	})
	return spare
}
