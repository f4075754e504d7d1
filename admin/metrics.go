package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// namespace prefixes every metric this package defines.
const namespace = "cacheproxy"

// latencyBounds are proxy.LatencyBuckets in seconds.
func latencyBounds() []float64 {
	b := make([]float64, len(proxy.LatencyBuckets))
	for i, d := range proxy.LatencyBuckets {
		b[i] = d.Seconds()
	}
	return b
}

// statsCollector turns Source.Stats() into metrics at scrape time, so the data
// path pays nothing for a metric beyond its own counter increment.
type statsCollector struct {
	src     Source
	version string
	bounds  []float64

	buildInfo, uptime, ready *prometheus.Desc
	memHeld, memLimit        *prometheus.Desc

	// Pool level: {pool} plus class or reason.
	requests, errors, rejected                        *prometheus.Desc
	latency                                           *prometheus.Desc
	bytesIn, bytesOut                                 *prometheus.Desc
	clientConns, clientTotal, clientEOF, clientErrors *prometheus.Desc
	acceptErrors                                      *prometheus.Desc
	fragments, forwardErrors                          *prometheus.Desc
	authFailures                                      *prometheus.Desc
	clientTimeouts                                    *prometheus.Desc // {pool, kind}

	tlsHandshakeErrors *prometheus.Desc // TLS listeners only

	// Hot keys and the near cache: {pool} (invalidations also cause), only
	// for pools with hot_keys enabled.
	nearHits, nearMisses, nearFills, nearInval, nearBytes, nearTrackUp *prometheus.Desc
	nearCoalesced, nearRefreshes                                       *prometheus.Desc
	hkPromotions, hkDemotions                                          *prometheus.Desc

	// Warm-up after a ring change: {pool}, memcache pools with warmup.
	warmHits, warmMisses, warmCopies *prometheus.Desc

	// Server level: {pool, server}.
	srvRequests, srvResponses, srvRequestBytes, srvResponseBytes *prometheus.Desc
	srvLatency                                                   *prometheus.Desc
	srvErrors, srvTimeouts, srvEOF, srvConnErrors                *prometheus.Desc
	srvHits, srvMisses                                           *prometheus.Desc
	srvFragmentErrors                                            *prometheus.Desc
	srvConns, srvInFlight                                        *prometheus.Desc
	srvEjections, srvFailures, srvUp, srvState                   *prometheus.Desc
	failovers                                                    *prometheus.Desc
	discErrors, discChanges, discVersion, discNodes              *prometheus.Desc
	clusterRedirects, clusterRefreshes, clusterErrors            *prometheus.Desc
	clusterChanges, clusterMasters, clusterSlots                 *prometheus.Desc

	// Replicated memcache pools: {pool, server}, one series per copy.
	replDisagree, replAsyncErrors, replReadmittedMisses, replRepairs *prometheus.Desc
}

func newStatsCollector(src Source, version string) *statsCollector {
	p := []string{"pool"}
	ps := []string{"pool", "server"}
	// Per-server metrics: a replica's server label is "server/replica",
	// and role says which (primary or replica).
	psr := []string{"pool", "server", "role"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &statsCollector{
		src:     src,
		version: version,
		bounds:  latencyBounds(),

		buildInfo: d("build_info", "Always 1; the version label is the proxy's version.", []string{"version"}),
		uptime:    d("uptime_seconds", "Seconds since the proxy started.", nil),
		ready:     d("ready", "1 when the proxy is ready (every listener up, every pool has a server not ejected), else 0.", nil),
		memHeld:   d("memory_held_bytes", "Reply bytes the proxy holds now (collected replies, queued output, output clients have not read), counted against max_memory.", nil),
		memLimit:  d("memory_limit_bytes", "max_memory: the most reply bytes the proxy holds before refusing big replies.", nil),

		requests:       d("requests_total", "Client requests by command class (read, write, multi, fanout, local, invalid).", append(p, "class")),
		errors:         d("errors_total", "Client requests answered with a proxy-generated error, by command class.", append(p, "class")),
		rejected:       d("rejected_total", "Requests or clients the proxy refused, by reason (protocol, limit, refused, max_clients, buffer, memory: a reply refused or cut at max_memory).", append(p, "reason")),
		latency:        d("request_duration_seconds", "Client request latency, from parse to the reply being queued to the client.", p),
		bytesIn:        d("client_received_bytes_total", "Bytes received from clients.", p),
		bytesOut:       d("client_sent_bytes_total", "Bytes sent to clients.", p),
		clientConns:    d("client_connections", "Client connections open now.", p),
		clientTotal:    d("client_connections_total", "Client connections accepted.", p),
		clientEOF:      d("client_eof_total", "Client connections closed by the client.", p),
		clientErrors:   d("client_errors_total", "Client connections closed on an error.", p),
		acceptErrors:   d("accept_errors_total", "Client connections the listener failed to accept (out of descriptors, say) or to hand to an event loop.", p),
		fragments:      d("fragments_total", "Fragments sent for multi-key requests split across servers.", p),
		forwardErrors:  d("forward_errors_total", "Requests failed because their server was unavailable.", p),
		clientTimeouts: d("client_timeouts_total", "Client connections closed by a client timeout, by kind: idle (client_idle_timeout) or request (client_request_timeout: a request begun and not finished in time).", append(p, "kind")),
		authFailures:   d("auth_failures_total", "Authentications with a wrong password: Redis AUTH (or HELLO ... AUTH), memcache auth_file sets; a connection is closed after 10 in a row.", p),

		tlsHandshakeErrors: d("tls_handshake_errors_total", "Clients of a TLS listener closed because their TLS handshake failed (plaintext client, missing or unknown client certificate, timeout).", p),

		warmHits:   d("warmup_hits_total", "Warm-up after a ring change: reads that missed on the key's new server and hit on its previous owner (answered from there).", p),
		warmMisses: d("warmup_misses_total", "Warm-up after a ring change: reads that missed on the key's new server and on its previous owner.", p),
		warmCopies: d("warmup_copies_total", "Warm-up after a ring change: items copied from a key's previous owner to its new server (add, remaining TTL kept).", p),

		nearHits:      d("near_cache_hits_total", "Reads of hot keys answered from the near cache (per key of a multi-get).", p),
		nearMisses:    d("near_cache_misses_total", "Reads of hot keys the near cache did not hold, sent to the server.", p),
		nearFills:     d("near_cache_fills_total", "Replies stored in the near cache.", p),
		nearInval:     d("near_cache_invalidations_total", "Near-cache invalidations by cause: write (a write through the proxy, before it is sent), reply (the same write's reply), flush (flush_all, FLUSHDB, FLUSHALL: every key), tracking (a Redis tracking connection's push, or its loss: every key).", append(p, "cause")),
		nearTrackUp:   d("near_cache_tracking_up", "1 while the server's Redis tracking connection is up (the near cache serves its keys only then), else 0.", ps),
		nearCoalesced: d("near_cache_coalesced_total", "Misses of hot keys that waited for a read of the same key already in flight on their loop.", p),
		nearRefreshes: d("near_cache_refreshes_total", "Reads sent to refresh a near-cache entry in the last quarter of its TTL.", p),
		nearBytes:     d("near_cache_bytes", "Bytes the near cache holds now.", p),
		hkPromotions:  d("hotkey_promotions_total", "Keys promoted to hot.", p),
		hkDemotions:   d("hotkey_demotions_total", "Hot keys demoted (their cached replies dropped).", p),

		srvRequests:      d("server_requests_total", "Requests sent to the server.", psr),
		srvResponses:     d("server_responses_total", "Replies received from the server.", psr),
		srvRequestBytes:  d("server_request_bytes_total", "Bytes sent to the server.", psr),
		srvResponseBytes: d("server_response_bytes_total", "Bytes received from the server.", psr),
		srvLatency:       d("server_request_duration_seconds", "Server round-trip latency, from send to reply.", psr),
		srvErrors:        d("server_errors_total", "Requests to the server the proxy failed (server down, connection lost, timeout).", psr),
		srvTimeouts:      d("server_timeouts_total", "Requests to the server that timed out.", psr),
		srvEOF:           d("server_eof_total", "Backend connections closed by the server.", psr),
		srvConnErrors:    d("server_connection_errors_total", "Backend connect failures and I/O errors.", psr),
		srvHits:          d("server_hits_total", "Retrieval keys answered with a value by the server, as seen in its replies.", psr),
		srvMisses:        d("server_misses_total", "Retrieval keys answered with a miss by the server, as seen in its replies.", psr),
		srvFragmentErrors: d("fragment_errors_total", "Fragments of multi-key requests (memcached get/gets/gat/gats, Redis MGET, MSET, DEL...) "+
			"sent to the server that failed (down, timeout, connection lost, error reply): a memcached client got misses for their keys, a Redis client the error.", psr),
		srvConns:         d("server_connections", "Backend connections open now.", psr),
		srvInFlight:      d("server_in_flight", "Requests sent to the server and not yet answered.", psr),
		srvEjections:     d("server_ejections_total", "Times the server was ejected from the ring.", psr),
		discErrors:       d("discovery_errors_total", "Discovery pools: failed asks of the configuration endpoint (unreachable, bad answer); the last good node list keeps serving.", p),
		discChanges:      d("discovery_changes_total", "Discovery pools: node lists applied (a new version of the cluster's configuration that changed the ring or an address).", p),
		discVersion:      d("discovery_config_version", "Discovery pools: configuration version of the endpoint's last good answer (0: none yet).", p),
		discNodes:        d("discovery_nodes", "Discovery pools: nodes in the endpoint's last good answer.", p),
		clusterRedirects: d("cluster_redirects_total", "Redis Cluster pools: -MOVED and -ASK redirects the proxy followed (kind moved or ask); the client never saw them.", append(p, "kind")),
		clusterRefreshes: d("cluster_refreshes_total", "Redis Cluster pools: slot maps read from a node (every cluster_refresh, after a MOVED and after a lost connection).", p),
		clusterErrors:    d("cluster_refresh_errors_total", "Redis Cluster pools: asks for the slot map that no node answered; the last map keeps serving.", p),
		clusterChanges:   d("cluster_changes_total", "Redis Cluster pools: new slot maps applied (a master, replica or slot moved).", p),
		clusterMasters:   d("cluster_masters", "Redis Cluster pools: masters in the last slot map.", p),
		clusterSlots:     d("cluster_slots", "Redis Cluster pools: hash slots with an owner in the last slot map (16384 when whole).", p),
		failovers:        d("failovers_total", "Primary changes of the server the proxy followed (Sentinel or role_check); only for followed servers.", ps),
		srvFailures:      d("server_failures_total", "Failed requests and connection attempts counted against the server (the ejection rule counts consecutive ones).", psr),
		srvUp:            d("server_up", "1 when the server's state is up, 0 when failing or ejected.", psr),
		srvState:         d("server_state", "1 for the server's current state (up, failing, ejected), 0 for the others.", append(psr, "state")),

		replDisagree:         d("replica_disagreements_total", "Replicated memcache pools: writes this copy answered differently from the copy whose reply the client got.", ps),
		replAsyncErrors:      d("replica_async_errors_total", "Replicated memcache pools with write_policy all_async: writes this copy failed after the client had its reply.", ps),
		replReadmittedMisses: d("replica_readmitted_misses_total", "Replicated memcache pools: misses this copy answered since it was last re-admitted after an ejection (it came back empty).", ps),
		replRepairs:          d("replica_read_repairs_total", "Replicated memcache pools with read_repair: of those misses, reads sent again to another copy.", ps),
	}
}

// memorySource is the part of a Source that reports max_memory figures
// (proxy.Proxy does; test fakes need not).
type memorySource interface {
	MemoryHeld() int64
	MemoryLimit() int64
}

var _ memorySource = (*proxy.Proxy)(nil)

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.buildInfo, c.uptime, c.ready, c.memHeld, c.memLimit,
		c.requests, c.errors, c.rejected, c.latency, c.bytesIn, c.bytesOut,
		c.clientConns, c.clientTotal, c.clientEOF, c.clientErrors, c.acceptErrors, c.tlsHandshakeErrors, c.fragments, c.forwardErrors,
		c.authFailures, c.clientTimeouts,
		c.nearHits, c.nearMisses, c.nearFills, c.nearInval, c.nearBytes, c.nearTrackUp, c.hkPromotions, c.hkDemotions,
		c.nearCoalesced, c.nearRefreshes, c.warmHits, c.warmMisses, c.warmCopies,
		c.srvRequests, c.srvResponses, c.srvRequestBytes, c.srvResponseBytes, c.srvLatency,
		c.srvErrors, c.srvTimeouts, c.srvEOF, c.srvConnErrors, c.srvHits, c.srvMisses, c.srvFragmentErrors,
		c.srvConns, c.srvInFlight, c.srvEjections, c.srvFailures, c.srvUp, c.srvState, c.failovers,
		c.discErrors, c.discChanges, c.discVersion, c.discNodes,
		c.clusterRedirects, c.clusterRefreshes, c.clusterErrors, c.clusterChanges, c.clusterMasters, c.clusterSlots,
		c.replDisagree, c.replAsyncErrors, c.replReadmittedMisses, c.replRepairs,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Source.Stats() snapshot per
// scrape.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	gauge(c.buildInfo, 1, c.version)
	gauge(c.uptime, c.src.Uptime().Seconds())
	gauge(c.ready, b2f(c.src.Ready()))
	if m, ok := c.src.(memorySource); ok {
		gauge(c.memHeld, float64(m.MemoryHeld()))
		gauge(c.memLimit, float64(m.MemoryLimit()))
	}
	for _, ps := range c.src.Stats() {
		pn := ps.Name
		for cl := range ps.Requests {
			class := proxy.CmdClass(cl).String()
			counter(c.requests, ps.Requests[cl], pn, class)
			counter(c.errors, ps.Errors[cl], pn, class)
		}
		for r := range ps.Rejected {
			counter(c.rejected, ps.Rejected[r], pn, proxy.RejectReason(r).String())
		}
		ch <- c.histogram(c.latency, &ps.Latency, pn)
		counter(c.bytesIn, ps.BytesIn, pn)
		counter(c.bytesOut, ps.BytesOut, pn)
		gauge(c.clientConns, float64(ps.ClientConnections), pn)
		counter(c.clientTotal, ps.ClientConnectionsTotal, pn)
		counter(c.clientEOF, ps.ClientEOF, pn)
		counter(c.clientErrors, ps.ClientErrors, pn)
		counter(c.acceptErrors, ps.AcceptErrors, pn)
		counter(c.tlsHandshakeErrors, ps.TLSHandshakeErrors, pn)
		counter(c.fragments, ps.Fragments, pn)
		counter(c.forwardErrors, ps.ForwardErrors, pn)
		for k := range ps.ClientTimeouts {
			counter(c.clientTimeouts, ps.ClientTimeouts[k], pn, proxy.TimeoutKind(k).String())
		}
		counter(c.authFailures, ps.AuthFailures, pn)
		if d := &ps.Discovery; d.Enabled {
			counter(c.discErrors, d.Errors, pn)
			counter(c.discChanges, d.Changes, pn)
			gauge(c.discVersion, float64(d.Version), pn)
			gauge(c.discNodes, float64(d.Nodes), pn)
		}
		if k := &ps.Cluster; k.Enabled {
			counter(c.clusterRedirects, k.Moved, pn, "moved")
			counter(c.clusterRedirects, k.Ask, pn, "ask")
			counter(c.clusterRefreshes, k.Refreshes, pn)
			counter(c.clusterErrors, k.Errors, pn)
			counter(c.clusterChanges, k.Changes, pn)
			gauge(c.clusterMasters, float64(k.Masters), pn)
			gauge(c.clusterSlots, float64(k.Covered), pn)
		}
		if nc := &ps.NearCache; nc.Enabled {
			counter(c.nearHits, nc.Hits, pn)
			counter(c.nearMisses, nc.Misses, pn)
			counter(c.nearFills, nc.Fills, pn)
			counter(c.nearCoalesced, nc.Coalesced, pn)
			counter(c.nearRefreshes, nc.Refreshes, pn)
			for i, cause := range proxy.InvalCauses {
				counter(c.nearInval, nc.Invalidations[i], pn, cause)
			}
			gauge(c.nearBytes, float64(nc.Bytes), pn)
			counter(c.hkPromotions, nc.Promotions, pn)
			counter(c.hkDemotions, nc.Demotions, pn)
		}
		if w := &ps.Warmup; w.Enabled || w.Hits+w.Misses > 0 {
			counter(c.warmHits, w.Hits, pn)
			counter(c.warmMisses, w.Misses, pn)
			counter(c.warmCopies, w.Copies, pn)
		}
		for i := range ps.Servers {
			ss := &ps.Servers[i]
			role := ss.Role
			if role == "" {
				role = proxy.RolePrimary
			}
			if ps.NearCache.Enabled && ps.Protocol == "redis" && role == proxy.RolePrimary {
				up := 0.0
				if ss.TrackingUp {
					up = 1
				}
				gauge(c.nearTrackUp, up, pn, ss.Name)
			}
			sn := ss.Name
			counter(c.srvRequests, ss.Requests, pn, sn, role)
			counter(c.srvResponses, ss.Responses, pn, sn, role)
			counter(c.srvRequestBytes, ss.RequestBytes, pn, sn, role)
			counter(c.srvResponseBytes, ss.ResponseBytes, pn, sn, role)
			ch <- c.histogram(c.srvLatency, &ss.Latency, pn, sn, role)
			counter(c.srvErrors, ss.Errors, pn, sn, role)
			counter(c.srvTimeouts, ss.Timeouts, pn, sn, role)
			counter(c.srvEOF, ss.EOF, pn, sn, role)
			counter(c.srvConnErrors, ss.ConnErrors, pn, sn, role)
			counter(c.srvHits, ss.Hits, pn, sn, role)
			counter(c.srvMisses, ss.Misses, pn, sn, role)
			counter(c.srvFragmentErrors, ss.FragmentErrors, pn, sn, role)
			gauge(c.srvConns, float64(ss.Connections), pn, sn, role)
			gauge(c.srvInFlight, float64(ss.InFlight), pn, sn, role)
			counter(c.srvEjections, ss.Ejections, pn, sn, role)
			if ss.Followed {
				counter(c.failovers, ss.Failovers, pn, sn)
			}
			counter(c.srvFailures, ss.Failures, pn, sn, role)
			gauge(c.srvUp, b2f(ss.State == pool.StateUp), pn, sn, role)
			for st := pool.StateUp; st <= pool.StateEjected; st++ {
				gauge(c.srvState, b2f(ss.State == st), pn, sn, role, st.String())
			}
			if ps.Replicated {
				counter(c.replDisagree, ss.Disagreements, pn, sn)
				counter(c.replAsyncErrors, ss.AsyncErrors, pn, sn)
				counter(c.replReadmittedMisses, ss.ReadmittedMisses, pn, sn)
				counter(c.replRepairs, ss.ReadRepairs, pn, sn)
			}
		}
	}
}

// histogram builds a const histogram from a proxy.Histogram, whose counts
// are per bucket (not cumulative) with a last +Inf bucket.
func (c *statsCollector) histogram(d *prometheus.Desc, h *proxy.Histogram, lv ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(c.bounds))
	var cum uint64
	for i, ub := range c.bounds {
		cum += h.Counts[i]
		buckets[ub] = cum
	}
	total := cum + h.Counts[len(c.bounds)]
	return prometheus.MustNewConstHistogram(d, total, h.Sum.Seconds(), buckets, lv...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
