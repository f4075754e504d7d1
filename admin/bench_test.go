package admin

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/proxy"
)

// benchSource is 4 pools of 16 servers with figures in every field.
type benchSource struct{ stats []proxy.PoolStats }

func (b *benchSource) Stats() []proxy.PoolStats { return b.stats }
func (b *benchSource) Ready() bool              { return true }
func (b *benchSource) Uptime() time.Duration    { return time.Hour }

func newBenchSource() *benchSource {
	s := &benchSource{}
	for p := range 4 {
		ps := proxy.PoolStats{Name: fmt.Sprintf("pool%d", p), Requests: [6]int64{1, 2, 3, 4, 5, 6}}
		ps.Latency.Counts[3] = 1000
		for i := range 16 {
			ss := proxy.ServerStats{Name: fmt.Sprintf("s%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 11000+i), Requests: 1e9}
			ss.Latency.Counts[2] = 1e6
			ps.Servers = append(ps.Servers, ss)
		}
		s.stats = append(s.stats, ps)
	}
	return s
}

// BenchmarkGather is one /metrics scrape's collection work (without the
// HTTP encoding) for 4 pools x 16 servers, Go and process collectors
// included.
func BenchmarkGather(b *testing.B) {
	s, err := New(Options{Source: newBenchSource(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatsJSON is one twemproxy stats document for 4 pools x 16
// servers.
func BenchmarkStatsJSON(b *testing.B) {
	src := newBenchSource()
	b.ReportAllocs()
	for b.Loop() {
		_ = twemproxyJSON(src.Stats(), "host", "v", time.Hour, time.Unix(0, 0))
	}
}
