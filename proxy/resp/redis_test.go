package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// exchange sends in on a fresh connection and returns the bytes the server
// answered until it closed the connection (closing) or sent want replies.
func exchange(t *testing.T, addr string, in []byte, replies int, closing bool) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	if closing {
		out, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("read: %v (got %q)", err, out)
		}
		return out
	}
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		rest, got := out, 0
		for {
			n, _, err := ParseReply(rest)
			if err != nil {
				t.Fatalf("server reply %q: %v", out, err)
			}
			if n == 0 {
				break
			}
			got++
			rest = rest[n:]
		}
		if got >= replies {
			return out
		}
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			t.Fatalf("read after %q: %v", out, err)
		}
	}
}

func TestProtocolErrorsMatchRedis(t *testing.T) {
	srv := testserver.Redis(t)
	big := strings.Repeat("a", 70<<10)
	digits := strings.Repeat("1", 70<<10)
	for _, in := range []string{
		"*abc\r\n", "*-\r\n", "*01\r\n", "*3000000000\r\n",
		"*1\r\nx\r\n", "*2\r\n$3\r\nget\r\n:1\r\n",
		"*1\r\n$abc\r\n", "*1\r\n$-5\r\n", "*1\r\n$536870913\r\n",
		"set \"a\r\n", "get \"a\"b\r\n", "get 'a\r\n", "get 'a'b\r\n",
		big, "*" + digits, "*1\r\n$" + digits,
	} {
		name := in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, errReply := parseAll(t, NewParser(Limits{}), []byte(in))
			if errReply == "" {
				t.Fatalf("parser accepted %q", name)
			}
			got := exchange(t, srv.Addr, []byte(in), 0, true)
			if string(got) != errReply {
				t.Errorf("parser %q; redis-server %q", errReply, got)
			}
		})
	}
}

func TestInlineSplitMatchesRedis(t *testing.T) {
	srv := testserver.Redis(t)
	for _, line := range []string{
		`ECHO "a b"`, `ECHO "\x41\x4g\n\r\t\b\a\z\""`, `ECHO 'it\'s \n'`, `ECHO ab"c d"`, `ECHO ""`, `ECHO   x  `,
		"ECHO a\tb", `ECHO 'a"b'`, `ECHO "a'b"`, "ECHO \"\\\\\"",
	} {
		var req Request
		p := NewParser(Limits{})
		in := []byte(line + "\r\n")
		n, err := p.Parse(in, &req)
		if err != nil || n != len(in) {
			t.Errorf("Parse(%q) = %d, %v", line, n, err)
			continue
		}
		got := exchange(t, srv.Addr, in, 1, false)
		want := string(got)
		var mine string
		if len(req.Args) == 2 {
			mine = string(AppendBulk(nil, req.Args[1]))
		} else {
			mine = string(AppendError(nil, "ERR wrong number of arguments for 'echo' command"))
		}
		if mine != want {
			t.Errorf("%s: parser %q; redis-server %q", line, mine, want)
		}
	}
}

func TestCommandErrorsMatchRedis(t *testing.T) {
	srv := testserver.Redis(t)
	long := strings.Repeat("x", 100)
	tests := []struct {
		in   string
		mine func(a [][]byte) []byte
	}{
		{"FOO a b", func(a [][]byte) []byte { return ErrUnknownCommand(nil, a[0], a[1:]) }},
		{"foo", func(a [][]byte) []byte { return ErrUnknownCommand(nil, a[0], a[1:]) }},
		{"foo " + long + " " + long + " c", func(a [][]byte) []byte { return ErrUnknownCommand(nil, a[0], a[1:]) }},
		{strings.Repeat("n", 200) + " a", func(a [][]byte) []byte { return ErrUnknownCommand(nil, a[0], a[1:]) }},
		{"get", func(a [][]byte) []byte { return ErrWrongArity(nil, Lookup(a[0]).Name) }},
		{"client setname", func(a [][]byte) []byte { return ErrWrongArity(nil, Lookup(a[0]).Resolve(a).Name) }},
		{"client", func(a [][]byte) []byte { return ErrWrongArity(nil, Lookup(a[0]).Name) }},
		{"client foo", func(a [][]byte) []byte { return ErrUnknownSubcommand(nil, a[1], Lookup(a[0]).Name) }},
		{"COMMAND COUNT", func(a [][]byte) []byte { return AppendCommandCount(nil) }},
		{"COMMAND INFO get nosuch client|kill", func(a [][]byte) []byte { return AppendCommandInfo(nil, a[2:]) }},
	}
	for _, tt := range tests {
		a := args(tt.in)
		got := exchange(t, srv.Addr, AppendCommand(nil, a...), 1, false)
		if mine := tt.mine(a); !bytes.Equal(mine, got) {
			t.Errorf("%.50s: mine %q; redis-server %q", tt.in, mine, got)
		}
	}
	// COMMAND with no arguments: same entries, in some order.
	got := exchange(t, srv.Addr, AppendCommand(nil, []byte("COMMAND")), 1, false)
	var want, mine []string
	for it := NewElements(got); it.Next(); {
		want = append(want, normalizeEntry(t, it.Elem()))
	}
	for it := NewElements(AppendCommandAll(nil)); it.Next(); {
		mine = append(mine, normalizeEntry(t, it.Elem()))
	}
	if len(mine) != len(want) {
		t.Fatalf("COMMAND: %d entries; redis-server %d", len(mine), len(want))
	}
	set := map[string]bool{}
	for _, e := range want {
		set[e] = true
	}
	for _, e := range mine {
		if !set[e] {
			t.Errorf("COMMAND entry not in redis-server's reply: %.80q", e)
		}
	}
}

// normalizeEntry returns a COMMAND entry with its subcommands sorted: Redis
// lists them in its dictionary's (randomly seeded) order.
func normalizeEntry(t *testing.T, e []byte) string {
	var fields []string
	for it := NewElements(e); it.Next(); {
		fields = append(fields, string(it.Elem()))
	}
	if len(fields) != 10 {
		t.Fatalf("COMMAND entry with %d fields: %.80q", len(fields), e)
	}
	var subs []string
	for it := NewElements([]byte(fields[9])); it.Next(); {
		subs = append(subs, normalizeEntry(t, it.Elem()))
	}
	sort.Strings(subs)
	return strings.Join(fields[:9], "") + strings.Join(subs, "")
}

// getKeysCases builds a request for every command in the table from its
// arity (plus the hand-written tricky cases), for COMMAND GETKEYS.
func getKeysCases() [][][]byte {
	var out [][][]byte
	build := func(c *Command) {
		n := c.Arity
		if n < 0 {
			n = -n + 2
		}
		var a [][]byte
		if c.Parent != nil {
			a = append(a, []byte(c.Parent.Name), []byte(c.SubName()))
		} else {
			a = append(a, []byte(c.Name))
		}
		for i := len(a); i < n; i++ {
			a = append(a, []byte(fmt.Sprintf("a%d", i)))
		}
		out = append(out, a)
	}
	for _, c := range Commands() {
		if c.Flags&FlagMovableKeys == 0 {
			build(c)
		}
		for _, s := range c.Sub {
			if s.Flags&FlagMovableKeys == 0 && s.Name != "client|setinfo" {
				build(s)
			}
		}
	}
	for _, kc := range keyCases {
		out = append(out, args(kc.in))
	}
	return out
}

func TestKeyIndexesAgainstRedis(t *testing.T) {
	srv := testserver.Redis(t)
	cases := getKeysCases()
	// One pipelined connection for all of them.
	var in []byte
	for _, a := range cases {
		in = AppendCommand(in, append([][]byte{[]byte("COMMAND"), []byte("GETKEYS")}, a...)...)
	}
	out := exchange(t, srv.Addr, in, len(cases), false)
	for _, a := range cases {
		n, _, err := ParseReply(out)
		if err != nil || n == 0 {
			t.Fatalf("framing redis-server's replies: %d, %v", n, err)
		}
		want := out[:n]
		out = out[n:]
		if mine := AppendCommandGetKeys(nil, a); !bytes.Equal(mine, want) {
			t.Errorf("COMMAND GETKEYS %q: mine %q; redis-server %q", a, mine, want)
		}
	}
	t.Logf("%d requests compared", len(cases))
}
