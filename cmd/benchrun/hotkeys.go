package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/internal/loadgen"
)

// The hot-key rounds (issue 13):
//
//   - shield: 8 memcached behind one proxy with hot_keys off and one with
//     them on (same servers, same server names, same hash), for jump,
//     ketama with -shield-hash (the default hash, fnv1a_64) and ketama with
//     murmur. Gets only, keys drawn Zipf 1.1 over -shield-keys keys, 32
//     connections one request in flight, every value verified. Rounds
//     alternate off, on, and a uniform-key run through the off proxy (the
//     distribution's own imbalance, the floor no cache removes). Per-server
//     load is the backends' own get_hits+get_misses deltas over the
//     measured window, not the proxy's counters.
//   - cost: hot_keys off vs on on a uniform workload (10 % sets), memcache
//     and redis at each pipeline depth, throughput ratio and CPU per
//     request (the comparison table of the other rounds).

// shieldServers is the number of memcached behind the shield pools.
const shieldServers = 8

// shieldPool is one ring's pair of pools, tier off and on.
type shieldPool struct {
	name    string // jump, ketama, or ketama-murmur
	dist    string // jump or ketama
	hash    string
	off, on *target
	servers []string // backend addresses, in pool order
}

// hotKeys runs the shield and cost rounds and prints their tables. It
// appends its samples to *samples.
func hotKeys(ctx context.Context, o *options, ps *procs, dir string, out io.Writer, samples *[]sample) error {
	if err := shieldRounds(ctx, o, ps, dir, out, samples); err != nil {
		return err
	}
	var costComps []*comparison
	for _, proto := range []loadgen.Protocol{loadgen.Memcache, loadgen.Redis} {
		for _, d := range o.depths {
			c := &comparison{kind: "hotkeys-cost", proto: proto, depth: d}
			if o.selected(c.name()) {
				costComps = append(costComps, c)
			}
		}
	}
	if len(costComps) == 0 {
		return nil
	}
	// Cost on a uniform workload: one memcached and one redis-server, a
	// proxy with hot keys off and one with them on.
	mc, err := backend(ctx, ps, dir, loadgen.Memcache, 20)
	if err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	rd, err := backend(ctx, ps, dir, loadgen.Redis, 21)
	if err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	mk := func(on bool) []pool {
		return []pool{
			{name: "mc", proto: loadgen.Memcache, servers: []string{mc}, hotKeys: on},
			{name: "rd", proto: loadgen.Redis, servers: []string{rd}, hotKeys: on},
		}
	}
	off := startProxy(ctx, ps, dir, "cacheproxy-hk-off", mk(false), o.binary)
	on := startProxy(ctx, ps, dir, "cacheproxy-hk-on", mk(true), o.binary)
	for _, c := range costComps {
		name := "mc"
		if c.proto == loadgen.Redis {
			name = "rd"
		}
		c.a, c.b = off[name], on[name]
		c.a.name, c.b.name = "hk off", "hk on"
	}
	var costSamples []sample
	if err := runComparisons(ctx, o, costComps, &costSamples); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nhot keys cost on a uniform workload: %d conns, %.0f%% gets, %d uniform keys, one backend, %d rounds x %v; B = hot_keys on, A = off\n",
		o.conns, o.getRatio*100, o.keys, o.rounds, o.duration)
	printTable(out, costComps, costSamples)
	*samples = append(*samples, costSamples...)
	return nil
}

// label names the ring: jump (which has its own key hash) or ketama and
// its hash.
func (sp *shieldPool) label() string {
	if sp.dist == "jump" {
		return "jump"
	}
	return sp.dist + " " + sp.hash
}

// shieldRounds starts the shield's backends and proxies, runs its rounds
// and prints its table.
func shieldRounds(ctx context.Context, o *options, ps *procs, dir string, out io.Writer, samples *[]sample) error {
	// jump; ketama with the shield's hash (the default one unless
	// -shield-hash says otherwise); and ketama with murmur, which spreads
	// similar keys (see printPlacement), in the same run.
	var sps []*shieldPool
	for _, sp := range []*shieldPool{{name: "jump", dist: "jump", hash: o.shieldHash},
		{name: "ketama", dist: "ketama", hash: o.shieldHash}, {name: "ketama-murmur", dist: "ketama", hash: "murmur"}} {
		if sp.name == "ketama-murmur" && o.shieldHash == "murmur" {
			continue
		}
		if o.selected("shield " + sp.name) {
			sps = append(sps, sp)
		}
	}
	if len(sps) == 0 {
		return nil
	}
	zipf, err := loadgen.NewZipf(o.shieldKeys, o.zipfS)
	if err != nil {
		return err
	}
	var servers []string
	for i := range shieldServers {
		addr, err := backend(ctx, ps, dir, loadgen.Memcache, 30+i)
		if err != nil {
			return fmt.Errorf("memcached: %w", err)
		}
		servers = append(servers, addr)
	}
	mk := func(on bool) []pool {
		var pl []pool
		for _, sp := range sps {
			pl = append(pl, pool{name: sp.name, proto: loadgen.Memcache, servers: servers, dist: sp.dist,
				hash: sp.hash, hotKeys: on, serverPrefix: "mc"})
		}
		return pl
	}
	off := startProxy(ctx, ps, dir, "cacheproxy-shield-off", mk(false), o.binary)
	on := startProxy(ctx, ps, dir, "cacheproxy-shield-on", mk(true), o.binary)
	var ready []*shieldPool
	for _, sp := range sps {
		d := sp.name
		sp.off, sp.on, sp.servers = off[d], on[d], servers
		if sp.off.unavailable != "" || sp.on.unavailable != "" {
			fmt.Fprintf(os.Stderr, "shield %s unavailable: off %q, on %q\n", d, sp.off.unavailable, sp.on.unavailable)
			continue
		}
		// Store every key once, through the tier-off pool (so on this
		// distribution's servers); every later window verifies every value.
		_, err := loadgen.Run(ctx, loadgen.Config{Addr: sp.off.addr, Protocol: loadgen.Memcache, Conns: o.conns,
			Pipeline: 1, GetRatio: 1, ValueSize: o.size, Keys: o.shieldKeys, KeyPrefix: shieldPrefix,
			Requests: 1, Preload: true, PreloadTimeout: 10 * time.Minute, Timeout: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("shield %s: preload: %w", d, err)
		}
		ready = append(ready, sp)
	}
	sps = ready
	if len(sps) == 0 {
		return nil
	}
	var ss []sample
	for r := range o.rounds {
		for _, sp := range sps {
			for _, tier := range []string{"off", "on", "uniform"} {
				if err := ctx.Err(); err != nil {
					return err
				}
				t, sampler := sp.off, loadgen.Sampler(zipf)
				switch tier {
				case "on":
					t = sp.on
				case "uniform":
					sampler = loadgen.Uniform(o.shieldKeys)
				}
				s, err := measureShield(ctx, o, sp, t, sampler)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("shield %s %s: %w", sp.name, tier, err)
				}
				s.Comparison, s.Target, s.Round = "shield "+sp.name, tier, r+1
				ss = append(ss, s)
				fmt.Fprintf(os.Stderr, "%-25s round %d %-10s %9.0f req/s  max/mean %.3f  backend gets %d of %d\n",
					s.Comparison, r+1, tier, s.Throughput, s.MaxMean, s.BackendGets, s.ClientGets)
			}
		}
	}
	fmt.Fprintf(out, "\nhot-key shield: %d memcached, ketama hash %s (and murmur), gets only, Zipf %.2f over %d keys (uniform: same keys drawn uniformly, tier off), %d conns one request in flight, verify on; %d rounds x %v (warm-up %v), off/on/uniform alternating\n",
		shieldServers, o.shieldHash, o.zipfS, o.shieldKeys, o.conns, o.rounds, o.duration, o.warmup)
	printShield(out, sps, ss)
	printPlacement(out, o, zipf)
	*samples = append(*samples, ss...)
	return nil
}

// shieldPrefix prefixes the shield's keys.
const shieldPrefix = "shield:"

// measureShield warms t up, then runs one verified, measured window of gets
// drawn by sampler and reads each backend's gets around it.
func measureShield(ctx context.Context, o *options, sp *shieldPool, t *target, sampler loadgen.Sampler) (sample, error) {
	cfg := loadgen.Config{Addr: t.addr, Protocol: loadgen.Memcache, Conns: o.conns, Pipeline: 1, GetRatio: 1,
		ValueSize: o.size, Keys: o.shieldKeys, KeyPrefix: shieldPrefix, Sampler: sampler, Duration: o.warmup,
		Seed: 1, Timeout: 5 * time.Second}
	if _, err := loadgen.Run(ctx, cfg); err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	cfg.Verify, cfg.Duration, cfg.Seed = true, o.duration, 2
	before, err := backendGets(ctx, sp.servers)
	if err != nil {
		return sample{}, err
	}
	t0, err := cpuTicks(t.proc.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return sample{}, err
	}
	t1, err := cpuTicks(t.proc.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	after, err := backendGets(ctx, sp.servers)
	if err != nil {
		return sample{}, err
	}
	s := sample{Throughput: res.Throughput, P50: res.Latency.P50, P99: res.Latency.P99, CPUPerReq: -1,
		Errors: res.Errors + res.ConnFailures, Faults: res.Misrouted + res.Misordered + res.Corrupt + res.Lost,
		ClientGets: res.Gets}
	for i := range after {
		d := after[i] - before[i]
		s.ServerGets = append(s.ServerGets, d)
		s.BackendGets += d
	}
	s.MaxMean = maxOverMean(s.ServerGets)
	if res.Requests == 0 {
		return s, fmt.Errorf("no replies (%s)", res.FirstError)
	}
	s.CPUPerReq = float64(t1-t0) / clockTick * 1e6 / float64(res.Requests)
	return s, nil
}

// maxOverMean returns the largest of xs over their mean, 0 when they sum
// to 0.
func maxOverMean(xs []int64) float64 {
	var sum, mx int64
	for _, x := range xs {
		sum += x
		mx = max(mx, x)
	}
	if sum == 0 {
		return 0
	}
	return float64(mx) * float64(len(xs)) / float64(sum)
}

// backendGets returns get_hits+get_misses from each memcached's own stats.
func backendGets(ctx context.Context, addrs []string) ([]int64, error) {
	out := make([]int64, len(addrs))
	for i, a := range addrs {
		n, err := memcachedGets(ctx, a)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// memcachedGets asks the memcached at addr for its stats and returns
// get_hits+get_misses: the keys it was asked for by get-type commands.
func memcachedGets(ctx context.Context, addr string) (int64, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("stats %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, fmt.Errorf("stats %s: %w", addr, err)
	}
	if _, err := io.WriteString(c, "stats\r\n"); err != nil {
		return 0, fmt.Errorf("stats %s: %w", addr, err)
	}
	return parseGets(bufio.NewReader(c))
}

// parseGets reads a memcached stats reply up to END and returns
// get_hits+get_misses.
func parseGets(r *bufio.Reader) (int64, error) {
	var total int64
	seen := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("stats reply: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			break
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "STAT" {
			return 0, fmt.Errorf("stats reply: unexpected line %q", line)
		}
		if f[1] == "get_hits" || f[1] == "get_misses" {
			n, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("stats reply: %s: %w", f[1], err)
			}
			total += n
			seen++
		}
	}
	if seen != 2 {
		return 0, fmt.Errorf("stats reply: get_hits and get_misses not both present")
	}
	return total, nil
}

// shieldSummary is one distribution's medians over rounds.
type shieldSummary struct {
	maxMean, rps, cpu map[string]float64 // by tier
	faults, errs      map[string]int64
	ratio             float64 // median over rounds of rps on / rps off
}

func summarize(name string, ss []sample) shieldSummary {
	sum := shieldSummary{maxMean: map[string]float64{}, rps: map[string]float64{}, cpu: map[string]float64{},
		faults: map[string]int64{}, errs: map[string]int64{}}
	byRound := map[string]map[int]float64{"off": {}, "on": {}}
	for _, tier := range []string{"off", "on", "uniform"} {
		var mm, rps, cpu []float64
		for _, s := range ss {
			if s.Comparison != "shield "+name || s.Target != tier {
				continue
			}
			mm, rps, cpu = append(mm, s.MaxMean), append(rps, s.Throughput), append(cpu, s.CPUPerReq)
			sum.faults[tier] += s.Faults
			sum.errs[tier] += s.Errors
			if m, ok := byRound[tier]; ok {
				m[s.Round] = s.Throughput
			}
		}
		sum.maxMean[tier], sum.rps[tier], sum.cpu[tier] = median(mm), median(rps), median(cpu)
	}
	var ratios []float64
	for r, on := range byRound["on"] {
		if off, ok := byRound["off"][r]; ok && off > 0 {
			ratios = append(ratios, on/off)
		}
	}
	sum.ratio = median(ratios)
	return sum
}

// shieldBound returns the max/mean bound issue 13 sets for dist given its
// measured uniform floor.
func shieldBound(dist string, floor float64) float64 {
	if dist == "jump" {
		return 1.15
	}
	return max(1.25, floor+0.10)
}

// printShield prints medians over rounds per distribution and tier, and
// each distribution's verdict against issue 13's bounds.
func printShield(w io.Writer, sps []*shieldPool, ss []sample) {
	fmt.Fprintf(w, "%-14s %-8s %10s %9s %8s %6s %6s %9s\n", "shield", "tier", "req/s", "max/mean", "cpu us", "faults", "errors", "x req/s")
	for _, sp := range sps {
		sum := summarize(sp.name, ss)
		for _, tier := range []string{"off", "on", "uniform"} {
			x := ""
			if tier == "on" {
				x = fmt.Sprintf("%.3f", sum.ratio)
			}
			fmt.Fprintf(w, "%-14s %-8s %10.0f %9.3f %8.2f %6d %6d %9s\n", sp.name, tier, sum.rps[tier], sum.maxMean[tier],
				sum.cpu[tier], sum.faults[tier], sum.errs[tier], x)
		}
	}
	for _, sp := range sps {
		sum := summarize(sp.name, ss)
		bound := shieldBound(sp.dist, sum.maxMean["uniform"])
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "MISSED"
		}
		faults := sum.faults["off"] + sum.faults["on"] + sum.faults["uniform"]
		fmt.Fprintf(w, "%s: max/mean on %.3f vs bound %.2f: %s; throughput on/off %.3f: %s; faults %d: %s\n",
			sp.label(), sum.maxMean["on"], bound, verdict(sum.maxMean["on"] <= bound),
			sum.ratio, verdict(sum.ratio > 1), faults, verdict(faults == 0))
	}
}

// placementHashes are the hashes whose ketama placement printPlacement
// reports.
var placementHashes = []string{"fnv1a_64", "murmur", "md5", "crc32a", "one_at_a_time"}

// printPlacement prints, from the rings themselves (no load), each server's
// share of the shield's keys per distribution and hash: max/mean of key
// counts (the uniform floor the rounds measure, less sampling noise), of
// Zipf-weighted load (the tier-off imbalance they measure), and of the load
// left when the hottest 40, 100 or 1000 keys are answered by the proxy (what
// a perfect near cache of that many keys would leave).
func printPlacement(w io.Writer, o *options, zipf *loadgen.Zipf) {
	servers := make([]hashring.Server, shieldServers)
	for i := range servers {
		servers[i] = hashring.Server{Name: fmt.Sprintf("mc%d", i), Weight: 1}
	}
	tops := []int{40, 100, 1000}
	fmt.Fprintf(w, "placement of the %d keys computed from the rings (%d servers mc0..mc%d): max/mean of keys per server, of Zipf %.2f load, and of that load without the hottest %v keys\n",
		o.shieldKeys, shieldServers, shieldServers-1, o.zipfS, tops)
	type row struct {
		dist, hash string
	}
	rows := []row{{"jump", "-"}}
	for _, h := range placementHashes {
		rows = append(rows, row{"ketama", h})
	}
	key := make([]byte, 0, 32)
	for _, r := range rows {
		opts := hashring.Options{Distribution: r.dist, Hash: r.hash, Servers: servers}
		if r.dist == "jump" {
			opts.Hash = ""
		}
		ring, err := hashring.New(opts)
		if err != nil {
			fmt.Fprintf(w, "  %s %s: %v\n", r.dist, r.hash, err)
			continue
		}
		keys := make([]int64, shieldServers)
		load := make([]float64, shieldServers)
		picks := make([]int, o.shieldKeys)
		for k := range o.shieldKeys {
			key = strconv.AppendInt(append(key[:0], shieldPrefix...), int64(k), 10)
			i := ring.Pick(key)
			picks[k] = i
			keys[i]++
			load[i] += zipf.Prob(k)
		}
		fmt.Fprintf(w, "  %-6s %-14s keys %.3f   zipf load %.3f   without top", r.dist, r.hash,
			maxOverMean(keys), loadMaxOverMean(load))
		for _, top := range tops {
			rest := slices.Clone(load)
			for k := range min(top, o.shieldKeys) {
				rest[picks[k]] -= zipf.Prob(k)
			}
			fmt.Fprintf(w, " %.3f", loadMaxOverMean(rest))
		}
		fmt.Fprintln(w)
	}
}

// loadMaxOverMean returns the largest of load over its mean, 0 when it sums
// to 0.
func loadMaxOverMean(load []float64) float64 {
	var sum float64
	for _, l := range load {
		sum += l
	}
	if sum <= 0 {
		return 0
	}
	return slices.Max(load) * float64(len(load)) / sum
}
