// Command benchrun is `make bench`: it starts its own memcached and
// redis-server backends on free loopback ports, cacheproxy (bin/cacheproxy,
// built if missing) and nutcracker (when installed), and measures them side
// by side with the internal/loadgen generator in alternating rounds:
//
//   - overhead: each backend directly vs cacheproxy over that one backend;
//   - peer: cacheproxy vs nutcracker over the same three backends;
//   - hotkeys-cost: cacheproxy with hot_keys off vs on over one backend;
//   - before (with -baseline BIN): another cacheproxy build, say the main
//     branch's built to a temp dir, vs this one over the same backends;
//
// for memcache and redis at pipeline depth 1 and 16, then the hot-key
// shield (hotkeys.go) with its own table. -hotkeys runs only the hot-key
// rounds (make bench-hotkeys); -smoke makes any run a few seconds long. It prints one table of
// medians over the rounds: throughput, p50, p99, each proxy's CPU time per
// request (from /proc/PID/stat over the measured window), and the ratios,
// headed by the machine's core count and CPU model. A target that does not
// serve (cacheproxy before it is written) is reported unavailable and the
// run continues. Everything started is stopped on exit and on Ctrl-C.
// -syscalls also counts each proxy's system calls and context switches per
// request over every measured window with perf stat (syscalls.go).
//
// With -memcaslap it instead checks the generator's accuracy: cachebench's
// loop and memcaslap drive the same load against one memcached, alternately.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
)

func numCPU() int { return runtime.NumCPU() }

// options are the runner's flags.
type options struct {
	rounds   int
	duration time.Duration
	warmup   time.Duration
	conns    int
	getRatio float64
	size     int
	keys     int
	depths   []int
	binary   string
	raw      string
	only     string
	// baseline, if set, is another cacheproxy binary (say, the main
	// branch's) measured against this one in "before" comparisons.
	baseline string
	// syscalls counts each proxy's system calls per request (perf stat).
	syscalls bool

	// Hot-key rounds (hotkeys.go).
	hotkeys    bool    // only the hot-key rounds
	shieldKeys int     // keys the shield's Zipf draws from
	shieldHash string  // the shield pools' hash
	zipfS      float64 // the shield's Zipf exponent

	// TLS rounds (tls.go).
	tls  bool   // only the TLS rounds
	base string // a second cacheproxy binary to compare plaintext against
}

// selected reports whether -only lets the comparison called name run.
func (o *options) selected(name string) bool {
	if o.only == "" {
		return true
	}
	for _, part := range strings.Split(o.only, ",") {
		if part = strings.TrimSpace(part); part != "" && strings.Contains(name, part) {
			return true
		}
	}
	return false
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	var o options
	quick := fs.Bool("quick", os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0", "quick variant, under two minutes (also QUICK=1)")
	caslap := fs.Bool("memcaslap", false, "check the generator against memcaslap on a direct memcached instead")
	fs.IntVar(&o.rounds, "rounds", 5, "alternating rounds per comparison")
	fs.DurationVar(&o.duration, "d", 5*time.Second, "measured time per target per round")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each measured window")
	fs.IntVar(&o.conns, "c", 32, "client connections")
	fs.Float64Var(&o.getRatio, "get-ratio", 0.9, "fraction of requests that are gets")
	fs.IntVar(&o.size, "size", 32, "value size in bytes")
	fs.IntVar(&o.keys, "keys", 10000, "distinct keys (uniform)")
	depths := fs.String("depths", "1,16", "pipeline depths, comma-separated")
	fs.StringVar(&o.binary, "cacheproxy", "bin/cacheproxy", "cacheproxy binary (built with go build when missing)")
	fs.StringVar(&o.baseline, "baseline", "", "another cacheproxy binary (e.g. main's, built to a temp dir) compared with -cacheproxy over the same backends (\"before\" rows)")
	fs.BoolVar(&o.syscalls, "syscalls", false, "also count each proxy's system calls per request with perf stat (its tracepoints add CPU: read the cpu column of a run without it)")
	fs.StringVar(&o.raw, "raw", "", "also write every round's figures as JSON to this file")
	fs.StringVar(&o.only, "only", "", "run only comparisons whose name contains this, or one of these comma-separated (e.g. overhead, redis, shield, hotkeys-cost, \"peer,before\")")
	fs.BoolVar(&o.hotkeys, "hotkeys", false, "run only the hot-key rounds: the shield and the cost on a uniform workload (make bench-hotkeys)")
	fs.IntVar(&o.shieldKeys, "shield-keys", 20000, "keys the shield draws from (Zipf); 1000000 for the 1M-key variant")
	fs.StringVar(&o.shieldHash, "shield-hash", "fnv1a_64", "hash of the shield pools (the default hash; jump ignores it)")
	fs.Float64Var(&o.zipfS, "zipf", 1.1, "Zipf exponent of the shield's keys")
	fs.BoolVar(&o.tls, "tls", false, "run only the TLS rounds: plaintext vs TLS listener, same proxy and backend (and -base vs -cacheproxy plaintext)")
	fs.StringVar(&o.base, "base", "", "with -tls: a baseline cacheproxy binary (main's) whose plaintext pools are compared with -cacheproxy's")
	serverTimeout := fs.Duration("server-timeout", 400*time.Millisecond, "the proxies' server timeout (timeout: in their pools); -smoke makes it 5s unless given")
	smoke := fs.Bool("smoke", false, "a few seconds: one short round at depth 1, to check the harness (the cmd/benchrun test runs it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, d := range strings.Split(*depths, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(d), &n); err != nil || n < 1 {
			return fmt.Errorf("-depths %q: want positive integers", *depths)
		}
		o.depths = append(o.depths, n)
	}
	if *quick {
		o.rounds, o.duration, o.warmup = 2, 2*time.Second, 300*time.Millisecond
	}
	if *smoke {
		// The warm-up is long enough for the detector to promote (it
		// merges every ~100 ms) on a loaded box.
		o.rounds, o.duration, o.warmup, o.depths = 1, 400*time.Millisecond, 700*time.Millisecond, []int{1}
		// The smoke checks the harness, not latency: on a loaded machine
		// (make test runs it beside every other package) a 400 ms server
		// timeout failed it.
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "server-timeout" })
		if !given {
			*serverTimeout = 5 * time.Second
		}
	}
	if *serverTimeout < time.Millisecond {
		return errors.New("-server-timeout must be at least 1ms")
	}
	if o.rounds < 1 || o.duration <= 0 {
		return errors.New("-rounds and -d must be positive")
	}
	if o.syscalls {
		// Before anything is started: perf failing on the first proxy
		// would mark every proxy target unavailable and the run would
		// go on for its whole length without them.
		if err := checkSyscalls(ctx); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "benchrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ps := &procs{serverTimeout: *serverTimeout}
	defer ps.stopAll()
	if *caslap {
		return accuracy(ctx, &o, ps, dir, out)
	}
	var samples []sample
	err = bench(ctx, &o, ps, dir, out, &samples)
	if o.raw != "" {
		b, jerr := json.MarshalIndent(samples, "", "  ")
		if jerr != nil {
			return errors.Join(err, jerr)
		}
		if werr := os.WriteFile(o.raw, b, 0o644); werr != nil {
			return errors.Join(err, fmt.Errorf("write raw figures: %w", werr))
		}
	}
	return err
}

// backend starts a memcached or redis-server on a free port.
func backend(ctx context.Context, ps *procs, dir string, proto loadgen.Protocol, i int) (string, error) {
	var lastErr error
	for range 3 {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		host, port, _ := strings.Cut(addr, ":")
		var p *proc
		if proto == loadgen.Memcache {
			args := []string{"-l", host, "-p", port, "-U", "0", "-t", "1", "-m", "256", "-c", "4096"}
			if os.Geteuid() == 0 {
				args = append(args, "-u", "root")
			}
			p, err = ps.start(fmt.Sprintf("memcached%d", i), "memcached", args...)
		} else {
			d := filepath.Join(dir, fmt.Sprintf("redis%d", i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return "", err
			}
			p, err = ps.start(fmt.Sprintf("redis%d", i), "redis-server", "--port", port, "--bind", host,
				"--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no", "--loglevel", "warning")
		}
		if err != nil {
			return "", err
		}
		if lastErr = waitReady(ctx, p, 10*time.Second, addr); lastErr == nil {
			return addr, nil
		}
		p.stop() // most likely the port was taken meanwhile
	}
	return "", lastErr
}

// target is one endpoint the generator drives.
type target struct {
	name        string // direct, cacheproxy, nutcracker
	addr        string
	proc        *proc // the proxy process whose CPU is measured; nil for a backend
	unavailable string
	tls         *tls.Config // a TLS listener: the generator's client configuration
}

// comparison is one A/B pair measured in alternating rounds; B is the
// candidate, A the baseline the ratios divide by.
type comparison struct {
	kind  string // overhead or peer
	proto loadgen.Protocol
	depth int
	a, b  *target
}

func (c *comparison) name() string { return fmt.Sprintf("%s %s P%d", c.kind, c.proto, c.depth) }

// sample is one measured window.
type sample struct {
	Comparison string  `json:"comparison"`
	Target     string  `json:"target"`
	Round      int     `json:"round"`
	Throughput float64 `json:"throughput_rps"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
	CPUPerReq  float64 `json:"cpu_us_per_req"` // -1 when not a proxy
	Faults     int64   `json:"verify_faults"`
	Errors     int64   `json:"errors"`

	// Shield rounds only: gets the clients completed, gets the backends
	// counted (get_hits+get_misses deltas) in all and per server, and the
	// hottest server's over the mean.
	ClientGets  int64   `json:"client_gets,omitempty"`
	BackendGets int64   `json:"backend_gets,omitempty"`
	ServerGets  []int64 `json:"server_gets,omitempty"`
	MaxMean     float64 `json:"max_over_mean,omitempty"`

	// -syscalls: the proxy's system calls per request, by column (see
	// syscallColumns), and context switches.
	Syscalls map[string]float64 `json:"syscalls_per_req,omitempty"`
}

func bench(ctx context.Context, o *options, ps *procs, dir string, out io.Writer, samples *[]sample) error {
	cores, model := machine()
	fmt.Fprintf(out, "machine: %d cores, %s; %s; GOMAXPROCS %d\n", cores, model, runtime.Version(), runtime.GOMAXPROCS(0))
	if o.hotkeys {
		return hotKeys(ctx, o, ps, dir, out, samples)
	}
	if o.tls {
		return tlsRounds(ctx, o, ps, dir, out, samples)
	}
	fmt.Fprintf(out, "load: %d conns, %.0f%% gets, %d-byte values, %d uniform keys, verify on; %d rounds x %v (warm-up %v), A/B alternating\n",
		o.conns, o.getRatio*100, o.size, o.keys, o.rounds, o.duration, o.warmup)

	var mc, rd [3]string
	for i := range 3 {
		var err error
		if mc[i], err = backend(ctx, ps, dir, loadgen.Memcache, i); err != nil {
			return fmt.Errorf("memcached: %w", err)
		}
		if rd[i], err = backend(ctx, ps, dir, loadgen.Redis, i); err != nil {
			return fmt.Errorf("redis-server: %w", err)
		}
	}
	pools := []pool{
		{name: "mc1", proto: loadgen.Memcache, servers: mc[:1]},
		{name: "rd1", proto: loadgen.Redis, servers: rd[:1]},
		{name: "mc3", proto: loadgen.Memcache, servers: mc[:]},
		{name: "rd3", proto: loadgen.Redis, servers: rd[:]},
	}
	cp := startProxy(ctx, ps, dir, "cacheproxy", pools, o.binary)
	nc := startProxy(ctx, ps, dir, "nutcracker", pools[2:], "")
	kinds := []string{"overhead", "peer"}
	var bl map[string]*target
	if o.baseline != "" {
		bl = startProxy(ctx, ps, dir, "baseline", pools[2:], o.baseline)
		kinds = append(kinds, "before")
	}

	var comps []*comparison
	for _, kind := range kinds {
		for _, proto := range []loadgen.Protocol{loadgen.Memcache, loadgen.Redis} {
			for _, d := range o.depths {
				c := &comparison{kind: kind, proto: proto, depth: d}
				i := int(proto) // pools[0] mc1, pools[1] rd1, pools[2] mc3, pools[3] rd3
				switch kind {
				case "overhead":
					c.a = &target{name: "direct", addr: pools[i].servers[0]}
					c.b = cp[pools[i].name]
				case "peer":
					c.a = nc[pools[2+i].name]
					c.b = cp[pools[2+i].name]
				case "before":
					c.a = bl[pools[2+i].name]
					c.b = cp[pools[2+i].name]
				}
				if o.selected(c.name()) {
					comps = append(comps, c)
				}
			}
		}
	}

	if err := runComparisons(ctx, o, comps, samples); err != nil {
		return err
	}
	printTable(out, comps, *samples)
	if o.syscalls {
		printSyscalls(out, comps, *samples)
	}
	return hotKeys(ctx, o, ps, dir, out, samples)
}

// runComparisons measures each comparison's targets alternately for
// o.rounds rounds, A then B in odd rounds and B then A in even ones (so
// neither always runs first), and appends the samples. A target that fails
// is marked unavailable and skipped from then on.
func runComparisons(ctx context.Context, o *options, comps []*comparison, samples *[]sample) error {
	for _, c := range comps {
		for r := range o.rounds {
			order := []*target{c.a, c.b}
			if r%2 == 1 {
				order[0], order[1] = c.b, c.a
			}
			for _, t := range order {
				if t.unavailable != "" {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				s, err := measure(ctx, o, c, t)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					t.unavailable = "failed: " + firstLine(err.Error())
					fmt.Fprintf(os.Stderr, "%s %s: %v\n", c.name(), t.name, err)
					continue
				}
				s.Round = r + 1
				*samples = append(*samples, s)
				fmt.Fprintf(os.Stderr, "%-25s round %d %-10s %9.0f req/s  p50 %7.1f us  p99 %7.1f us\n", c.name(), r+1, t.name, s.Throughput, s.P50, s.P99)
			}
		}
	}
	return nil
}

// pool is one proxy pool: a listener in front of servers.
type pool struct {
	name    string
	proto   loadgen.Protocol
	servers []string
	// Hot-key rounds only (cacheproxy): distribution and hash (ketama and
	// fnv1a_64 if empty), hot_keys enabled, and the servers' name prefix
	// (the pool's name if empty; ketama places keys by server name).
	dist, hash   string
	hotKeys      bool
	serverPrefix string
	// TLS rounds only (cacheproxy): the listener's certificate and key, and
	// the client configuration that trusts it.
	certFile, keyFile string
	tls               *tls.Config
}

// startProxy writes a configuration for pools, starts the proxy and checks
// each pool serves. It returns a target per pool; a pool that does not
// serve carries the reason in unavailable.
func startProxy(ctx context.Context, ps *procs, dir, name string, pools []pool, binary string) map[string]*target {
	ts := map[string]*target{}
	var listen []string
	for _, p := range pools {
		addr, err := freeAddr()
		ts[p.name] = &target{name: name, addr: addr, tls: p.tls}
		if err != nil {
			ts[p.name].unavailable = err.Error()
		}
		listen = append(listen, addr)
	}
	fail := func(why string) map[string]*target {
		for _, t := range ts {
			if t.unavailable == "" {
				t.unavailable = why
			}
		}
		return ts
	}
	conf := filepath.Join(dir, name+".yml")
	var args []string
	path := binary
	if name == "nutcracker" {
		var err error
		if path, err = exec.LookPath("nutcracker"); err != nil {
			return fail("not installed")
		}
		stats, err := freeAddr()
		if err != nil {
			return fail(err.Error())
		}
		_, port, _ := strings.Cut(stats, ":")
		args = []string{"-c", conf, "-s", port, "-a", "127.0.0.1", "-o", filepath.Join(dir, "nutcracker.log")}
	} else {
		if _, err := os.Stat(binary); err != nil && name == "baseline" {
			return fail("-baseline " + binary + ": " + err.Error())
		} else if err != nil {
			build := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/cacheproxy/cacheproxy/cmd/cacheproxy")
			if b, err := build.CombinedOutput(); err != nil {
				return fail("does not build: " + firstLine(string(b)))
			}
		}
		args = []string{"-c", conf}
	}
	if err := os.WriteFile(conf, []byte(proxyConfig(name, pools, listen, ps.serverTimeout)), 0o644); err != nil {
		return fail(err.Error())
	}
	p, err := ps.start(name, path, args...)
	if err != nil {
		return fail(err.Error())
	}
	if err := waitReady(ctx, p, 10*time.Second, listen...); err != nil {
		p.stop()
		return fail("does not serve: " + firstLine(err.Error()))
	}
	for _, pl := range pools {
		t := ts[pl.name]
		t.proc = p
		// A short verified load proves the pool answers correctly.
		res, err := loadgen.Run(ctx, loadgen.Config{Addr: t.addr, Protocol: pl.proto, Conns: 2, Pipeline: 4,
			GetRatio: 0.5, ValueSize: 32, Keys: 200, KeyPrefix: "probe:", Requests: 400, Verify: true, Preload: true,
			Timeout: 2 * time.Second, MaxDuration: 10 * time.Second, TLS: pl.tls})
		switch {
		case err != nil:
			t.unavailable = "probe failed: " + firstLine(err.Error())
		case res.Requests != 400 || res.Errors+res.Misrouted+res.Misordered+res.Corrupt+res.Lost > 0:
			t.unavailable = fmt.Sprintf("probe: %d/400 replies, %d errors, %d misrouted, %d misordered, %d corrupt, %d lost %s",
				res.Requests, res.Errors, res.Misrouted, res.Misordered, res.Corrupt, res.Lost, res.FirstError)
		}
	}
	return ts
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// proxyConfig renders the pools in nutcracker.yml shape for nutcracker and
// in the native shape for cacheproxy; hash, distribution and timeout are the
// same, so placement is the same.
func proxyConfig(name string, pools []pool, listen []string, timeout time.Duration) string {
	var b strings.Builder
	indent := ""
	if name != "nutcracker" {
		b.WriteString("pools:\n")
		indent = "  "
	}
	for i, p := range pools {
		fmt.Fprintf(&b, "%s%s:\n", indent, p.name)
		fmt.Fprintf(&b, "%s  listen: %s\n", indent, listen[i])
		if name == "nutcracker" {
			fmt.Fprintf(&b, "%s  redis: %t\n%s  timeout: %d\n", indent, p.proto == loadgen.Redis, indent, timeout.Milliseconds())
		} else {
			fmt.Fprintf(&b, "%s  protocol: %s\n%s  timeout: %dms\n", indent, p.proto, indent, timeout.Milliseconds())
		}
		hash, dist, prefix := cmp.Or(p.hash, "fnv1a_64"), cmp.Or(p.dist, "ketama"), cmp.Or(p.serverPrefix, p.name)
		fmt.Fprintf(&b, "%s  hash: %s\n%s  distribution: %s\n%s  preconnect: true\n", indent, hash, indent, dist, indent)
		if p.hotKeys {
			fmt.Fprintf(&b, "%s  hot_keys:\n%s    enabled: true\n", indent, indent)
		}
		if p.certFile != "" {
			fmt.Fprintf(&b, "%s  tls: {cert_file: %s, key_file: %s}\n", indent, p.certFile, p.keyFile)
		}
		fmt.Fprintf(&b, "%s  servers:\n", indent)
		for j, s := range p.servers {
			fmt.Fprintf(&b, "%s    - %s:1 %s%d\n", indent, s, prefix, j)
		}
	}
	return b.String()
}

// measure warms t up (storing every key), then runs one verified, measured
// window and reads the proxy's CPU time around it.
func measure(ctx context.Context, o *options, c *comparison, t *target) (sample, error) {
	cfg := loadgen.Config{Addr: t.addr, Protocol: c.proto, Conns: o.conns, Pipeline: c.depth, GetRatio: o.getRatio,
		ValueSize: o.size, Keys: o.keys, KeyPrefix: "b:", Duration: o.warmup, Preload: true, Seed: 1,
		Timeout: 5 * time.Second, TLS: t.tls}
	if _, err := loadgen.Run(ctx, cfg); err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	cfg.Preload, cfg.Verify, cfg.Duration, cfg.Seed = false, true, o.duration, 2
	var t0 int64
	var sc *syscallCounter
	if t.proc != nil {
		var err error
		if o.syscalls {
			if sc, err = startSyscalls(ctx, t.proc.cmd.Process.Pid); err == nil {
				if err = sc.enable(); err != nil {
					_, _ = sc.stop()
				}
			}
			if err != nil {
				return sample{}, err
			}
		}
		if t0, err = cpuTicks(t.proc.cmd.Process.Pid); err != nil {
			if sc != nil {
				_, _ = sc.stop()
			}
			return sample{}, err
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	var counts map[string]int64
	if sc != nil {
		var serr error
		counts, serr = sc.stop()
		err = errors.Join(err, serr)
	}
	if err != nil {
		return sample{}, err
	}
	s := sample{Comparison: c.name(), Target: t.name, Throughput: res.Throughput, P50: res.Latency.P50,
		P99: res.Latency.P99, CPUPerReq: -1, Errors: res.Errors + res.ConnFailures,
		Faults: res.Misrouted + res.Misordered + res.Corrupt + res.Lost}
	if counts != nil {
		s.Syscalls = perRequest(counts, res.Requests)
	}
	if t.proc != nil {
		t1, err := cpuTicks(t.proc.cmd.Process.Pid)
		if err != nil {
			return sample{}, err
		}
		if res.Requests > 0 {
			s.CPUPerReq = float64(t1-t0) / clockTick * 1e6 / float64(res.Requests)
		}
	}
	if res.Requests == 0 {
		return s, fmt.Errorf("no replies (%s)", res.FirstError)
	}
	return s, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printTable prints medians over rounds per comparison and target, and the
// median of the per-round ratios candidate/baseline.
func printTable(w io.Writer, comps []*comparison, samples []sample) {
	fmt.Fprintf(w, "\n%-25s %-11s %10s %8s %8s %8s %6s %6s %9s %9s %9s\n",
		"comparison", "target", "req/s", "p50 us", "p99 us", "cpu us", "faults", "errors", "x req/s", "x p99", "x cpu")
	for _, c := range comps {
		byRound := map[string]map[int]sample{}
		for _, t := range []*target{c.a, c.b} {
			byRound[t.name] = map[int]sample{}
			var tp, p50, p99, cpu []float64
			var faults, errs int64
			for _, s := range samples {
				if s.Comparison == c.name() && s.Target == t.name {
					byRound[t.name][s.Round] = s
					tp, p50, p99 = append(tp, s.Throughput), append(p50, s.P50), append(p99, s.P99)
					if s.CPUPerReq >= 0 {
						cpu = append(cpu, s.CPUPerReq)
					}
					faults += s.Faults
					errs += s.Errors
				}
			}
			if len(tp) == 0 {
				why := t.unavailable
				if why == "" {
					why = "no samples"
				}
				fmt.Fprintf(w, "%-25s %-11s unavailable: %s\n", c.name(), t.name, why)
				continue
			}
			cpuS := "-"
			if len(cpu) > 0 {
				cpuS = fmt.Sprintf("%.2f", median(cpu))
			}
			ratioTP, ratioP99, ratioCPU := "", "", ""
			if t == c.b {
				var rt, rp, rc []float64
				for r, sb := range byRound[c.b.name] {
					if sa, ok := byRound[c.a.name][r]; ok && sa.Throughput > 0 && sa.P99 > 0 {
						rt = append(rt, sb.Throughput/sa.Throughput)
						rp = append(rp, sb.P99/sa.P99)
						if sa.CPUPerReq > 0 && sb.CPUPerReq >= 0 {
							rc = append(rc, sb.CPUPerReq/sa.CPUPerReq)
						}
					}
				}
				if len(rt) > 0 {
					ratioTP, ratioP99 = fmt.Sprintf("%.3f", median(rt)), fmt.Sprintf("%.3f", median(rp))
				}
				if len(rc) > 0 {
					ratioCPU = fmt.Sprintf("%.3f", median(rc))
				}
			}
			fmt.Fprintf(w, "%-25s %-11s %10.0f %8.1f %8.1f %8s %6d %6d %9s %9s %9s\n",
				c.name(), t.name, median(tp), median(p50), median(p99), cpuS, faults, errs, ratioTP, ratioP99, ratioCPU)
		}
	}
}

// accuracy drives one direct memcached alternately with memcaslap and with
// the generator under the same load: connections, memcaslap's default 9:1
// get:set mix, value size, 64-byte keys, duration. It prints each side's
// median throughput and their ratio.
func accuracy(ctx context.Context, o *options, ps *procs, dir string, out io.Writer) error {
	path, err := exec.LookPath("memcaslap")
	if err != nil {
		return fmt.Errorf("memcaslap not installed (Debian package libmemcached-tools): %w", err)
	}
	addr, err := backend(ctx, ps, dir, loadgen.Memcache, 0)
	if err != nil {
		return err
	}
	cores, model := machine()
	fmt.Fprintf(out, "machine: %d cores, %s; %s\n", cores, model, runtime.Version())
	fmt.Fprintf(out, "load: memcached -t 1 direct, %d conns, 90%% gets, %d-byte values, 64-byte keys, pipeline 1, %d rounds x %v, alternating\n",
		o.conns, o.size, o.rounds, o.duration)
	secs := max(1, int(o.duration.Seconds()))
	var cas, gen []float64
	for r := range o.rounds {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
		cmd := exec.CommandContext(cctx, path, "-s", addr, "-T", "2", "-c", fmt.Sprint(o.conns),
			"-t", fmt.Sprintf("%ds", secs), "-X", fmt.Sprint(o.size))
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("memcaslap: %w: %s", err, firstLine(string(b)))
		}
		tps, err := parseTPS(string(b))
		if err != nil {
			return err
		}
		res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Protocol: loadgen.Memcache, Conns: o.conns, Pipeline: 1,
			GetRatio: 0.9, ValueSize: o.size, Keys: o.keys, KeyPrefix: strings.Repeat("k", 58) + ":",
			Duration: time.Duration(secs) * time.Second, Preload: r == 0, Seed: uint64(r)})
		if err != nil {
			return fmt.Errorf("generator: %w", err)
		}
		cas, gen = append(cas, tps), append(gen, res.Throughput)
		fmt.Fprintf(out, "round %d: memcaslap %.0f req/s, cachebench %.0f req/s (p50 %.1f us, p99 %.1f us), ratio %.3f\n",
			r+1, tps, res.Throughput, res.Latency.P50, res.Latency.P99, res.Throughput/tps)
	}
	fmt.Fprintf(out, "median: memcaslap %.0f req/s, cachebench %.0f req/s, cachebench/memcaslap %.3f\n",
		median(cas), median(gen), median(gen)/median(cas))
	return nil
}

// parseTPS finds memcaslap's final "TPS: N" figure.
func parseTPS(s string) (float64, error) {
	i := strings.LastIndex(s, "TPS: ")
	if i < 0 {
		return 0, fmt.Errorf("memcaslap printed no TPS: %s", firstLine(s))
	}
	var tps float64
	if _, err := fmt.Sscan(s[i+len("TPS: "):], &tps); err != nil {
		return 0, fmt.Errorf("memcaslap TPS: %w", err)
	}
	return tps, nil
}
