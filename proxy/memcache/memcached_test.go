package memcache

import (
	"bytes"
	"errors"
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
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if _, err := c.Write([]byte(in + "mn\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte("MN\r\n")) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
	}
	return strings.TrimSuffix(string(got), "MN\r\n")
}

// TestErrorsMatchMemcached checks that the replies the parser gives for bad
// input are byte for byte what a real memcached 1.6 answers, and that the
// forwarded form of good requests (noreply and q removed) gets exactly one
// reply that ParseReply frames, with Suppress agreeing with memcached.
func TestErrorsMatchMemcached(t *testing.T) {
	mc := testserver.Memcached(t)
	p := NewParser(Limits{})
	var req Request

	bad := []string{
		"bogus\r\n", "GET a\r\n", "\r\n", "get\r\n",
		"get " + longKey + "\r\n", "mg " + longKey + " v\r\n",
		"gat x a\r\n", "gat a\r\n", "set x 0 0\r\n", "set x 0 0 -1\r\n", "set x 0 0 a\r\n",
		"delete a 5\r\n", "delete a noreply extra\r\n", "incr a x\r\n", "touch a\r\n",
		"touch a x\r\n", "flush_all x\r\n", "verbosity\r\n", "mg\r\n", "ms a\r\n", "ms a b\r\n",
		"mg a% b\r\n", "md\r\n",
	}
	for _, in := range bad {
		_, err := p.Parse([]byte(in), &req)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q) = %v; want *Error", in, err)
		}
		if got, want := string(e.Reply), roundTrip(t, mc.Addr, in); got != want {
			t.Errorf("reply to %q: got %q; want %q (memcached)", in, got, want)
		}
	}

	// A bad data chunk: memcached's first reply line is ours (we then close).
	in := "set k 0 0 1\r\nab\r\n"
	_, err := p.Parse([]byte(in), &req)
	var e *Error
	if !errors.As(err, &e) || !e.Close {
		t.Fatalf("Parse(%q) = %v; want a closing *Error", in, err)
	}
	if got, want := string(e.Reply), roundTrip(t, mc.Addr, in); !strings.HasPrefix(want, got) {
		t.Errorf("reply to %q: got %q; want a prefix of %q (memcached)", in, got, want)
	}

	// Good requests: what memcached answers to the client's own form
	// (with noreply/q) equals the forwarded form's reply minus what
	// Suppress drops.
	good := []string{
		"set n 0 0 1\r\n5\r\n", "set n 0 0 1 noreply\r\n5\r\n", "get n nope\r\n", "gets n\r\n",
		"incr n 2 noreply\r\n", "incr nope 1 noreply\r\n", "decr n 1\r\n", "touch n 100 noreply\r\n",
		"gat 100 n\r\n", "append n 0 0 1 noreply\r\n0\r\n", "add n 0 0 1 noreply\r\nx\r\n",
		"delete nope noreply\r\n", "mg n q v k\r\n", "mg nope q v\r\n", "mg nope v\r\n", "mg n q\r\n",
		"ms m 3 q T0\r\nabc\r\n", "ms m 3 q ME\r\nabc\r\n", "ma n q\r\n", "ma n q v\r\n",
		"ma nope q\r\n", "md m q\r\n", "md m q\r\n", "me n\r\n", "mg bg== b v\r\n",
		"ms bg== 1 b q\r\nz\r\n", "mg bg== b v k\r\n", "flush_all noreply\r\n", "mg n q v\r\n",
	}
	for _, in := range good {
		n, err := p.Parse([]byte(in), &req)
		if err != nil || n != len(in) {
			t.Fatalf("Parse(%q) = %d, %v", in, n, err)
		}
		want := roundTrip(t, mc.Addr, in)
		fwd := string(req.AppendForward(nil))
		rb := []byte(roundTrip(t, mc.Addr, fwd))
		// The client's own form changed the state the same way the forwarded
		// one did; for commands whose answer depends on it (add, ms ME,
		// md), compare against a fresh answer only where deterministic.
		rn, rep, err := ParseReply(rb, req.Cmd)
		if err != nil || rn != len(rb) {
			t.Fatalf("ParseReply(%q) for %q = %d, %+v, %v; want one complete reply", rb, fwd, rn, rep, err)
		}
		got := string(rb)
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
	for _, p := range []string{"incr n", "decr n", "append", "ma n", "md m", "ms m 3 q ME", "me "} {
		if strings.HasPrefix(in, p) {
			return true
		}
	}
	return false
}
