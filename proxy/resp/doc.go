// Package resp is cacheproxy's Redis protocol codec: an incremental RESP2
// request parser (multibulk and inline commands) that slices arguments out of
// the client's input without copying, a reply framer that finds where each
// backend reply ends (RESP2 and RESP3 types, iteratively), the encoders every
// proxy reply goes through, and the Redis 7 command table with arity, flags,
// key positions and the proxy's routing class for every command.
//
// The package works on []byte only; it knows nothing of connections, so it
// can be fuzzed, benchmarked and reused by the load generator.
//
// The command table is generated from a real redis-server's COMMAND output by
// internal/gencmds (go generate ./proxy/resp); routing classes are assigned
// by hand in classes.go.
package resp
