// Package soak holds the soak test (soak_test.go): the built cacheproxy
// binary under hours-shaped, verified, mixed load against real memcached
// and redis-server processes, with backends killed (SIGKILL) and restarted
// on a schedule, while the proxy's resident memory, goroutines and open
// file descriptors are sampled. `make soak` runs it for SOAK (default 10m);
// `go test` runs a short version that exercises the same mechanism. See
// docs/testing.md.
package soak
