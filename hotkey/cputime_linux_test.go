package hotkey

import (
	"syscall"
	"time"
)

// threadCPU is the calling thread's CPU time (user + system). Benchmarks
// report it per op beside the wall time, which on a loaded machine also
// counts the time other processes held the CPU.
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
