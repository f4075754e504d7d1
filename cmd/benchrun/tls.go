package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
)

// tlsRounds measures what TLS costs: the same proxy process serves one
// backend through a plaintext pool (A) and a TLS pool (B), for memcache and
// redis at each depth. With -base, a baseline binary's plaintext pools (A)
// are compared with -cacheproxy's (B), to show the plaintext path's cost
// did not move.
func tlsRounds(ctx context.Context, o *options, ps *procs, dir string, out io.Writer, samples *[]sample) error {
	certFile, keyFile, clientCfg, err := selfSigned(dir)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	mc, err := backend(ctx, ps, dir, loadgen.Memcache, 30)
	if err != nil {
		return fmt.Errorf("memcached: %w", err)
	}
	rd, err := backend(ctx, ps, dir, loadgen.Redis, 31)
	if err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	pools := []pool{
		{name: "mc", proto: loadgen.Memcache, servers: []string{mc}},
		{name: "rd", proto: loadgen.Redis, servers: []string{rd}},
		{name: "mctls", proto: loadgen.Memcache, servers: []string{mc}, certFile: certFile, keyFile: keyFile, tls: clientCfg},
		{name: "rdtls", proto: loadgen.Redis, servers: []string{rd}, certFile: certFile, keyFile: keyFile, tls: clientCfg},
	}
	cp := startProxy(ctx, ps, dir, "cacheproxy-tls", pools, o.binary)
	var comps []*comparison
	add := func(kind string, a, b func(proto loadgen.Protocol) *target) {
		for _, proto := range []loadgen.Protocol{loadgen.Memcache, loadgen.Redis} {
			for _, d := range o.depths {
				c := &comparison{kind: kind, proto: proto, depth: d, a: a(proto), b: b(proto)}
				if o.selected(c.name()) {
					comps = append(comps, c)
				}
			}
		}
	}
	byProto := func(ts map[string]*target, mcName, rdName, label string) func(loadgen.Protocol) *target {
		return func(proto loadgen.Protocol) *target {
			t := ts[mcName]
			if proto == loadgen.Redis {
				t = ts[rdName]
			}
			t.name = label
			return t
		}
	}
	add("tls", byProto(cp, "mc", "rd", "plaintext"), byProto(cp, "mctls", "rdtls", "tls"))
	if o.base != "" {
		base := startProxy(ctx, ps, dir, "cacheproxy-base", pools[:2], o.base)
		// The branch's plaintext pools, in their own process so that each
		// process serves exactly one pool under load, as the base does.
		cur := startProxy(ctx, ps, dir, "cacheproxy-cur", pools[:2], o.binary)
		add("plaintext-build", byProto(base, "mc", "rd", "base"), byProto(cur, "mc", "rd", "this"))
	}
	if err := runComparisons(ctx, o, comps, samples); err != nil {
		return err
	}
	fmt.Fprintf(out, "TLS rounds: %d conns, %.0f%% gets, %d-byte values, %d uniform keys, one backend, %d rounds x %v; "+
		"tls: B = TLS listener, A = plaintext listener of the same proxy; plaintext-build: B = %s, A = %s\n",
		o.conns, o.getRatio*100, o.size, o.keys, o.rounds, o.duration, o.binary, o.base)
	printTable(out, comps, *samples)
	return nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths and a client configuration that
// trusts it.
func selfSigned(dir string) (certFile, keyFile string, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "benchrun"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "bench.crt"), filepath.Join(dir, "bench.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}
