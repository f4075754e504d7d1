package respclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
		{"$2\r\nabcd", "not followed by CRLF"},
		{strings.Repeat("*1\r\n", MaxDepth+1) + "+deep\r\n", "nested more than"},
	} {
		_, err := pipeConn(t, tc.reply).Do("X")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.20q: got %v; want an error with %q", tc.reply, err, tc.want)
		}
	}
}

// MaxDepth nested arrays still decode.
func TestNestedArrays(t *testing.T) {
	var want any = "deep"
	for range MaxDepth {
		want = []any{want}
	}
	got, err := pipeConn(t, strings.Repeat("*1\r\n", MaxDepth)+"+deep\r\n").Do("X")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, %v; want %#v", got, err, want)
	}
}

// splitRead decodes in as one reply delivered in two reads split at i, with
// a small buffer, as a comparable string.
func splitRead(in []byte, i int) string {
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(in[:i]), bytes.NewReader(in[i:])), 64)
	v, err := readReply(r, 0)
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%#v", v)
}

// FuzzReadReply: any reply decodes without a crash, and decodes the same
// whole or split at any byte.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", ":-3\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n", "-ERR x\r\n",
		"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", "*2\r\n*1\r\n+a\r\n-ERR in an array\r\n",
		"$2\r\nabcd", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := splitRead(in, len(in))
		for i := range len(in) {
			if got := splitRead(in, i); got != whole {
				t.Fatalf("split at %d: got %s; want %s", i, got, whole)
			}
		}
	})
}
