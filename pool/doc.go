// Package pool holds the protocol-agnostic parts of a backend pool: the
// in-flight FIFO that matches a pipelined connection's replies to its
// requests (Queue), and server health with twemproxy's auto_eject_hosts
// rules (Health), improved so that an ejected server is probed before it
// takes keys again.
//
// Connections themselves live on the proxy's event loops (package proxy);
// this package never does network I/O except through the Probe hook a caller
// supplies, and never imports a protocol package.
package pool
