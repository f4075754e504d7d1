package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// With -syscalls, each proxy's system calls and context switches are
// counted over every measured window with `perf stat` (kernel tracepoints,
// counted in the kernel, so far less intrusive than strace) and reported per
// request. perf starts with its counters off and is switched on and off
// through a control FIFO around the window, so exactly the window is
// counted. It attaches to the threads the proxy has when the window starts
// (a Go runtime that starts a thread during the window is not counted on
// it; after the warm-up that is rare).

// syscallColumns are the columns of the system-call table, each the sum of
// the perf events listed (tracepoint names without "syscalls:sys_enter_").
func syscallColumns() []struct {
	name   string
	events []string
} {
	return []struct {
		name   string
		events []string
	}{
		{"read", []string{"read", "readv", "recvfrom", "recvmsg"}},
		{"write", []string{"write", "writev", "sendto", "sendmsg"}},
		{"epoll_wait", []string{"epoll_wait", "epoll_pwait"}},
		{"epoll_ctl", []string{"epoll_ctl"}},
		{"futex", []string{"futex"}},
		{"nanosleep", []string{"nanosleep", "clock_nanosleep"}},
		{"sched_yield", []string{"sched_yield"}},
		{"getpeername", []string{"getpeername"}}, // nutcracker asks once per request
	}
}

// Keys of the counts besides the tracepoints.
const (
	scAll      = "all"        // every system call (raw_syscalls:sys_enter)
	scSwitches = "ctx-switch" // context switches
	scOther    = "other"      // all less the columns
)

// syscallCounter is one perf stat process counting a proxy's system calls.
type syscallCounter struct {
	cmd    *exec.Cmd
	ctl    *os.File
	ack    *os.File
	ackR   *bufio.Reader
	out    string
	done   chan error
	dir    string
	stderr strings.Builder
}

// startSyscalls starts perf stat on pid with its counters off.
func startSyscalls(ctx context.Context, pid int) (*syscallCounter, error) {
	path, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("-syscalls needs perf (Debian package linux-perf): %w", err)
	}
	dir, err := os.MkdirTemp("", "benchrun-perf-")
	if err != nil {
		return nil, err
	}
	s := &syscallCounter{dir: dir, out: filepath.Join(dir, "stat.csv"), done: make(chan error, 1)}
	ctlPath, ackPath := filepath.Join(dir, "ctl"), filepath.Join(dir, "ack")
	for _, f := range []string{ctlPath, ackPath} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			s.cleanup()
			return nil, fmt.Errorf("mkfifo: %w", err)
		}
	}
	// Read-write opens of a FIFO do not wait for the other end.
	if s.ctl, err = os.OpenFile(ctlPath, os.O_RDWR, 0); err == nil {
		s.ack, err = os.OpenFile(ackPath, os.O_RDWR, 0)
	}
	if err != nil {
		s.cleanup()
		return nil, err
	}
	s.ackR = bufio.NewReader(s.ack)
	events := []string{"raw_syscalls:sys_enter", "context-switches"}
	for _, c := range syscallColumns() {
		for _, e := range c.events {
			events = append(events, "syscalls:sys_enter_"+e)
		}
	}
	s.cmd = exec.CommandContext(ctx, path, "stat", "-x", ",", "-D", "-1", "--control", "fifo:"+ctlPath+","+ackPath,
		"-e", strings.Join(events, ","), "-p", strconv.Itoa(pid), "-o", s.out)
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("perf stat: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	return s, nil
}

// checkSyscalls counts this process's system calls for a moment, as
// -syscalls will count each proxy's, and returns why it cannot (no perf, or
// tracepoints this user may not read).
func checkSyscalls(ctx context.Context) error {
	s, err := startSyscalls(ctx, os.Getpid())
	if err != nil {
		return err
	}
	if err := s.enable(); err != nil {
		_, _ = s.stop()
		return fmt.Errorf("-syscalls: %w", err)
	}
	if _, err := s.stop(); err != nil {
		return fmt.Errorf("-syscalls: %w", err)
	}
	return nil
}

// command sends perf a control command and waits for its acknowledgement.
func (s *syscallCounter) command(c string) error {
	if _, err := io.WriteString(s.ctl, c+"\n"); err != nil {
		return fmt.Errorf("perf control: %w", err)
	}
	_ = s.ack.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := s.ackR.ReadString('\n')
	if err != nil || strings.Trim(line, "\x00 \r\n") != "ack" { // perf ends each ack with a NUL
		return fmt.Errorf("perf stat did not acknowledge %q (%q, %v): %s", c, line, err, firstLine(s.stderr.String()))
	}
	return nil
}

// enable starts counting.
func (s *syscallCounter) enable() error { return s.command("enable") }

// stop stops counting, ends perf and returns the counts by event (the
// tracepoint's system call name, scAll, scSwitches).
func (s *syscallCounter) stop() (map[string]int64, error) {
	defer s.cleanup()
	err := s.command("disable")
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.out)
	if err != nil {
		return nil, fmt.Errorf("perf stat output: %w", err)
	}
	return parsePerfStat(string(b))
}

func (s *syscallCounter) cleanup() {
	if s.ctl != nil {
		s.ctl.Close()
	}
	if s.ack != nil {
		s.ack.Close()
	}
	os.RemoveAll(s.dir)
}

// parsePerfStat reads `perf stat -x ,` output: "count,unit,event,...";
// events perf could not count ("<not counted>", "<not supported>") are
// left out.
func parsePerfStat(out string) (map[string]int64, error) {
	counts := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch ev := f[2]; {
		case ev == "raw_syscalls:sys_enter":
			counts[scAll] = n
		case ev == "context-switches":
			counts[scSwitches] = n
		case strings.HasPrefix(ev, "syscalls:sys_enter_"):
			counts[strings.TrimPrefix(ev, "syscalls:sys_enter_")] = n
		}
	}
	if _, ok := counts[scAll]; !ok {
		return nil, errors.New("perf stat counted no system calls: " + firstLine(out))
	}
	return counts, nil
}

// perRequest turns counts into the table's columns per request.
func perRequest(counts map[string]int64, requests int64) map[string]float64 {
	per := map[string]float64{}
	if requests <= 0 {
		return per
	}
	rest := counts[scAll]
	for _, c := range syscallColumns() {
		var n int64
		for _, e := range c.events {
			n += counts[e]
		}
		rest -= n
		per[c.name] = float64(n) / float64(requests)
	}
	per[scAll] = float64(counts[scAll]) / float64(requests)
	per[scOther] = float64(rest) / float64(requests)
	per[scSwitches] = float64(counts[scSwitches]) / float64(requests)
	return per
}

// printSyscalls prints the medians over rounds of each proxy's system calls
// per request.
func printSyscalls(w io.Writer, comps []*comparison, samples []sample) {
	cols := []string{scAll}
	for _, c := range syscallColumns() {
		cols = append(cols, c.name)
	}
	cols = append(cols, scOther, scSwitches)
	fmt.Fprintf(w, "\nsystem calls per request (perf stat over each measured window; medians over rounds)\n%-25s %-11s", "comparison", "target")
	for _, c := range cols {
		fmt.Fprintf(w, " %11s", c)
	}
	fmt.Fprintln(w)
	for _, c := range comps {
		for _, t := range []*target{c.a, c.b} {
			byCol := map[string][]float64{}
			for _, s := range samples {
				if s.Comparison == c.name() && s.Target == t.name && s.Syscalls != nil {
					for _, col := range cols {
						byCol[col] = append(byCol[col], s.Syscalls[col])
					}
				}
			}
			if len(byCol[scAll]) == 0 {
				continue
			}
			fmt.Fprintf(w, "%-25s %-11s", c.name(), t.name)
			for _, col := range cols {
				fmt.Fprintf(w, " %11.3f", median(byCol[col]))
			}
			fmt.Fprintln(w)
		}
	}
}
