// Command cachebench drives a memcached or Redis server, or a proxy in front
// of them, with pipelined get/set load and reports throughput, latency
// percentiles (HDR histogram), hit ratio and errors. In verify mode every
// reply is checked against its request and misrouted or misordered replies
// are counted. Only loopback targets are accepted.
//
//	cachebench -addr 127.0.0.1:22121 -protocol memcache -c 32 -P 16 -d 10s
//	cachebench -addr 127.0.0.1:6390 -protocol redis -dist zipf -zipf-s 0.99 -verify --json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cachebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr     = fs.String("addr", "127.0.0.1:11211", "target `host:port` (loopback only)")
		proto    = fs.String("protocol", "memcache", "wire protocol: memcache or redis")
		conns    = fs.Int("c", 32, "connections")
		pipeline = fs.Int("P", 1, "pipeline depth: requests in flight per connection, sent in one write")
		ratio    = fs.String("ratio", "9:1", "get:set ratio, e.g. 9:1, 1:0 (gets only) or 0.9 (fraction of gets)")
		size     = fs.Int("size", 32, "value size in bytes")
		keys     = fs.Int("keys", 10000, "number of distinct keys")
		prefix   = fs.String("prefix", "cb:", "key prefix")
		dist     = fs.String("dist", "uniform", "key distribution: uniform or zipf")
		zipfS    = fs.Float64("zipf-s", 0.99, "Zipf exponent s (any s > 0)")
		dur      = fs.Duration("d", 10*time.Second, "measured duration (0: use -n)")
		n        = fs.Int64("n", 0, "measured request count (with -d 0)")
		warmup   = fs.Duration("warmup", time.Second, "unmeasured warm-up before the measured window")
		seed     = fs.Uint64("seed", 1, "random seed (connection i uses seed+i)")
		verify   = fs.Bool("verify", false, "preload every key and check every reply against its request")
		preload  = fs.Bool("preload", false, "store every key once before the run (implied by -verify)")
		timeout  = fs.Duration("timeout", 5*time.Second, "per-batch I/O and dial timeout")
		jsonOut  = fs.Bool("json", false, "print the result as JSON instead of a table")
		progress = fs.Bool("progress", isTerminal(os.Stderr), "print a live progress line on stderr (default: when stderr is a terminal)")
	)
	fs.BoolVar(jsonOut, "j", false, "shorthand for -json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	p, err := loadgen.ParseProtocol(*proto)
	if err != nil {
		return err
	}
	getRatio, err := parseRatio(*ratio)
	if err != nil {
		return err
	}
	cfg := loadgen.Config{Addr: *addr, Protocol: p, Conns: *conns, Pipeline: *pipeline, GetRatio: getRatio,
		ValueSize: *size, Keys: *keys, KeyPrefix: *prefix, Duration: *dur, Requests: *n, Warmup: *warmup,
		Seed: *seed, Verify: *verify, Preload: *preload || *verify, Timeout: *timeout}
	if err := loadgen.CheckLoopback(cfg.Addr); err != nil {
		return err
	}
	switch *dist {
	case "uniform":
	case "zipf":
		z, err := loadgen.NewZipf(*keys, *zipfS)
		if err != nil {
			return err
		}
		cfg.Sampler = z
	default:
		return fmt.Errorf("unknown distribution %q (want uniform or zipf)", *dist)
	}
	if *progress {
		cfg.Progress = func(pr loadgen.Progress) {
			phase := "run   "
			if pr.Warmup {
				phase = "warmup"
			}
			fmt.Fprintf(stderr, "\r%s %6.1fs  %10d req  %10.0f req/s  %d errors   ", phase, pr.Elapsed.Seconds(), pr.Requests, pr.Rate, pr.Errors)
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if *progress {
		fmt.Fprintln(stderr)
	}
	if res == nil {
		return err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
	} else {
		writeTable(stdout, res, *dist, *zipfS)
	}
	if res.Verify && res.Misrouted+res.Misordered+res.Corrupt+res.Lost > 0 {
		return fmt.Errorf("verify failed: %d misrouted, %d misordered, %d corrupt, %d lost",
			res.Misrouted, res.Misordered, res.Corrupt, res.Lost)
	}
	return err
}

// parseRatio accepts "G:S" (gets to sets) or a fraction of gets in [0, 1].
func parseRatio(s string) (float64, error) {
	if g, st, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.ParseFloat(g, 64)
		b, err2 := strconv.ParseFloat(st, 64)
		if err1 != nil || err2 != nil || a < 0 || b < 0 || a+b == 0 {
			return 0, fmt.Errorf("ratio %q: want GETS:SETS with non-negative numbers", s)
		}
		return a / (a + b), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("ratio %q: want GETS:SETS or a fraction of gets in [0, 1]", s)
	}
	return f, nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func writeTable(w io.Writer, r *loadgen.Result, dist string, s float64) {
	if dist == "zipf" {
		dist = fmt.Sprintf("zipf s=%g", s)
	}
	fmt.Fprintf(w, "target      %s (%s), %d conns, pipeline %d, keys %s\n", r.Target, r.Protocol, r.Conns, r.Pipeline, dist)
	fmt.Fprintf(w, "window      %.2fs, %d requests (%d gets, %d sets)\n", r.Elapsed.Seconds(), r.Requests, r.Gets, r.Sets)
	fmt.Fprintf(w, "throughput  %.0f req/s\n", r.Throughput)
	l := r.Latency
	fmt.Fprintf(w, "latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "hit ratio   %.4f (%d hits, %d misses)\n", r.HitRatio, r.Hits, r.Misses)
	fmt.Fprintf(w, "errors      %d (connection failures %d)\n", r.Errors, r.ConnFailures)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error %s\n", r.FirstError)
	}
	if r.Verify {
		fmt.Fprintf(w, "verify      %d misrouted, %d misordered, %d corrupt, %d lost\n", r.Misrouted, r.Misordered, r.Corrupt, r.Lost)
	}
}
