package proxy

import (
	"math"

	"github.com/cacheproxy/cacheproxy/proxy/memcache"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// TTL jitter (hot_keys.ttl_jitter, docs/hotkeys.md): with hot keys on and a
// jitter j > 0, the relative expiry of every set-type write a client sends
// on the shared connections is multiplied by a factor drawn uniformly from
// [1-j, 1+j] and rounded, so that keys written together do not all expire
// together. memcached: the exptime of set, add, replace and cas, and the T
// flag of ms (not in append or prepend mode), when from 1 to 30 days (a
// larger exptime is a unix time, 0 never expires, a negative one expires at
// once: all left alone); the result stays within [1, 30 days]. Redis: SET's
// EX or PX, SETEX, PSETEX. Each event loop draws from its own generator
// (loop.jrand), so there is no lock and no shared state.

// maxRespTTL is the largest Redis expiry (seconds or milliseconds) that is
// spread: far beyond any cache TTL (35 years in milliseconds), and small
// enough that 1.5 times it is still an expiry Redis accepts.
const maxRespTTL = 1 << 40

// ttlJitter returns the share by which pr spreads set expiries: its
// hot_keys.ttl_jitter when hot keys are on, else 0.
func (pr *poolRT) ttlJitter() float64 {
	if pr.hk == nil {
		return 0
	}
	return pr.cfg.HotKeys.TTLJitter
}

// spread returns ttl (> 0) times a factor drawn uniformly from [1-j, 1+j),
// rounded, and kept within [1, limit].
func (l *loop) spread(ttl int64, j float64, limit int64) int64 {
	u := float64(l.jrand.Uint64()>>11) * 0x1p-53 // uniform in [0, 1)
	v := int64(math.Round(float64(ttl) * (1 - j + 2*j*u)))
	return min(max(v, 1), limit)
}

// mcTTL returns the expiry to send in place of req's own (see
// memcache.Request.TTL), or 0 to send req as it is.
func (l *loop) mcTTL(pr *poolRT, req *memcache.Request) int64 {
	j := pr.ttlJitter()
	if j <= 0 {
		return 0
	}
	ttl, ok := req.TTL()
	if !ok {
		return 0
	}
	return l.spread(ttl, j, memcache.MaxRelativeTTL)
}

// respTTL returns the index of the argument of req (a write of command
// name) holding a relative expiry and the value to send in its place, or
// i == 0 to send req as it is (see resp.Expiry).
func (l *loop) respTTL(pr *poolRT, name string, req *resp.Request) (i int, ttl int64) {
	j := pr.ttlJitter()
	if j <= 0 {
		return 0, 0
	}
	i, v, _, ok := resp.Expiry(name, req.Args)
	if !ok || v > maxRespTTL {
		return 0, 0
	}
	return i, l.spread(v, j, math.MaxInt64)
}
