package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/loadgen"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// serverGets returns the requests each server of pool has been sent.
func serverGets(p *proxy.Proxy, pool string) []int64 {
	var out []int64
	for _, ps := range p.Stats() {
		if ps.Name == pool {
			for _, s := range ps.Servers {
				out = append(out, s.Requests)
			}
		}
	}
	return out
}

// maxOverMean is the hottest server's share over the mean of after-before.
func maxOverMean(before, after []int64) float64 {
	var sum, mx int64
	for i := range after {
		d := after[i] - before[i]
		sum += d
		mx = max(mx, d)
	}
	if sum == 0 {
		return 0
	}
	return float64(mx) * float64(len(after)) / float64(sum)
}

// BenchmarkHotKeyShield is the short shield measurement: 8 memcached
// behind jump hashing, gets drawn Zipf 1.1 over 20,000 keys by 32
// connections (one request in flight each) (and the same over ketama), every value verified, through
// one proxy with hot keys off and one with them on, same servers, same
// run. It reports each tier's hottest server's gets over the mean
// (maxmean_off, maxmean_on) and throughput (rps_off, rps_on); it asserts
// no time. The full run is in cmd/benchrun (make bench).
func BenchmarkHotKeyShield(b *testing.B) {
	for _, dist := range []string{"jump", "ketama"} {
		b.Run(dist, func(b *testing.B) { benchShield(b, dist) })
	}
}

func benchShield(b *testing.B, dist string) {
	var mcs []*testserver.Process
	for range 8 {
		mcs = append(mcs, testserver.Memcached(b))
	}
	mk := func(name string, on bool) config.Pool {
		p := proxytest.MemcachePool(b, name, mcs...)
		p.Distribution = dist
		p.HotKeys.Enabled = on
		return p
	}
	off, on := mk("off", false), mk("on", true)
	p := proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, off, on)
	zipf, err := loadgen.NewZipf(20000, 1.1)
	if err != nil {
		b.Fatal(err)
	}
	run := func(pool config.Pool, preload bool) (float64, float64) {
		cfg := loadgen.Config{Addr: pool.Listen, Protocol: loadgen.Memcache, Conns: 32, Pipeline: 1,
			GetRatio: 1, ValueSize: 32, Keys: 20000, KeyPrefix: "shield:", Sampler: zipf,
			Warmup: time.Second, Duration: 3 * time.Second, Seed: 11, Verify: true, Preload: preload}
		var before []int64
		cfg.Progress = func(pg loadgen.Progress) {
			if !pg.Warmup && before == nil {
				before = serverGets(p, pool.Name)
			}
		}
		cfg.ProgressInterval = 50 * time.Millisecond
		res, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if res.Misrouted+res.Misordered+res.Corrupt+res.Lost+res.Errors > 0 {
			b.Fatalf("pool %s: wrong values: %+v", pool.Name, res)
		}
		if before == nil {
			b.Fatalf("pool %s: no progress seen after the warm-up", pool.Name)
		}
		return maxOverMean(before, serverGets(p, pool.Name)), res.Throughput
	}
	b.ResetTimer()
	for range b.N {
		mOff, rOff := run(off, true)
		mOn, rOn := run(on, false)
		b.ReportMetric(mOff, "maxmean_off")
		b.ReportMetric(mOn, "maxmean_on")
		b.ReportMetric(rOff, "rps_off")
		b.ReportMetric(rOn, "rps_on")
		b.Logf("off: max/mean %.2f, %.0f gets/s; on: max/mean %.2f, %.0f gets/s; near cache %+v",
			mOff, rOff, mOn, rOn, nearStats(p, "on"))
	}
}
