package soak

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// shortDuration is the soak's length under plain `go test` (and so under
// make test): long enough for two kill-and-restart cycles (one memcached,
// one redis-server) and a dozen samples, so that the whole mechanism runs
// and is checked in CI; only `make soak` runs it for minutes.
const shortDuration = 24 * time.Second

// plan is a soak's timetable. The run is `cycles` cycles of a clean phase
// (all backends up: not one error allowed) and an outage phase (one backend
// is killed with SIGKILL killAt into it and restarted down later; errors
// allowed on its pool only, and counted), then a last clean phase.
type plan struct {
	duration       time.Duration
	cycles         int
	clean, outage  time.Duration
	killAt, down   time.Duration
	interval       time.Duration // between samples
	warmup         time.Duration // samples before this are not compared
	growthFraction float64       // allowed growth after warm-up, as a fraction ...
	rssSlack       int64         // ... plus these absolute slacks
	goroutineSlack int64
	fdSlack        int64
}

func makePlan(d time.Duration) (plan, error) {
	if d < 12*time.Second {
		return plan{}, fmt.Errorf("SOAK_DURATION %v: want at least 12s", d)
	}
	p := plan{duration: d, growthFraction: 0.2,
		// Slack for what moves without leaking: the Go heap grows to twice
		// the live data before a collection and RSS keeps freed pages until
		// the scavenger returns them (8 MiB); an admin scrape, a redial in
		// flight, a handler goroutine (16 goroutines); a dial in progress and
		// the scrape's own connection (8 fds).
		rssSlack: 8 << 20, goroutineSlack: 16, fdSlack: 8}
	cycle := time.Minute
	p.interval = 10 * time.Second
	if d < 3*time.Minute {
		// A short run: three cycles' worth of time, sampled often.
		cycle = d / 3
		p.interval = 2 * time.Second
	}
	p.clean = cycle * 2 / 3
	p.outage = cycle - p.clean
	p.killAt = p.outage / 6
	p.down = p.outage / 4
	p.cycles = int((d - p.clean) / cycle)
	p.warmup = cycle
	return p, nil
}

// workload is one verified loadgen configuration; its pool is that of its
// protocol.
type workload struct {
	name string
	cfg  loadgen.Config
}

// phaseResult is what one phase saw, per workload and multi-get checker.
type phaseResult struct {
	name   string // "clean 3", "outage 2 (rd2 killed)"
	victim loadgen.Protocol
	outage bool
	loads  map[string]*loadgen.Result
	errs   map[string]error
	mgets  map[string]mgStats
}

// TestSoak runs the built proxy under mixed verified load for
// SOAK_DURATION (shortDuration if unset) with backends killed and
// restarted, and then requires: no wrong value ever (misrouted, misordered,
// corrupt, a wrong multi-get value); no error, miss or connection failure
// in a clean phase; errors in an outage phase only on the killed backend's
// pool (and some there: the kill was seen); and the proxy's RSS, goroutines
// and descriptors after warm-up not growing beyond the plan's bound. It
// prints the samples and the phases as tables.
func TestSoak(t *testing.T) {
	d := shortDuration
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", s, err)
		}
	}
	pl, err := makePlan(d)
	if err != nil {
		t.Fatal(err)
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+2*time.Minute {
		t.Fatalf("the test deadline is %v away; a %v soak needs %v more: run with -timeout 0 (make soak does)", time.Until(dl).Round(time.Second), d, 2*time.Minute)
	}

	mcs := []*testserver.Process{testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)}
	rds := []*testserver.Process{testserver.Redis(t), testserver.Redis(t), testserver.Redis(t)}
	adminAddr, mcAddr, rdAddr := testserver.FreeAddr(t), testserver.FreeAddr(t), testserver.FreeAddr(t)
	conf := filepath.Join(t.TempDir(), "soak.yaml")
	if err := os.WriteFile(conf, []byte(soakConfig(adminAddr, mcAddr, rdAddr, mcs, rds)), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy := testserver.Cacheproxy(t, testserver.BuildCacheproxy(t), conf, []string{adminAddr, mcAddr, rdAddr})

	loads := workloads(mcAddr, rdAddr)
	mgets := map[string]*multiGet{}
	for _, w := range loads {
		if w.cfg.Pipeline == 1 { // multi-gets over the keys of the unpipelined load
			mgets[w.cfg.Protocol.String()+" mget"] = &multiGet{proto: w.cfg.Protocol, addr: w.cfg.Addr,
				prefix: w.cfg.KeyPrefix, keys: w.cfg.Keys, valueSize: w.cfg.ValueSize, width: 8}
		}
	}
	ctx := t.Context()

	// The sampler reads the proxy every interval until the load is over.
	start := time.Now()
	var mu sync.Mutex
	phase := "start"
	var samples []sample
	var sampleErrs []string
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		hc := &http.Client{Timeout: 10 * time.Second}
		tick := time.NewTicker(pl.interval)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			s, err := readSample(hc, proxy.Pid(), adminAddr)
			mu.Lock()
			s.at, s.phase = time.Since(start), phase
			if err != nil {
				sampleErrs = append(sampleErrs, fmt.Sprintf("%v: %v", s.at.Round(time.Second), err))
			} else {
				samples = append(samples, s)
			}
			mu.Unlock()
		}
	}()
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }

	var results []*phaseResult
	victims := interleave(mcs, rds)
	for c := 0; c <= pl.cycles; c++ {
		setPhase("recover")
		recoverPools(t, ctx, loads)
		name := fmt.Sprintf("clean %d", c+1)
		setPhase(name)
		results = append(results, runPhase(ctx, name, pl.clean, uint64(2*c), loads, mgets, nil))
		t.Logf("%v %s", time.Since(start).Round(time.Second), results[len(results)-1].summary())
		if c == pl.cycles {
			break
		}
		v := victims[c%len(victims)]
		name = fmt.Sprintf("outage %d (%s killed)", c+1, v.name)
		setPhase(name)
		results = append(results, runPhase(ctx, name, pl.outage, uint64(2*c+1), loads, mgets, func() {
			// The schedule of the outage, not synchronisation: the load runs
			// on its own; the kill and the restart fall where they fall.
			time.Sleep(pl.killAt)
			v.proc.Kill()
			time.Sleep(pl.down)
			v.proc.Restart()
		}))
		results[len(results)-1].victim = v.proto
		t.Logf("%v %s", time.Since(start).Round(time.Second), results[len(results)-1].summary())
	}
	close(stopSampling)
	<-sampled

	mu.Lock()
	defer mu.Unlock()
	t.Logf("soak of %v: %d cycles of %v clean + %v outage (kill at +%v, down %v), samples every %v, warm-up %v\n%s\n%s",
		d, pl.cycles, pl.clean, pl.outage, pl.killAt, pl.down, pl.interval, pl.warmup, sampleTable(samples), phaseTable(results))
	for _, e := range sampleErrs {
		t.Errorf("sample at %s", e)
	}
	for _, r := range results {
		checkPhase(t, r)
	}
	for _, p := range growth(pl, samples) {
		t.Error(p)
	}
}

// victim is a backend the soak kills, and its pool's protocol.
type victim struct {
	name  string
	proto loadgen.Protocol
	proc  *testserver.Process
}

// interleave lists the backends to kill in turn: mc1, rd1, mc2, rd2, ...
func interleave(mcs, rds []*testserver.Process) []victim {
	var vs []victim
	for i := range max(len(mcs), len(rds)) {
		if i < len(mcs) {
			vs = append(vs, victim{fmt.Sprintf("mc%d", i+1), loadgen.Memcache, mcs[i]})
		}
		if i < len(rds) {
			vs = append(vs, victim{fmt.Sprintf("rd%d", i+1), loadgen.Redis, rds[i]})
		}
	}
	return vs
}

// soakConfig is the proxy's configuration: an admin listener, a memcache
// pool and a Redis pool of three servers each. No ejection, so a dead
// server's keys fail fast instead of moving (a moved key would miss, and a
// miss is what the soak counts as lost).
func soakConfig(adminAddr, mcAddr, rdAddr string, mcs, rds []*testserver.Process) string {
	var b strings.Builder
	fmt.Fprintf(&b, "admin:\n  listen: %s\npools:\n", adminAddr)
	pool := func(name, proto, listen string, servers []*testserver.Process) {
		fmt.Fprintf(&b, "  %s:\n    listen: %s\n    protocol: %s\n    distribution: ketama\n    hash: murmur\n"+
			"    timeout: 5s\n    preconnect: true\n    auto_eject_hosts: false\n    server_retry_timeout: 500ms\n    servers:\n",
			name, listen, proto)
		for i, s := range servers {
			fmt.Fprintf(&b, "      - %s:1 %s%d\n", s.Addr, name, i+1)
		}
	}
	pool("mc", "memcache", mcAddr, mcs)
	pool("rd", "redis", rdAddr, rds)
	return b.String()
}

// workloads are the verified loads: per pool, 4 connections one request at
// a time and 2 connections 16 deep, 80% gets, values of 100 and 1000 bytes.
func workloads(mcAddr, rdAddr string) []workload {
	var ws []workload
	for _, pool := range []struct {
		addr  string
		proto loadgen.Protocol
	}{{mcAddr, loadgen.Memcache}, {rdAddr, loadgen.Redis}} {
		for _, shape := range []struct{ conns, depth, size int }{{4, 1, 100}, {2, 16, 1000}} {
			name := fmt.Sprintf("%s P%d", pool.proto, shape.depth)
			ws = append(ws, workload{name, loadgen.Config{Addr: pool.addr, Protocol: pool.proto, Conns: shape.conns,
				Pipeline: shape.depth, GetRatio: 0.8, ValueSize: shape.size, Keys: 3000,
				KeyPrefix: fmt.Sprintf("soak:p%d:", shape.depth), Verify: true, Timeout: 10 * time.Second}})
		}
	}
	return ws
}

// recoverPools stores every workload's keys again through the proxy (a
// restarted backend is empty) until a store and a short verified run of
// each pass without an error, which also proves the proxy reconnected.
func recoverPools(t *testing.T, ctx context.Context, loads []workload) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, w := range loads {
		for {
			cfg := w.cfg
			cfg.Preload, cfg.Requests, cfg.Duration, cfg.MaxDuration = true, 200, 0, 10*time.Second
			res, err := loadgen.Run(ctx, cfg)
			if err == nil && res.Requests == 200 && faults(res)+res.Errors+res.Lost+res.ConnFailures == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the pool did not recover within 60s: %v %+v", w.name, err, res)
			}
			time.Sleep(100 * time.Millisecond) // retry interval
		}
	}
}

func faults(r *loadgen.Result) int64 { return r.Misrouted + r.Misordered + r.Corrupt }

// runPhase runs every workload and multi-get checker for d, and during it
// the outage schedule if not nil (on the calling goroutine).
func runPhase(ctx context.Context, name string, d time.Duration, seed uint64, loads []workload, mgets map[string]*multiGet, outage func()) *phaseResult {
	r := &phaseResult{name: name, outage: outage != nil, loads: map[string]*loadgen.Result{}, errs: map[string]error{},
		mgets: map[string]mgStats{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i, w := range loads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := w.cfg
			cfg.Duration, cfg.Seed = d, seed*100+uint64(i)*10
			res, err := loadgen.Run(ctx, cfg)
			mu.Lock()
			r.loads[w.name], r.errs[w.name] = res, err
			mu.Unlock()
		}()
	}
	for name, m := range mgets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := m.run(ctx, end, seed)
			mu.Lock()
			r.mgets[name] = st
			mu.Unlock()
		}()
	}
	if outage != nil {
		outage()
	}
	wg.Wait()
	return r
}

// summary is a one-line progress report of the phase.
func (r *phaseResult) summary() string {
	var req, errs, lost, wrong int64
	for _, res := range r.loads {
		if res != nil {
			req, errs, lost, wrong = req+res.Requests, errs+res.Errors, lost+res.Lost, wrong+faults(res)
		}
	}
	for _, st := range r.mgets {
		req, errs, lost, wrong = req+st.requests, errs+st.errors, lost+st.misses, wrong+st.wrong
	}
	return fmt.Sprintf("%s: %d requests, %d errors, %d lost, %d wrong", r.name, req, errs, lost, wrong)
}

// checkPhase applies the phase's rules.
func checkPhase(t *testing.T, r *phaseResult) {
	t.Helper()
	victimErrors := int64(0)
	for name, res := range r.loads {
		if err := r.errs[name]; err != nil || res == nil {
			t.Errorf("%s, %s: the load failed: %v", r.name, name, err)
			continue
		}
		if res.Requests == 0 {
			t.Errorf("%s, %s: no replies at all (%s)", r.name, name, res.FirstError)
		}
		if f := faults(res); f > 0 {
			t.Errorf("%s, %s: %d wrong replies (misrouted %d, misordered %d, corrupt %d)", r.name, name, f, res.Misrouted, res.Misordered, res.Corrupt)
		}
		bad := res.Errors + res.Lost + res.ConnFailures
		switch {
		case r.outage && strings.HasPrefix(name, r.victim.String()):
			victimErrors += res.Errors
		case bad > 0:
			t.Errorf("%s, %s: %d errors, %d lost, %d connection failures (first: %s); want none with its pool's backends up",
				r.name, name, res.Errors, res.Lost, res.ConnFailures, res.FirstError)
		}
	}
	for name, st := range r.mgets {
		if st.requests == 0 {
			t.Errorf("%s, %s: no replies at all (%s)", r.name, name, st.firstErr)
		}
		if st.wrong > 0 {
			t.Errorf("%s, %s: %d wrong replies; first: %s", r.name, name, st.wrong, st.firstWrong)
		}
		switch {
		case r.outage && strings.HasPrefix(name, r.victim.String()):
			victimErrors += st.errors
		case st.errors+st.misses+st.connFailures > 0:
			t.Errorf("%s, %s: %d errors, %d misses, %d connection failures (first: %s); want none with its pool's backends up",
				r.name, name, st.errors, st.misses, st.connFailures, st.firstErr)
		}
	}
	if r.outage && victimErrors == 0 {
		t.Errorf("%s: no error on the %s pool while its backend was down: was it killed?", r.name, r.victim)
	}
}

// growth compares the last sample taken in a clean phase with the first
// clean one after warm-up: RSS, goroutines and descriptors may grow by
// growthFraction plus a slack, no more. Both are taken with every backend
// up and the same load running, so they should match but for noise. It
// returns the problems found.
func growth(pl plan, samples []sample) []string {
	var problems []string
	var clean []sample
	for _, s := range samples {
		if s.at >= pl.warmup && strings.HasPrefix(s.phase, "clean") {
			clean = append(clean, s)
		}
	}
	if len(clean) < 2 {
		return []string{fmt.Sprintf("%d samples in clean phases after the %v warm-up; want at least 2 to compare", len(clean), pl.warmup)}
	}
	first, last := clean[0], clean[len(clean)-1]
	for _, c := range []struct {
		what        string
		first, last int64
		slack       int64
	}{
		{"RSS", first.rss, last.rss, pl.rssSlack},
		{"goroutines", first.goroutines, last.goroutines, pl.goroutineSlack},
		{"open fds", first.fds, last.fds, pl.fdSlack},
	} {
		bound := int64(float64(c.first)*(1+pl.growthFraction)) + c.slack
		if c.last > bound {
			problems = append(problems, fmt.Sprintf("%s grew from %d (at %v) to %d (at %v); bound %d = first x %.1f + %d",
				c.what, c.first, first.at.Round(time.Second), c.last, last.at.Round(time.Second), bound, 1+pl.growthFraction, c.slack))
		}
	}
	return problems
}

// sampleTable renders the samples as a Markdown table.
func sampleTable(samples []sample) string {
	var b strings.Builder
	b.WriteString("| t | phase | RSS MiB | heap in use MiB | goroutines | open fds |\n|---|---|---|---|---|---|\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "| %v | %s | %.1f | %.1f | %d | %d |\n", s.at.Round(time.Second), s.phase,
			float64(s.rss)/(1<<20), float64(s.heap)/(1<<20), s.goroutines, s.fds)
	}
	return b.String()
}

// phaseTable renders the phases as a Markdown table, one row per phase and
// pool.
func phaseTable(results []*phaseResult) string {
	var b strings.Builder
	b.WriteString("| phase | pool | requests | req/s | errors | lost | conn failures | wrong |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		for _, proto := range []loadgen.Protocol{loadgen.Memcache, loadgen.Redis} {
			var req, errs, lost, cf, wrong int64
			var rate float64
			for name, res := range r.loads {
				if res == nil || !strings.HasPrefix(name, proto.String()) {
					continue
				}
				req, errs, lost, cf, wrong = req+res.Requests, errs+res.Errors, lost+res.Lost, cf+res.ConnFailures, wrong+faults(res)
				rate += res.Throughput
			}
			for name, st := range r.mgets {
				if strings.HasPrefix(name, proto.String()) {
					req, errs, lost, cf, wrong = req+st.requests, errs+st.errors, lost+st.misses, cf+st.connFailures, wrong+st.wrong
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %d | %d | %d | %d |\n", r.name, proto, req, rate, errs, lost, cf, wrong)
		}
	}
	return b.String()
}
