// Package respclient is a minimal RESP2 client for the proxy's own control
// connections (asking Sentinels, polling ROLE, the admin endpoint's INFO
// polls): one connection, one command at a time, replies decoded into Go
// values. It is not on the data path.
package respclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// MaxBulk bounds one bulk string the client accepts, MaxArray one array's
// length and MaxDepth how deeply arrays nest: control replies are small and
// flat, so a larger one is a protocol error rather than a reason to
// allocate (or to recurse).
const (
	MaxBulk  = 1 << 20
	MaxArray = 1 << 16
	MaxDepth = 8
)

// Error is an error reply from the server ("-ERR ...", "-NOAUTH ...").
type Error string

func (e Error) Error() string { return string(e) }

// Conn is one RESP2 connection. It is not safe for concurrent use.
type Conn struct {
	nc      net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// Dial connects to addr ("host:port"; a host name is looked up on every
// dial) over TCP and, when password is not empty, authenticates (AUTH user
// password, or AUTH password when user is empty). timeout bounds the dial
// and each later command.
func Dial(ctx context.Context, addr, user, password string, timeout time.Duration) (*Conn, error) {
	return DialNetwork(ctx, "tcp", addr, user, password, timeout)
}

// DialNetwork is Dial on another network: "tcp", "tcp4", "tcp6" or "unix"
// (addr is then a socket path).
func DialNetwork(ctx context.Context, network, addr, user, password string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return New(nc, addr, user, password, timeout)
}

// New is DialNetwork over nc, a connection made already (a TLS one, say)
// to addr, which names it in errors. It closes nc when AUTH fails.
func New(nc net.Conn, addr, user, password string, timeout time.Duration) (*Conn, error) {
	c := &Conn{nc: nc, r: bufio.NewReader(nc), timeout: timeout}
	if password != "" {
		args := []string{"AUTH", password}
		if user != "" {
			args = []string{"AUTH", user, password}
		}
		if _, err := c.Do(args...); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: auth: %w", addr, err)
		}
	}
	return c, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// RemoteAddr is the address the connection went to.
func (c *Conn) RemoteAddr() string { return c.nc.RemoteAddr().String() }

// Do sends one command and reads its reply. An error reply is returned as
// an Error (and a nil value).
func (c *Conn) Do(args ...string) (any, error) {
	if err := c.Send(args...); err != nil {
		return nil, err
	}
	return c.Receive(c.timeout)
}

// Send writes one command without reading a reply.
func (c *Conn) Send(args ...string) error {
	buf := make([]byte, 0, 64)
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, "\r\n"...)
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, a...)
		buf = append(buf, "\r\n"...)
	}
	if c.timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.nc.Write(buf); err != nil {
		return fmt.Errorf("send %s: %w", args[0], err)
	}
	return nil
}

// Receive reads one reply, waiting at most wait (0: forever): a string
// (simple or bulk), an int64, nil (a null), a []any, or an Error as the
// error.
func (c *Conn) Receive(wait time.Duration) (any, error) {
	var dl time.Time
	if wait > 0 {
		dl = time.Now().Add(wait)
	}
	_ = c.nc.SetReadDeadline(dl)
	v, err := readReply(c.r, 0)
	if err != nil {
		return nil, err
	}
	if e, ok := v.(Error); ok {
		return nil, e
	}
	return v, nil
}

// Decode reads one RESP2 reply from r as Receive returns it, except that an
// error reply is an Error value (also inside an array), not an error. The
// MaxBulk and MaxArray bounds apply, and arrays nest at most MaxDepth deep.
func Decode(r *bufio.Reader) (any, error) { return readReply(r, 0) }

// readReply decodes one reply from r, depth arrays deep; an error reply is
// returned as a value so that an array holding one still decodes.
func readReply(r *bufio.Reader, depth int) (any, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("protocol error: line too long")
		}
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("protocol error: bad line %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return Error(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("protocol error: integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > MaxBulk {
			return nil, fmt.Errorf("protocol error: bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read reply: %w", err)
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, errors.New("protocol error: bulk string not followed by CRLF")
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > MaxArray {
			return nil, fmt.Errorf("protocol error: array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		if depth >= MaxDepth {
			return nil, fmt.Errorf("protocol error: arrays nested more than %d deep", MaxDepth)
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("protocol error: unexpected reply type %q", line[0])
}
