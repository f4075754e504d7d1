// Package sentinel follows Redis Sentinel: for each watched master name it
// asks the configured Sentinels where the primary is and which replicas are
// healthy, and reports every change.
//
// A Watcher asks the Sentinels in the order given; the first that answers
// for a name is believed. It asks at start, whenever a Sentinel publishes
// +switch-master for a watched name (it stays subscribed to the first
// Sentinel that accepts the subscription), whenever that subscription's
// connection fails, and every Refresh interval. Replicas flagged s_down,
// o_down or disconnected are left out.
package sentinel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
)

// Defaults for Config's zero values.
const (
	DefaultRefresh = 10 * time.Second
	DefaultTimeout = 2 * time.Second
	// DefaultRetry is how soon a Watcher asks again after no Sentinel
	// answered for some name.
	DefaultRetry = time.Second
)

// Auth are the credentials sent to every Sentinel (AUTH). An empty Password
// sends none; User may be empty (the default user).
type Auth struct {
	User     string
	Password string
}

// Master is what the Sentinels say about one master name.
type Master struct {
	// Name is the master name the Sentinels monitor ("m1").
	Name string
	// Addr is the primary's "host:port".
	Addr string
	// Replicas are the healthy replicas' "host:port", sorted.
	Replicas []string
}

// Equal reports whether m and o say the same.
func (m Master) Equal(o Master) bool {
	return m.Name == o.Name && m.Addr == o.Addr && slices.Equal(m.Replicas, o.Replicas)
}

// Config configures a Watcher.
type Config struct {
	// Sentinels are the Sentinels' "host:port", asked in this order.
	Sentinels []string
	// Auth is sent to each Sentinel.
	Auth Auth
	// Masters are the master names to follow.
	Masters []string
	// Refresh is how often the Sentinels are asked without news. Default
	// DefaultRefresh.
	Refresh time.Duration
	// Timeout bounds one dial or command. Default DefaultTimeout.
	Timeout time.Duration
	// Retry is how soon to ask again when no Sentinel answered for a name.
	// Default DefaultRetry.
	Retry time.Duration
	// OnChange is called, from Run's goroutine, with the first answer for
	// each name and with every answer that differs from the last one
	// reported. It may block; the Watcher waits.
	OnChange func(Master)
	// Logger gets a warning when no Sentinel answers for some name (once
	// per outage). Default: discard.
	Logger *slog.Logger
}

// Watcher follows the masters of its Config. Make one with New and call Run.
type Watcher struct {
	cfg Config
}

// New returns a Watcher for cfg, with defaults filled in.
func New(cfg Config) *Watcher {
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(Master) {}
	}
	return &Watcher{cfg: cfg}
}

// Run follows the masters until ctx is done, then returns ctx's error. It
// returns at once with an error when there is no Sentinel or no master to
// follow.
func (w *Watcher) Run(ctx context.Context) error {
	if len(w.cfg.Sentinels) == 0 || len(w.cfg.Masters) == 0 {
		return errors.New("sentinel: nothing to watch (no sentinels or no master names)")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	poke := make(chan struct{}, 1)
	wg.Add(1)
	go func() { defer wg.Done(); w.subscribe(ctx, poke) }()

	known := map[string]Master{}
	failing := false // the last ask left some name unanswered
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poke:
		case <-timer.C:
		}
		wait := w.cfg.Refresh
		ms, err := w.ask(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// Warn once per outage, not at every retry.
			log := w.cfg.Logger.Warn
			if failing {
				log = w.cfg.Logger.Debug
			}
			log("no sentinel answered for every master; asking again every retry interval", "error", err, "retry", w.cfg.Retry)
			failing = true
		case err == nil && failing:
			w.cfg.Logger.Info("sentinels answer again")
			failing = false
		}
		for _, m := range ms {
			if m.Addr == "" { // nobody answered for this name
				wait = w.cfg.Retry
				continue
			}
			if old, ok := known[m.Name]; !ok || !old.Equal(m) {
				known[m.Name] = m
				w.cfg.OnChange(m)
			}
		}
		timer.Reset(wait)
	}
}

// ask asks the Sentinels about every master; a name no Sentinel answered
// for comes back with an empty Addr, and the error says what each Sentinel
// said.
func (w *Watcher) ask(ctx context.Context) ([]Master, error) {
	out := make([]Master, len(w.cfg.Masters))
	for i, name := range w.cfg.Masters {
		out[i].Name = name
	}
	var errs []error
	for _, s := range w.cfg.Sentinels {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		c, err := w.dial(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done := true
		for i := range out {
			if out[i].Addr != "" {
				continue
			}
			m, err := Ask(c, out[i].Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("sentinel %s: master %s: %w", s, out[i].Name, err))
				done = false
				continue
			}
			out[i] = m
		}
		c.Close()
		if done {
			return out, nil
		}
	}
	return out, errors.Join(errs...)
}

func (w *Watcher) dial(ctx context.Context, addr string) (*respclient.Conn, error) {
	c, err := respclient.Dial(ctx, addr, w.cfg.Auth.User, w.cfg.Auth.Password, w.cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("sentinel %w", err)
	}
	return c, nil
}

// Ask asks one Sentinel (over c) about master name: its primary and its
// healthy replicas.
func Ask(c *respclient.Conn, name string) (Master, error) {
	m := Master{Name: name}
	v, err := c.Do("SENTINEL", "get-master-addr-by-name", name)
	if err != nil {
		return m, fmt.Errorf("get-master-addr-by-name: %w", err)
	}
	hp, ok := v.([]any)
	if v == nil {
		return m, errors.New("get-master-addr-by-name: this sentinel does not monitor it")
	}
	if !ok || len(hp) != 2 {
		return m, fmt.Errorf("get-master-addr-by-name: unexpected reply %v", v)
	}
	host, _ := hp[0].(string)
	port, _ := hp[1].(string)
	if host == "" || port == "" {
		return m, fmt.Errorf("get-master-addr-by-name: unexpected reply %v", v)
	}
	m.Addr = net.JoinHostPort(host, port)
	v, err = c.Do("SENTINEL", "replicas", name)
	if err != nil {
		return m, fmt.Errorf("replicas: %w", err)
	}
	list, ok := v.([]any)
	if !ok {
		return m, fmt.Errorf("replicas: unexpected reply %T", v)
	}
	for _, e := range list {
		fields, _ := e.([]any)
		r := map[string]string{}
		for i := 0; i+1 < len(fields); i += 2 {
			k, _ := fields[i].(string)
			val, _ := fields[i+1].(string)
			r[k] = val
		}
		if r["ip"] == "" || r["port"] == "" || !healthy(r["flags"]) {
			continue
		}
		m.Replicas = append(m.Replicas, net.JoinHostPort(r["ip"], r["port"]))
	}
	slices.Sort(m.Replicas)
	return m, nil
}

// healthy reports whether a replica's flags ("slave", "slave,s_down,...")
// allow reading from it.
func healthy(flags string) bool {
	for _, f := range strings.Split(flags, ",") {
		switch f {
		case "s_down", "o_down", "disconnected":
			return false
		}
	}
	return true
}

// subscribe stays subscribed to +switch-master on the first Sentinel that
// accepts, poking Run for a watched name's switch and whenever the
// subscription is lost (so the Sentinels are asked again), until ctx is done.
func (w *Watcher) subscribe(ctx context.Context, poke chan<- struct{}) {
	notify := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		if err := w.subscribeOnce(ctx, notify); err != nil && ctx.Err() == nil {
			w.cfg.Logger.Debug("sentinel subscription lost", "error", err)
			notify()
		}
		select {
		case <-ctx.Done():
		case <-time.After(w.cfg.Retry):
		}
	}
}

// subscribeOnce subscribes on the first Sentinel that accepts and reads its
// messages until the connection fails or ctx is done.
func (w *Watcher) subscribeOnce(ctx context.Context, notify func()) error {
	var c *respclient.Conn
	var errs []error
	for _, s := range w.cfg.Sentinels {
		conn, err := w.dial(ctx, s)
		if err == nil {
			if _, err = conn.Do("SUBSCRIBE", "+switch-master"); err == nil {
				c = conn
				break
			}
			conn.Close()
		}
		errs = append(errs, err)
	}
	if c == nil {
		return fmt.Errorf("subscribe +switch-master: %w", errors.Join(errs...))
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	// Asking again now covers a switch that happened while unsubscribed.
	notify()
	for {
		v, err := c.Receive(0)
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", c.RemoteAddr(), err)
		}
		// ["message", "+switch-master", "name oldip oldport newip newport"]
		msg, _ := v.([]any)
		if len(msg) != 3 {
			continue
		}
		payload, _ := msg[2].(string)
		name, _, _ := strings.Cut(payload, " ")
		if slices.Contains(w.cfg.Masters, name) {
			notify()
		}
	}
}
