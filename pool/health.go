package pool

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// State is a server's health as the proxy routes by it.
type State int32

// Server states.
const (
	// StateUp means the server takes keys and its last request succeeded.
	StateUp State = iota
	// StateFailing means the server takes keys but its recent requests failed.
	StateFailing
	// StateEjected means the server is out of the ring until a probe succeeds.
	StateEjected
)

// String returns "up", "failing" or "ejected".
func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateFailing:
		return "failing"
	case StateEjected:
		return "ejected"
	}
	return "unknown"
}

// HealthConfig configures a Health. Zero values take the documented defaults.
type HealthConfig struct {
	// Servers is the number of servers in the pool.
	Servers int
	// AutoEject enables ejection (twemproxy's auto_eject_hosts). If false,
	// failures are counted but servers always keep their keys.
	AutoEject bool
	// FailureLimit is the number of consecutive failures that eject a server
	// (server_failure_limit). If zero, 2 is used.
	FailureLimit int
	// RetryTimeout is how long an ejected server stays out before it is
	// probed (server_retry_timeout). If zero, 30s is used.
	RetryTimeout time.Duration
	// Probe checks that server i answers (for example memcached "version" or
	// Redis PING) and returns nil if it does. It runs on Health's own
	// goroutine with a context bounded by ProbeTimeout. If nil, an ejected
	// server is re-admitted when its retry time passes, as twemproxy does.
	Probe func(ctx context.Context, server int) error
	// ProbeTimeout bounds one probe. If zero, 1s is used.
	ProbeTimeout time.Duration
	// OnChange is called on Health's goroutine with the live set each time it
	// changes (live[i] is false for an ejected server). Callers rebuild their
	// ring in it. May be nil.
	OnChange func(live []bool)
	// Logger receives one line per ejection and re-admission. If nil,
	// slog.Default() is used.
	Logger *slog.Logger
	// Names names the servers in log lines; may be nil.
	Names []string
	// Now returns the current time; if nil, time.Now is used. Tests inject it.
	Now func() time.Time
	// EjectAll lets every server be ejected. By default the last live
	// server is kept (with none left every key fails); a pool's replicas
	// set it, since the primary still serves when every replica is out.
	EjectAll bool
}

// Health tracks a pool's servers. Failure, Success and State are safe for
// concurrent use and never block; ejection, probing and OnChange run on the
// goroutine of Run.
type Health struct {
	cfg     HealthConfig
	servers []serverHealth
	kick    chan struct{}

	mu       sync.Mutex // guards retryAt and the ejected transitions
	retryAt  []time.Time
	ejectedN int
}

type serverHealth struct {
	failures atomic.Int64 // consecutive failures
	state    atomic.Int32
	total    atomic.Int64 // all failures, for metrics
	ejects   atomic.Int64 // ejections, for metrics
	ejectAt  atomic.Int64 // unix nanoseconds of the last ejection, 0 if never
	readmits atomic.Int64 // re-admissions after an ejection
	_        [32]byte     // keep servers on separate cache lines
}

// NewHealth returns a Health with every server up. It starts nothing: call
// Run.
func NewHealth(cfg HealthConfig) *Health {
	if cfg.FailureLimit <= 0 {
		cfg.FailureLimit = 2
	}
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = 30 * time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Health{
		cfg:     cfg,
		servers: make([]serverHealth, cfg.Servers),
		kick:    make(chan struct{}, 1),
		retryAt: make([]time.Time, cfg.Servers),
	}
}

// Failure records a failed request, connect or timeout on server i. The
// first failure after a success logs "server down" once.
func (h *Health) Failure(i int) {
	s := &h.servers[i]
	s.total.Add(1)
	n := s.failures.Add(1)
	if State(s.state.Load()) == StateUp && s.state.CompareAndSwap(int32(StateUp), int32(StateFailing)) {
		h.cfg.Logger.Warn("server down", "server", h.name(i), "failure_limit", h.cfg.FailureLimit,
			"auto_eject", h.cfg.AutoEject)
	}
	if h.cfg.AutoEject && n >= int64(h.cfg.FailureLimit) && State(s.state.Load()) != StateEjected {
		h.wake()
	}
}

// Success records a reply from server i. It is cheap when the server was
// already healthy (one atomic load); a server that was failing logs "server
// up" once.
func (h *Health) Success(i int) {
	s := &h.servers[i]
	if s.failures.Load() != 0 {
		s.failures.Store(0)
	}
	if State(s.state.Load()) == StateFailing && s.state.CompareAndSwap(int32(StateFailing), int32(StateUp)) {
		h.cfg.Logger.Info("server up", "server", h.name(i))
	}
}

// Inherit gives server i the state server j of prev is in: consecutive and
// total failures, ejections and, for an ejected server, its retry time. A
// reloaded pool calls it, before Run, for each server it keeps, so that a
// reload neither forgives nor forgets a failing server.
func (h *Health) Inherit(i int, prev *Health, j int) {
	src, dst := &prev.servers[j], &h.servers[i]
	dst.failures.Store(src.failures.Load())
	dst.total.Store(src.total.Load())
	dst.ejects.Store(src.ejects.Load())
	dst.ejectAt.Store(src.ejectAt.Load())
	dst.readmits.Store(src.readmits.Load())
	st := src.state.Load()
	prev.mu.Lock()
	retry := prev.retryAt[j]
	prev.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if State(st) == StateEjected && State(dst.state.Load()) != StateEjected {
		if !h.canEject() {
			return // never eject the last live server
		}
		h.ejectedN++
		h.retryAt[i] = retry
	}
	dst.state.Store(st)
}

// State returns server i's state.
func (h *Health) State(i int) State { return State(h.servers[i].state.Load()) }

// Failures returns the total number of failures recorded for server i.
func (h *Health) Failures(i int) int64 { return h.servers[i].total.Load() }

// Ejections returns how many times server i has been ejected.
func (h *Health) Ejections(i int) int64 { return h.servers[i].ejects.Load() }

// Readmissions returns how many times server i has been re-admitted after
// an ejection (a memcached that came back holds nothing it held before).
func (h *Health) Readmissions(i int) int64 { return h.servers[i].readmits.Load() }

// EjectedAt returns when server i was last ejected (zero if never).
func (h *Health) EjectedAt(i int) time.Time {
	ns := h.servers[i].ejectAt.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Live returns the current live set (false for ejected servers).
func (h *Health) Live() []bool {
	live := make([]bool, len(h.servers))
	for i := range h.servers {
		live[i] = h.State(i) != StateEjected
	}
	return live
}

func (h *Health) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Run ejects servers that reached the failure limit and probes ejected
// servers whose retry time has come, until ctx is done. tick is how often
// retry times are checked; if zero, 100ms is used.
func (h *Health) Run(ctx context.Context, tick time.Duration) error {
	if tick <= 0 {
		tick = 100 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		h.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-h.kick:
		case <-t.C:
		}
	}
}

// step does one round of ejections and probes.
func (h *Health) step(ctx context.Context) {
	changed := false
	now := h.cfg.Now()
	for i := range h.servers {
		s := &h.servers[i]
		if State(s.state.Load()) == StateEjected {
			continue
		}
		if h.cfg.AutoEject && s.failures.Load() >= int64(h.cfg.FailureLimit) {
			h.mu.Lock()
			// Never eject the last live server: with none left every key
			// fails, and the failing server is still the best guess.
			if h.canEject() {
				s.state.Store(int32(StateEjected))
				s.ejects.Add(1)
				s.ejectAt.Store(now.UnixNano())
				h.retryAt[i] = now.Add(h.cfg.RetryTimeout)
				h.ejectedN++
				changed = true
				h.cfg.Logger.Warn("server ejected", "server", h.name(i), "failures", s.failures.Load(),
					"retry_after", h.cfg.RetryTimeout)
			}
			h.mu.Unlock()
		}
	}
	for i := range h.servers {
		s := &h.servers[i]
		h.mu.Lock()
		due := State(s.state.Load()) == StateEjected && !now.Before(h.retryAt[i])
		h.mu.Unlock()
		if !due {
			continue
		}
		err := h.probe(ctx, i)
		h.mu.Lock()
		if err != nil {
			h.retryAt[i] = h.cfg.Now().Add(h.cfg.RetryTimeout)
			h.cfg.Logger.Warn("server probe failed", "server", h.name(i), "error", err)
		} else {
			s.failures.Store(0)
			s.state.Store(int32(StateUp))
			s.readmits.Add(1)
			h.ejectedN--
			changed = true
			h.cfg.Logger.Info("server re-admitted", "server", h.name(i))
		}
		h.mu.Unlock()
	}
	if changed && h.cfg.OnChange != nil {
		h.cfg.OnChange(h.Live())
	}
}

func (h *Health) probe(ctx context.Context, i int) error {
	if h.cfg.Probe == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.ProbeTimeout)
	defer cancel()
	return h.cfg.Probe(pctx, i)
}

// canEject reports whether one more server may be ejected. Called with mu
// held.
func (h *Health) canEject() bool {
	return h.cfg.EjectAll || h.ejectedN < len(h.servers)-1
}

func (h *Health) name(i int) string {
	if i < len(h.cfg.Names) {
		return h.cfg.Names[i]
	}
	return ""
}
