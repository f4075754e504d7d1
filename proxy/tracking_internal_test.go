package proxy

import (
	"bufio"
	"strings"
	"testing"
)

// TestReadR3: the tracking connection's RESP3 reader, on the replies and
// pushes redis-server 7 sends it.
func TestReadR3(t *testing.T) {
	in := "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n" + // HELLO 3 (cut)
		"+OK\r\n" +
		">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nhot\r\n$1\r\na\r\n" +
		">2\r\n$10\r\ninvalidate\r\n_\r\n" +
		"|1\r\n+ttl\r\n:3\r\n+PONG\r\n" +
		"-ERR unknown\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	next := func() r3 {
		t.Helper()
		v, err := readR3(br)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := next(); v.typ != '%' || len(v.elems) != 4 || string(v.elems[3].str) != "3" {
		t.Errorf("map: got %+v", v)
	}
	if v := next(); v.typ != '+' || string(v.str) != "OK" {
		t.Errorf("simple: got %+v", v)
	}
	v := next()
	if v.typ != '>' || len(v.elems) != 2 || string(v.elems[0].str) != "invalidate" ||
		len(v.elems[1].elems) != 2 || string(v.elems[1].elems[0].str) != "hot" || string(v.elems[1].elems[1].str) != "a" {
		t.Errorf("invalidate push: got %+v", v)
	}
	if v := next(); v.typ != '>' || len(v.elems) != 2 || !v.elems[1].null {
		t.Errorf("flush push: got %+v; want a null second element", v)
	}
	if v := next(); v.typ != '+' || string(v.str) != "PONG" {
		t.Errorf("after an attribute: got %+v; want PONG", v)
	}
	if v := next(); v.typ != '-' || string(v.str) != "ERR unknown" {
		t.Errorf("error: got %+v", v)
	}
	if _, err := readR3(bufio.NewReader(strings.NewReader("$x\r\n"))); err == nil {
		t.Error("bad length: no error")
	}
}
