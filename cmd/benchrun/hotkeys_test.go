package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestHotKeysSmoke runs `benchrun -hotkeys -smoke` against real memcached
// and redis-server processes and a freshly built cacheproxy, so the
// harness behind `make bench-hotkeys` cannot rot. It asserts what holds in
// any run, however loaded the box: every value right, every sample
// present, the backends' own get counters matching the clients' gets
// exactly with the tier off, and fewer backend gets than client gets with
// it on (the near cache served). It asserts no time and no ratio.
func TestHotKeysSmoke(t *testing.T) {
	samples, out := smokeRun(t, []string{"memcached", "redis-server"}, "-hotkeys", "-smoke")
	got := map[string]sample{}
	for _, s := range samples {
		k := s.Comparison + "/" + s.Target
		if _, dup := got[k]; dup {
			t.Errorf("two samples for %s in one round", k)
		}
		got[k] = s
		if s.Faults != 0 || s.Errors != 0 || s.Throughput <= 0 {
			t.Errorf("%s: %d faults, %d errors, %.0f req/s", k, s.Faults, s.Errors, s.Throughput)
		}
	}
	for _, dist := range []string{"jump", "ketama", "ketama-murmur"} {
		for _, tier := range []string{"off", "on", "uniform"} {
			k := "shield " + dist + "/" + tier
			s, ok := got[k]
			if !ok {
				t.Errorf("no sample for %s", k)
				continue
			}
			if len(s.ServerGets) != shieldServers || s.ClientGets == 0 {
				t.Errorf("%s: %d servers' gets, %d client gets", k, len(s.ServerGets), s.ClientGets)
				continue
			}
			if s.MaxMean < 1 {
				t.Errorf("%s: max/mean %.3f < 1", k, s.MaxMean)
			}
			switch tier {
			case "on":
				// Some gets answered by the proxy itself.
				if s.BackendGets >= s.ClientGets {
					t.Errorf("%s: backends counted %d gets of the clients' %d: the near cache served none", k, s.BackendGets, s.ClientGets)
				}
			default:
				// Every get reaches exactly one backend once.
				if s.BackendGets != s.ClientGets {
					t.Errorf("%s: backends counted %d gets, the clients made %d", k, s.BackendGets, s.ClientGets)
				}
			}
		}
	}
	for _, c := range []string{"hotkeys-cost memcache P1", "hotkeys-cost redis P1"} {
		for _, tier := range []string{"hk off", "hk on"} {
			if s, ok := got[c+"/"+tier]; !ok {
				t.Errorf("no sample for %s %s", c, tier)
			} else if s.CPUPerReq <= 0 {
				t.Errorf("%s %s: cpu per request %v", c, tier, s.CPUPerReq)
			}
		}
	}
	for _, want := range []string{"hot-key shield: 8 memcached, ketama hash fnv1a_64", "jump: max/mean on", "ketama fnv1a_64: max/mean on",
		"ketama murmur: max/mean on",
		"placement of the 20000 keys", "ketama fnv1a_64", "hotkeys-cost redis P1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestParseGets(t *testing.T) {
	reply := "STAT pid 1\r\nSTAT get_hits 40\r\nSTAT get_misses 2\r\nSTAT get_expired 0\r\nEND\r\n"
	n, err := parseGets(bufio.NewReader(strings.NewReader(reply)))
	if err != nil || n != 42 {
		t.Errorf("parseGets = %d, %v; want 42", n, err)
	}
	for _, bad := range []string{
		"STAT get_hits 40\r\nEND\r\n",                      // no get_misses
		"STAT get_hits 40\r\nSTAT get_misses x\r\nEND\r\n", // not a number
		"ERROR\r\n", // not stats
		"STAT get_hits 40\r\nSTAT get_misses 2\r\n", // cut before END
	} {
		if n, err := parseGets(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("parseGets(%q) = %d, want an error", bad, n)
		}
	}
}

func TestShieldBound(t *testing.T) {
	for _, c := range []struct {
		dist  string
		floor float64
		want  float64
	}{
		{"jump", 1.5, 1.15},
		{"ketama", 1.10, 1.25},
		{"ketama", 1.20, 1.30},
	} {
		if got := shieldBound(c.dist, c.floor); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("shieldBound(%s, %v) = %v, want %v", c.dist, c.floor, got, c.want)
		}
	}
	if got := maxOverMean([]int64{1, 1, 2, 0}); got != 2 {
		t.Errorf("maxOverMean = %v, want 2", got)
	}
	if got := maxOverMean([]int64{0, 0}); got != 0 {
		t.Errorf("maxOverMean of zeros = %v, want 0", got)
	}
}

// smokeRun runs benchrun with args against a freshly built cacheproxy,
// after checking that the binaries in need are installed, and returns the
// raw samples it wrote and what it printed.
func smokeRun(t *testing.T, need []string, args ...string) ([]sample, string) {
	t.Helper()
	for _, b := range need {
		testserver.Require(t, b)
	}
	bin := testserver.BuildCacheproxy(t)
	raw := filepath.Join(t.TempDir(), "raw.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, append(args, "-cacheproxy", bin, "-raw", raw), &out); err != nil {
		t.Fatalf("benchrun: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var samples []sample
	if err := json.Unmarshal(b, &samples); err != nil {
		t.Fatalf("raw figures: %v", err)
	}
	return samples, out.String()
}
