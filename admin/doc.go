// Package admin serves cacheproxy's operator endpoints, away from the data
// path:
//
//	/metrics ------> statsCollector ---> Source.Stats()   (per-loop atomics,
//	             \                                         summed per scrape)
//	              -> poller (Collect) <-- poll goroutine --> memcached "stats",
//	                                      every PollInterval  Redis "INFO"
//	/healthz, /readyz -----------------> Source.Ready()
//	/debug/pprof/ ---------------------> net/http/pprof (Options.Pprof only)
//	POST /reload ----------------------> Options.Reload (cmd/cacheproxy's reload)
//	stats port (twemproxy JSON) -------> Source.Stats()
//
// Every path but /healthz and /readyz goes through guard (access.go): with
// Options.Token (admin.token) set it needs Authorization: Bearer <token>.
// The token and the pprof switch are swapped whole by SetConfig.
//
// Nothing here runs on the proxy's event loops and nothing is updated by
// them: the data path keeps its own lock-free per-loop counters, and this
// package reads a snapshot of them (Source.Stats) at scrape time. The cost of
// metrics to the hot path is therefore only those counter increments.
//
// /metrics uses its own prometheus.Registry (never the default one) holding
// the proxy's figures, the backend figures, and the Go and process
// collectors, so two Servers can run in one process. Importing net/http/pprof
// registers its handlers on http.DefaultServeMux as a side effect of the
// standard library; this package never serves that mux and registers the
// pprof handlers on its own.
//
// The backend figures collector polls every server (and replica) each
// PollInterval over a short-lived connection of its own, with deadlines:
// memcached "stats" and Redis "INFO" (after AUTH when the pool has
// redis_auth).
//
// The stats port speaks twemproxy's (nutcracker's) protocol: each connection
// gets one JSON document with nutcracker's field names and nesting, then is
// closed. The figures are taken live at each connection, not refreshed every
// stats interval as twemproxy's are.
//
// A configuration reload reaches this package in three calls, made by the
// command: MoveListeners binds the new admin and stats addresses (nothing
// changes yet, and a port that cannot be bound refuses the reload), then
// Move.Commit switches to them (the old ones stop accepting once the
// requests in progress on them are answered) or Move.Abort closes them;
// SetConfig points the backend poller at the new servers; ConfigLoaded and
// CountReload keep the cacheproxy_config_* metrics. The stats document
// follows the pools and servers of Source.Stats, so it needs nothing.
//
// docs/observability.md lists every metric.
package admin
