package admin

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/respclient"
)

// pollTimeout bounds one poll of one server: dial, AUTH, stats/INFO.
const pollTimeout = 2 * time.Second

// pollParallel bounds how many servers are polled at once.
const pollParallel = 8

// target is one backend address the poller asks for its figures.
type target struct {
	pool, server, addr, network string
	protocol                    config.Protocol
	// authUser and auth are the pool's server credentials
	// (config.Pool.ServerAuth).
	authUser, auth string
}

// result is a target's last poll.
type result struct {
	up      bool
	err     error
	values  map[string]float64 // metric (without prefix) -> value
	role    string             // Redis role, "" for memcached
	polled  bool               // a poll has finished
	pollDur time.Duration
}

// backendMetric maps one exported figure to the field each protocol reports
// it under.
type backendMetric struct {
	name, help string
	valueType  prometheus.ValueType
	memcache   string // stats field
	redis      string // INFO field
}

// backendMetrics are the figures the poller exports, per server. The
// counters are the backend's own monotonic counters (they reset when the
// backend restarts, which rate() handles).
func backendMetrics() []backendMetric {
	return []backendMetric{
		{"evictions_total", "Items evicted by the backend to free memory (memcached evictions, Redis evicted_keys).", prometheus.CounterValue, "evictions", "evicted_keys"},
		{"hits_total", "Lookups the backend found (memcached get_hits, Redis keyspace_hits).", prometheus.CounterValue, "get_hits", "keyspace_hits"},
		{"misses_total", "Lookups the backend did not find (memcached get_misses, Redis keyspace_misses).", prometheus.CounterValue, "get_misses", "keyspace_misses"},
		{"items", "Items stored (memcached curr_items, Redis keys= summed over the keyspace lines).", prometheus.GaugeValue, "curr_items", ""},
		{"memory_used_bytes", "Memory used for items (memcached bytes, Redis used_memory).", prometheus.GaugeValue, "bytes", "used_memory"},
		{"memory_limit_bytes", "Memory limit (memcached limit_maxbytes, Redis maxmemory; 0 means no limit).", prometheus.GaugeValue, "limit_maxbytes", "maxmemory"},
		{"connections", "Client connections open on the backend (memcached curr_connections, Redis connected_clients).", prometheus.GaugeValue, "curr_connections", "connected_clients"},
		{"uptime_seconds", "Backend uptime (memcached uptime, Redis uptime_in_seconds); a drop means a restart.", prometheus.GaugeValue, "uptime", "uptime_in_seconds"},
		{"replication_offset_bytes", "Redis replication offset: master_repl_offset on a master, slave_repl_offset on a replica.", prometheus.GaugeValue, "", ""},
	}
}

// poller polls every server of a configuration for its own figures, off the
// event loops, and is the prometheus.Collector that exports them.
type poller struct {
	interval time.Duration
	log      *slog.Logger
	metrics  []backendMetric
	// enabled, if not nil, is asked before each round of polls; a round is
	// skipped when it says false.
	enabled func() bool

	up, role, duration *prometheus.Desc
	descs              []*prometheus.Desc // parallel to metrics

	mu      sync.Mutex
	targets []target          // what to poll, in configuration order
	results map[target]result // the last poll of each target
}

func newPoller(cfg *config.Config, interval time.Duration, log *slog.Logger) *poller {
	p := &poller{interval: interval, log: log, metrics: backendMetrics()}
	p.targets = pollTargets(cfg)
	p.results = make(map[target]result, len(p.targets))
	labels := []string{"pool", "server", "addr"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_backend_"+name, help, append(labels[:3:3], extra...), nil)
	}
	p.up = d("up", "1 if the last poll of the backend's own figures (memcached stats, Redis INFO) worked, else 0.")
	p.role = d("role", "Always 1; the role label is the Redis server's replication role (master or slave).", "role")
	p.duration = d("poll_duration_seconds", "How long the last poll of the backend took.")
	for _, m := range p.metrics {
		p.descs = append(p.descs, d(m.name, m.help))
	}
	return p
}

// setConfig makes the next round poll cfg's servers, keeping the last
// figures of the targets in both.
func (p *poller) setConfig(cfg *config.Config) {
	targets := pollTargets(cfg)
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := make(map[target]result, len(targets))
	for _, t := range targets {
		if r, ok := p.results[t]; ok {
			keep[t] = r
		}
	}
	p.targets, p.results = targets, keep
}

// pollTargets lists every server and replica of cfg, but Sentinel masters
// (whose addresses the proxy learns at run time).
func pollTargets(cfg *config.Config) []target {
	var targets []target
	for _, pl := range cfg.Pools {
		for _, s := range pl.Servers {
			if s.Followed() {
				continue
			}
			t := target{pool: pl.Name, server: s.Name, addr: s.Addr, network: s.Network, protocol: pl.Protocol}
			t.authUser, t.auth = pl.ServerAuth()
			if t.network == "" {
				t.network = "tcp"
			}
			targets = append(targets, t)
			for _, r := range s.Replicas {
				rt := t
				rt.addr = r.Addr
				rt.network = r.Network
				targets = append(targets, rt)
			}
		}
	}
	return targets
}

// run polls every target at once and then every interval until ctx is done.
// It returns after every poll it started has finished.
func (p *poller) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.pollAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollAll polls every target, at most pollParallel at a time, and waits.
func (p *poller) pollAll(ctx context.Context) {
	if p.enabled != nil && !p.enabled() {
		return
	}
	p.mu.Lock()
	targets := p.targets
	p.mu.Unlock()
	sem := make(chan struct{}, pollParallel)
	var wg sync.WaitGroup
	for i := range targets {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p.pollOne(ctx, targets[i])
		}()
	}
	wg.Wait()
}

func (p *poller) pollOne(ctx context.Context, tv target) {
	t := &tv
	start := time.Now()
	fields, err := fetch(ctx, t)
	r := result{up: err == nil, err: err, polled: true, pollDur: time.Since(start)}
	if err == nil {
		r.values, r.role = p.extract(t.protocol, fields)
	}
	if ctx.Err() != nil && err != nil {
		return // shutting down: keep the last figures rather than report a failure
	}
	p.mu.Lock()
	if !slices.Contains(p.targets, tv) { // a reload took it away meanwhile
		p.mu.Unlock()
		return
	}
	prev := p.results[tv]
	p.results[tv] = r
	p.mu.Unlock()
	switch {
	case err != nil && (prev.up || !prev.polled):
		p.log.Warn("backend poll failed", "pool", t.pool, "server", t.server, "addr", t.addr, "err", err)
	case err == nil && prev.polled && !prev.up:
		p.log.Info("backend poll ok again", "pool", t.pool, "server", t.server, "addr", t.addr)
	}
}

// extract picks the exported figures out of a stats or INFO reply.
func (p *poller) extract(proto config.Protocol, fields map[string]string) (map[string]float64, string) {
	vals := make(map[string]float64, len(p.metrics))
	num := func(field string) (float64, bool) {
		v, ok := fields[field]
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	role := ""
	for _, m := range p.metrics {
		field := m.memcache
		if proto == config.ProtocolRedis {
			field = m.redis
		}
		if field == "" {
			continue
		}
		if f, ok := num(field); ok {
			vals[m.name] = f
		}
	}
	if proto == config.ProtocolRedis {
		vals["items"] = keyspaceKeys(fields)
		role = fields["role"]
		off := "master_repl_offset"
		if role == "slave" {
			off = "slave_repl_offset"
		}
		if f, ok := num(off); ok {
			vals["replication_offset_bytes"] = f
		}
	}
	return vals, role
}

// fetch dials t, authenticates if needed and returns the fields of its
// stats (memcached) or INFO (Redis) reply.
func fetch(ctx context.Context, t *target) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	if t.protocol == config.ProtocolRedis {
		return fetchInfo(ctx, t)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return nil, fmt.Errorf("write stats: %w", err)
	}
	return readMemcacheStats(bufio.NewReaderSize(c, 16<<10))
}

// fetchInfo asks a Redis server for INFO (after AUTH when t has a password)
// with respclient, and returns INFO's fields. ctx bounds the whole poll: its
// end closes the connection under a command in progress.
func fetchInfo(ctx context.Context, t *target) (map[string]string, error) {
	deadline, _ := ctx.Deadline()
	c, err := respclient.DialNetwork(ctx, t.network, t.addr, t.authUser, t.auth, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	v, err := c.Do("INFO")
	if err != nil {
		return nil, fmt.Errorf("redis info: %w", err)
	}
	info, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("redis info: got %T; want a bulk string", v)
	}
	return parseInfo(info), nil
}

// Describe implements prometheus.Collector.
func (p *poller) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.up
	ch <- p.role
	ch <- p.duration
	for _, d := range p.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector with the last poll's figures. A
// target not polled yet is left out; one whose last poll failed reports
// only cacheproxy_backend_up 0 (and the poll's duration).
func (p *poller) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	targets := p.targets
	results := make([]result, len(targets))
	for i, t := range targets {
		results[i] = p.results[t]
	}
	p.mu.Unlock()
	for i, r := range results {
		if !r.polled {
			continue
		}
		t := &targets[i]
		lv := []string{t.pool, t.server, t.addr}
		ch <- prometheus.MustNewConstMetric(p.up, prometheus.GaugeValue, b2f(r.up), lv...)
		ch <- prometheus.MustNewConstMetric(p.duration, prometheus.GaugeValue, r.pollDur.Seconds(), lv...)
		if !r.up {
			continue
		}
		if r.role != "" {
			ch <- prometheus.MustNewConstMetric(p.role, prometheus.GaugeValue, 1, append(lv, r.role)...)
		}
		for j, m := range p.metrics {
			if v, ok := r.values[m.name]; ok {
				ch <- prometheus.MustNewConstMetric(p.descs[j], m.valueType, v, lv...)
			}
		}
	}
}
