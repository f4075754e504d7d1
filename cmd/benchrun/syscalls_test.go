package main

import (
	"testing"
)

func TestParsePerfStat(t *testing.T) {
	out := "# started on Thu Dec  3 12:59:35 2026\n\n" +
		"1000,,raw_syscalls:sys_enter,316659273,100.00,,\n" +
		"40,,context-switches,316659273,100.00,,\n" +
		"300,,syscalls:sys_enter_read,316745096,100.00,,\n" +
		"200,,syscalls:sys_enter_write,316745096,100.00,,\n" +
		"100,,syscalls:sys_enter_writev,316745096,100.00,,\n" +
		"<not counted>,,syscalls:sys_enter_futex,0,0.00,,\n"
	counts, err := parsePerfStat(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{scAll: 1000, scSwitches: 40, "read": 300, "write": 200, "writev": 100}
	if len(counts) != len(want) {
		t.Errorf("got %v; want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: got %d; want %d", k, counts[k], v)
		}
	}
	per := perRequest(counts, 100)
	for k, v := range map[string]float64{scAll: 10, "read": 3, "write": 3, scOther: 4, scSwitches: 0.4, "futex": 0} {
		if per[k] != v {
			t.Errorf("per request %s: got %v; want %v", k, per[k], v)
		}
	}
	if _, err := parsePerfStat("# started\n"); err == nil {
		t.Error("output without the system-call count: got no error")
	}
}

// TestSyscallsSmoke runs `benchrun -smoke -syscalls` on the overhead
// memcache comparison (memcached directly vs a freshly built cacheproxy in
// front of it) against real processes: perf stat must count the proxy's
// system calls over the window, and nothing is counted for the backend. It
// asserts only what holds however loaded the box is: the proxy made at
// least one read and one write per request (a request is read from its
// client and its reply written back; batching shares only the backend's
// side), and no more than 100 system calls per request.
func TestSyscallsSmoke(t *testing.T) {
	samples, _ := smokeRun(t, []string{"memcached", "redis-server", "perf"}, "-smoke", "-syscalls", "-only", "overhead memcache")
	seen := map[string]bool{}
	for _, s := range samples {
		seen[s.Target] = true
		sc := s.Syscalls
		if s.Target == "direct" {
			if sc != nil {
				t.Errorf("direct: got system-call counts %v for a backend; want none", sc)
			}
			continue
		}
		if sc == nil {
			t.Errorf("%s %s: no system-call counts", s.Comparison, s.Target)
			continue
		}
		if sc["read"] < 1 || sc["write"] < 1 || sc[scAll] > 100 || sc[scAll] < sc["read"]+sc["write"] {
			t.Errorf("%s %s: %v per request; want reads >= 1, writes >= 1, all >= their sum and <= 100", s.Comparison, s.Target, sc)
		}
	}
	for _, name := range []string{"direct", "cacheproxy"} {
		if !seen[name] {
			t.Errorf("no sample for %s", name)
		}
	}
}
