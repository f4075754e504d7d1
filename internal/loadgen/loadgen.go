// Package loadgen is a pipelined load generator for memcached-text and RESP
// servers and the proxies in front of them.
//
// Each connection runs a closed loop: it draws a batch of Pipeline requests
// (keys from a Sampler, gets and sets mixed by GetRatio), writes the batch in
// one write, then reads the batch's replies in order with a Reader that does
// not allocate, timing each reply from the batch's write into the
// connection's own HDR histogram. Histograms and counters are merged when the
// run ends.
//
// In verify mode every value written encodes its key ("key:<key>:<pad>"),
// all keys are stored first (Preload, here or by an earlier run), and every reply is checked against
// its request: a value for a key another request of the batch asked for is
// misordered, a value for a key the batch did not ask for is misrouted, and
// a miss of a preloaded key is lost.
package loadgen

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config describes a run. The zero value of each optional field selects the
// default named in its comment.
type Config struct {
	// Addr is the target's host:port; it must be a loopback address
	// (127.0.0.0/8, ::1 or localhost).
	Addr string
	// Protocol is the wire protocol.
	Protocol Protocol
	// Conns is the number of connections. If zero, 1 is used.
	Conns int
	// Pipeline is the number of requests each connection has in flight, sent
	// in one write. If zero, 1 is used.
	Pipeline int
	// GetRatio is the fraction of requests that are gets, in [0, 1]; the rest
	// are sets.
	GetRatio float64
	// ValueSize is the size of set values in bytes (values are longer when
	// the key does not fit: "key:<key>:" is always written whole).
	ValueSize int
	// Keys is the number of distinct keys. If zero, 10000 is used.
	Keys int
	// KeyPrefix is prepended to the decimal key rank.
	KeyPrefix string
	// Sampler draws key ranks; its N must equal Keys. If nil, keys are
	// uniform.
	Sampler Sampler
	// Duration is the measured time. If zero, Requests bounds the run.
	Duration time.Duration
	// Requests is the number of measured requests when Duration is zero.
	Requests int64
	// MaxDuration bounds a Requests-bounded run. If zero, 10 minutes is used.
	MaxDuration time.Duration
	// Warmup runs the load unmeasured before the measured window.
	Warmup time.Duration
	// Seed seeds the per-connection random sources (connection i uses
	// Seed+i), so a run's request sequence is reproducible.
	Seed uint64
	// Verify checks every reply against its request (see the package
	// documentation). Every key is expected to be stored already: set
	// Preload too, unless an earlier run stored them.
	Verify bool
	// Preload stores every key once before the run.
	Preload bool
	// TLS, if not nil, makes every connection a TLS client with this
	// configuration (the handshake is bounded by Timeout). Default: plaintext.
	TLS *tls.Config
	// Timeout bounds each batch's write and read and each dial. If zero, 5s
	// is used.
	Timeout time.Duration
	// PreloadTimeout bounds the preload. If zero, 2 minutes is used.
	PreloadTimeout time.Duration
	// Progress, if not nil, is called about every ProgressInterval from a
	// goroutine Run owns, and not after Run returns.
	Progress func(Progress)
	// ProgressInterval is the period of Progress calls. If zero, 1s is used.
	ProgressInterval time.Duration
}

// Progress is a live snapshot of a run.
type Progress struct {
	// Elapsed is the time since the load started (warm-up included).
	Elapsed time.Duration
	// Warmup is true while the warm-up lasts.
	Warmup bool
	// Requests counts completed requests since the load started.
	Requests int64
	// Rate is the request rate over the last interval, per second.
	Rate float64
	// Errors counts failed requests so far.
	Errors int64
}

// Latency holds latency figures in microseconds.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Result holds the figures of a run's measured window.
type Result struct {
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	Conns    int    `json:"conns"`
	Pipeline int    `json:"pipeline"`
	// Requests counts completed requests (replies received).
	Requests int64 `json:"requests"`
	Gets     int64 `json:"gets"`
	Sets     int64 `json:"sets"`
	Hits     int64 `json:"hits"`
	Misses   int64 `json:"misses"`
	// Errors counts error replies, NOT_STORED replies, and requests whose
	// reply was lost to a connection failure.
	Errors int64 `json:"errors"`
	// ConnFailures counts connection failures (I/O errors, timeouts,
	// malformed replies); the connection is redialled.
	ConnFailures int64 `json:"conn_failures"`
	// Verify reports whether values were checked.
	Verify     bool  `json:"verify"`
	Misrouted  int64 `json:"misrouted"`
	Misordered int64 `json:"misordered"`
	Corrupt    int64 `json:"corrupt"`
	// Lost counts misses in verify mode, where every key should be stored.
	Lost int64 `json:"lost"`
	// Elapsed is the measured window.
	Elapsed    time.Duration `json:"elapsed_ns"`
	Throughput float64       `json:"throughput_rps"`
	HitRatio   float64       `json:"hit_ratio"`
	Latency    Latency       `json:"latency_us"`
	// FirstError describes the first connection failure, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	if err := CheckLoopback(c.Addr); err != nil {
		return err
	}
	if c.Protocol != Memcache && c.Protocol != Redis {
		return fmt.Errorf("protocol %v unknown", c.Protocol)
	}
	if c.Conns < 0 || c.Pipeline < 0 || c.Keys < 0 || c.ValueSize < 0 || c.Requests < 0 {
		return errors.New("conns, pipeline, keys, value size and requests must not be negative")
	}
	if c.Conns > 10000 || c.Pipeline > 100000 {
		return fmt.Errorf("conns %d (max 10000) or pipeline %d (max 100000) too large", c.Conns, c.Pipeline)
	}
	if c.ValueSize > MaxValueSize {
		return fmt.Errorf("value size %d over %d", c.ValueSize, MaxValueSize)
	}
	if !(c.GetRatio >= 0 && c.GetRatio <= 1) {
		return fmt.Errorf("get ratio %v not in [0, 1]", c.GetRatio)
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Timeout < 0 || c.MaxDuration < 0 {
		return errors.New("durations must not be negative")
	}
	if c.Duration == 0 && c.Requests == 0 {
		return errors.New("set a duration or a request count")
	}
	if c.Sampler != nil && c.Sampler.N() != c.keys() {
		return fmt.Errorf("sampler has %d keys, config %d", c.Sampler.N(), c.keys())
	}
	return nil
}

func (c *Config) keys() int { return orDefault(c.Keys, 10000) }

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// CheckLoopback returns an error unless addr is host:port with a loopback
// host: an IP in 127.0.0.0/8, ::1, or the name localhost.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("target %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("target %q is not a loopback address: only 127.0.0.0/8, ::1 and localhost may be loaded", addr)
}

// Run runs the load described by cfg until its duration or request count is
// reached, ctx is cancelled, or MaxDuration passes, and returns the merged
// figures. A cancelled run returns the figures so far and ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Conns = orDefault(cfg.Conns, 1)
	cfg.Pipeline = orDefault(cfg.Pipeline, 1)
	cfg.Keys = cfg.keys()
	cfg.Timeout = orDefault(cfg.Timeout, 5*time.Second)
	cfg.PreloadTimeout = orDefault(cfg.PreloadTimeout, 2*time.Minute)
	cfg.MaxDuration = orDefault(cfg.MaxDuration, 10*time.Minute)
	cfg.ProgressInterval = orDefault(cfg.ProgressInterval, time.Second)
	if cfg.Sampler == nil {
		cfg.Sampler = Uniform(cfg.Keys)
	}
	ks := newKeyspace(cfg.KeyPrefix, cfg.ValueSize)

	workers := make([]*worker, cfg.Conns)
	defer func() {
		for _, w := range workers {
			if w != nil && w.conn != nil {
				w.conn.Close()
			}
		}
	}()
	for i := range workers {
		w := &worker{cfg: &cfg, ks: &ks, rng: rand.New(rand.NewPCG(cfg.Seed+uint64(i), 0x9e3779b97f4a7c15)),
			hist: hdrhistogram.New(1, int64(time.Minute), 3)}
		if err := w.dial(ctx); err != nil {
			return nil, err
		}
		workers[i] = w
	}

	if cfg.Preload {
		if err := preload(ctx, &cfg, workers); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	if cfg.Duration == 0 {
		end = measureStart.Add(cfg.MaxDuration)
	}
	var claimed atomic.Int64

	var wg sync.WaitGroup
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progressLoop(&cfg, workers, start, measureStart, stopProgress)
		}()
	}
	var lwg sync.WaitGroup
	for _, w := range workers {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			w.loop(ctx, measureStart, end, &claimed)
		}()
	}
	lwg.Wait()
	finished := time.Now()
	close(stopProgress)
	wg.Wait()

	res := merge(&cfg, workers)
	res.Elapsed = finished.Sub(measureStart)
	if res.Elapsed > 0 {
		res.Throughput = float64(res.Requests) / res.Elapsed.Seconds()
	}
	return res, ctx.Err()
}

func progressLoop(cfg *Config, workers []*worker, start, measureStart time.Time, stop <-chan struct{}) {
	t := time.NewTicker(cfg.ProgressInterval)
	defer t.Stop()
	var last int64
	lastT := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var n, e int64
			for _, w := range workers {
				n += w.done.Load()
				e += w.failed.Load()
			}
			rate := float64(n-last) / now.Sub(lastT).Seconds()
			last, lastT = n, now
			cfg.Progress(Progress{Elapsed: now.Sub(start), Warmup: now.Before(measureStart), Requests: n, Rate: rate, Errors: e})
		}
	}
}

func merge(cfg *Config, workers []*worker) *Result {
	h := hdrhistogram.New(1, int64(time.Minute), 3)
	r := &Result{Target: cfg.Addr, Protocol: cfg.Protocol.String(), Conns: cfg.Conns, Pipeline: cfg.Pipeline, Verify: cfg.Verify}
	for _, w := range workers {
		h.Merge(w.hist)
		s := &w.stats
		r.Requests += s.requests
		r.Gets += s.gets
		r.Sets += s.sets
		r.Hits += s.hits
		r.Misses += s.misses
		r.Errors += s.errors
		r.ConnFailures += s.connFailures
		r.Misrouted += s.misrouted
		r.Misordered += s.misordered
		r.Corrupt += s.corrupt
		r.Lost += s.lost
		if r.FirstError == "" && w.firstErr != nil {
			r.FirstError = w.firstErr.Error()
		}
	}
	if r.Hits+r.Misses > 0 {
		r.HitRatio = float64(r.Hits) / float64(r.Hits+r.Misses)
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	r.Latency = Latency{Min: us(h.Min()), Mean: h.Mean() / 1e3, P50: us(h.ValueAtPercentile(50)),
		P90: us(h.ValueAtPercentile(90)), P99: us(h.ValueAtPercentile(99)),
		P999: us(h.ValueAtPercentile(99.9)), Max: us(h.Max())}
	return r
}

type stats struct {
	requests, gets, sets, hits, misses, errors, connFailures int64
	misrouted, misordered, corrupt, lost                     int64
}

type worker struct {
	cfg  *Config
	ks   *keyspace
	rng  *rand.Rand
	hist *hdrhistogram.Histogram

	conn     net.Conn
	br       *bufio.Reader
	rd       *Reader
	deadline time.Time // the connection's current deadline

	wbuf    []byte
	key     []byte
	scratch []byte
	batch   []op

	stats    stats
	firstErr error
	done     atomic.Int64 // completed requests, for progress
	failed   atomic.Int64 // failed requests, for progress
}

func (w *worker) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: w.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", w.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", w.cfg.Addr, err)
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		c.Close()
		return fmt.Errorf("dial %s: connected to %v, not a loopback address", w.cfg.Addr, c.RemoteAddr())
	}
	if w.cfg.TLS != nil {
		tc := tls.Client(c, w.cfg.TLS)
		hctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return fmt.Errorf("dial %s: TLS handshake: %w", w.cfg.Addr, err)
		}
		c = tc
	}
	w.conn = c
	w.br = bufio.NewReaderSize(c, 64<<10)
	w.rd = NewReader(w.br, w.cfg.Protocol)
	w.deadline = time.Time{}
	return nil
}

// refreshDeadline keeps the connection's deadline at least Timeout/2 ahead
// of now without resetting it on every batch.
func (w *worker) refreshDeadline(now time.Time) {
	if w.deadline.Sub(now) < w.cfg.Timeout/2 {
		w.deadline = now.Add(w.cfg.Timeout)
		_ = w.conn.SetDeadline(w.deadline)
	}
}

// fail records a connection failure, closes the connection and redials it,
// retrying until end. It returns false when no connection could be made.
func (w *worker) fail(ctx context.Context, err error, end time.Time) bool {
	w.stats.connFailures++
	if w.firstErr == nil {
		w.firstErr = err
	}
	w.conn.Close()
	for time.Now().Before(end) && ctx.Err() == nil {
		if w.dial(ctx) == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond) // redial back-off, not synchronisation
	}
	return false
}

func (w *worker) loop(ctx context.Context, measureStart, end time.Time, claimed *atomic.Int64) {
	cfg := w.cfg
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		n := cfg.Pipeline
		measuring := !now.Before(measureStart)
		if measuring && cfg.Duration == 0 {
			got := claimed.Add(int64(n))
			if got-int64(n) >= cfg.Requests {
				return
			}
			if got > cfg.Requests {
				n -= int(got - cfg.Requests)
			}
		}
		w.wbuf = w.wbuf[:0]
		w.batch = w.batch[:0]
		for range n {
			o := op{get: w.rng.Float64() < cfg.GetRatio, rank: cfg.Sampler.Next(w.rng)}
			w.batch = append(w.batch, o)
			w.key = w.ks.appendKey(w.key[:0], o.rank)
			if o.get {
				w.wbuf = AppendGet(w.wbuf, cfg.Protocol, w.key)
			} else {
				w.scratch = w.ks.appendValue(w.scratch[:0], w.key)
				w.wbuf = AppendSet(w.wbuf, cfg.Protocol, w.key, w.scratch)
			}
		}
		w.refreshDeadline(now)
		sent := time.Now()
		if _, err := w.conn.Write(w.wbuf); err != nil {
			if measuring {
				w.lose(n)
			}
			if !w.fail(ctx, fmt.Errorf("write: %w", err), end) {
				return
			}
			continue
		}
		for i := range n {
			rep, err := w.rd.Next()
			if err != nil {
				if measuring {
					w.lose(n - i)
				}
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				if !w.fail(ctx, fmt.Errorf("read reply: %w", err), end) {
					return
				}
				break
			}
			if !measuring {
				continue
			}
			lat := time.Since(sent)
			if w.hist.RecordValue(int64(lat)) != nil {
				_ = w.hist.RecordValue(w.hist.HighestTrackableValue())
			}
			w.count(i, rep)
		}
		if measuring {
			w.done.Add(int64(n))
		}
	}
}

// lose counts n requests whose replies were lost to a connection failure.
func (w *worker) lose(n int) {
	w.stats.errors += int64(n)
	w.failed.Add(int64(n))
}

func (w *worker) count(i int, rep Reply) {
	s := &w.stats
	s.requests++
	if w.batch[i].get {
		s.gets++
	} else {
		s.sets++
	}
	switch w.ks.classify(w.batch, i, rep, w.cfg.Protocol, w.cfg.Verify, w.key) {
	case outOK:
		if w.batch[i].get {
			s.hits++
		}
	case outMiss:
		s.misses++
		if w.cfg.Verify {
			s.lost++
		}
	case outError, outNotStored:
		s.errors++
		w.failed.Add(1)
	case outMisordered:
		s.misordered++
	case outMisrouted:
		s.misrouted++
	case outCorrupt:
		s.corrupt++
	}
}

// preload stores every key once, the key range split across the workers'
// connections, in pipelined batches.
func preload(ctx context.Context, cfg *Config, workers []*worker) error {
	deadline := time.Now().Add(cfg.PreloadTimeout)
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.preload(ctx, i, len(workers), deadline)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	return ctx.Err()
}

func (w *worker) preload(ctx context.Context, first, step int, deadline time.Time) error {
	const batch = 64
	cfg := w.cfg
	if err := w.conn.SetDeadline(deadline); err != nil {
		return err
	}
	defer func() { w.deadline = time.Time{}; _ = w.conn.SetDeadline(time.Time{}) }()
	for k := first; k < cfg.Keys && ctx.Err() == nil; {
		w.wbuf = w.wbuf[:0]
		n := 0
		for ; n < batch && k < cfg.Keys; n++ {
			w.key = w.ks.appendKey(w.key[:0], k)
			w.scratch = w.ks.appendValue(w.scratch[:0], w.key)
			w.wbuf = AppendSet(w.wbuf, cfg.Protocol, w.key, w.scratch)
			k += step
		}
		if _, err := w.conn.Write(w.wbuf); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		for range n {
			rep, err := w.rd.Next()
			if err != nil {
				return fmt.Errorf("read reply: %w", err)
			}
			if rep.Kind != Stored {
				return fmt.Errorf("set got a %v reply %q, want stored", rep.Kind, rep.Value)
			}
		}
	}
	return nil
}
