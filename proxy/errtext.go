package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// clientCause says why a dial or a backend connection failed in words that
// are safe to put in a reply to a client: the cause only, never an address.
// Go's errors name the local and remote addresses ("dial tcp
// 10.0.0.1:11211: connect: connection refused") and a DNS failure names the
// resolver ("lookup cache1 on 127.0.0.53:53: no such host"); a client is
// told "connection refused" or "no such host", and the server's configured
// name around it, while the log keeps the whole error.
//
// Unknown errors become "I/O error" rather than risk showing their text.
func clientCause(err error) string {
	var dnsErr *net.DNSError
	var errno syscall.Errno
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &dnsErr):
		switch {
		case dnsErr.IsNotFound:
			return "no such host"
		case dnsErr.IsTimeout:
			return "timeout resolving the host"
		}
		return "cannot resolve the host"
	case errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &errno):
		return errnoCause(errno)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "I/O error"
}

// errnoCause names a system call error briefly. strerror's text names no
// address, so an errno without a shorter name here is given as it is ("no
// route to host", "no such file or directory" for a missing unix socket).
func errnoCause(errno syscall.Errno) string {
	switch errno {
	case syscall.ECONNRESET:
		return "connection reset"
	case syscall.ETIMEDOUT:
		return "timeout"
	}
	return errno.Error()
}
