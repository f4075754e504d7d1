package memcache

import (
	"errors"
	"testing"
)

var replyCases = []struct {
	cmd  Command
	in   string
	n    int // 0: len(in)
	want Reply
}{
	{CmdGet, "END\r\n", 0, Reply{Status: StatusEnd, Body: 0}},
	{CmdGet, "VALUE a 0 1\r\nx\r\nEND\r\n", 0, Reply{Status: StatusEnd, Hits: 1, Body: 16}},
	{CmdGets, "VALUE a 0 5 99\r\nEND\r\n\r\nVALUE b 3 7\r\nVALUE\r\n\r\nEND\r\nget", 50, Reply{Status: StatusEnd, Hits: 2, Body: 45}},
	{CmdGat, "VALUE a 0 0\r\n\r\nEND\n", 0, Reply{Status: StatusEnd, Hits: 1, Body: 15}},
	{CmdGet, "SERVER_ERROR out of memory\r\n", 0, Reply{Status: StatusServerError, Body: 28}},
	{CmdGet, "ERROR\r\nEND\r\n", 7, Reply{Status: StatusError, Body: 7}},
	{CmdSet, "STORED\r\n", 0, Reply{Status: StatusStored, Body: 8}},
	{CmdAdd, "NOT_STORED\r\n", 0, Reply{Status: StatusNotStored, Body: 12}},
	{CmdCas, "EXISTS\r\n", 0, Reply{Status: StatusExists, Body: 8}},
	{CmdCas, "NOT_FOUND\r\n", 0, Reply{Status: StatusNotFound, Body: 11}},
	{CmdSet, "SERVER_ERROR object too large for cache\r\n", 0, Reply{Status: StatusServerError, Body: 41}},
	{CmdDelete, "DELETED\r\n", 0, Reply{Status: StatusDeleted, Body: 9}},
	{CmdDelete, "NOT_FOUND\r\n", 0, Reply{Status: StatusNotFound, Body: 11}},
	{CmdIncr, "42\r\n", 0, Reply{Status: StatusNumber, Body: 4}},
	{CmdDecr, "9 \r\n", 0, Reply{Status: StatusNumber, Body: 4}},
	{CmdIncr, "NOT_FOUND\r\n", 0, Reply{Status: StatusNotFound, Body: 11}},
	{CmdIncr, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", 0, Reply{Status: StatusClientError, Body: 62}},
	{CmdTouch, "TOUCHED\r\n", 0, Reply{Status: StatusTouched, Body: 9}},
	{CmdFlushAll, "OK\r\n", 0, Reply{Status: StatusOK, Body: 4}},
	{CmdVerbosity, "OK\r\n", 0, Reply{Status: StatusOK, Body: 4}},
	{CmdVersion, "VERSION 1.6.18\r\n", 0, Reply{Status: StatusVersion, Body: 16}},
	{CmdStats, "STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n", 0, Reply{Status: StatusEnd, Body: 27}},
	{CmdMetaGet, "VA 5 f0 t-1\r\nEN\r\nx\r\n", 0, Reply{Status: StatusVA, Hits: 1, Body: 20}},
	{CmdMetaGet, "HD c5 Oop\r\n", 0, Reply{Status: StatusHD, Hits: 1, Body: 11}},
	{CmdMetaGet, "EN\r\n", 0, Reply{Status: StatusEN, Body: 4}},
	{CmdMetaGet, "CLIENT_ERROR bad command line format\r\n", 0, Reply{Status: StatusClientError, Body: 38}},
	{CmdMetaSet, "HD\r\n", 0, Reply{Status: StatusHD, Body: 4}},
	{CmdMetaSet, "NS\r\n", 0, Reply{Status: StatusNS, Body: 4}},
	{CmdMetaSet, "EX Oab\r\n", 0, Reply{Status: StatusEX, Body: 8}},
	{CmdMetaSet, "NF\r\n", 0, Reply{Status: StatusNF, Body: 4}},
	{CmdMetaDelete, "HD k\r\n", 0, Reply{Status: StatusHD, Body: 6}},
	{CmdMetaDelete, "NF\r\n", 0, Reply{Status: StatusNF, Body: 4}},
	{CmdMetaArith, "VA 2 t-1\r\n10\r\n", 0, Reply{Status: StatusVA, Body: 14}},
	{CmdMetaArith, "NS\r\n", 0, Reply{Status: StatusNS, Body: 4}},
	{CmdMetaNoop, "MN\r\n", 0, Reply{Status: StatusMN, Body: 4}},
	{CmdMetaDebug, "ME k exp=-1 la=2 cas=12 fetch=no cls=1 size=61\r\n", 0, Reply{Status: StatusME, Body: 48}},
	{CmdMetaDebug, "EN\r\n", 0, Reply{Status: StatusEN, Body: 4}},
}

func TestParseReply(t *testing.T) {
	for _, c := range replyCases {
		wn := c.n
		if wn == 0 {
			wn = len(c.in)
		}
		n, rep, err := ParseReply([]byte(c.in), c.cmd)
		if err != nil || n != wn || rep != c.want {
			t.Fatalf("ParseReply(%q, %v) = %d, %+v, %v; want %d, %+v", c.in, c.cmd, n, rep, err, wn, c.want)
		}
		for i := 0; i < wn; i++ {
			n, _, err := ParseReply([]byte(c.in[:i]), c.cmd)
			if n != 0 || err != nil {
				t.Fatalf("ParseReply(%q, %v) prefix: n=%d err=%v; want incomplete", c.in[:i], c.cmd, n, err)
			}
		}
	}
}

func TestParseReplyMalformed(t *testing.T) {
	cases := []struct {
		cmd Command
		in  string
	}{
		{CmdGet, "STORED\r\n"},
		{CmdGet, "VALUE a 0 x\r\n"},
		{CmdGet, "VALUE a 0 1\r\nxy\r\n"},
		{CmdGet, "VALUE a 0 1\r\nx\r\nSTORED\r\n"},
		{CmdSet, "DELETED\r\n"},
		{CmdDelete, "STORED\r\n"},
		{CmdIncr, "4x\r\n"},
		{CmdTouch, "OK\r\n"},
		{CmdVersion, "OK\r\n"},
		{CmdStats, "VALUE x\r\n"},
		{CmdMetaGet, "HDX\r\n"},
		{CmdMetaGet, "VA x\r\n"},
		{CmdMetaGet, "VA 1\r\nxyz"},
		{CmdMetaDelete, "NS\r\n"},
		{CmdMetaSet, "VA 1\r\nx\r\n"},
		{CmdMetaNoop, "HD\r\n"},
		{CmdQuit, "OK\r\n"},
	}
	for _, c := range cases {
		n, _, err := ParseReply([]byte(c.in), c.cmd)
		if n != 0 || !errors.Is(err, ErrMalformedReply) {
			t.Errorf("ParseReply(%q, %v) = %d, %v; want ErrMalformedReply", c.in, c.cmd, n, err)
		}
	}
	long := make([]byte, maxReplyLine+1)
	if _, _, err := ParseReply(long, CmdSet); !errors.Is(err, ErrMalformedReply) {
		t.Errorf("ParseReply(overlong line) err = %v; want ErrMalformedReply", err)
	}
}

func TestSuppress(t *testing.T) {
	p := NewParser(Limits{})
	cases := []struct {
		req    string
		status Status
		want   bool
	}{
		{"set k 0 0 1 noreply\r\nx\r\n", StatusStored, true},
		{"set k 0 0 1 noreply\r\nx\r\n", StatusNotStored, true},
		{"set k 0 0 1 noreply\r\nx\r\n", StatusClientError, true},
		{"set k 0 0 1 noreply\r\nx\r\n", StatusServerError, true},
		{"set k 0 0 1\r\nx\r\n", StatusStored, false},
		{"delete k noreply\r\n", StatusNotFound, true},
		{"incr k 1 noreply\r\n", StatusNumber, true},
		{"flush_all noreply\r\n", StatusOK, true},
		{"mg k q v\r\n", StatusMN, true},
		{"mg k q v\r\n", StatusEN, false},
		{"mg k q v\r\n", StatusVA, false},
		{"mg k v\r\n", StatusEN, false},
		{"ms k 1 q\r\nx\r\n", StatusMN, true},
		{"ms k 1 q\r\nx\r\n", StatusNS, false},
		{"md k q\r\n", StatusMN, true},
		{"ma k q\r\n", StatusClientError, false},
	}
	var req Request
	for _, c := range cases {
		if _, err := p.Parse([]byte(c.req), &req); err != nil {
			t.Fatalf("Parse(%q): %v", c.req, err)
		}
		if got := Suppress(&req, Reply{Status: c.status}); got != c.want {
			t.Errorf("Suppress(%q, %v) = %v; want %v", c.req, c.status, got, c.want)
		}
	}
}
