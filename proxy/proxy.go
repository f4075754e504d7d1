package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	// Loops is the number of event loops. If zero, DefaultLoops() is used.
	Loops int
	// FlushMode chooses when backend writes are sent. Zero is
	// FlushPerIteration.
	FlushMode FlushMode
	// DrainTimeout bounds graceful shutdown: how long clients are given to
	// receive the replies they are owed. If zero, 10s is used.
	DrainTimeout time.Duration
	// Tick is how often timeouts are swept. If zero, a tenth of the shortest
	// pool timeout is used, clamped to [5ms, 100ms] (and worked out again
	// by Reload).
	Tick time.Duration
	// MaxClients caps open client connections over all pools, so that
	// clients cannot take the descriptors backend connections need. If
	// zero, it is derived from RLIMIT_NOFILE by config.DefaultMaxClients:
	// the soft limit less the backend connections every loop may open and
	// a reserve (64, or a quarter of a small limit, at least 32). If
	// negative, there is no proxy-wide cap (pools' max_clients still apply).
	MaxClients int
	// OnListen, if not nil, is called once every listener accepts
	// connections, with the listen addresses in pool order.
	OnListen func(addrs []string)
}

// DefaultLoops is the number of event loops a Proxy runs when
// Options.Loops is zero: half of GOMAXPROCS, at least one. A proxy shares
// its cores with the clients' and the servers' kernel work (every loopback
// write runs the receiver's TCP input on the writer's core) and often with
// the servers themselves. On 2 cores one loop spent 0.73-0.82x the CPU
// per request of two at one request in flight and 0.78-0.80x at pipeline
// depth 16, with 1.2-1.3x the throughput (docs/benchmarks.md): a loop with
// more clients serves more of them per wake-up, and an idle loop's
// wake-ups cost more than its work.
func DefaultLoops() int {
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// Proxy serves every pool of a configuration. Create it with New and start
// it with Run.
type Proxy struct {
	opts  Options
	log   *slog.Logger
	start time.Time
	// pools are every pool the proxy has served, indexed by poolLive.idx:
	// a reload appends added pools and marks removed ones, never reorders.
	// Written under reloadMu; read anywhere.
	pools atomic.Pointer[[]*poolLive]
	// active are the pools served now, in configuration order.
	active   atomic.Pointer[[]*poolLive]
	reloadMu sync.Mutex // serialises Reload (and Run's start against it)

	mu    sync.Mutex // guards loops
	loops map[gnet.EventLoop]*loop

	eng      gnet.Engine
	regMu    sync.Mutex // serialises Engine.Register (its load balancer is not safe for concurrent use)
	booted   chan struct{}
	running  chan struct{} // closed once an event loop has opened a connection
	loopsUp  sync.Once
	draining atomic.Bool
	clients  atomic.Int64 // open client connections
	// maxClients caps clients over all pools (0: no cap): Options.MaxClients,
	// or derived from the descriptor limit.
	maxClients       int64
	maxClientsSource string
	mem              memBudget // reply bytes held, against max_memory
	nextID           atomic.Uint64

	ctx context.Context // Run's context, for dials and probes
	wg  sync.WaitGroup  // dial goroutines
	bg  sync.WaitGroup  // health goroutines and the tick loop
	// tick is how often timeouts are swept, in ns (sweepEvery).
	tick atomic.Int64
	acc  sync.WaitGroup // accept loops
	// listening is set from the moment Run has opened its listeners until
	// it closes them: a pool Reload adds then gets its listener at once.
	// serving is set once the event loops run as well: Reload then starts
	// what it adds (accept loops, health). Both are guarded by reloadMu.
	listening, serving bool
}

// New checks cfg and builds a Proxy. It starts nothing.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Loops <= 0 {
		opts.Loops = DefaultLoops()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	p := &Proxy{
		opts: opts, log: opts.Logger,
		loops:  map[gnet.EventLoop]*loop{},
		booted: make(chan struct{}), running: make(chan struct{}),
		ctx:   context.Background(),
		start: time.Now(),
	}
	p.mem.limit = cfg.MemoryBudget()
	var pools []*poolLive
	for i := range cfg.Pools {
		live, err := newPoolLive(p, i, &cfg.Pools[i])
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", cfg.Pools[i].Name, err)
		}
		pools = append(pools, live)
	}
	active := slices.Clone(pools)
	p.pools.Store(&pools)
	p.active.Store(&active)
	p.tick.Store(int64(p.sweepEvery()))
	switch {
	case opts.MaxClients > 0:
		p.maxClients, p.maxClientsSource = int64(opts.MaxClients), "option"
	case opts.MaxClients == 0:
		p.maxClients, p.maxClientsSource = p.deriveMaxClients(cfg), "RLIMIT_NOFILE"
	}
	return p, nil
}

// Run serves until ctx is done, then drains: it stops taking new clients,
// gives the open ones up to Options.DrainTimeout to receive the replies they
// are owed, and closes everything. It returns the engine's error, if any.
func (p *Proxy) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	p.ctx = runCtx

	p.reloadMu.Lock()
	lns, err := p.listen(runCtx)
	p.listening = err == nil
	p.reloadMu.Unlock()
	if err != nil {
		return err
	}
	closeListeners := func() {
		p.reloadMu.Lock()
		defer p.reloadMu.Unlock()
		p.serving, p.listening = false, false
		for _, live := range p.poolList() {
			if live.ln != nil {
				_ = live.ln.Close()
			}
		}
	}
	defer closeListeners()
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr().Network() + "://" + ln.Addr().String()
	}
	// gnet runs only with a listener of its own; it gets a unix socket in
	// a private directory that nothing connects to (see accept.go).
	dir, err := os.MkdirTemp("", "cacheproxy-")
	if err != nil {
		return fmt.Errorf("private directory for the engine: %w", err)
	}
	defer os.RemoveAll(dir)
	private := filepath.Join(dir, "engine.sock")
	h := &handler{p: p}
	engErr := make(chan error, 1)
	go func() {
		engErr <- gnet.Rotate(h, []string{"unix://" + private},
			gnet.WithNumEventLoop(p.opts.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{p.log}),
		)
	}()
	select {
	case err := <-engErr:
		if err == nil {
			err = errors.New("engine stopped before it booted")
		}
		return fmt.Errorf("start event loops: %w", err)
	case <-p.booted:
	}
	// OnBoot runs before gnet has started its loops; Engine.Register may
	// be used only once they run. A connection to the private listener
	// opened by a loop says they do.
	if err := p.awaitLoops(private, engErr); err != nil {
		return err
	}
	p.reloadMu.Lock()
	p.serving = true
	for _, live := range p.activePools() {
		p.serve(live)
	}
	p.reloadMu.Unlock()
	defer p.acc.Wait()
	if p.maxClients > 0 {
		p.log.Info("client limit", "max_clients", p.maxClients, "source", p.maxClientsSource)
	}
	if p.opts.OnListen != nil {
		p.opts.OnListen(addrs)
	}

	p.bg.Add(1)
	go func() { defer p.bg.Done(); p.tickLoop(runCtx) }()
	p.bg.Add(1)
	go func() { defer p.bg.Done(); p.mergeLoop(runCtx) }()

	select {
	case err = <-engErr:
		// The engine stopped on its own: that is a failure, whatever it
		// says, so the process exits non-zero and a supervisor restarts it.
		if err == nil {
			err = errors.New("event loops stopped unexpectedly")
		}
		err = fmt.Errorf("engine: %w", err)
		closeListeners()
	case <-ctx.Done():
		closeListeners()
		p.drain()
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
		if serr := p.eng.Stop(stopCtx); serr != nil {
			p.log.Warn("engine stop", "error", serr)
		}
		stopCancel()
		err = <-engErr
	}
	cancel()
	p.bg.Wait()
	p.wg.Wait()
	p.log.Info("shutdown complete")
	return err
}

// poolList returns every pool, removed ones included, indexed by
// poolLive.idx.
func (p *Proxy) poolList() []*poolLive {
	if ps := p.pools.Load(); ps != nil {
		return *ps
	}
	return nil
}

// serve starts accepting clients of pool live on its listener and runs its
// health goroutine. Called with reloadMu held, once Run listens.
func (p *Proxy) serve(live *poolLive) {
	pr := live.cur.Load()
	ln := live.ln
	p.acc.Add(1)
	go func() { defer p.acc.Done(); p.acceptLoop(p.ctx, live, ln) }()
	live.runHealth(pr)
	live.syncFollow()
	live.syncDiscovery()
	live.syncCluster()
	p.log.Info("listening", "pool", pr.cfg.Name, "listen", pr.cfg.Listen, "protocol", string(pr.cfg.Protocol),
		"servers", len(pr.cfg.Servers), "distribution", pr.cfg.Distribution)
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

// sweepEvery is how often timeouts are swept: Options.Tick, else a tenth of
// the shortest timeout of the pools served, clamped to [5ms, 100ms].
func (p *Proxy) sweepEvery() time.Duration {
	if p.opts.Tick > 0 {
		return p.opts.Tick
	}
	minTimeout := time.Duration(0)
	for _, live := range p.activePools() {
		if t := live.cur.Load().cfg.Timeout; t > 0 && (minTimeout == 0 || t < minTimeout) {
			minTimeout = t
		}
	}
	if minTimeout == 0 {
		return 100 * time.Millisecond
	}
	return min(max(minTimeout/10, 5*time.Millisecond), 100*time.Millisecond)
}

// tickLoop hands a timeout sweep to every loop each tick (p.tick, which a
// reload may change).
func (p *Proxy) tickLoop(ctx context.Context) {
	every := time.Duration(p.tick.Load())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.forEachLoop(func(l *loop) { l.sweep() })
			if d := time.Duration(p.tick.Load()); d != every {
				every = d
				t.Reset(every)
			}
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
	}
	return l
}

// Pools returns the names of the pools served, in configuration order.
func (p *Proxy) Pools() []string {
	var names []string
	for _, live := range p.activePools() {
		names = append(names, live.name)
	}
	return names
}

// activePools returns the pools served now, in configuration order.
func (p *Proxy) activePools() []*poolLive {
	if ps := p.active.Load(); ps != nil {
		return *ps
	}
	return nil
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
		// Only gnet's private listener accepts without a context: Run's
		// own connection, made to learn that the event loops are running.
		h.p.loopsUp.Do(func() { close(h.p.running) })
		return nil, gnet.Close
	case *acceptedConn:
		p := h.p
		if p.draining.Load() {
			return nil, gnet.Close
		}
		live := ctx.live
		pr := live.cur.Load()
		if live.removed.Load() {
			return nil, gnet.Close
		}
		if max := p.maxClients; max > 0 && p.clients.Load() >= max {
			p.log.Warn("client refused: proxy-wide client limit reached", "pool", pr.cfg.Name, "limit", max,
				"source", p.maxClientsSource)
			if l := p.loopFor(c.EventLoop()); l != nil {
				l.counters(pr.idx).rejected[RejectMaxClients].Add(1)
			}
			return pr.codec.tooManyClients(), gnet.Close
		}
		if max := pr.cfg.Limits.MaxClients; max > 0 && live.clients.Load() >= int64(max) {
			p.log.Warn("client refused: max_clients reached", "pool", pr.cfg.Name, "max_clients", max)
			if l := p.loopFor(c.EventLoop()); l != nil {
				l.counters(pr.idx).rejected[RejectMaxClients].Add(1)
			}
			return pr.codec.tooManyClients(), gnet.Close
		}
		live.clients.Add(1)
		l := p.loopFor(c.EventLoop())
		pr = l.version(live)
		cl := newClient(l, pr, c, p.nextID.Add(1))
		if ctx.raddr != nil {
			cl.raddr, cl.laddr = ctx.raddr, ctx.laddr
		}
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
		ctx.onClose(c, err)
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
