// Package tlsbridge carries the plaintext of a TLS connection over a unix
// socket pair, so that an event loop that polls descriptors (gnet, which has
// no TLS) serves a TLS connection with exactly the code that serves a
// plaintext one.
//
//	peer <--TLS--> conn  [Bridge.Run: two copying goroutines]  far <--plaintext--> near (event loop)
//
// New returns near, the end the caller hands to its event loop; Run moves
// bytes between conn and far until either side is done. Ends propagate:
// the peer's end of stream (close_notify or FIN) becomes a shutdown of
// near's peer for writing (the loop reads EOF and may still write replies),
// and the loop closing near (or shutting it down for writing) closes conn
// after what the loop wrote has been sent.
package tlsbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// bufSize is each direction's copy buffer: one TLS record's worth of
// plaintext, so a read from conn fills at most one write to far.
const bufSize = 16 << 10

// WriteTimeout bounds each write to the peer: one that takes none of its
// output for this long is dropped, as the proxy drops a plaintext client
// that reads nothing for as long. Without it, a peer that stops reading
// (and keeps its TCP window shut) would hold the bridge's goroutines and
// descriptors after the loop closed near.
const WriteTimeout = 30 * time.Second

// Bridge copies between a TLS connection and the far end of a socket pair.
type Bridge struct {
	conn         net.Conn
	far          *net.UnixConn
	once         sync.Once
	writeTimeout time.Duration // WriteTimeout; shorter in tests
}

// New makes a socket pair and returns its near end, for the event loop,
// and the Bridge that serves the far end. The caller must call Run (which
// closes conn and the far end when it returns) and owns near.
func New(conn net.Conn) (*net.UnixConn, *Bridge, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("tls bridge: socketpair: %w", err)
	}
	near, err := fileConn(fds[0], "tls-bridge-near")
	if err != nil {
		_ = syscall.Close(fds[1])
		return nil, nil, err
	}
	far, err := fileConn(fds[1], "tls-bridge-far")
	if err != nil {
		_ = near.Close()
		return nil, nil, err
	}
	return near, &Bridge{conn: conn, far: far, writeTimeout: WriteTimeout}, nil
}

// fileConn wraps descriptor fd (which it takes over) as a *net.UnixConn.
func fileConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // duplicates the descriptor
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("tls bridge: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("tls bridge: socket pair end is a %T", c)
	}
	return uc, nil
}

// Run copies in both directions until the loop's side is done (or a copy
// fails, or ctx ends), then closes conn and the far end. It blocks; run it
// on a goroutine the caller waits for.
func (b *Bridge) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, b.close)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.inbound()
	}()
	b.outbound()
	b.close()
	<-done
}

// inbound copies the peer's plaintext to the loop. At the peer's end of
// stream it shuts the far end down for writing, so the loop reads EOF while
// it may still answer; on an error it closes everything.
func (b *Bridge) inbound() {
	buf := make([]byte, bufSize)
	for {
		n, err := b.conn.Read(buf)
		if n > 0 {
			if _, werr := b.far.Write(buf[:n]); werr != nil {
				b.close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = b.far.CloseWrite()
				return
			}
			b.close()
			return
		}
	}
}

// outbound copies the loop's output to the peer until the loop closes its
// end (or shuts it down for writing), or a write to the peer fails or takes
// longer than writeTimeout.
func (b *Bridge) outbound() {
	buf := make([]byte, bufSize)
	for {
		n, err := b.far.Read(buf)
		if n > 0 {
			_ = b.conn.SetWriteDeadline(time.Now().Add(b.writeTimeout))
			if _, werr := b.conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close closes both connections once; a TLS conn sends close_notify.
func (b *Bridge) close() {
	b.once.Do(func() {
		_ = b.conn.Close()
		_ = b.far.Close()
	})
}
