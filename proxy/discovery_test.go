package proxy_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/discovery"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// discoveryPool is a memcache pool with no configured server that follows
// endpoint every interval.
func discoveryPool(t *testing.T, endpoint string, interval time.Duration) config.Pool {
	p := proxytest.MemcachePool(t, "ec")
	p.Discovery = config.Discovery{Endpoint: endpoint, Interval: interval}
	return p
}

// discoveryState returns the pool's discovery stats and its servers as
// name=addr, in ring order.
func discoveryState(p *proxy.Proxy) (proxy.DiscoveryStats, []string) {
	for _, ps := range p.Stats() {
		if ps.Name == "ec" {
			var srv []string
			for _, s := range ps.Servers {
				srv = append(srv, s.Name+"="+s.Addr)
			}
			return ps.Discovery, srv
		}
	}
	return proxy.DiscoveryStats{}, nil
}

// waitServers polls until the pool's servers are want, failing after
// within; it returns how long that took.
func waitServers(t *testing.T, p *proxy.Proxy, within time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, got := discoveryState(p)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("servers %q after %v; want %q", got, within, want)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestDiscoveryFollowsNodes: the endpoint's cluster moves from 3 to 4 to 2
// memcached nodes under load; the ring follows each version within one
// interval (plus slack), no client sees an error, the connections to nodes
// in both lists are kept, and an endpoint that goes down leaves the last
// list serving.
func TestDiscoveryFollowsNodes(t *testing.T) {
	var mcs []*testserver.Process
	for range 4 {
		mcs = append(mcs, testserver.Memcached(t))
	}
	node := func(i int) string { return testserver.Node(fmt.Sprintf("node%d.example", i+1), mcs[i]) }
	server := func(i int) string { return fmt.Sprintf("node%d.example=%s", i+1, mcs[i].Addr) }
	ep := testserver.NewConfigEndpoint(t, false)
	ep.SetNodes(node(0), node(1), node(2))
	const interval = time.Second
	// One interval for the next ask, plus 3s for a loaded 2-core box to
	// dial, parse and publish (the ask itself takes a millisecond).
	const within = interval + 3*time.Second
	pc := discoveryPool(t, ep.Addr, interval)
	p := proxytest.Start(t, proxy.Options{Loops: 2}, pc)
	waitServers(t, p, within, server(0), server(1), server(2))
	idle := statValue(t, mcs[3].Addr, "curr_connections")

	st, stop := startLoad(t, pc.Listen, 16, false)
	st.waitOps(t, 500) // every loop has dialed every node by now
	before := dials(p, "ec")

	v := ep.SetNodes(node(0), node(1), node(2), node(3))
	took := waitServers(t, p, within, server(0), server(1), server(2), server(3))
	t.Logf("3 -> 4 nodes: ring followed in %v", took)
	st.waitOps(t, 500)
	if d, _ := discoveryState(p); d.Version != v || d.Nodes != 4 || d.Changes != 2 {
		t.Fatalf("discovery stats %+v; want version %d, 4 nodes, 2 changes", d, v)
	}
	if items := statValue(t, mcs[3].Addr, "curr_items"); items == 0 {
		t.Errorf("fourth node: no item stored after it joined")
	}

	ep.SetNodes(node(1), node(3))
	took = waitServers(t, p, within, server(1), server(3))
	t.Logf("4 -> 2 nodes: ring followed in %v", took)
	st.waitOps(t, 500)

	// Down: the last good list keeps serving, the errors are counted.
	ep.SetDown(true)
	errs := func() int64 { d, _ := discoveryState(p); return d.Errors }
	testserver.WaitFor(t, 2*within, "two failed asks", func() error {
		if n := errs(); n < 2 {
			return fmt.Errorf("%d discovery errors", n)
		}
		return nil
	})
	st.waitOps(t, 500)
	waitServers(t, p, 0, server(1), server(3))
	ep.SetDown(false)
	// A reload of the pool (another timeout) keeps the discovered nodes.
	pc2 := pc
	pc2.Timeout = 2 * proxytest.PoolTimeout
	if err := p.Reload(&config.Config{Pools: []config.Pool{pc2}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitServers(t, p, 0, server(1), server(3))
	st.waitOps(t, 500)
	stop()
	st.check(t)

	after := dials(p, "ec")
	// Node 2 was in every list: its connections were kept, never redialled.
	if before["node2.example"] == 0 || after["node2.example"] != before["node2.example"] {
		t.Errorf("dials to node2.example: %d before the changes, %d after; want the same", before["node2.example"], after["node2.example"])
	}
	// Nodes 1 and 3 left: the proxy's connections to it close once their replies
	// are in.
	for _, i := range []int{0, 2} {
		testserver.WaitFor(t, proxytest.Timeout, fmt.Sprintf("node %d's connections closed", i+1), func() error {
			if n := statValue(t, mcs[i].Addr, "curr_connections"); n != idle {
				return fmt.Errorf("%d connections, want %d", n, idle)
			}
			return nil
		})
	}
}

// TestDiscoveryBeforeFirstAnswer: a discovery pool without servers fails
// requests at once with a SERVER_ERROR that says why until the endpoint
// answers, then serves.
func TestDiscoveryBeforeFirstAnswer(t *testing.T) {
	mc := testserver.Memcached(t)
	ep := testserver.NewConfigEndpoint(t, true) // pre-1.4.14: the fallback key
	pc := discoveryPool(t, ep.Addr, 100*time.Millisecond)
	p := proxytest.StartListening(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pc}})
	if p.Ready() {
		t.Fatal("ready before the discovery pool has a server")
	}
	c := proxytest.Dial(t, pc.Listen)
	want := "SERVER_ERROR no servers yet: waiting for the first answer of discovery endpoint " + ep.Addr + "\r\n"
	c.RoundTrip("get k\r\n", want)
	c.RoundTrip("set k 0 0 1\r\nv\r\n", want)
	c.RoundTrip("version\r\n", "VERSION "+proxy.Version+"\r\n")
	testserver.WaitFor(t, proxytest.Timeout, "a failed ask counted", func() error {
		if d, _ := discoveryState(p); d.Errors == 0 || !d.Enabled {
			return fmt.Errorf("discovery stats %+v", d)
		}
		return nil
	})
	ep.SetNodes(testserver.Node("only.example", mc))
	waitServers(t, p, proxytest.Timeout, "only.example="+mc.Addr)
	if !p.Ready() {
		t.Fatal("not ready once the discovery pool has its node")
	}
	c.RoundTrip("set k 0 0 1\r\nv\r\n", "STORED\r\n")
	c.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
	// A malformed answer later: the last good list stays.
	ep.SetBody("7\nbroken\n")
	n := ep.Asks()
	testserver.WaitFor(t, proxytest.Timeout, "two more asks", func() error {
		if ep.Asks() < n+2 {
			return fmt.Errorf("%d asks", ep.Asks())
		}
		return nil
	})
	waitServers(t, p, 0, "only.example="+mc.Addr)
	c.RoundTrip("get k\r\n", "VALUE k 0 1\r\n", "v\r\n", "END\r\n")
}

// TestProxyAnswersClusterConfig: a client asking the proxy for the cluster
// (either form) gets the proxy itself as the only node, version 1, in the
// ElastiCache byte format, and a discovery client's parser accepts it.
func TestProxyAnswersClusterConfig(t *testing.T) {
	mc := testserver.Memcached(t)
	pc := proxytest.MemcachePool(t, "mc", mc)
	port := pc.Listen[strings.LastIndexByte(pc.Listen, ':')+1:]
	named := proxytest.MemcachePool(t, "named", mc)
	named.Listen = "localhost:" + fmt.Sprint(testserver.FreePort(t))
	nport := named.Listen[strings.LastIndexByte(named.Listen, ':')+1:]
	proxytest.Start(t, proxy.Options{Loops: 1}, pc, named)

	c := proxytest.Dial(t, pc.Listen)
	body := "1\n127.0.0.1|127.0.0.1|" + port + "\n"
	for _, tc := range []struct{ ask, head string }{
		{"config get cluster\r\n", "CONFIG cluster 0 "},
		{"get AmazonElastiCache:cluster\r\n", "VALUE AmazonElastiCache:cluster 0 "},
	} {
		want := fmt.Sprintf("%s%d\r\n%s\r\nEND\r\n", tc.head, len(body), body)
		c.Send(tc.ask)
		if got := c.ReadN(len(want)); got != want {
			t.Fatalf("%q: got %q; want %q", tc.ask, got, want)
		}
	}
	// The server's reply is still its own for other keys.
	c.RoundTrip("get AmazonElastiCache:other\r\n", "END\r\n")

	// A listener named by host name: the node carries that name.
	for _, legacy := range []bool{false, true} {
		nc := proxytest.Dial(t, named.Listen)
		if legacy {
			nc.Send("get AmazonElastiCache:cluster\r\n")
		} else {
			nc.Send("config get cluster\r\n")
		}
		cl, err := discovery.ReadAnswer(nc.R)
		if err != nil {
			t.Fatalf("legacy %v: %v", legacy, err)
		}
		if cl.Version != 1 || len(cl.Nodes) != 1 || cl.Nodes[0].Host != "localhost" || cl.Nodes[0].Addr() != cl.Nodes[0].IP+":"+nport {
			t.Fatalf("legacy %v: %+v; want version 1, one node localhost|<ip>|%s", legacy, cl, nport)
		}
	}
	// And discovery.Fetch, as a client library would ask, gets the same.
	cl, err := discovery.Fetch(t.Context(), pc.Listen, 5*time.Second, nil)
	if err != nil || cl.Version != 1 || len(cl.Nodes) != 1 || cl.Nodes[0].Addr() != pc.Listen {
		t.Fatalf("Fetch: %+v, %v", cl, err)
	}
}

// TestDiscoveryNamesByHost: a node's ring name is its host name, so a node
// whose address changes keeps its keys' placement: the keys another node
// holds stay there, those of the moved node go to its new address.
func TestDiscoveryNamesByHost(t *testing.T) {
	a, b, moved := testserver.Memcached(t), testserver.Memcached(t), testserver.Memcached(t)
	ep := testserver.NewConfigEndpoint(t, false)
	ep.SetNodes(testserver.Node("a.example", a), testserver.Node("b.example", b))
	pc := discoveryPool(t, ep.Addr, 100*time.Millisecond)
	p := proxytest.StartListening(t, proxy.Options{Loops: 1}, &config.Config{Pools: []config.Pool{pc}})
	waitServers(t, p, proxytest.Timeout, "a.example="+a.Addr, "b.example="+b.Addr)
	c := proxytest.Dial(t, pc.Listen)
	const n = 200
	setAll := func() {
		for i := range n {
			c.RoundTrip(fmt.Sprintf("set key:%d 0 0 1\r\nx\r\n", i), "STORED\r\n")
		}
	}
	holds := func(s *testserver.Process) map[int]bool {
		d := proxytest.Dial(t, s.Addr)
		defer d.C.Close()
		out := map[int]bool{}
		for i := range n {
			d.Send(fmt.Sprintf("get key:%d\r\n", i))
			if keys, _ := d.ReadGet(); len(keys) == 1 {
				out[i] = true
			}
		}
		return out
	}
	setAll()
	onA, onB := holds(a), holds(b)
	if len(onA)+len(onB) != n || len(onA) == 0 || len(onB) == 0 {
		t.Fatalf("%d keys on a, %d on b; want %d in all, some on each", len(onA), len(onB), n)
	}
	// a.example moves to another address (a replaced node, a new IP).
	ep.SetNodes(testserver.Node("a.example", moved), testserver.Node("b.example", b))
	waitServers(t, p, proxytest.Timeout, "a.example="+moved.Addr, "b.example="+b.Addr)
	setAll()
	if got := holds(moved); fmt.Sprint(got) != fmt.Sprint(onA) {
		t.Errorf("moved node holds %d keys; want exactly the %d a.example held", len(got), len(onA))
	}
	if got := holds(b); fmt.Sprint(got) != fmt.Sprint(onB) {
		t.Errorf("b.example holds %d keys; want the same %d as before", len(got), len(onB))
	}
}

// TestDiscoveryTLS: an ElastiCache cluster with in-transit encryption. The
// configuration endpoint and the nodes speak TLS only, with a certificate
// for host names and no IP address; the nodes are dialled at their IP and
// verified by the host name the endpoint gave. A node whose certificate
// does not carry its name is not served.
func TestDiscoveryTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	cert, key := filepath.Join(pki.Dir, "names.crt"), filepath.Join(pki.Dir, "names.key")
	pki.IssueServerNames(cert, key, "localhost", "node1.cache.test", "node2.cache.test")
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	mcs := []*testserver.Process{testserver.MemcachedTLSCert(t, cert, key), testserver.MemcachedTLSCert(t, cert, key)}
	ep := testserver.NewConfigEndpointTLS(t, false, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	ep.SetNodes(testserver.Node("node1.cache.test", mcs[0]), testserver.Node("node2.cache.test", mcs[1]))
	_, port, _ := net.SplitHostPort(ep.Addr)
	// The endpoint by name, as an ElastiCache configuration endpoint is.
	pc := discoveryPool(t, net.JoinHostPort("localhost", port), time.Second)
	pc.ServerTLS = config.ServerTLS{Enabled: true, CAFile: pki.CAFile}
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pc)
	waitServers(t, p, 5*time.Second, "node1.cache.test="+mcs[0].Addr, "node2.cache.test="+mcs[1].Addr)

	c := proxytest.Dial(t, pc.Listen)
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		c.RoundTrip("set "+k+" 0 0 1\r\nv\r\n", "STORED\r\n")
		c.RoundTrip("get "+k+"\r\n", "VALUE "+k+" 0 1\r\n", "v\r\n", "END\r\n")
	}
	for _, s := range p.Stats() {
		for _, srv := range s.Servers {
			if srv.Requests == 0 {
				t.Errorf("%s: no request served; want both nodes used", srv.Name)
			}
		}
	}

	// A node known by a name its certificate lacks: every request to it
	// fails, none is served in plaintext or unverified.
	ep.SetNodes(testserver.Node("other.cache.test", mcs[0]))
	waitServers(t, p, 5*time.Second, "other.cache.test="+mcs[0].Addr)
	c.Send("get k0\r\n")
	if line := c.Line(); !strings.HasPrefix(line, "SERVER_ERROR") {
		t.Fatalf("get from a node whose certificate does not name it: got %q; want SERVER_ERROR", line)
	}
}
