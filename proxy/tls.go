package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/tlsbridge"
)

// TLS on either side of the proxy runs off the event loops (see
// docs/security.md for the choice): a goroutine completes the handshake
// with crypto/tls and a tlsbridge.Bridge carries the plaintext over a
// socket pair whose near end is handed to gnet like any accepted or dialed
// connection. The codecs, the client and backend code see an ordinary
// connection; plaintext connections take no new step at all.

// handshakeTimeout bounds a client's TLS handshake: a client that connects
// and says nothing holds a goroutine and a descriptor for at most this long.
const handshakeTimeout = 10 * time.Second

// certCheckEvery is how often, at most, a handshake looks whether the
// listener's certificate files changed.
const certCheckEvery = time.Second

// listenTLS is a pool version's listener TLS: config is handed to every
// handshake, and answers each ClientHello with the configuration loaded
// from the files last, re-reading them when they change.
type listenTLS struct {
	files  config.TLS
	log    *slog.Logger
	config *tls.Config // the one tls.Server gets: GetConfigForClient only

	cur     atomic.Pointer[loadedTLS]
	checked atomic.Int64 // unix nanoseconds of the last look at the files
	mu      sync.Mutex   // one reload at a time
}

// loadedTLS is one reading of the listener's files.
type loadedTLS struct {
	config *tls.Config
	stamps []fileStamp
}

// fileStamp identifies a version of a file: a rotation that replaces the
// file (a rename, a Kubernetes secret's symlink swap) or rewrites it
// changes one of these.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// newListenTLS loads a pool's listener certificate (and client CAs).
func newListenTLS(t config.TLS, log *slog.Logger) (*listenTLS, error) {
	lt := &listenTLS{files: t, log: log}
	ld, err := lt.load()
	if err != nil {
		return nil, err
	}
	lt.cur.Store(ld)
	lt.checked.Store(time.Now().UnixNano())
	lt.config = &tls.Config{GetConfigForClient: lt.forClient}
	return lt, nil
}

// names are the files the listener reads.
func (lt *listenTLS) names() []string {
	n := []string{lt.files.CertFile, lt.files.KeyFile}
	if lt.files.ClientCAFile != "" {
		n = append(n, lt.files.ClientCAFile)
	}
	return n
}

// load reads the files into a server configuration.
func (lt *listenTLS) load() (*loadedTLS, error) {
	ld := &loadedTLS{}
	for _, name := range lt.names() {
		st, err := stampOf(name)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		ld.stamps = append(ld.stamps, st)
	}
	cert, err := tls.LoadX509KeyPair(lt.files.CertFile, lt.files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tlsVersion(lt.files.MinVersion)}
	if lt.files.ClientCAFile != "" {
		pool, err := readCAs(lt.files.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client_ca_file: %w", err)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	ld.config = c
	return ld, nil
}

// forClient is GetConfigForClient: the current configuration, re-read
// first when a file changed (looked at most once per certCheckEvery). A
// file caught half-written keeps the previous configuration serving; the
// next look tries again.
func (lt *listenTLS) forClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	now := time.Now().UnixNano()
	if last := lt.checked.Load(); now-last >= int64(certCheckEvery) && lt.checked.CompareAndSwap(last, now) {
		lt.refresh()
	}
	return lt.cur.Load().config, nil
}

// refresh re-reads the files if any changed since the last reading.
func (lt *listenTLS) refresh() {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	cur := lt.cur.Load()
	changed := false
	for i, name := range lt.names() {
		st, err := stampOf(name)
		if err != nil || st != cur.stamps[i] {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	ld, err := lt.load()
	if err != nil {
		lt.log.Warn("TLS files changed but cannot be loaded; keeping the previous certificate", "error", err)
		return
	}
	lt.cur.Store(ld)
	lt.log.Info("TLS certificate reloaded", "cert_file", lt.files.CertFile)
}

// tlsVersion maps min_version to crypto/tls's constant (default 1.2).
func tlsVersion(v string) uint16 {
	if v == config.TLSVersion13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// readCAs reads a PEM bundle of CA certificates.
func readCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// newServerTLS builds a pool version's configuration for reaching its
// servers over TLS (nil when server_tls is off).
func newServerTLS(t config.ServerTLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, logged at every start and reload
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	if t.CAFile != "" {
		pool, err := readCAs(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("server_tls: ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("server_tls: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// dialServer connects to a server at addr outside the data path (a health
// probe, a role_check poll) as its data-path connections do: over TLS when
// stls is not nil (server_tls), verifying tlsName if not "" (else addr's
// host). d's timeout bounds the dial and the handshake.
func dialServer(ctx context.Context, d *net.Dialer, stls *tls.Config, network, addr, tlsName string) (net.Conn, error) {
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if stls == nil {
		return c, nil
	}
	return tlsClient(ctx, c, stls, cmp.Or(tlsName, addr), d.Timeout)
}

// tlsClient runs a TLS handshake with the server at addr over nc, bounded
// by the dialer's timeout. The configuration's ServerName, if empty, is
// addr's host (addr may also be a bare host name). On failure nc is closed.
func tlsClient(ctx context.Context, nc net.Conn, base *tls.Config, addr string, timeout time.Duration) (*tls.Conn, error) {
	c := base
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr // a bare host name (config.Server.TLSName)
		}
		c = base.Clone()
		c.ServerName = host
	}
	tc := tls.Client(nc, c)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// bridge starts carrying tc's plaintext over a socket pair and returns the
// end to enroll in an event loop. The bridge's goroutine is one of p.wg's.
func (p *Proxy) bridge(tc net.Conn) (net.Conn, error) {
	near, br, err := tlsbridge.New(tc)
	if err != nil {
		_ = tc.Close()
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		br.Run(p.ctx)
	}()
	return near, nil
}

// acceptTLS completes a TLS client's handshake and registers the
// plaintext end of its bridge with an event loop. It runs on its own
// goroutine (one of p.wg's), so a slow handshake holds up nobody.
func (p *Proxy) acceptTLS(ctx context.Context, live *poolLive, lt *listenTLS, c net.Conn) {
	tc := tls.Server(c, lt.config)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		live.tlsHandshakeErrors.Add(1) // before the close the client may be waiting for
		_ = c.Close()
		p.log.Debug("TLS handshake failed", "pool", live.name, "remote", c.RemoteAddr().String(), "error", err)
		return
	}
	near, err := p.bridge(tc)
	if err != nil {
		live.acceptErrors.Add(1)
		p.log.Warn("TLS client not served", "pool", live.name, "error", err)
		return
	}
	if err := p.registerConn(ctx, &acceptedConn{live: live, raddr: c.RemoteAddr(), laddr: c.LocalAddr()}, near); err != nil &&
		!errors.Is(err, context.Canceled) {
		live.acceptErrors.Add(1)
		p.log.Warn("client connection not registered", "pool", live.name, "error", err)
	}
}

// dialTLS runs the TLS handshake on a backend connection just dialed and
// returns the plaintext end of its bridge, to enroll in place of nc.
func (p *Proxy) dialTLS(nc net.Conn, c *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	tc, err := tlsClient(p.ctx, nc, c, addr, timeout)
	if err != nil {
		return nil, err
	}
	return p.bridge(tc)
}
