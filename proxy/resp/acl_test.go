package resp

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// everyCommand returns the table's entries that can be called, the extra
// (newer than 7.0) entries left out.
func everyCommand() []*Command {
	extra := map[string]bool{}
	for _, c := range extraCommands() {
		extra[c.Name] = true
	}
	var out []*Command
	for _, c := range Commands() {
		if !c.IsContainer() || c.CheckArity(1) {
			out = append(out, c) // (CONFIG alone is not a command)
		}
		for _, s := range c.Sub {
			if !extra[s.Name] {
				out = append(out, s)
			}
		}
	}
	return out
}

// dryrunArgs returns arguments that satisfy c's arity: the name (container
// and subcommand for a subcommand), then "x" as often as needed.
func dryrunArgs(c *Command) [][]byte {
	var args [][]byte
	for _, part := range strings.Split(c.Name, "|") {
		args = append(args, []byte(part))
	}
	n := c.Arity
	if n < 0 {
		n = -n
	}
	for len(args) < n {
		args = append(args, []byte("x"))
	}
	return args
}

// replies splits b into its top-level replies.
func replies(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n, _, err := ParseReply(b)
		if err != nil || n == 0 {
			t.Fatalf("reply %q: %v (n=%d)", b, err, n)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// TestACLCategoriesMatchRedis: the category names are redis-server's own.
func TestACLCategoriesMatchRedis(t *testing.T) {
	srv := testserver.Redis(t)
	got := exchange(t, srv.Addr, AppendCommand(nil, []byte("ACL"), []byte("CAT")), 1, false)
	want := AppendArrayHeader(nil, len(ACLCategories()))
	for _, c := range ACLCategories() {
		want = AppendBulkString(want, c)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ACL CAT: redis-server %q; table %q", got, want)
	}
}

// TestCommandTableMatchesRedis catches drift between the checked-in
// table (commands_gen.go, from go generate) and the redis-server on this
// machine: every command's COMMAND INFO entry (arity, flags, keys, ACL
// categories, subcommands) must be byte for byte the server's. If this
// fails after a Redis upgrade, run go generate ./proxy/resp and review the
// diff.
func TestCommandTableMatchesRedis(t *testing.T) {
	srv := testserver.Redis(t)
	names := [][]byte{[]byte("COMMAND"), []byte("INFO")}
	var cmds []*Command
	for _, c := range Commands() {
		names = append(names, []byte(c.Name))
		cmds = append(cmds, c)
	}
	got := exchange(t, srv.Addr, AppendCommand(nil, names...), 1, false)
	e := NewElements(got)
	i := 0
	for ; e.Next(); i++ {
		if i >= len(cmds) {
			t.Fatalf("redis-server answered more entries than asked for")
		}
		gotHead, gotSubs := infoParts(t, e.Elem())
		wantHead, wantSubs := infoParts(t, []byte(cmds[i].info))
		if gotHead != wantHead || !slices.Equal(gotSubs, wantSubs) {
			t.Errorf("%s: redis-server %q %q;\ntable %q %q", cmds[i].Name, gotHead, gotSubs, wantHead, wantSubs)
		}
	}
	if e.Err() != nil || i != len(cmds) {
		t.Fatalf("COMMAND INFO: %d entries for %d commands (%v)", i, len(cmds), e.Err())
	}
	// And nothing the server has is missing from the table.
	count := exchange(t, srv.Addr, AppendCommand(nil, []byte("COMMAND"), []byte("COUNT")), 1, false)
	if want := AppendCommandCount(nil); !bytes.Equal(count, want) {
		t.Errorf("COMMAND COUNT: redis-server %q; table %q", count, want)
	}
}

// infoParts splits a COMMAND INFO entry into its first nine fields and its
// subcommand entries, sorted (the server lists them in its hash table's
// order).
func infoParts(t *testing.T, entry []byte) (string, []string) {
	t.Helper()
	e := NewElements(entry)
	var head []byte
	var subs []string
	for i := 0; e.Next(); i++ {
		if i < 9 {
			head = append(head, e.Elem()...)
			continue
		}
		s := NewElements(e.Elem())
		for s.Next() {
			subs = append(subs, string(s.Elem()))
		}
	}
	if e.Err() != nil {
		t.Fatalf("entry %q: %v", entry, e.Err())
	}
	slices.Sort(subs)
	return string(head), subs
}

// TestACLMatchesRedis compiles rule lists and compares, for every command
// and subcommand, Allows with what redis-server's ACL DRYRUN says for a
// user made with the same rules.
func TestACLMatchesRedis(t *testing.T) {
	srv := testserver.Redis(t)
	for _, rules := range [][]string{
		{"+@read", "+@write", "-@dangerous", "-flushall", "+get"},
		{"allcommands", "-@admin", "+config|get"},
		{"+@all", "-config", "+config|get", "-@scripting"},
		{"+@slow", "-@keyspace"},
		{"+@fast", "+@connection", "-client", "+client|setname"},
		{"+acl", "-acl|setuser", "+@pubsub", "+@transaction", "+@blocking"},
		{"+@string", "+@hash", "+@list", "+@set", "+@sortedset", "+@stream", "+@geo", "+@bitmap", "+@hyperloglog"},
		{"+@all", "nocommands", "+ping"},
		{"+GET", "+Set", "+@READ", "-object|freq"},
		{},
	} {
		t.Run(strings.Join(rules, " "), func(t *testing.T) {
			acl, err := NewACL(rules)
			if err != nil {
				t.Fatal(err)
			}
			setuser := [][]byte{[]byte("ACL"), []byte("SETUSER"), []byte("u"), []byte("reset"), []byte("on"), []byte(">p"), []byte("~*"), []byte("&*")}
			for _, r := range rules {
				setuser = append(setuser, []byte(r))
			}
			in := AppendCommand(nil, setuser...)
			cmds := everyCommand()
			for _, c := range cmds {
				in = AppendCommand(in, append([][]byte{[]byte("ACL"), []byte("DRYRUN"), []byte("u")}, dryrunArgs(c)...)...)
			}
			out := replies(t, exchange(t, srv.Addr, in, 1+len(cmds), false))
			if string(out[0]) != "+OK\r\n" {
				t.Fatalf("ACL SETUSER: %q", out[0])
			}
			for i, c := range cmds {
				r := out[i+1]
				redisAllows := string(r) == "+OK\r\n"
				if !redisAllows && !bytes.Contains(r, []byte("no permissions to run")) {
					t.Errorf("%s: DRYRUN %q", c.Name, r)
					continue
				}
				if got := acl.Allows(c); got != redisAllows {
					t.Errorf("%s: Allows %t; redis-server %t (%q)", c.Name, got, redisAllows, r)
				}
			}
		})
	}
}

func TestACLRuleErrors(t *testing.T) {
	for _, tc := range []struct{ rule, want string }{
		{"get", `"get": want +command`},
		{"+", `"+": want +command`},
		{"+nosuch", `"+nosuch": unknown command or category name in ACL`},
		{"+@nosuch", `"+@nosuch": unknown ACL category "nosuch"`},
		{"+config|nosuch", `"+config|nosuch": unknown command`},
		{"+select|0", `"+select|0": select has no subcommands`},
		{"+config|get|x", `"+config|get|x": unknown command`},
		{"~*", `"~*": want +command`},
	} {
		_, err := NewACL([]string{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewACL(%q) = %v; want %q", tc.rule, err, tc.want)
		}
	}
}

func TestACLNoPermText(t *testing.T) {
	if got, want := string(ErrNoPerm(nil, LookupFull([]byte("config|get")))), "-NOPERM this user has no permissions to run the 'config|get' command\r\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestACLAllowsNoAlloc(t *testing.T) {
	acl, err := NewACL([]string{"+@read"})
	if err != nil {
		t.Fatal(err)
	}
	get, set := Lookup([]byte("get")), Lookup([]byte("set"))
	allocs := testing.AllocsPerRun(1000, func() {
		if !acl.Allows(get) || acl.Allows(set) {
			t.Fatal("wrong answer")
		}
	})
	if allocs != 0 {
		t.Errorf("Allows: %v allocations; want 0", allocs)
	}
}

func BenchmarkACLAllows(b *testing.B) {
	acl, err := NewACL([]string{"+@all", "-@dangerous"})
	if err != nil {
		b.Fatal(err)
	}
	get := Lookup([]byte("get"))
	b.ReportAllocs()
	for b.Loop() {
		if !acl.Allows(get) {
			b.Fatal("denied")
		}
	}
}
