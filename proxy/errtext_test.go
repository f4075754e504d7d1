package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// address matches anything that looks like an IP address or a port.
var address = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|:\d+|\[`)

// TestClientCause feeds clientCause the errors real dials and reads
// produce (wrapped as backend.connect wraps them) and checks the words a
// client gets: the cause, and no address.
func TestClientCause(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("connect %s: %w", "10.1.2.3:11211", err) }

	// A port nobody listens on: bind one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := l.Addr().String()
	l.Close()
	_, refused := net.DialTimeout("tcp", refusedAddr, 5*time.Second)

	// A peer that resets the connection once it has read a byte (so the
	// reset comes after the connect completed).
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		c, err := rl.Accept()
		if err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	rc, err := net.DialTimeout("tcp", rl.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	<-accepted
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, reset := rc.Read(make([]byte, 1))

	// A read past its deadline, and a read on a closed connection.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tc, err := net.DialTimeout("tcp", tl.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc.SetReadDeadline(time.Now().Add(-time.Second))
	_, timeout := tc.Read(make([]byte, 1))
	tc.Close()
	_, closed := tc.Read(make([]byte, 1))

	_, noSocket := net.DialTimeout("unix", filepath.Join(t.TempDir(), "missing.sock"), 5*time.Second)

	notFound := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "cache1", Server: "127.0.0.53:53", IsNotFound: true}}
	dnsTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "i/o timeout", Name: "cache1", Server: "127.0.0.53:53", IsTimeout: true}}
	dnsOther := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "cache1", Server: "127.0.0.53:53"}}
	unreachable := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 11211}, Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 11211}, Err: context.DeadlineExceeded}

	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", wrap(refused), "connection refused"},
		{"reset", reset, "connection reset"},
		{"read deadline", timeout, "timeout"},
		{"closed", closed, "connection closed"},
		{"missing unix socket", wrap(noSocket), "no such file or directory"},
		{"no such host", wrap(notFound), "no such host"},
		{"DNS timeout", wrap(dnsTimeout), "timeout resolving the host"},
		{"DNS failure", wrap(dnsOther), "cannot resolve the host"},
		{"unreachable", wrap(unreachable), "no route to host"},
		{"dial timeout", wrap(dialTimeout), "timeout"},
		{"EOF", io.EOF, "EOF"},
		{"nil", nil, "EOF"},
		{"unknown", errors.New("enroll 10.1.2.3:11211: no result"), "I/O error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil && tc.name != "nil" {
				t.Fatalf("the setup produced no error")
			}
			got := clientCause(tc.err)
			if got != tc.want {
				t.Errorf("clientCause(%q): got %q; want %q", tc.err, got, tc.want)
			}
			if address.MatchString(got) || strings.Contains(got, "cache1") {
				t.Errorf("clientCause(%q) = %q names an address", tc.err, got)
			}
		})
	}
	// The errors themselves do name addresses: what clientCause removes.
	for _, err := range []error{refused, reset, timeout, wrap(notFound)} {
		if !address.MatchString(err.Error()) {
			t.Errorf("%q: want an error that names an address", err)
		}
	}
}

// TestClientCauseRealLookup resolves a name under .invalid (RFC 6761: it
// never resolves) with the machine's resolver and checks the cause names
// neither the resolver nor the name.
func TestClientCauseRealLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	_, err := d.DialContext(ctx, "tcp", "cacheproxy-test.invalid:11211")
	if err == nil {
		t.Fatal("dial cacheproxy-test.invalid: no error")
	}
	got := clientCause(fmt.Errorf("connect %s: %w", "cacheproxy-test.invalid:11211", err))
	switch got {
	case "no such host", "timeout resolving the host", "cannot resolve the host", "timeout":
	default:
		t.Errorf("clientCause(%q): got %q; want a resolver failure", err, got)
	}
	if address.MatchString(got) {
		t.Errorf("clientCause(%q) = %q names an address", err, got)
	}
}
