package proxy_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// tlsMemcachePool is a memcache pool over one memcached whose listener
// speaks TLS with pki's server certificate.
func tlsMemcachePool(t *testing.T, pki *testserver.PKI) (config.Pool, *testserver.Process) {
	t.Helper()
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "tls", mc)
	pool.TLS = config.TLS{CertFile: pki.CertFile, KeyFile: pki.KeyFile}
	return pool, mc
}

// waitHandshakeErrors waits until the pool has counted want failed
// handshakes (the server finishes its side after the client has seen the
// alert) and fails if it counts more.
func waitHandshakeErrors(t *testing.T, p *proxy.Proxy, pool string, want int64) {
	t.Helper()
	deadline := time.Now().Add(proxytest.Timeout)
	for handshakeErrors(p, pool) < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter, bounded by deadline
	}
	if n := handshakeErrors(p, pool); n != want {
		t.Fatalf("TLSHandshakeErrors = %d; want %d", n, want)
	}
}

func handshakeErrors(p *proxy.Proxy, pool string) int64 {
	for _, ps := range p.Stats() {
		if ps.Name == pool {
			return ps.TLSHandshakeErrors
		}
	}
	return -1
}

// TestTLSMemcacheClientSetGet: a crypto/tls client stores and reads back a
// value through a TLS memcache pool; the value is on the memcached itself.
func TestTLSMemcacheClientSetGet(t *testing.T) {
	pki := testserver.NewPKI(t)
	pool, mc := tlsMemcachePool(t, pki)
	proxytest.Start(t, proxy.Options{}, pool)

	c := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(false))
	c.RoundTrip("set tlskey 0 0 5\r\nhello\r\n", "STORED\r\n")
	c.RoundTrip("get tlskey\r\n", "VALUE tlskey 0 5\r\n", "hello\r\n", "END\r\n")
	// A value larger than one TLS record crosses the bridge in pieces.
	big := strings.Repeat("x", 100_000)
	c.RoundTrip(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(big), big), "STORED\r\n")
	c.Send("get big\r\n")
	c.Expect(fmt.Sprintf("VALUE big 0 %d\r\n", len(big)))
	if got := c.ReadN(len(big) + 2); got != big+"\r\n" {
		t.Fatalf("big value through TLS: got %d bytes, want %d", len(got), len(big)+2)
	}
	c.Expect("END\r\n")
	if v, ok := directGet(t, mc.Addr, "tlskey"); !ok || v != "hello" {
		t.Fatalf("memcached has tlskey = %q, %v; want \"hello\", true", v, ok)
	}
	// A client that half-closes after a pipelined batch gets every reply.
	c.Send("get tlskey\r\nget tlskey\r\n")
	if err := c.C.(*tls.Conn).CloseWrite(); err != nil {
		t.Fatalf("close_notify: %v", err)
	}
	c.Expect("VALUE tlskey 0 5\r\n", "hello\r\n", "END\r\n", "VALUE tlskey 0 5\r\n", "hello\r\n", "END\r\n")
}

// TestTLSPlaintextClientStoresNothing: a plaintext client on a TLS listener
// is closed without being served; the set never reaches memcached.
func TestTLSPlaintextClientStoresNothing(t *testing.T) {
	pki := testserver.NewPKI(t)
	pool, mc := tlsMemcachePool(t, pki)
	p := proxytest.Start(t, proxy.Options{}, pool)

	c := proxytest.Dial(t, pool.Listen)
	c.Send("set plain 0 0 5\r\nhello\r\nget plain\r\n")
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	got, err := io.ReadAll(c.R)
	if err != nil {
		t.Fatalf("reading until the proxy closes: %v (got %q)", err, got)
	}
	if strings.Contains(string(got), "STORED") || strings.Contains(string(got), "VALUE") {
		t.Fatalf("plaintext client on a TLS listener was served: %q", got)
	}
	if v, ok := directGet(t, mc.Addr, "plain"); ok {
		t.Fatalf("memcached has plain = %q; a plaintext client must store nothing", v)
	}
	waitHandshakeErrors(t, p, "tls", 1)
}

// TestTLSMutualClientCertificate: with client_ca_file, a client without a
// certificate is refused and stores nothing; one with a certificate the CA
// signed is served.
func TestTLSMutualClientCertificate(t *testing.T) {
	pki := testserver.NewPKI(t)
	pool, mc := tlsMemcachePool(t, pki)
	pool.TLS.ClientCAFile = pki.CAFile
	p := proxytest.Start(t, proxy.Options{}, pool)

	// Without a certificate. Under TLS 1.3 the client's handshake may
	// complete before the server has checked its (missing) certificate:
	// the refusal then arrives as an alert on the first read.
	nc, err := proxytest.DialTLSErr(pool.Listen, pki.ClientConfig(false))
	if err == nil {
		_, _ = io.WriteString(nc, "set mtls 0 0 5\r\nhello\r\n")
		_ = nc.SetReadDeadline(time.Now().Add(proxytest.Timeout))
		var got []byte
		got, err = io.ReadAll(nc)
		nc.Close()
		if len(got) > 0 {
			t.Fatalf("client without a certificate: read %q; want no data and a TLS alert", got)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("client without a certificate: %v; want the certificate required alert", err)
	}
	if _, ok := directGet(t, mc.Addr, "mtls"); ok {
		t.Fatal("a client without a certificate stored a value")
	}
	waitHandshakeErrors(t, p, "tls", 1)

	c := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(true))
	c.RoundTrip("set mtls 0 0 5\r\nhello\r\n", "STORED\r\n")
	if v, ok := directGet(t, mc.Addr, "mtls"); !ok || v != "hello" {
		t.Fatalf("memcached has mtls = %q, %v; want \"hello\", true", v, ok)
	}

	// A certificate from another CA is refused too.
	other := testserver.NewPKI(t)
	cfg := pki.ClientConfig(false)
	cfg.Certificates = other.ClientConfig(true).Certificates
	oc, err := proxytest.DialTLSErr(pool.Listen, cfg)
	if err == nil { // TLS 1.3: the refusal comes on the first read
		_ = oc.SetReadDeadline(time.Now().Add(proxytest.Timeout))
		_, err = oc.Read(make([]byte, 1))
		oc.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("client certificate from another CA: %v; want the unknown certificate authority alert", err)
	}
	waitHandshakeErrors(t, p, "tls", 2)
}

// TestTLSRedisPoolToTLSOnlyServer: plaintext clients reach a TLS-only
// redis-server (no plaintext port) through a Redis pool with server_tls,
// with and without a client certificate required by the server.
func TestTLSRedisPoolToTLSOnlyServer(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth_clients=%v", mutual), func(t *testing.T) {
			pki := testserver.NewPKI(t)
			rs := testserver.RedisTLS(t, pki, mutual)
			pool := proxytest.RedisPool(t, "rtls", rs)
			pool.ServerTLS = config.ServerTLS{Enabled: true, CAFile: pki.CAFile}
			if mutual {
				pool.ServerTLS.CertFile, pool.ServerTLS.KeyFile = pki.ClientCertFile, pki.ClientKeyFile
			}
			proxytest.Start(t, proxy.Options{}, pool)

			c := proxytest.Dial(t, pool.Listen)
			c.RoundTrip("SET tk viatls\r\n", "+OK\r\n")
			c.RoundTrip("GET tk\r\n", "$6\r\n", "viatls\r\n")
			c.RoundTrip("INCR n\r\nINCR n\r\n", ":1\r\n", ":2\r\n")

			// The value is on the server, read over TLS directly.
			d := proxytest.DialTLS(t, rs.Addr, pki.ClientConfig(true))
			d.RoundTrip("GET tk\r\n", "$6\r\n", "viatls\r\n")
			// The server has no plaintext port at all: a plaintext
			// connection to its TLS port is not served.
			pc := proxytest.Dial(t, rs.Addr)
			pc.Send("PING\r\n")
			_ = pc.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
			if got, _ := io.ReadAll(pc.R); strings.Contains(string(got), "PONG") {
				t.Fatalf("redis-server answered plaintext on its TLS port: %q", got)
			}
		})
	}
}

// TestTLSRedisProbeUsesTLS: a TLS-only server that is killed, ejected and
// started again is re-admitted, which takes a health probe that speaks
// TLS (a plaintext PING gets no PONG from it).
func TestTLSRedisProbeUsesTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	r1, r2 := testserver.RedisTLS(t, pki, false), testserver.RedisTLS(t, pki, false)
	pl := proxytest.RedisPool(t, "rtls", r1, r2)
	pl.ServerTLS = config.ServerTLS{Enabled: true, CAFile: pki.CAFile}
	pl.AutoEjectHosts = true
	pl.ServerFailureLimit = 1
	pl.ServerRetryTimeout = 200 * time.Millisecond
	p := proxytest.Start(t, proxy.Options{}, pl)
	c := proxytest.Dial(t, pl.Listen)
	c.RoundTrip("PING\r\n", "+PONG\r\n")

	r1.Kill()
	deadline := time.Now().Add(proxytest.Timeout)
	for serverStats(t, p, "rtls", "r1").Ejections == 0 {
		if time.Now().After(deadline) {
			t.Fatal("r1 not ejected after it was killed")
		}
		// Requests to every key: some go to r1 and fail.
		for i := range 20 {
			c.Send(fmt.Sprintf("GET k%d\r\n", i))
			c.Line()
		}
	}
	r1.Restart()
	deadline = time.Now().Add(proxytest.Timeout)
	for serverStats(t, p, "rtls", "r1").State != pool.StateUp {
		if time.Now().After(deadline) {
			t.Fatalf("r1 not re-admitted after it came back: %+v", serverStats(t, p, "rtls", "r1"))
		}
		time.Sleep(20 * time.Millisecond) // polling the health state, bounded by deadline
	}
}

// TestTLSCertificateRotationUnderLoad: clients loop set/get over TLS
// (reconnecting now and then, so handshakes run during the rotation) while
// the listener's certificate files are replaced three times; no request
// fails, and new handshakes see each new certificate's serial without a
// reload.
func TestTLSCertificateRotationUnderLoad(t *testing.T) {
	pki := testserver.NewPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	pki.IssueServer(certFile, keyFile)
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "tls", mc)
	pool.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	p := proxytest.Start(t, proxy.Options{}, pool)

	const clients = 8
	var (
		stop   atomic.Bool
		ops    atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		errs   []error
		cfg    = pki.ClientConfig(false)
		report = func(err error) {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
		}
	)
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; !stop.Load(); round++ {
				if err := tlsSetGetLoop(pool.Listen, cfg, ci, round, 25, &ops); err != nil {
					report(err)
					return
				}
			}
		}()
	}
	serialSeen := func() int64 {
		c, err := proxytest.DialTLSErr(pool.Listen, cfg)
		if err != nil {
			report(fmt.Errorf("handshake while rotating: %w", err))
			return -1
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	for range 3 {
		before := ops.Load()
		serial := pki.IssueServer(certFile, keyFile)
		// The proxy looks at the files at most once a second; allow
		// generous slack for a loaded machine.
		deadline := time.Now().Add(proxytest.Timeout)
		for got := serialSeen(); got != serial; got = serialSeen() {
			if got < 0 || time.Now().After(deadline) {
				t.Fatalf("new handshakes still see serial %d, want %d", got, serial)
			}
			time.Sleep(50 * time.Millisecond) // polling for the new certificate, bounded by deadline
		}
		// Load kept flowing through the rotation.
		for ops.Load() < before+100 {
			if time.Now().After(deadline) {
				t.Fatalf("clients made %d operations during a rotation; want 100", ops.Load()-before)
			}
			time.Sleep(10 * time.Millisecond) // polling a counter, bounded by deadline
		}
	}
	stop.Store(true)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d client errors during rotation, first: %v", len(errs), errs[0])
	}
	if n := handshakeErrors(p, "tls"); n != 0 {
		t.Fatalf("TLSHandshakeErrors = %d during rotation; want 0", n)
	}
	t.Logf("%d set/get pairs over TLS through 3 rotations", ops.Load())
}

// tlsSetGetLoop opens one TLS connection and does n set/get pairs on it,
// checking every reply.
func tlsSetGetLoop(addr string, cfg *tls.Config, ci, round, n int, ops *atomic.Int64) error {
	c, err := proxytest.DialTLSErr(addr, cfg)
	if err != nil {
		return fmt.Errorf("client %d: handshake: %w", ci, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
	buf := make([]byte, 0, 256)
	rd := make([]byte, 256)
	for i := range n {
		key := fmt.Sprintf("c%d-%d-%d", ci, round, i)
		val := fmt.Sprintf("v%d", i)
		buf = fmt.Appendf(buf[:0], "set %s 0 0 %d\r\n%s\r\nget %s\r\n", key, len(val), val, key)
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("client %d: write: %w", ci, err)
		}
		want := fmt.Sprintf("STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n", key, len(val), val)
		if _, err := io.ReadFull(c, rd[:len(want)]); err != nil {
			return fmt.Errorf("client %d: read: %w", ci, err)
		}
		if got := string(rd[:len(want)]); got != want {
			return fmt.Errorf("client %d: got %q; want %q", ci, got, want)
		}
		ops.Add(1)
	}
	return nil
}

// TestTLSBothSidesMemcache: a TLS client through a TLS listener to a
// TLS-only memcached (memcached -Z), as with ElastiCache memcached's
// in-transit encryption; multi-key gets fan out over TLS connections.
func TestTLSBothSidesMemcache(t *testing.T) {
	pki := testserver.NewPKI(t)
	m1, m2 := testserver.MemcachedTLS(t, pki), testserver.MemcachedTLS(t, pki)
	pool := proxytest.MemcachePool(t, "tls2", m1, m2)
	pool.TLS = config.TLS{CertFile: pki.CertFile, KeyFile: pki.KeyFile, MinVersion: config.TLSVersion13}
	pool.ServerTLS = config.ServerTLS{Enabled: true, CAFile: pki.CAFile}
	proxytest.Start(t, proxy.Options{}, pool)

	c := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(false))
	var keys []string
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		keys = append(keys, k)
		c.RoundTrip(fmt.Sprintf("set %s 0 0 2\r\nv%d\r\n", k, i%10), "STORED\r\n")
	}
	c.Send("get " + strings.Join(keys, " ") + "\r\n")
	for i, k := range keys {
		c.Expect(fmt.Sprintf("VALUE %s 0 2\r\n", k), fmt.Sprintf("v%d\r\n", i%10))
	}
	c.Expect("END\r\n")
	// The values are on the servers, read over TLS directly.
	hits := 0
	for _, m := range []*testserver.Process{m1, m2} {
		d := proxytest.DialTLS(t, m.Addr, pki.ClientConfig(false))
		d.Send("get k0\r\n")
		if l := d.Line(); strings.HasPrefix(l, "VALUE k0 ") {
			hits++
			d.Expect("v0\r\n", "END\r\n")
		} else if l != "END\r\n" {
			t.Fatalf("memcached %s: get k0: %q", m.Addr, l)
		}
	}
	if hits != 1 {
		t.Fatalf("k0 is on %d servers; want 1", hits)
	}
	// A TLS 1.2 client is refused by min_version 1.3.
	old := pki.ClientConfig(false)
	old.MaxVersion = tls.VersionTLS12
	if _, err := proxytest.DialTLSErr(pool.Listen, old); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 client on a min_version 1.3 listener: %v; want a protocol version alert", err)
	}
}

// TestTLSReloadSwapsCertificate: a reload naming other certificate files
// applies them to new handshakes at once, and an open TLS client keeps
// being served across it; a reload whose files do not load is refused.
func TestTLSReloadSwapsCertificate(t *testing.T) {
	pki := testserver.NewPKI(t)
	pool, _ := tlsMemcachePool(t, pki)
	p := proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(false))
	c.RoundTrip("set r 0 0 1\r\n1\r\n", "STORED\r\n")
	first := c.C.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "new.crt"), filepath.Join(dir, "new.key")
	serial := pki.IssueServer(certFile, keyFile)
	next := pool
	next.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatalf("reload: %v", err)
	}
	d := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(false))
	if got := d.C.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != serial || got == first {
		t.Fatalf("after the reload a new handshake sees serial %d; want %d (was %d)", got, serial, first)
	}
	d.RoundTrip("get r\r\n", "VALUE r 0 1\r\n", "1\r\n", "END\r\n")
	c.RoundTrip("get r\r\n", "VALUE r 0 1\r\n", "1\r\n", "END\r\n")

	bad := pool
	bad.TLS = config.TLS{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: keyFile}
	if err := p.Reload(&config.Config{Pools: []config.Pool{bad}}); err == nil {
		t.Fatal("reload with a missing certificate file succeeded")
	}
	e := proxytest.DialTLS(t, pool.Listen, pki.ClientConfig(false))
	if got := e.C.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != serial {
		t.Fatalf("after a refused reload a new handshake sees serial %d; want %d", got, serial)
	}
}

// BenchmarkProxyGetTLS is BenchmarkProxyGet (one connection, one memcached)
// with the plaintext listener and a TLS listener side by side in one run:
// compare their ns/op (and allocs/op: the TLS client's own allocations
// count too, as the whole process's are reported).
func BenchmarkProxyGetTLS(b *testing.B) {
	pki := testserver.NewPKI(b)
	mc := testserver.Memcached(b)
	plain := proxytest.MemcachePool(b, "plain", mc)
	tlsPool := proxytest.MemcachePool(b, "tls", mc)
	tlsPool.TLS = config.TLS{CertFile: pki.CertFile, KeyFile: pki.KeyFile}
	proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, plain, tlsPool)
	c := proxytest.Dial(b, mc.Addr)
	c.RoundTrip("set k 0 0 32\r\n"+strings.Repeat("v", 32)+"\r\n", "STORED\r\n")
	for _, depth := range []int{1, 16} {
		for _, useTLS := range []bool{false, true} {
			name := fmt.Sprintf("plaintext/P%d", depth)
			if useTLS {
				name = fmt.Sprintf("tls/P%d", depth)
			}
			b.Run(name, func(b *testing.B) {
				var conn net.Conn
				var err error
				if useTLS {
					conn, err = proxytest.DialTLSErr(tlsPool.Listen, pki.ClientConfig(false))
				} else {
					conn, err = net.Dial("tcp", plain.Listen)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				benchConnRoundTrips(b, conn, "", "", []byte("get k\r\n"), []byte("END\r\n"), depth)
			})
		}
	}
}

// TestRoleCheckOverTLS: role_check asks TLS-only servers for their role
// over TLS (server_tls), so it follows a swap of primary and replica as it
// does in plaintext (TestRoleCheckFollowsSwap); in plaintext it would get
// no answer and the proxy would go on writing to the demoted primary.
func TestRoleCheckOverTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	a := testserver.RedisTLS(t, pki, false, "--tls-replication", "yes")
	b := testserver.RedisTLS(t, pki, false, "--tls-replication", "yes", "--replicaof", "127.0.0.1", fmt.Sprint(a.Port))
	pool := proxytest.RedisPool(t, "r", a)
	pool.Servers[0].Replicas = []config.Replica{{Name: "b", Addr: b.Addr, Network: "tcp"}}
	pool.ServerTLS = config.ServerTLS{Enabled: true, CAFile: pki.CAFile}
	pool.RoleCheck = 300 * time.Millisecond
	pool.Timeout = 2 * time.Second
	p := proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("SET before 1\r\n", "+OK\r\n")

	// Swap: b becomes the primary, a its replica.
	admin := func(addr, cmd string) {
		d := proxytest.DialTLS(t, addr, pki.ClientConfig(false))
		d.RoundTrip(cmd+"\r\n", "+OK\r\n")
	}
	admin(b.Addr, "REPLICAOF NO ONE")
	admin(a.Addr, fmt.Sprintf("REPLICAOF 127.0.0.1 %d", b.Port))
	testserver.WaitFor(t, 15*time.Second, "the proxy to follow the swap", func() error {
		if ss := serverStats(t, p, "r", "r1"); ss.Addr != b.Addr || ss.Failovers != 1 {
			return fmt.Errorf("r1 at %s after %d failovers; want %s after 1", ss.Addr, ss.Failovers, b.Addr)
		}
		return nil
	})
	// Writes reach the new primary: a new connection's first SET.
	c2 := proxytest.Dial(t, pool.Listen)
	testserver.WaitFor(t, 15*time.Second, "a write through the proxy to land on b", func() error {
		c2.Send("SET after x\r\n")
		if got := c2.Line(); got != "+OK\r\n" {
			return fmt.Errorf("SET: %q", got)
		}
		return nil
	})
	d := proxytest.DialTLS(t, b.Addr, pki.ClientConfig(false))
	d.RoundTrip("GET after\r\n", "$1\r\n", "x\r\n")
}
