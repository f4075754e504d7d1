package memcache

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type parseWant struct {
	cmd     Command
	n       int // 0: len(input)
	keys    []string
	noreply bool
	quiet   bool
	base64  bool
	primary bool
	exptime string
	value   string
	args    []string
}

var longKey = strings.Repeat("k", 251)
var maxKey = strings.Repeat("k", 250)

var goodCases = []struct {
	in   string
	want parseWant
}{
	{"get a\r\n", parseWant{cmd: CmdGet, keys: []string{"a"}}},
	{"get a\n", parseWant{cmd: CmdGet, keys: []string{"a"}}},
	{"get a b  c\r\n", parseWant{cmd: CmdGet, keys: []string{"a", "b", "c"}}},
	{"get " + maxKey + "\r\n", parseWant{cmd: CmdGet, keys: []string{maxKey}}},
	{"get a noreply\r\n", parseWant{cmd: CmdGet, keys: []string{"a", "noreply"}}},
	{"gets a b\r\n", parseWant{cmd: CmdGets, keys: []string{"a", "b"}}},
	{"gat 10 a b\r\n", parseWant{cmd: CmdGat, keys: []string{"a", "b"}, exptime: "10"}},
	{"gats -1 a\r\n", parseWant{cmd: CmdGats, keys: []string{"a"}, exptime: "-1"}},
	{"get a\r\nget b\r\n", parseWant{cmd: CmdGet, n: 7, keys: []string{"a"}}},
	{"set k 0 0 5\r\nhello\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "hello"}},
	{"set k 0 0 5\nhello\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "hello"}},
	{"set k 1 2 0\r\n\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: ""}},
	{"set k 0 0 7 noreply\r\nEND\r\nxx\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "END\r\nxx", noreply: true}},
	{"set k 0 0 1 garbage\r\nx\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "x"}},
	{"add k 0 0 1\r\nx\r\n", parseWant{cmd: CmdAdd, keys: []string{"k"}, value: "x"}},
	{"replace k 0 0 1\r\nx\r\n", parseWant{cmd: CmdReplace, keys: []string{"k"}, value: "x"}},
	{"append k 0 0 1\r\nx\r\n", parseWant{cmd: CmdAppend, keys: []string{"k"}, value: "x"}},
	{"prepend k 0 0 1\r\nx\r\n", parseWant{cmd: CmdPrepend, keys: []string{"k"}, value: "x"}},
	{"cas k 0 0 1 99 noreply\r\nx\r\n", parseWant{cmd: CmdCas, keys: []string{"k"}, value: "x", noreply: true}},
	{"delete k\r\n", parseWant{cmd: CmdDelete, keys: []string{"k"}}},
	{"delete k 0\r\n", parseWant{cmd: CmdDelete, keys: []string{"k"}}},
	{"delete k noreply\r\n", parseWant{cmd: CmdDelete, keys: []string{"k"}, noreply: true}},
	{"delete noreply\r\n", parseWant{cmd: CmdDelete, keys: []string{"noreply"}}},
	{"delete k 0 noreply\r\n", parseWant{cmd: CmdDelete, keys: []string{"k"}, noreply: true}},
	{"incr k 5\r\n", parseWant{cmd: CmdIncr, keys: []string{"k"}}},
	{"decr k 18446744073709551615 noreply\r\n", parseWant{cmd: CmdDecr, keys: []string{"k"}, noreply: true}},
	{"touch k 100\r\n", parseWant{cmd: CmdTouch, keys: []string{"k"}, exptime: "100"}},
	{"flush_all\r\n", parseWant{cmd: CmdFlushAll}},
	{"flush_all 10\r\n", parseWant{cmd: CmdFlushAll, args: []string{"10"}}},
	{"flush_all noreply\r\n", parseWant{cmd: CmdFlushAll, noreply: true}},
	{"flush_all 0 noreply\r\n", parseWant{cmd: CmdFlushAll, noreply: true, args: []string{"0"}}},
	{"version\r\n", parseWant{cmd: CmdVersion}},
	{"verbosity 1\r\n", parseWant{cmd: CmdVerbosity, args: []string{"1"}}},
	{"verbosity 1 noreply\r\n", parseWant{cmd: CmdVerbosity, args: []string{"1"}, noreply: true}},
	{"verbosity 1 x\r\n", parseWant{cmd: CmdVerbosity, args: []string{"1"}}},
	{"get a\x01b \x10c\r\n", parseWant{cmd: CmdGet, keys: []string{"a\x01b", "\x10c"}}},
	{"get a\tb\r\n", parseWant{cmd: CmdGet, keys: []string{"a\tb"}}},
	{"get a\r\r\n", parseWant{cmd: CmdGet, keys: []string{"a\r"}}},
	{"get a\x00b c\r\n", parseWant{cmd: CmdGet, keys: []string{"a"}}},
	{"incr zz 1 noreply\x00\r\n", parseWant{cmd: CmdIncr, keys: []string{"zz"}, noreply: true}},
	{"incr zz 1\tx\r\n", parseWant{cmd: CmdIncr, keys: []string{"zz"}}},
	{"incr zz 1 noreplyx\r\n", parseWant{cmd: CmdIncr, keys: []string{"zz"}}},
	{"set k 99999999999 0 4294967297\r\na\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "a"}},
	{"set k +1 \t-1 1\r\na\r\n", parseWant{cmd: CmdSet, keys: []string{"k"}, value: "a"}},
	{"flush_all 5 x\r\n", parseWant{cmd: CmdFlushAll, args: []string{"5"}}},
	{"mg a% b\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"a%"}}},
	{"ms k 1 q\r\nxyz", parseWant{cmd: CmdMetaSet, keys: []string{"k"}, value: "x", quiet: true}},
	{"me k q\r\n", parseWant{cmd: CmdMetaDebug, keys: []string{"k"}}},
	{"stats\r\n", parseWant{cmd: CmdStats}},
	{"stats slabs\r\n", parseWant{cmd: CmdStats, args: []string{"slabs"}}},
	{"quit\r\n", parseWant{cmd: CmdQuit}},
	{"config get cluster\r\n", parseWant{cmd: CmdConfigGet, args: []string{"get", "cluster"}}},
	{"mg k v f t\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}}},
	{"mg k q v Oq123 k\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, quiet: true}},
	{"mg k Oq\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}}},
	{"mg Zm9v b v\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"Zm9v"}, base64: true}},
	{"mg k\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}}},
	// Flags that write or ask for the CAS value keep an mg on the primary.
	{"mg k v N30\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, primary: true}},
	{"mg k v T30\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, primary: true}},
	{"mg k v R30\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, primary: true}},
	{"mg k v E5\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, primary: true}},
	{"mg k c v\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}, primary: true}},
	{"mg k s v t k f h l O1\r\n", parseWant{cmd: CmdMetaGet, keys: []string{"k"}}},
	{"md k T30\r\n", parseWant{cmd: CmdMetaDelete, keys: []string{"k"}}},
	{"ms k 2 T0 F5 q\r\nhi\r\n", parseWant{cmd: CmdMetaSet, keys: []string{"k"}, value: "hi", quiet: true}},
	{"ms k 5 MA\r\nVALUE\r\n", parseWant{cmd: CmdMetaSet, keys: []string{"k"}, value: "VALUE"}},
	{"md k q\r\n", parseWant{cmd: CmdMetaDelete, keys: []string{"k"}, quiet: true}},
	{"ma k MD D5 v\r\n", parseWant{cmd: CmdMetaArith, keys: []string{"k"}}},
	{"mn\r\n", parseWant{cmd: CmdMetaNoop}},
	{"me k\r\n", parseWant{cmd: CmdMetaDebug, keys: []string{"k"}}},
	{"me Zm9v b\r\n", parseWant{cmd: CmdMetaDebug, keys: []string{"Zm9v"}, base64: true}},
}

func strs(b [][]byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := make([]string, len(b))
	for i := range b {
		s[i] = string(b[i])
	}
	return s
}

func checkGood(t *testing.T, in string, n int, err error, req *Request, w parseWant) {
	t.Helper()
	if err != nil {
		t.Fatalf("Parse(%q): error %v", in, err)
	}
	wn := w.n
	if wn == 0 {
		wn = len(in)
	}
	if n != wn || string(req.Raw) != in[:wn] {
		t.Fatalf("Parse(%q): n=%d raw=%q; want %d", in, n, req.Raw, wn)
	}
	got := parseWant{cmd: req.Cmd, n: w.n, keys: strs(req.Keys), noreply: req.Noreply, quiet: req.Quiet,
		base64: req.Base64, primary: req.Primary, exptime: string(req.Exptime), value: string(req.Value), args: strs(req.Args)}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("Parse(%q):\n got %+v\nwant %+v", in, got, w)
	}
}

func TestParseGood(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	for _, c := range goodCases {
		n, err := p.Parse([]byte(c.in), &req)
		checkGood(t, c.in, n, err, &req, c.want)
		// Every strict prefix of the request is incomplete.
		wn := c.want.n
		if wn == 0 {
			wn = len(c.in)
		}
		for i := 0; i < wn; i++ {
			n, err := p.Parse([]byte(c.in[:i]), &req)
			if n != 0 || err != nil {
				t.Fatalf("Parse(%q) prefix: n=%d err=%v; want incomplete", c.in[:i], n, err)
			}
		}
	}
}

func TestParseNeed(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	in := "set k 0 0 10\r\n0123"
	n, err := p.Parse([]byte(in), &req)
	if n != 0 || err != nil {
		t.Fatalf("got n=%d err=%v; want incomplete", n, err)
	}
	if got, want := p.Need(), len("set k 0 0 10\r\n")+12; got != want {
		t.Fatalf("Need() = %d; want %d", got, want)
	}
	if _, _ = p.Parse([]byte("set k 0 0"), &req); p.Need() != 0 {
		t.Fatalf("Need() after a partial line = %d; want 0", p.Need())
	}
}

var badCases = []struct {
	in    string
	reply string
	skip  int // -1: len(first line)
	close bool
}{
	{"bogus\r\nget a\r\n", "ERROR\r\n", 7, false},
	{"GET a\r\n", "ERROR\r\n", -1, false},
	{"\r\n", "ERROR\r\n", -1, false},
	{"   \n", "ERROR\r\n", -1, false},
	{"get\r\n", "ERROR\r\n", -1, false},
	{"get " + longKey + "\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"gat a\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false},
	{"gat 10\r\n", "END\r\n", -1, false},
	{"gat x a\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false},
	{"set x 0 0\r\n", "ERROR\r\n", -1, false},
	{"set x 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"set x 0 0 a\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"set x 0 0 a noreply\r\n", "", -1, false},
	{"set x 0 0 1 noreply extra\r\nx\r\n", "ERROR\r\n", 27, false},
	{"set " + longKey + " 0 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"set k x 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"set k 0 0 2000000\r\n", "SERVER_ERROR object too large for cache\r\n", 19 + 2000002, false},
	{"set k 0 0 2000000 noreply\r\n", "", 27 + 2000002, false},
	{"cas k 0 0 1 x\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"set k 0 0 1\r\nab\r\n", "CLIENT_ERROR bad data chunk\r\n", 16, false},
	{"set k 0 0 1 noreply\r\nab\r\n", "", 24, false},
	{"delete a 5\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", -1, false},
	{"delete a noreply extra\r\n", "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n", -1, false},
	{"delete a 5 noreply\r\n", "", -1, false},
	{"delete\r\n", "ERROR\r\n", -1, false},
	{"incr a x\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n", -1, false},
	{"incr a -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n", -1, false},
	{"incr a x noreply\r\n", "", -1, false},
	{"touch a\r\n", "ERROR\r\n", -1, false},
	{"touch a x\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false},
	{"flush_all x\r\n", "CLIENT_ERROR invalid exptime argument\r\n", -1, false},
	{"flush_all 1 2 3\r\n", "ERROR\r\n", -1, false},
	{"verbosity\r\n", "ERROR\r\n", -1, false},
	{"verbosity foo bar my\r\n", "ERROR\r\n", -1, false},
	{"verbosity x\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"verbosity noreply\r\n", "", -1, false},
	{"stats noreply\r\n", "ERROR\r\n", -1, false},
	{"config get foo\r\n", "ERROR\r\n", -1, false},
	{"version x\r\n", "ERROR\r\n", -1, false},
	{"quit now\r\n", "ERROR\r\n", -1, false},
	{"shutdown\r\n", "CLIENT_ERROR command not supported by proxy\r\n", -1, false},
	{"slabs reassign 1 2\r\n", "CLIENT_ERROR command not supported by proxy\r\n", -1, false},
	{"lru_crawler metadump all\r\n", "CLIENT_ERROR command not supported by proxy\r\n", -1, false},
	{"watch\r\n", "CLIENT_ERROR command not supported by proxy\r\n", -1, false},
	{"mg\r\n", "ERROR\r\n", -1, false},
	{"me\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"mx a\r\n", "ERROR\r\n", -1, false},
	{"mg " + longKey + " v\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"ms a\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"ms a b\r\n", "CLIENT_ERROR bad command line format\r\n", -1, false},
	{"ms k 2000000 T0\r\n", "SERVER_ERROR object too large for cache\r\n", 17 + 2000002, false},
	{"GET / HTTP/1.1\r\n", "", 0, true},
	{"bogus " + strings.Repeat("x", 2100), "", 0, true},
	{"set k 0 0 1 " + strings.Repeat(" ", 2100) + "\r\n", "", 0, true},
}

func TestParseBad(t *testing.T) {
	var req Request
	for _, c := range badCases {
		p := NewParser(Limits{})
		_, err := p.Parse([]byte(c.in), &req)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q): err = %v; want *Error", c.in, err)
		}
		skip := c.skip
		if skip < 0 {
			skip = strings.IndexByte(c.in, '\n') + 1
		}
		if string(e.Reply) != c.reply || e.Skip != skip || e.Close != c.close {
			t.Fatalf("Parse(%q): got reply %q skip %d close %v; want %q %d %v", c.in, e.Reply, e.Skip, e.Close, c.reply, skip, c.close)
		}
		if e.Error() == "" || strings.Contains(e.Error(), "%!") {
			t.Fatalf("Parse(%q): empty Error()", c.in)
		}
	}
}

func TestParseLimits(t *testing.T) {
	p := NewParser(Limits{MaxKeyLength: 3, MaxValueSize: 4, MaxLineLength: 32, MaxKeys: 2})
	var req Request
	cases := []struct {
		in, reply string
		skip      int
		close     bool
	}{
		{"get abcd\r\n", "CLIENT_ERROR bad command line format\r\n", 10, false},
		{"get a b c\r\n", "CLIENT_ERROR too many keys\r\n", 11, false},
		{"gat 1 a b c\r\n", "CLIENT_ERROR too many keys\r\n", 13, false},
		{"set a 0 0 5\r\nhello\r\n", "SERVER_ERROR object too large for cache\r\n", 20, false},
		{strings.Repeat("x", 32), "", 0, true},
		{"get " + strings.Repeat("a ", 14) + "\r\n", "", 0, true},
	}
	for _, c := range cases {
		_, err := p.Parse([]byte(c.in), &req)
		var e *Error
		if !errors.As(err, &e) || string(e.Reply) != c.reply || e.Skip != c.skip || e.Close != c.close {
			t.Fatalf("Parse(%q): got %#v; want reply %q skip %d close %v", c.in, err, c.reply, c.skip, c.close)
		}
	}
	n, err := p.Parse([]byte("get a b\r\n"), &req)
	if n != 9 || err != nil || len(req.Keys) != 2 {
		t.Fatalf("get at the limits: n=%d err=%v keys=%q", n, err, req.Keys)
	}
	if got := p.Limits(); got.MaxKeys != 2 || NewParser(Limits{}).Limits().MaxKeyLength != DefaultMaxKeyLength {
		t.Fatalf("Limits() = %+v", got)
	}
}

func TestCommandClass(t *testing.T) {
	want := map[Command]Class{
		CmdGet: ClassMultiKey, CmdGats: ClassMultiKey, CmdSet: ClassKey, CmdDelete: ClassKey,
		CmdMetaGet: ClassKey, CmdMetaDebug: ClassKey, CmdFlushAll: ClassAll, CmdVersion: ClassLocal,
		CmdVerbosity: ClassLocal, CmdStats: ClassLocal, CmdQuit: ClassLocal, CmdMetaNoop: ClassLocal,
		CmdConfigGet: ClassLocal,
	}
	for c, w := range want {
		if got := c.Class(); got != w {
			t.Errorf("%v.Class() = %v; want %v", c, got, w)
		}
	}
	for c := CmdGet; c < numCommands; c++ {
		got, refused := lookupCommand([]byte(c.String()))
		if got != c || refused {
			t.Errorf("lookupCommand(%q) = %v, %v; want %v", c.String(), got, refused, c)
		}
	}
}
