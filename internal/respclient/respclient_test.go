package respclient

import (
	"bufio"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pipeConn is a Conn over one end of a pipe whose other end writes reply
// and discards what the client sends, then closes.
func pipeConn(t *testing.T, reply string) *Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	go func() { _, _ = io.Copy(io.Discard, b) }()
	go func() { _, _ = io.WriteString(b, reply); b.Close() }()
	return &Conn{nc: a, r: bufio.NewReader(a), timeout: 5 * time.Second}
}

func TestReplies(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  any
	}{
		{"+OK\r\n", "OK"},
		{":42\r\n", int64(42)},
		{"$3\r\nabc\r\n", "abc"},
		{"$-1\r\n", nil},
		{"*-1\r\n", nil},
		{"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", []any{"127.0.0.1", "6379"}},
		{"*2\r\n*1\r\n+a\r\n-ERR in an array\r\n", []any{[]any{"a"}, Error("ERR in an array")}},
	} {
		got, err := pipeConn(t, tc.reply).Do("X")
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tc.reply, got, err, tc.want)
		}
	}
}

func TestErrorReply(t *testing.T) {
	_, err := pipeConn(t, "-WRONGPASS invalid username-password pair\r\n").Do("AUTH", "x")
	var e Error
	if !errors.As(err, &e) || !strings.HasPrefix(string(e), "WRONGPASS") {
		t.Fatalf("got %v; want the WRONGPASS error", err)
	}
}

// Bad input is an error, never a crash or an unbounded allocation.
func TestBadReplies(t *testing.T) {
	for _, tc := range []struct{ reply, want string }{
		{"$2000000\r\n", "bulk length"},
		{"$-2\r\n", "bulk length"},
		{"*100000\r\n", "array length"},
		{"*x\r\n", "array length"},
		{":nope\r\n", "integer"},
		{"?what\r\n", "unexpected reply type"},
		{"+no cr\n", "bad line"},
		{"$5\r\nab", "read reply"},
		{"+" + strings.Repeat("a", 5000) + "\r\n", "line too long"},
	} {
		_, err := pipeConn(t, tc.reply).Do("X")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.20q: got %v; want an error with %q", tc.reply, err, tc.want)
		}
	}
}
