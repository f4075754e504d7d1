package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// sample is one reading of the proxy process.
type sample struct {
	at         time.Duration // since the load started
	phase      string        // the phase running when it was taken
	rss        int64         // VmRSS, bytes
	heap       int64         // go_memstats_heap_inuse_bytes
	goroutines int64         // go_goroutines
	fds        int64         // entries of /proc/<pid>/fd
}

// readSample reads pid's resident memory and open descriptors from /proc
// and its goroutines and heap in use from the admin listener's /metrics.
func readSample(hc *http.Client, pid int, adminAddr string) (sample, error) {
	var s sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	if s.rss, err = vmRSS(status); err != nil {
		return s, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, fmt.Errorf("list fds: %w", err)
	}
	s.fds = int64(len(fds))
	resp, err := hc.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return s, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("scrape: %s", resp.Status)
	}
	m, err := gauges(resp.Body, "go_goroutines", "go_memstats_heap_inuse_bytes")
	if err != nil {
		return s, fmt.Errorf("scrape: %w", err)
	}
	s.goroutines, s.heap = m["go_goroutines"], m["go_memstats_heap_inuse_bytes"]
	return s, nil
}

// vmRSS returns the VmRSS line of a /proc/<pid>/status text in bytes.
func vmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want <n> kB", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line in status")
}

// gauges reads the unlabelled samples named in names from a Prometheus text
// exposition; each must be present.
func gauges(r io.Reader, names ...string) (map[string]int64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", name, value, err)
		}
		out[name] = int64(f)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no %s sample", n)
		}
	}
	return out, nil
}
