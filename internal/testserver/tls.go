package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a throw-away certificate authority for TLS tests: a CA, a server
// certificate for 127.0.0.1 and localhost, and a client certificate, all
// generated in the test and written as PEM files under t.TempDir(). No key
// is ever checked in.
type PKI struct {
	// Dir holds the files.
	Dir string
	// CAFile is the CA certificate (PEM).
	CAFile string
	// CertFile and KeyFile are the server certificate and key.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are a client certificate and key
	// signed by the same CA.
	ClientCertFile, ClientKeyFile string

	t      testing.TB
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial atomic.Int64
}

// NewPKI makes a CA and issues a server and a client certificate.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{t: t, Dir: dir,
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"), ClientKeyFile: filepath.Join(dir, "client.key")}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(p.serial.Add(1)),
		Subject:               pkix.Name{CommonName: "cacheproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	p.ca, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA: %v", err)
	}
	p.caKey = key
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	p.IssueServer(p.CertFile, p.KeyFile)
	p.issue(p.ClientCertFile, p.ClientKeyFile, "cacheproxy test client", x509.ExtKeyUsageClientAuth)
	return p
}

// IssueServer writes a new server certificate (with a new serial number,
// which it returns) and key for 127.0.0.1 and localhost to certFile and
// keyFile. Each file is written to a temporary name and renamed into
// place, as certificate rotation tools do.
func (p *PKI) IssueServer(certFile, keyFile string) int64 {
	p.t.Helper()
	return p.issue(certFile, keyFile, "127.0.0.1", x509.ExtKeyUsageServerAuth)
}

// IssueServerNames writes a server certificate and key for the DNS names
// given and no IP address (as a managed service's node certificates are),
// and returns its serial number.
func (p *PKI) IssueServerNames(certFile, keyFile string, names ...string) int64 {
	p.t.Helper()
	return p.issueFor(certFile, keyFile, names[0], x509.ExtKeyUsageServerAuth, nil, names)
}

func (p *PKI) issue(certFile, keyFile, cn string, usage x509.ExtKeyUsage) int64 {
	p.t.Helper()
	var ips []net.IP
	var names []string
	if usage == x509.ExtKeyUsageServerAuth {
		ips, names = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
	}
	return p.issueFor(certFile, keyFile, cn, usage, ips, names)
}

func (p *PKI) issueFor(certFile, keyFile, cn string, usage x509.ExtKeyUsage, ips []net.IP, names []string) int64 {
	t := p.t
	t.Helper()
	key := newKey(t)
	serial := p.serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	tmpl.IPAddresses, tmpl.DNSNames = ips, names
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("issue certificate: %v", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	writePEM(t, certFile, "CERTIFICATE", der)
	return serial
}

// ClientConfig is a TLS client configuration that trusts the CA (and, with
// withCert, presents the client certificate).
func (p *PKI) ClientConfig(withCert bool) *tls.Config {
	p.t.Helper()
	c := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile)
		if err != nil {
			p.t.Fatalf("load client certificate: %v", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return key
}

// writePEM writes one PEM block to name through a temporary file and a
// rename, so a reader never sees it half-written.
func writePEM(t testing.TB, name, typ string, der []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("write %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatalf("rename %s: %v", tmp, err)
	}
}

// RedisTLS starts a TLS-only redis-server (no plaintext port) on a free
// loopback port with pki's server certificate. With authClients, clients
// must present a certificate signed by pki's CA (tls-auth-clients yes).
func RedisTLS(t testing.TB, pki *PKI, authClients bool, args ...string) *Process {
	t.Helper()
	path := Require(t, "redis-server")
	dir := t.TempDir()
	auth := "no"
	if authClients {
		auth = "yes"
	}
	return startOnFreePort(t, "redis-server", path, func(port int) []string {
		a := []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--tls-cert-file", pki.CertFile, "--tls-key-file", pki.KeyFile, "--tls-ca-cert-file", pki.CAFile,
			"--tls-auth-clients", auth, "--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--loglevel", "warning"}
		return append(a, args...)
	})
}

// MemcachedTLS starts a memcached that speaks only TLS (-Z) on a free
// loopback port with pki's server certificate.
func MemcachedTLS(t testing.TB, pki *PKI, args ...string) *Process {
	t.Helper()
	return MemcachedTLSCert(t, pki.CertFile, pki.KeyFile, args...)
}

// MemcachedTLSCert is MemcachedTLS with the certificate and key files given.
func MemcachedTLSCert(t testing.TB, certFile, keyFile string, args ...string) *Process {
	t.Helper()
	return Memcached(t, append([]string{"-Z", "-o", "ssl_chain_cert=" + certFile + ",ssl_key=" + keyFile}, args...)...)
}
