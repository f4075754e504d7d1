package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
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

// DefaultPollInterval is the backend figures collector's interval when
// Options.PollInterval is zero.
const DefaultPollInterval = 10 * time.Second

// shutdownTimeout bounds the HTTP server's graceful shutdown.
const shutdownTimeout = 5 * time.Second

// statsWriteTimeout bounds writing the twemproxy JSON to one stats client.
const statsWriteTimeout = 5 * time.Second

// Options configure a Server.
type Options struct {
	// Addr is the HTTP listen address for /metrics, /healthz, /readyz and
	// /debug/pprof/ ("127.0.0.1:0" picks a free port). If empty, the HTTP
	// listener is off.
	Addr string
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
}

// Server serves the admin HTTP endpoints and the twemproxy stats port.
type Server struct {
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	poller  *poller
	httpLn  net.Listener
	statsLn net.Listener
	httpSrv *http.Server
	runOnce sync.Once
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
	s := &Server{opts: o, log: o.Logger.With("component", "admin")}
	if o.Config != nil && o.PollInterval > 0 {
		s.poller = newPoller(o.Config, o.PollInterval, s.log)
	}
	s.reg = prometheus.NewRegistry()
	cols := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStatsCollector(o.Source, o.Version),
	}
	if s.poller != nil {
		cols = append(cols, s.poller)
	}
	for _, c := range cols {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register collector: %w", err)
		}
	}
	if o.Addr != "" {
		ln, err := net.Listen("tcp", o.Addr)
		if err != nil {
			return nil, fmt.Errorf("admin: listen %s: %w", o.Addr, err)
		}
		s.httpLn = ln
		s.httpSrv = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	if o.StatsAddr != "" {
		ln, err := net.Listen("tcp", o.StatsAddr)
		if err != nil {
			if s.httpLn != nil {
				s.httpLn.Close()
			}
			return nil, fmt.Errorf("admin: stats listen %s: %w", o.StatsAddr, err)
		}
		s.statsLn = ln
	}
	return s, nil
}

// Addr returns the HTTP listener's bound address, or "" if it is off.
func (s *Server) Addr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// StatsAddr returns the stats listener's bound address, or "" if it is off.
func (s *Server) StatsAddr() string {
	if s.statsLn == nil {
		return ""
	}
	return s.statsLn.Addr().String()
}

// Registry returns the server's metrics registry, for tests and for callers
// that want to add their own collectors before Run.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler returns the admin HTTP handler: /metrics, /healthz, /readyz and
// /debug/pprof/ on a mux of its own.
func (s *Server) Handler() http.Handler {
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
		ejected := 0
		for _, ss := range ps.Servers {
			if ss.State == pool.StateEjected {
				ejected++
			}
		}
		if len(ps.Servers) > 0 && ejected == len(ps.Servers) {
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
	first := false
	s.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("admin: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if s.httpLn != nil {
		s.log.Info("admin listening", "addr", s.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: serve http: %w", err)
				cancel()
			}
		}()
	}
	if s.statsLn != nil {
		s.log.Info("stats listening", "addr", s.StatsAddr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.serveStats(ctx, s.statsLn); err != nil {
				errc <- err
				cancel()
			}
		}()
	}
	if s.poller != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.poller.run(ctx)
		}()
	}
	<-ctx.Done()
	if s.httpSrv != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		if err := s.httpSrv.Shutdown(sctx); err != nil {
			s.log.Warn("admin shutdown", "err", err)
			_ = s.httpSrv.Close()
		}
		scancel()
	}
	if s.statsLn != nil {
		_ = s.statsLn.Close()
	}
	wg.Wait()
	s.log.Info("admin stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Close releases the listeners of a Server whose Run was never called.
// After Run it does nothing.
func (s *Server) Close() error {
	first := false
	s.runOnce.Do(func() { first = true })
	if !first {
		return nil
	}
	var errs []error
	if s.httpLn != nil {
		errs = append(errs, s.httpLn.Close())
	}
	if s.statsLn != nil {
		errs = append(errs, s.statsLn.Close())
	}
	return errors.Join(errs...)
}
