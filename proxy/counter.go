package proxy

import "sync/atomic"

// counter is a statistics counter. Each is written by one event loop and
// read by Stats from any goroutine, so an uncontended atomic add is all the
// hot path pays. Built with -tags nometrics, Add does nothing: that build
// exists only to measure what the counters cost (see docs/benchmarks.md).
type counter struct{ v atomic.Int64 }

// Add adds n.
func (c *counter) Add(n int64) {
	if countersOn {
		c.v.Add(n)
	}
}

// Load returns the current value.
func (c *counter) Load() int64 { return c.v.Load() }
