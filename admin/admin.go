package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// Source is what the admin endpoints read; *proxy.Proxy implements it. Every
// method must be safe to call from any goroutine at any time.
type Source interface {
	// Stats returns a snapshot of every pool's counters.
	Stats() []proxy.PoolStats
	// Ready reports whether the proxy serves every pool.
	Ready() bool
	// Uptime returns how long the proxy has run.
	Uptime() time.Duration
}

var _ Source = (*proxy.Proxy)(nil)

// HotKeySource is the part of a Source that lists hot keys (proxy.Proxy
// does; test fakes need not: /hotkeys then lists no pool).
type HotKeySource interface {
	// HotKeys lists the hot keys of every pool with hot_keys enabled.
	HotKeys() map[string][]proxy.HotKeyStats
}

var _ HotKeySource = (*proxy.Proxy)(nil)

// hotKey is one entry of /hotkeys.
type hotKey struct {
	Key    string  `json:"key"`
	Rate   float64 `json:"rate"`
	Server string  `json:"server"`
	Cached bool    `json:"cached"`
}

// hotkeys serves GET /hotkeys: {"pools": {"<pool>": [{"key", "rate",
// "server", "cached"}, ...]}}, hottest first, for every pool with hot_keys
// enabled; keys cut to 64 bytes, bytes other than printable ASCII escaped
// as \xNN (proxy.DisplayKey).
func (s *Server) hotkeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	out := struct {
		Pools map[string][]hotKey `json:"pools"`
	}{Pools: map[string][]hotKey{}}
	if hs, ok := s.opts.Source.(HotKeySource); ok {
		for pool, list := range hs.HotKeys() {
			keys := make([]hotKey, 0, len(list))
			for _, h := range list {
				keys = append(keys, hotKey{Key: proxy.DisplayKey(h.Key), Rate: math.Round(h.Rate*10) / 10, Server: h.Server, Cached: h.Cached})
			}
			out.Pools[pool] = keys
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// DefaultPollInterval is the backend figures collector's interval when
// Options.PollInterval is zero.
const DefaultPollInterval = 10 * time.Second

// shutdownTimeout bounds the HTTP server's graceful shutdown.
const shutdownTimeout = 5 * time.Second

// statsWriteTimeout bounds writing the twemproxy JSON to one stats client.
const statsWriteTimeout = 5 * time.Second

// Options configure a Server.
type Options struct {
	// Addr is the HTTP listen address for /metrics, /healthz, /readyz,
	// /hotkeys, /reload and (with Pprof) /debug/pprof/ ("127.0.0.1:0" picks
	// a free port). If empty, the HTTP listener is off.
	Addr string
	// Token, if not empty, is the bearer token every request but /healthz
	// and /readyz must carry (Authorization: Bearer <token>); others get
	// 401 with WWW-Authenticate: Bearer. SetConfig changes it.
	Token string
	// Pprof serves /debug/pprof/; when false those paths answer 404.
	// SetConfig changes it.
	Pprof bool
	// StatsAddr is the twemproxy-compatible JSON stats TCP address. If
	// empty, the stats listener is off.
	StatsAddr string
	// Config is the proxy's configuration: the backend figures collector
	// polls its servers. If nil, no backend figures are collected.
	Config *config.Config
	// Source is the proxy whose figures are served. Required.
	Source Source
	// Logger receives lifecycle events (listen, stop) and backend poll
	// state changes. If nil, slog.Default() is used.
	Logger *slog.Logger
	// PollInterval is the backend figures collector's interval. If zero,
	// DefaultPollInterval (10s) is used; a negative value turns the
	// collector off.
	PollInterval time.Duration
	// Version is reported in cacheproxy_build_info and the stats JSON.
	Version string
	// Hostname is the stats JSON's "source". If empty, os.Hostname is used.
	Hostname string
	// Reload, if not nil, is called by POST /reload to reload the
	// configuration; it returns a one-line summary of what changed. An
	// error that is a *ReloadError sets the reply's status; any other
	// error answers 500. If nil, /reload is not served (404).
	Reload func(ctx context.Context) (string, error)
}

// ReloadError is an error from Options.Reload with the HTTP status its
// reply gets: 400 for a file that does not load, 409 for one that cannot be
// applied live.
type ReloadError struct {
	// Status is the HTTP status of the reply; 0 means 500.
	Status int
	// Err is why the reload changed nothing; its text is the reply's body.
	Err error
}

// Error returns Err's text.
func (e *ReloadError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *ReloadError) Unwrap() error { return e.Err }

// Server serves the admin HTTP endpoints and the twemproxy stats port.
// MoveListeners moves them while it runs and SetConfig changes the servers
// it polls, so that a configuration reload carries over to it.
type Server struct {
	opts   Options
	log    *slog.Logger
	reg    *prometheus.Registry
	poller *poller
	reload *reloadCollector
	access atomic.Pointer[access] // the token and pprof switch now

	mu    sync.Mutex
	state runPhase
	http  *endpoint // the HTTP listener now, nil when off
	stats *endpoint // the stats listener now, nil when off
	run   *runState // set while Run serves
}

// runPhase is where a Server is in its life.
type runPhase int

const (
	phaseNew     runPhase = iota // neither Run nor Close called
	phaseRunning                 // Run serves
	phaseDone                    // Run returned, or Close called
)

// endpoint is one bound listener: the address it was configured with, the
// listener and, for HTTP, the server that serves it.
type endpoint struct {
	addr string
	ln   net.Listener
	srv  *http.Server // HTTP only
}

// runState is what Run shares with the goroutines it owns, so that
// Move.Commit can start serving a new listener and retire an old one.
type runState struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

// New checks o, binds the listeners (so Addr and StatsAddr are known and a
// port already in use is reported at once) and builds the registry. It
// starts no goroutine and serves nothing until Run; call Close instead of Run
// to release the listeners.
func New(o Options) (*Server, error) {
	if o.Source == nil {
		return nil, errors.New("admin: Options.Source is nil")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Hostname == "" {
		o.Hostname = hostname()
	}
	s := &Server{opts: o, log: o.Logger.With("component", "admin"), reload: newReloadCollector()}
	s.access.Store(newAccess(o.Token, o.Pprof))
	if o.Config != nil && o.PollInterval > 0 {
		s.poller = newPoller(o.Config, o.PollInterval, s.log)
		// The figures are only seen on /metrics: poll while it is served.
		s.poller.enabled = func() bool { return s.Addr() != "" }
	}
	s.reg = prometheus.NewRegistry()
	cols := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStatsCollector(o.Source, o.Version),
		s.reload,
	}
	if s.poller != nil {
		cols = append(cols, s.poller)
	}
	for _, c := range cols {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register collector: %w", err)
		}
	}
	http, stats, err := s.bind(nil, nil, o.Addr, o.StatsAddr)
	if err != nil {
		return nil, err
	}
	s.http, s.stats = http, stats
	return s, nil
}

// bind opens listeners for addr and statsAddr, except where the current
// endpoint (curHTTP, curStats) already has that configured address, and
// returns the endpoints that are current once they are in use ("" is
// nil). On error it closes what it opened.
func (s *Server) bind(curHTTP, curStats *endpoint, addr, statsAddr string) (http, stats *endpoint, err error) {
	http, stats = curHTTP, curStats
	if addr == "" {
		http = nil
	} else if curHTTP == nil || curHTTP.addr != addr {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("admin: listen %s: %w", addr, err)
		}
		http = s.newHTTPEndpoint(addr, ln)
	}
	if statsAddr == "" {
		stats = nil
	} else if curStats == nil || curStats.addr != statsAddr {
		ln, err := net.Listen("tcp", statsAddr)
		if err != nil {
			if http != nil && http != curHTTP {
				_ = http.ln.Close()
			}
			return nil, nil, fmt.Errorf("admin: stats listen %s: %w", statsAddr, err)
		}
		stats = &endpoint{addr: statsAddr, ln: ln}
	}
	return http, stats, nil
}

func (s *Server) newHTTPEndpoint(addr string, ln net.Listener) *endpoint {
	return &endpoint{addr: addr, ln: ln, srv: &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}}
}

// Addr returns the HTTP listener's bound address, or "" if it is off.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http == nil {
		return ""
	}
	return s.http.ln.Addr().String()
}

// StatsAddr returns the stats listener's bound address, or "" if it is off.
func (s *Server) StatsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats == nil {
		return ""
	}
	return s.stats.ln.Addr().String()
}

// SetConfig applies cfg's admin.token and admin.pprof from the next
// request on, and makes the backend figures collector poll cfg's servers
// from its next poll on (the figures of a server in both configurations
// are kept; no collector runs when the Server was built without a Config
// or with the collector off).
func (s *Server) SetConfig(cfg *config.Config) {
	s.access.Store(newAccess(cfg.Admin.Token, cfg.Admin.Pprof))
	if s.poller != nil {
		s.poller.setConfig(cfg)
	}
}

// Move is a change of listeners that MoveListeners bound and that is not
// in use yet. Exactly one of Commit and Abort must be called.
type Move struct {
	s                 *Server
	oldHTTP, oldStats *endpoint
	http, stats       *endpoint
	done              bool
}

// MoveListeners binds new listeners for an admin HTTP address and a stats
// address that differ from the configured ones (an unchanged address keeps
// its listener; "" turns that listener off at Commit). Nothing is served on
// the new listeners and nothing old is closed until Commit; Abort closes
// what was bound. An address that cannot be bound is an error, and nothing
// is left open. Moves must not overlap: commit or abort one before the next.
func (s *Server) MoveListeners(addr, statsAddr string) (*Move, error) {
	s.mu.Lock()
	oldHTTP, oldStats := s.http, s.stats
	s.mu.Unlock()
	http, stats, err := s.bind(oldHTTP, oldStats, addr, statsAddr)
	if err != nil {
		return nil, err
	}
	return &Move{s: s, oldHTTP: oldHTTP, oldStats: oldStats, http: http, stats: stats}, nil
}

// Abort closes the listeners the move bound.
func (m *Move) Abort() {
	if m.done {
		return
	}
	m.done = true
	closeUnless(m.http, m.oldHTTP)
	closeUnless(m.stats, m.oldStats)
}

// Commit makes the move's listeners current. While Run serves, the new ones
// start serving and the old ones stop accepting (an HTTP request in
// progress on an old listener, such as the POST /reload that asked for the
// move, is answered first). Before Run, Run serves the new ones; after Run,
// they are closed.
func (m *Move) Commit() {
	if m.done {
		return
	}
	m.done = true
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.http, s.stats = m.http, m.stats
	switch s.state {
	case phaseNew:
		closeUnless(m.oldHTTP, m.http)
		closeUnless(m.oldStats, m.stats)
		return
	case phaseDone:
		closeUnless(m.http, m.oldHTTP)
		closeUnless(m.stats, m.oldStats)
		return
	}
	rs := s.run
	if m.http != m.oldHTTP {
		if m.http != nil {
			s.serveHTTP(rs, m.http)
		}
		if m.oldHTTP != nil {
			s.retireHTTP(rs, m.oldHTTP)
		}
	}
	if m.stats != m.oldStats {
		if m.stats != nil {
			s.serveStatsOn(rs, m.stats)
		}
		if m.oldStats != nil {
			s.log.Info("stats stopped listening", "addr", m.oldStats.ln.Addr().String())
			_ = m.oldStats.ln.Close()
		}
	}
}

// closeUnless closes e's listener unless e is nil or keep.
func closeUnless(e, keep *endpoint) {
	if e != nil && e != keep {
		_ = e.ln.Close()
	}
}

// Registry returns the server's metrics registry, for tests and for callers
// that want to add their own collectors before Run.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler returns the admin HTTP handler: /metrics, /healthz, /readyz,
// /hotkeys, /reload and /debug/pprof/ on a mux of its own, behind the
// bearer token check and the pprof switch (see Options.Token and Pprof).
func (s *Server) Handler() http.Handler {
	return s.guard(s.mux())
}

func (s *Server) mux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/hotkeys", s.hotkeys)
	if s.opts.Reload != nil {
		mux.HandleFunc("/reload", s.reloadHandler)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// readyz answers 200 "ready" when the Source is ready, else 503 with the
// pools that have no server left (every one ejected), if any.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.opts.Source.Ready() {
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	var down []string
	for _, ps := range s.opts.Source.Stats() {
		ejected, primaries := 0, 0
		for _, ss := range ps.Servers {
			if ss.Role == proxy.RoleReplica {
				continue // replicas take no keys of their own
			}
			primaries++
			if ss.State == pool.StateEjected {
				ejected++
			}
		}
		if primaries > 0 && ejected == primaries {
			down = append(down, ps.Name)
		}
	}
	sort.Strings(down)
	w.WriteHeader(http.StatusServiceUnavailable)
	msg := "not ready\n"
	if len(down) > 0 {
		msg = "not ready: every server ejected in pool " + strings.Join(down, ", ") + "\n"
	}
	_, _ = w.Write([]byte(msg))
}

// Run serves until ctx is done, then closes the listeners, waits for the
// stats connections in progress and the backend poller, shuts the HTTP
// server down (bounded by 5s) and returns. It returns an error if a listener
// fails; it may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != phaseNew {
		s.mu.Unlock()
		return errors.New("admin: Run called twice, or after Close")
	}
	s.state = phaseRunning
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &runState{ctx: ctx, cancel: cancel, errc: make(chan error, 2)}
	s.run = rs
	if s.http != nil {
		s.serveHTTP(rs, s.http)
	}
	if s.stats != nil {
		s.serveStatsOn(rs, s.stats)
	}
	s.mu.Unlock()
	if s.poller != nil {
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			s.poller.run(ctx)
		}()
	}
	<-ctx.Done()
	s.mu.Lock()
	s.state = phaseDone
	s.run = nil
	http, stats := s.http, s.stats
	s.mu.Unlock()
	if http != nil {
		s.shutdownHTTP(ctx, http)
	}
	if stats != nil {
		_ = stats.ln.Close()
	}
	rs.wg.Wait()
	s.log.Info("admin stopped")
	select {
	case err := <-rs.errc:
		return err
	default:
		return nil
	}
}

// serveHTTP serves e under rs. A listener that fails stops Run, unless it
// was retired first.
func (s *Server) serveHTTP(rs *runState, e *endpoint) {
	s.log.Info("admin listening", "addr", e.ln.Addr().String())
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		if err := e.srv.Serve(e.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case rs.errc <- fmt.Errorf("admin: serve http: %w", err):
			default:
			}
			rs.cancel()
		}
	}()
}

// retireHTTP stops e accepting and shuts it down in the background (the
// request that asked for the move may still be in progress on it).
func (s *Server) retireHTTP(rs *runState, e *endpoint) {
	s.log.Info("admin stopped listening", "addr", e.ln.Addr().String())
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		s.shutdownHTTP(rs.ctx, e)
	}()
}

// shutdownHTTP shuts e's server down gracefully, bounded by shutdownTimeout.
func (s *Server) shutdownHTTP(ctx context.Context, e *endpoint) {
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if err := e.srv.Shutdown(sctx); err != nil {
		s.log.Warn("admin shutdown", "err", err)
		_ = e.srv.Close()
	}
}

// serveStatsOn serves the twemproxy stats on e under rs until its listener
// is closed.
func (s *Server) serveStatsOn(rs *runState, e *endpoint) {
	s.log.Info("stats listening", "addr", e.ln.Addr().String())
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		if err := s.serveStats(rs.ctx, e.ln); err != nil {
			select {
			case rs.errc <- err:
			default:
			}
			rs.cancel()
		}
	}()
}

// Close releases the listeners of a Server whose Run was never called.
// After Run it does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != phaseNew {
		return nil
	}
	s.state = phaseDone
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.ln.Close())
	}
	if s.stats != nil {
		errs = append(errs, s.stats.ln.Close())
	}
	return errors.Join(errs...)
}
