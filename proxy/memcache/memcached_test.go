package memcache

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// roundTrip sends in followed by "mn\r\n" to a fresh connection and returns
// everything memcached answered before "MN\r\n".
func roundTrip(t *testing.T, addr, in string) string {
	t.Helper()
	return strings.TrimSuffix(roundTripRaw(t, addr, in+"mn\r\n"), "MN\r\n")
}

// roundTripRaw sends in (which must end in "mn\r\n") to a fresh connection
// and returns everything memcached answered up to and including "MN\r\n".
func roundTripRaw(t *testing.T, addr, in string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if _, err := c.Write([]byte(in)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte("MN\r\n")) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return string(got) + "<EOF>"
		}
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
	}
	return string(got)
}

// TestErrorsMatchMemcached checks that the replies the parser gives for bad
// input are byte for byte what a real memcached 1.6.18 answers (nothing,
// where memcached is silent), and that the forwarded form of good requests
// (noreply removed; q sent with "mn" after it) gets exactly what memcached
// answers the client's own form, framed by ParseReply or ParseQuietReply,
// with Suppress agreeing with memcached.
func TestErrorsMatchMemcached(t *testing.T) {
	mc := testserver.Memcached(t)
	var req Request

	bad := []string{
		"bogus\r\n", "GET a\r\n", "\r\n", "get\r\n", "\n", " \r\n", "x\r\n", "\x00get a\r\n",
		"get " + longKey + "\r\n", "mg " + longKey + " v\r\n", "get a " + longKey + " b\r\n",
		"gat x a\r\n", "gat a\r\n", "gat 10\r\n", "gat 1\t2\r\n", "set x 0 0\r\n", "set x 0 0 -1\r\n", "set x 0 0 a\r\n",
		"set x 0 0 a noreply\r\n", "set x 0 0 noreply\r\n", "set x -1 0 1\r\n", "set x 0 0 1 noreply extra\r\n",
		"set " + longKey + " 0 0 1\r\n", "set " + longKey + " 0 0 1 noreply\r\n", "cas k 0 0 1 -1\r\n",
		"cas k 0 0 1 x noreply\r\n", "set k 0 0 2147483647\r\n",
		"delete a 5\r\n", "delete a noreply extra\r\n", "delete a 5 noreply\r\n", "delete a x noreply\r\n",
		"incr a x\r\n", "incr a x noreply\r\n", "incr a -1\r\n",
		"touch a\r\n", "touch a x\r\n", "touch a x noreply\r\n", "decr a 18446744073709551616\r\n",
		"flush_all x\r\n", "flush_all noreply noreply\r\n", "flush_all 1 2 3\r\n",
		"verbosity\r\n", "verbosity foo bar my\r\n", "mg\r\n", "ms a\r\n", "ms a b\r\n", "md\r\n",
		"ma\r\n", "me\r\n", "me " + longKey + "\r\n", "mz a\r\n", "ms a -1\r\n",
		"ms a 1 " + strings.Repeat("T1 ", 18) + "\r\n", "ms " + longKey + " 1\r\n",
		"foo bar HTTP\r\n", "a HTTP/1.1\r\n", "sets a b\r\n",
	}
	for _, in := range bad {
		p := NewParser(Limits{})
		_, err := p.Parse([]byte(in), &req)
		var e *Error
		if !errors.As(err, &e) || e.Close || e.Skip != len(in) {
			t.Fatalf("Parse(%q) = %v; want *Error skipping the line", in, err)
		}
		if got, want := string(e.Reply), roundTrip(t, mc.Addr, in); got != want {
			t.Errorf("reply to %q: got %q; want %q (memcached)", in, got, want)
		}
	}

	// memcached closes the connection on these (the proxy too, silently).
	for _, in := range []string{"GET / HTTP/1.1\r\n", "foo HTTP/\r\n", "bogus " + strings.Repeat("x", 3000)} {
		mn := "mn\r\n"
		if !strings.HasSuffix(in, "\n") {
			mn = "" // memcached sees a long line without its end
		}
		p := NewParser(Limits{})
		_, err := p.Parse([]byte(in), &req)
		var e *Error
		if !errors.As(err, &e) || !e.Close || len(e.Reply) != 0 {
			t.Fatalf("Parse(%q) = %v; want a silent close", in, err)
		}
		if got := roundTripRaw(t, mc.Addr, in+mn); got != "<EOF>" {
			t.Errorf("memcached answered %q to %q; want a close", got, in)
		}
	}

	// Data blocks: a bad terminator is answered and skipped with the block;
	// a refused storage line is skipped alone, its block read as a command.
	for _, in := range []string{
		"set k 0 0 1\r\nab\r\n", "set k 0 0 1 noreply\r\nabc\r\n", "set k 0 0 3\r\nabcXY",
	} {
		p := NewParser(Limits{})
		_, err := p.Parse([]byte(in), &req)
		var e *Error
		if !errors.As(err, &e) || e.Close {
			t.Fatalf("Parse(%q) = %v; want a skipping *Error", in, err)
		}
		tail := in[e.Skip:]
		want := roundTrip(t, mc.Addr, in)
		if tail != "" {
			want = strings.TrimSuffix(want, roundTrip(t, mc.Addr, tail))
		}
		if got := string(e.Reply); got != want {
			t.Errorf("reply to %q: got %q; want %q (memcached)", in, got, want)
		}
	}

	// Good requests: what memcached answers to the client's own form
	// equals what the forwarded form gets minus what Suppress drops.
	good := []string{
		"set n 0 0 1\r\n5\r\n", "set n 0 0 1 noreply\r\n5\r\n", "get n nope\r\n", "gets n\r\n",
		"incr n 2 noreply\r\n", "incr nope 1 noreply\r\n", "decr n 1\r\n", "touch n 100 noreply\r\n",
		"gat 100 n\r\n", "append n 0 0 1 noreply\r\n0\r\n", "add n 0 0 1 noreply\r\nx\r\n",
		"delete nope noreply\r\n", "mg n q v k\r\n", "mg nope q v\r\n", "mg nope v\r\n", "mg n q\r\n",
		"ms m 3 q T0\r\nabc\r\n", "ms m 3 q ME\r\nabc\r\n", "ma n q\r\n", "ma n q v\r\n",
		"ma nope q\r\n", "md m q\r\n", "md m q\r\n", "me n\r\n", "mg bg== b v\r\n",
		"ms bg== 1 b q\r\nz\r\n", "mg bg== b v k\r\n", "flush_all noreply\r\n", "mg n q v\r\n",
		"mg a% b\r\n", "mg n q q\r\n", "mg n q zz\r\n", "md n q q\r\n", "ma nope q N0 J5 D1 v q\r\n",
		"ms n 1 q\r\nxyz", "ms n 1 I q\r\nx\r\n", "mg n " + strings.Repeat("v ", 20) + "q\r\n",
		"get \x10k \x01\x02\r\n", "set \x10k 0 0 1\r\nz\r\n", "get \x10k\r\n", "set k\t 0\t 0 1\r\nz\r\n",
		"incr zz 1 noreply\x00\r\n", "set k 99999999999 0 1\r\na\r\n", "set k 0 0 4294967297\r\na\r\n",
		"flush_all 0 x\r\n", "verbosity 1 x\r\n", "touch n 4294967297\r\n", "incr n +1\r\n", "decr n \t1\r\n",
		"get k\x00junk\r\n", "delete n 0\r\n", "delete noreply\r\n", "incr zz 1\tx noreply\x00\r\n",
	}
	for _, in := range good {
		p := NewParser(Limits{})
		n, err := p.Parse([]byte(in), &req)
		if err != nil || n != len(in) {
			t.Fatalf("Parse(%q) = %d, %v", in, n, err)
		}
		if req.Cmd.Class() == ClassLocal {
			continue
		}
		want := roundTrip(t, mc.Addr, in)
		fwd := string(req.AppendForward(nil))
		parse := ParseReply
		var rb []byte
		if req.Quiet {
			parse = ParseQuietReply
			rb = []byte(roundTripRaw(t, mc.Addr, fwd))
		} else {
			rb = []byte(roundTrip(t, mc.Addr, fwd))
		}
		rn, rep, err := parse(rb, req.Cmd)
		if err != nil || rn != len(rb) {
			t.Fatalf("parse(%q) for %q = %d, %+v, %v; want one complete reply", rb, fwd, rn, rep, err)
		}
		got := string(rb)
		if req.Quiet {
			got = string(rb[:rep.Body])
		}
		if Suppress(&req, rep) {
			got = ""
		}
		if stateful(in) {
			continue
		}
		if got != want {
			t.Errorf("%q: proxy would answer %q; memcached answers %q", in, got, want)
		}
	}
}

// stateful reports requests whose second run answers differently from the
// first because the first changed the item (so the replies compared above
// cannot be equal).
func stateful(in string) bool {
	for _, p := range []string{"incr n", "decr n", "append", "ma n", "md m", "ms m 3 q ME", "me ", "md n", "delete n"} {
		if strings.HasPrefix(in, p) {
			return true
		}
	}
	return false
}
