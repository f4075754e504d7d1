package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/cacheproxy/cacheproxy/config"
)

// Version is the proxy's version, reported by memcached "version" and Redis
// INFO.
const Version = "0.1.0"

// FlushMode chooses when queued backend writes are sent.
type FlushMode int

const (
	// FlushPerIteration sends each dirty backend connection's queued
	// requests once per event-loop iteration, batching across every client
	// that the iteration served. The default.
	FlushPerIteration FlushMode = iota
	// FlushPerCallback sends them at the end of each client's read callback.
	FlushPerCallback
)

// Options tunes a Proxy beyond its configuration file. The zero value is
// ready to use.
type Options struct {
	// Logger receives lifecycle events. If nil, slog.Default() is used.
	Logger *slog.Logger
	// Loops is the number of event loops. If zero, GOMAXPROCS is used.
	Loops int
	// FlushMode chooses when backend writes are sent. Zero is
	// FlushPerIteration.
	FlushMode FlushMode
	// DrainTimeout bounds graceful shutdown: how long clients are given to
	// receive the replies they are owed. If zero, 10s is used.
	DrainTimeout time.Duration
	// Tick is how often timeouts are swept. If zero, a tenth of the shortest
	// pool timeout is used, clamped to [5ms, 100ms].
	Tick time.Duration
	// OnListen, if not nil, is called once every listener accepts
	// connections, with the listen addresses in pool order.
	OnListen func(addrs []string)
}

// Proxy serves every pool of a configuration. Create it with New and start
// it with Run.
type Proxy struct {
	cfg   *config.Config
	opts  Options
	log   *slog.Logger
	pools []*poolRT
	start time.Time

	// byPort and byPath map a client's local address to its pool.
	byAddr map[string]*poolRT
	byPort map[int]*poolRT
	byPath map[string]*poolRT

	mu    sync.Mutex // guards loops
	loops map[gnet.EventLoop]*loop

	eng      gnet.Engine
	booted   chan struct{}
	draining atomic.Bool
	clients  atomic.Int64 // open client connections
	mem      memBudget    // reply bytes held, against max_memory
	nextID   atomic.Uint64

	ctx context.Context // Run's context, for dials and probes
	wg  sync.WaitGroup  // dial goroutines
}

// New checks cfg and builds a Proxy. It starts nothing.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Loops <= 0 {
		opts.Loops = runtime.GOMAXPROCS(0)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	p := &Proxy{
		cfg: cfg, opts: opts, log: opts.Logger,
		byAddr: map[string]*poolRT{}, byPort: map[int]*poolRT{}, byPath: map[string]*poolRT{},
		loops:  map[gnet.EventLoop]*loop{},
		booted: make(chan struct{}),
		ctx:    context.Background(),
		start:  time.Now(),
	}
	p.mem.limit = cfg.MemoryBudget()
	minTimeout := time.Duration(0)
	for i := range cfg.Pools {
		pr, err := newPoolRT(p, i, &cfg.Pools[i])
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", cfg.Pools[i].Name, err)
		}
		p.pools = append(p.pools, pr)
		if t := cfg.Pools[i].Timeout; t > 0 && (minTimeout == 0 || t < minTimeout) {
			minTimeout = t
		}
		network, addr := listenNetwork(cfg.Pools[i].Listen)
		if network == "unix" {
			p.byPath[addr] = pr
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("pool %q: listen %q: %w", cfg.Pools[i].Name, addr, err)
		}
		n, _ := strconv.Atoi(port)
		p.byAddr[net.JoinHostPort(host, port)] = pr
		if _, dup := p.byPort[n]; dup {
			p.byPort[n] = nil // ambiguous: only exact matches
		} else {
			p.byPort[n] = pr
		}
	}
	if p.opts.Tick <= 0 {
		p.opts.Tick = 100 * time.Millisecond
		if minTimeout > 0 {
			p.opts.Tick = min(max(minTimeout/10, 5*time.Millisecond), 100*time.Millisecond)
		}
	}
	return p, nil
}

// listenNetwork splits a configured listen address into a network and an
// address: a path (optionally followed by a permission) is a unix socket.
func listenNetwork(listen string) (network, addr string) {
	if strings.HasPrefix(listen, "/") {
		path, _, _ := strings.Cut(listen, " ")
		return "unix", path
	}
	return "tcp", listen
}

// Run serves until ctx is done, then drains: it stops taking new clients,
// gives the open ones up to Options.DrainTimeout to receive the replies they
// are owed, and closes everything. It returns the engine's error, if any.
func (p *Proxy) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	p.ctx = runCtx

	addrs := make([]string, len(p.pools))
	for i, pr := range p.pools {
		network, addr := listenNetwork(pr.cfg.Listen)
		addrs[i] = network + "://" + addr
	}
	// gnet reports a taken address as a confusing setsockopt error; check
	// each TCP address first so the message says what is wrong.
	for _, pr := range p.pools {
		if network, addr := listenNetwork(pr.cfg.Listen); network == "tcp" {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("pool %q: listen %s: %w", pr.cfg.Name, addr, err)
			}
			_ = l.Close()
		}
	}
	h := &handler{p: p}
	engErr := make(chan error, 1)
	go func() {
		engErr <- gnet.Rotate(h, addrs,
			gnet.WithNumEventLoop(p.opts.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{p.log}),
			gnet.WithTCPKeepAlive(time.Minute),
		)
	}()
	select {
	case err := <-engErr:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("start listeners %v: %w", addrs, err)
	case <-p.booted:
	}
	for _, pr := range p.pools {
		p.log.Info("listening", "pool", pr.cfg.Name, "listen", pr.cfg.Listen, "protocol", string(pr.cfg.Protocol),
			"servers", len(pr.cfg.Servers), "distribution", pr.cfg.Distribution)
	}
	if p.opts.OnListen != nil {
		p.opts.OnListen(addrs)
	}

	var bg sync.WaitGroup
	for _, pr := range p.pools {
		bg.Add(1)
		go func() { defer bg.Done(); _ = pr.health.Run(runCtx, 0) }()
	}
	bg.Add(1)
	go func() { defer bg.Done(); p.tickLoop(runCtx) }()

	var err error
	select {
	case err = <-engErr:
		// The engine stopped on its own.
	case <-ctx.Done():
		p.drain()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
		if serr := p.eng.Stop(stopCtx); serr != nil {
			p.log.Warn("engine stop", "error", serr)
		}
		stopCancel()
		err = <-engErr
	}
	cancel()
	bg.Wait()
	p.wg.Wait()
	p.log.Info("shutdown complete")
	return err
}

// drain stops taking clients and waits (bounded) for open clients to receive
// what they are owed.
func (p *Proxy) drain() {
	p.draining.Store(true)
	p.log.Info("draining", "clients", p.clients.Load(), "timeout", p.opts.DrainTimeout)
	p.forEachLoop(func(l *loop) { l.drain() })
	deadline := time.Now().Add(p.opts.DrainTimeout)
	for p.clients.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the client count, bounded by deadline
	}
	if n := p.clients.Load(); n > 0 {
		p.log.Warn("drain timeout; closing clients with replies owed", "clients", n)
	}
}

// tickLoop hands a timeout sweep to every loop each tick.
func (p *Proxy) tickLoop(ctx context.Context) {
	t := time.NewTicker(p.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.forEachLoop(func(l *loop) { l.sweep() })
		}
	}
}

// forEachLoop runs fn on each loop's own goroutine.
func (p *Proxy) forEachLoop(fn func(l *loop)) {
	p.mu.Lock()
	ls := make([]*loop, 0, len(p.loops))
	for _, l := range p.loops {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		_ = l.el.Execute(p.ctx, gnet.RunnableFunc(func(context.Context) error {
			fn(l)
			return nil
		}))
	}
}

// loopFor returns the state of event loop el, creating it on first use.
func (p *Proxy) loopFor(el gnet.EventLoop) *loop {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.loops[el]
	if l == nil {
		l = newLoop(p, el)
		p.loops[el] = l
		l.preconnect()
	}
	return l
}

// poolFor finds the pool a client connected to, by its local address.
func (p *Proxy) poolFor(c gnet.Conn) *poolRT {
	switch a := c.LocalAddr().(type) {
	case *net.TCPAddr:
		if pr := p.byAddr[a.String()]; pr != nil {
			return pr
		}
		return p.byPort[a.Port]
	case *net.UnixAddr:
		return p.byPath[a.Name]
	}
	if len(p.pools) == 1 {
		return p.pools[0]
	}
	return nil
}

// Pools returns the names of the pools served, in configuration order.
func (p *Proxy) Pools() []string {
	names := make([]string, len(p.pools))
	for i, pr := range p.pools {
		names[i] = pr.cfg.Name
	}
	return names
}

// handler adapts gnet's callbacks to clients and backends.
type handler struct {
	gnet.BuiltinEventEngine
	p *Proxy
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.p.eng = eng
	close(h.p.booted)
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch ctx := c.Context().(type) {
	case *dialAttempt:
		ctx.b.onOpen(c, ctx)
		return nil, gnet.None
	case nil:
		p := h.p
		if p.draining.Load() {
			return nil, gnet.Close
		}
		pr := p.poolFor(c)
		if pr == nil {
			p.log.Error("connection on an unknown listener", "local", c.LocalAddr().String())
			return nil, gnet.Close
		}
		if max := pr.cfg.Limits.MaxClients; max > 0 && pr.clients.Load() >= int64(max) {
			p.log.Warn("client refused: max_clients reached", "pool", pr.cfg.Name, "max_clients", max)
			if l := p.loopFor(c.EventLoop()); l != nil {
				l.pools[pr.idx].rejected[RejectMaxClients].Add(1)
			}
			return pr.codec.errorReply(nil, "too many clients"), gnet.Close
		}
		pr.clients.Add(1)
		l := p.loopFor(c.EventLoop())
		cl := newClient(l, pr, c, p.nextID.Add(1))
		c.SetContext(cl)
		p.clients.Add(1)
		l.pools[pr.idx].clientConns.Add(1)
		l.pools[pr.idx].clientTotal.Add(1)
		return nil, gnet.None
	}
	return nil, gnet.Close
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch ctx := c.Context().(type) {
	case *client:
		ctx.onClose(err)
		ctx.pr.clients.Add(-1)
		h.p.clients.Add(-1)
	case *backend:
		ctx.onClose(c, err)
	}
	return gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch ctx := c.Context().(type) {
	case *client:
		ctx.l.tick()
		return ctx.onTraffic()
	case *backend:
		ctx.l.tick()
		return ctx.onTraffic(c)
	}
	return gnet.Close
}

// gnetLogger sends gnet's own log lines to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
