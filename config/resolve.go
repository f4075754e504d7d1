package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Resolver looks up host names; *net.Resolver implements it. Tests pass a
// fake so they do not depend on the machine's DNS.
type Resolver interface {
	// LookupHost returns the addresses of host. It must return soon after
	// ctx is done.
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DefaultHostCheckTimeout bounds CheckHosts as cacheproxy calls it (for -t
// and at start): every name is looked up in parallel within it.
const DefaultHostCheckTimeout = 2 * time.Second

// maxLookups is how many names CheckHosts looks up at once.
const maxLookups = 16

// CheckHosts looks up every host name among c's listen addresses, servers
// and replicas, in parallel, until ctx is done (the caller bounds it; see
// DefaultHostCheckTimeout), and returns a Warning for each name that does
// not resolve, naming the pool, the server and the resolver's error. IP
// addresses and unix sockets are not looked up. If r is nil,
// net.DefaultResolver is used.
//
// A listen host name that resolves to an address another listener takes
// (localhost:P beside 127.0.0.1:P) is reported too.
//
// These are warnings, not problems: DNS may be different where and when the
// proxy runs (twemproxy's -t does not look names up at all). A server whose
// name does not resolve fails every request routed to it until it does; a
// pool whose listen name does not resolve cannot start.
func (c *Config) CheckHosts(ctx context.Context, r Resolver) []Warning {
	if r == nil {
		r = net.DefaultResolver
	}
	type use struct {
		host, pool, key, what string
	}
	var uses []use
	index := map[string]int{} // host (lower case) -> its index in hosts
	var hosts []string
	note := func(addr string, u use) {
		host, _, err := splitHostPort(addr)
		if err != nil || strings.HasPrefix(addr, "/") {
			return // a unix socket, or reported by Validate
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return
		}
		u.host = strings.ToLower(host)
		if _, seen := index[u.host]; !seen {
			index[u.host] = len(hosts)
			hosts = append(hosts, u.host)
		}
		uses = append(uses, u)
	}
	for _, s := range []struct{ key, listen string }{{"admin.listen", c.Admin.Listen}, {"stats.listen", c.Stats.Listen}} {
		if s.listen != "" {
			note(s.listen, use{pool: "", key: s.key, what: "listen"})
		}
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		if !strings.HasPrefix(p.Listen, "/") {
			note(p.Listen, use{pool: p.Name, key: "listen", what: "listen"})
		}
		for j, s := range p.Servers {
			key := fmt.Sprintf("servers[%d]", j)
			if s.Network == "tcp" && !s.Followed() {
				note(s.Addr, use{pool: p.Name, key: key, what: fmt.Sprintf("server %q", s.Name)})
			}
			for _, rep := range s.Replicas {
				if rep.Network == "tcp" {
					note(rep.Addr, use{pool: p.Name, key: key + ".replicas", what: fmt.Sprintf("server %q replica %s", s.Name, rep.Name)})
				}
			}
		}
	}

	failed := make([]error, len(hosts))
	found := make([][]string, len(hosts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxLookups)
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A free slot is taken even when the deadline has passed
			// meanwhile (a goroutine scheduled late on a loaded machine
			// still asks: a resolver that answers at once is not
			// reported as timed out); only waiting for one is bounded.
			select {
			case sem <- struct{}{}:
			default:
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					failed[i] = ctx.Err()
					return
				}
			}
			defer func() { <-sem }()
			addrs, err := r.LookupHost(ctx, h)
			if err == nil && len(addrs) == 0 {
				err = errors.New("no addresses")
			}
			failed[i], found[i] = err, addrs
		}()
	}
	wg.Wait()

	var warns []Warning
	for _, u := range uses {
		err := failed[index[u.host]]
		if err == nil {
			continue
		}
		why := "does not resolve"
		var dnsErr *net.DNSError
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || (errors.As(err, &dnsErr) && dnsErr.IsTimeout) {
			why = "was not resolved in the time allowed"
		}
		effect := "requests to it fail until it resolves"
		if u.what == "listen" {
			effect = "the listener cannot start until it resolves"
		}
		reason := fmt.Sprintf("host %q %s (%s): %v", u.host, why, effect, err)
		if u.what != "listen" {
			reason = u.what + ": " + reason
		}
		warns = append(warns, Warning{File: c.File, Line: c.pos.line(u.pool, u.key), Pool: u.pool, Key: u.key, Reason: reason})
	}

	// A listen name that resolves may land on an address another listener
	// takes; the listener would not start.
	cs := &claims{onlyResolved: true, report: func(pool, key, reason string) {
		warns = append(warns, Warning{File: c.File, Line: c.pos.line(pool, key), Pool: pool, Key: key,
			Reason: reason + ": the listener cannot start while the name resolves so"})
	}}
	listen := func(pool, key, who, addr string, goNet bool) {
		l, err := ParseListen(addr)
		if err != nil {
			return
		}
		cl := newClaim(who, l, goNet)
		if i, ok := index[cl.host]; ok && cl.host != "" && failed[i] == nil {
			cl.resolve(found[i])
		}
		cs.add(pool, key, cl)
	}
	for _, s := range []struct{ key, listen string }{{"admin.listen", c.Admin.Listen}, {"stats.listen", c.Stats.Listen}} {
		if s.listen != "" {
			listen("", s.key, s.key, s.listen, true)
		}
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		listen(p.Name, "listen", fmt.Sprintf("pool %q", p.Name), p.Listen, false)
	}

	slices.SortStableFunc(warns, func(a, b Warning) int { return byLine(a.Line, b.Line) })
	return warns
}
