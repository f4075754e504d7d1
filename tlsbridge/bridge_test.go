package tlsbridge

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// start bridges conn and returns near and a channel closed when Run
// returns.
func start(t *testing.T, ctx context.Context, conn net.Conn) (*net.UnixConn, chan struct{}) {
	t.Helper()
	near, br, err := New(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	done := make(chan struct{})
	go func() { defer close(done); br.Run(ctx) }()
	return near, done
}

func waitDone(t *testing.T, done chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

// TestBridgeBothWaysAndHalfClose: bytes cross both ways; the peer's end of
// stream reaches the loop as EOF while the loop may still answer; the loop
// closing its end closes the peer's connection after its last bytes.
func TestBridgeBothWaysAndHalfClose(t *testing.T) {
	peer, conn := tcpPair(t)
	near, done := start(t, context.Background(), conn)

	big := make([]byte, 200_000) // more than a buffer and a socket buffer
	for i := range big {
		big[i] = byte(i)
	}
	go func() {
		_, _ = peer.Write(big)
		_ = peer.CloseWrite()
	}()
	if got := readAll(t, near); got != string(big) {
		t.Fatalf("loop got %d bytes; want the %d the peer sent, then EOF", len(got), len(big))
	}
	// After the peer's half-close the loop still answers.
	if _, err := near.Write([]byte("reply")); err != nil {
		t.Fatalf("write after the peer's half-close: %v", err)
	}
	_ = near.Close()
	if got := readAll(t, peer); got != "reply" {
		t.Fatalf("peer got %q; want %q then EOF", got, "reply")
	}
	waitDone(t, done)
}

// TestBridgeContextEnds: ending the context closes both sides.
func TestBridgeContextEnds(t *testing.T) {
	peer, conn := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	near, done := start(t, ctx, conn)
	cancel()
	waitDone(t, done)
	if got := readAll(t, peer); got != "" {
		t.Fatalf("peer got %q after cancel; want EOF", got)
	}
	if got := readAll(t, near); got != "" {
		t.Fatalf("loop got %q after cancel; want EOF", got)
	}
}

// TestBridgePeerGone: a peer that resets its connection ends the bridge and
// the loop sees its end closed.
func TestBridgePeerGone(t *testing.T) {
	peer, conn := tcpPair(t)
	near, done := start(t, context.Background(), conn)
	_ = peer.SetLinger(0)
	_ = peer.Close() // RST
	waitDone(t, done)
	_ = near.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := near.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("loop read %d, %v after the peer reset; want EOF", n, err)
	}
}

// TestBridgePeerStopsReading: a peer that neither reads nor writes does not
// hold the bridge once the loop has closed near with output still to go:
// the write to the peer times out and Run returns (with WriteTimeout
// unbounded it never did).
func TestBridgePeerStopsReading(t *testing.T) {
	a, b := net.Pipe() // b is never read: every write to a blocks
	defer b.Close()
	near, br, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	br.writeTimeout = 200 * time.Millisecond
	done := make(chan struct{})
	go func() { br.Run(context.Background()); close(done) }()
	if _, err := near.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := near.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after the loop closed near, with a write timeout of 200ms")
	}
}
