package main

import (
	"fmt"
	"syscall"
)

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit, so the proxy
// may hold as many connections as the system lets it, and returns the soft
// limit it found, the soft limit now and the hard limit. Go (1.19 and later)
// already does this when a program starts, so before is normally the hard
// limit already; doing it here makes it explicit and lets the start-up log
// say what the proxy has.
func raiseFDLimit() (before, after, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, 0, fmt.Errorf("getrlimit: %w", err)
	}
	before = lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return before, before, lim.Max, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return before, lim.Cur, lim.Max, nil
}
