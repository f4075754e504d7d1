package soak

import (
	"strings"
	"testing"
	"time"
)

func TestVmRSS(t *testing.T) {
	got, err := vmRSS([]byte("Name:\tcacheproxy\nVmPeak:\t  900 kB\nVmRSS:\t   20480 kB\nThreads:\t7\n"))
	if err != nil || got != 20<<20 {
		t.Errorf("got %d, %v; want %d", got, err, 20<<20)
	}
	for _, in := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := vmRSS([]byte(in)); err == nil {
			t.Errorf("vmRSS(%q): no error", in)
		}
	}
}

func TestGauges(t *testing.T) {
	text := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 31\ngo_goroutines_x 5\n" +
		"go_memstats_heap_inuse_bytes 4.2e+06\ncacheproxy_x{pool=\"a\"} 1\n"
	got, err := gauges(strings.NewReader(text), "go_goroutines", "go_memstats_heap_inuse_bytes")
	if err != nil || got["go_goroutines"] != 31 || got["go_memstats_heap_inuse_bytes"] != 4200000 {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := gauges(strings.NewReader(text), "go_threads"); err == nil || !strings.Contains(err.Error(), "no go_threads") {
		t.Errorf("missing gauge: got %v", err)
	}
}

// The growth check passes noise within the bound and reports growth past
// it; warm-up and outage samples are not compared.
func TestGrowth(t *testing.T) {
	pl, err := makePlan(10 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s := func(at time.Duration, phase string, rssMiB, gr, fds int64) sample {
		return sample{at: at, phase: phase, rss: rssMiB << 20, goroutines: gr, fds: fds}
	}
	base := []sample{
		s(10*time.Second, "clean 1", 5, 5, 5), // warm-up: ignored
		s(70*time.Second, "clean 2", 30, 30, 40),
		s(90*time.Second, "outage 2 (rd1 killed)", 90, 90, 90), // outage: ignored
	}
	if p := growth(pl, append(base, s(580*time.Second, "clean 10", 30*12/10+8, 30*12/10+16, 40*12/10+8))); len(p) > 0 {
		t.Errorf("growth at the bound: %v", p)
	}
	p := growth(pl, append(base, s(580*time.Second, "clean 10", 50, 53, 57)))
	if len(p) != 3 || !strings.HasPrefix(p[0], "RSS grew") || !strings.HasPrefix(p[1], "goroutines grew") || !strings.HasPrefix(p[2], "open fds grew") {
		t.Errorf("growth past the bound: %q; want RSS, goroutines and fds reported", p)
	}
	if p := growth(pl, base); len(p) != 1 || !strings.Contains(p[0], "want at least 2") {
		t.Errorf("one comparable sample: %q", p)
	}
}
