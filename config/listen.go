package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// A claimed listen address, for finding two listeners that cannot both bind.
//
// What can bind together is what the kernel allows for the sockets the proxy
// opens. A pool listens on an IPv4 address with an AF_INET socket ("tcp4")
// and on an IPv6 address with an AF_INET6 socket with IPV6_V6ONLY set
// ("tcp6"), as twemproxy does. So 0.0.0.0:P takes port P on every IPv4
// address and [::]:P on every IPv6 address, and two pools can listen on both.
// The admin and stats listeners are Go's net.Listen("tcp"), which opens a
// wildcard (0.0.0.0 or ::) as one dual-stack IPv6 socket: it takes port P on
// every IPv4 and IPv6 address. An IPv4-mapped IPv6 address
// (::ffff:127.0.0.1) is the IPv4 address to both. A host name is compared by name only here:
// CheckHosts resolves it.
type claim struct {
	who      string // `pool "a"` or "admin.listen", for messages
	addr     string // as given (normalised by ParseListen)
	network  string // "tcp" or "unix"
	path     string // unix: the cleaned socket path
	host     string // tcp: the host, lower-cased, when it is a name
	ip       netip.Addr
	port     int
	goNet    bool   // opened with Go's net.Listen (admin, stats)
	resolved string // the address a host name resolved to, for messages
}

// newClaim describes l; goNet says it is opened with Go's net.Listen.
func newClaim(who string, l ListenAddr, goNet bool) claim {
	c := claim{who: who, addr: l.Addr, network: l.Network, goNet: goNet}
	if l.Network == "unix" {
		c.path = filepath.Clean(l.Addr)
		return c
	}
	host, port, err := splitHostPort(l.Addr)
	if err != nil {
		return c // ParseListen accepted it, so this does not happen
	}
	c.port, _ = strconv.Atoi(port)
	if ip, err := netip.ParseAddr(host); err == nil {
		c.ip = ip.Unmap()
	} else {
		c.host = strings.ToLower(host)
	}
	return c
}

// covers reports whether c's socket takes its port on address ip; dual says
// a wildcard is dual-stack.
func (c claim) covers(ip netip.Addr, dual bool) bool {
	switch {
	case !c.ip.IsValid():
		return false
	case c.ip.IsUnspecified() && dual:
		return true
	case c.ip.IsUnspecified():
		return c.ip.Is4() == ip.Is4()
	}
	return c.ip == ip
}

// conflict reports whether c and o cannot both bind, and, when a wildcard
// is the reason, why in words.
func (c claim) conflict(o claim) (bool, string) {
	if c.network != o.network {
		return false, ""
	}
	if c.network == "unix" {
		return c.path == o.path, ""
	}
	if c.port != o.port {
		return false, ""
	}
	if !c.ip.IsValid() || !o.ip.IsValid() {
		return c.host != "" && c.host == o.host, ""
	}
	if c.ip == o.ip {
		return true, ""
	}
	if !c.covers(o.ip, c.goNet) && !o.covers(c.ip, o.goNet) {
		return false, ""
	}
	return true, wildcardWhy(c, o)
}

// wildcardWhy explains a conflict that involves a wildcard address.
func wildcardWhy(a, b claim) string {
	w := a
	if !w.ip.IsUnspecified() || !w.goNet && b.ip.IsUnspecified() && b.goNet {
		w = b
	}
	switch {
	case w.goNet:
		return fmt.Sprintf("%s opens %s dual-stack: it binds the port on every IPv4 and IPv6 address", w.who, w.label())
	case w.ip.Is4():
		return fmt.Sprintf("%s binds the port on every IPv4 address", w.label())
	}
	return fmt.Sprintf("%s binds the port on every IPv6 address", w.label())
}

// claims collects listen addresses and reports each that cannot bind
// alongside one claimed before it.
type claims struct {
	// report is told about each conflict.
	report func(pool, key, reason string)
	// onlyResolved limits reports to pairs where a side is a host name
	// that was looked up (the others were reported already).
	onlyResolved bool
	seen         []claim
}

func (cs *claims) add(pool, key string, c claim) {
	for _, o := range cs.seen {
		if cs.onlyResolved && c.resolved == "" && o.resolved == "" {
			continue
		}
		clash, why := c.conflict(o)
		if !clash {
			continue
		}
		switch {
		case why != "":
			cs.report(pool, key, fmt.Sprintf("%s overlaps %s, the listen address of %s (%s)", c.label(), o.label(), o.who, why))
		case c.addr == o.addr:
			cs.report(pool, key, fmt.Sprintf("%s is also the listen address of %s", c.addr, o.who))
		default:
			cs.report(pool, key, fmt.Sprintf("%s is the same address as %s, the listen address of %s", c.label(), o.label(), o.who))
		}
		return
	}
	cs.seen = append(cs.seen, c)
}

// resolve gives c, whose host is a name, the address addrs[0..] the
// listener would bind: the first IPv4 address, else the first, as Go's
// resolver picks for "tcp" (gnet and net.Listen both use it).
func (c *claim) resolve(addrs []string) {
	var first, v4 netip.Addr
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		if !first.IsValid() {
			first = ip
		}
		if ip.Is4() && !v4.IsValid() {
			v4 = ip
		}
	}
	if v4.IsValid() {
		first = v4
	}
	if first.IsValid() {
		c.ip, c.host, c.resolved = first, "", first.String()
	}
}

// label is c's address as given, with what it resolved to.
func (c claim) label() string {
	if c.resolved != "" {
		return c.addr + " (" + c.resolved + ")"
	}
	return c.addr
}

// canonicalListen returns a TCP listen address the way the listeners take
// it: "host:port", an IPv6 host bracketed and no other ("::1:22121", which
// twemproxy accepts, becomes "[::1]:22121"; "[127.0.0.1]:22121" becomes
// "127.0.0.1:22121"). A unix socket address, or one ParseListen refuses, is
// returned unchanged.
func canonicalListen(s string) string {
	if l, err := ParseListen(s); err == nil && l.Network == "tcp" {
		return l.Addr
	}
	return s
}
