package resp

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the Redis section of docs/commands.md")

func TestEveryCommandHasAClass(t *testing.T) {
	n := 0
	for _, c := range Commands() {
		for _, e := range append([]*Command{c}, c.Sub...) {
			n++
			if e.Class == ClassUnassigned {
				t.Errorf("%s has no routing class: assign one in classes.go", e.Name)
			}
			if e.Class == ClassUnsupported && e.Reason == "" {
				t.Errorf("%s is unsupported without a reason", e.Name)
			}
			if (e.Class == ClassSplit || e.Class == ClassFanout) && e.Merge == MergeNone {
				t.Errorf("%s (%v) has no merge", e.Name, e.Class)
			}
		}
	}
	if n < 360 {
		t.Errorf("%d commands in the table; Redis 7.0 has over 360 with subcommands", n)
	}
}

func TestLookup(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"get", "get"}, {"GET", "get"}, {"gEt", "get"}, {"client", "client"}, {"nosuch", ""}, {"", ""},
		{strings.Repeat("a", 100), ""}, {"client|setname", ""},
	} {
		got := ""
		if c := Lookup([]byte(tt.in)); c != nil {
			got = c.Name
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	if c := LookupFull([]byte("CLIENT|SetName")); c == nil || c.Name != "client|setname" {
		t.Errorf("LookupFull(CLIENT|SetName) = %v", c)
	}
}

func args(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		if f == `""` {
			f = ""
		}
		out = append(out, []byte(f))
	}
	return out
}

func TestResolveAndArity(t *testing.T) {
	tests := []struct {
		in    string
		want  string
		arity bool
		class Class
	}{
		{"get k", "get", true, ClassSingle},
		{"get", "get", false, ClassSingle},
		{"CLIENT SETNAME x", "client|setname", true, ClassLocal},
		{"client setinfo lib-name go-redis", "client|setinfo", true, ClassLocal},
		{"client", "client", false, ClassContainer},
		{"client nosuch", "", false, 0},
		{"object encoding k", "object|encoding", true, ClassSingle},
		{"config get maxmemory", "config|get", true, ClassRefused},
		{"mget a b c", "mget", true, ClassSplit},
		{"eval s 0", "eval", true, ClassSameServer},
		{"blpop a 0", "blpop", true, ClassDedicated},
		{"script load x", "script|load", true, ClassFanout},
		{"flushall", "flushall", true, ClassRefused},
		{"wait 1 0", "wait", true, ClassUnsupported},
	}
	for _, tt := range tests {
		a := args(tt.in)
		c := Lookup(a[0]).Resolve(a)
		got := ""
		if c != nil {
			got = c.Name
		}
		if got != tt.want {
			t.Errorf("Resolve(%q) = %q; want %q", tt.in, got, tt.want)
			continue
		}
		if c == nil {
			continue
		}
		if c.CheckArity(len(a)) != tt.arity || c.Class != tt.class {
			t.Errorf("%q: CheckArity %v, class %v; want %v, %v", tt.in, c.CheckArity(len(a)), c.Class, tt.arity, tt.class)
		}
	}
}

func TestIsBlocking(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"blpop a 0", true}, {"xread count 1 streams s 0", false}, {"xread block 0 streams s $", true},
		{"xreadgroup group g c streams block 0", false}, {"get a", false},
	} {
		a := args(tt.in)
		if got := Lookup(a[0]).IsBlocking(a); got != tt.want {
			t.Errorf("IsBlocking(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

// keyCases are requests with tricky key positions; the real server's COMMAND
// GETKEYS checks them too (TestKeyIndexesAgainstRedis).
var keyCases = []struct {
	in   string
	want string
}{
	{"get k", "[1]"},
	{"mset a 1 b 2", "[1 3]"},
	{"mget a b c", "[1 2 3]"},
	{"del a b", "[1 2]"},
	{"blpop a b 0", "[1 2]"},
	{"eval s 2 k1 k2 a1", "[3 4]"},
	{"eval s 0 a1", "[]"},
	{"evalsha_ro s 1 k1", "[3]"},
	{"fcall f 2 k1 k2", "[3 4]"},
	{"zunionstore d 2 a b weights 1 2", "[1 3 4]"},
	{"zinter 2 a b", "[2 3]"},
	{"zdiff 1 a withscores", "[2]"},
	{"sintercard 2 a b limit 1", "[2 3]"},
	{"zintercard 3 a b c", "[2 3 4]"},
	{"lmpop 2 a b left", "[2 3]"},
	{"zmpop 1 a min", "[2]"},
	{"blmpop 0 2 a b left", "[3 4]"},
	{"bzmpop 0 1 a max", "[3]"},
	{"xread count 2 streams s1 s2 0 0", "[4 5]"},
	{"xreadgroup group g c streams s1 >", "[5]"},
	{"sort k by w_* get o_* limit 0 1 store dst", "[1 10]"},
	{"sort k store d1 store d2", "[1 5]"},
	{"sort_ro k by x", "[1]"},
	{"migrate h 1 k 0 100", "[3]"},
	{"migrate h 1 \"\" 0 100 copy auth pw keys a b", "[10 11]"},
	{"georadius g 0 0 1 km store d", "[1 7]"},
	{"georadiusbymember g m 1 km storedist d", "[1 6]"},
	{"object encoding k", "[2]"},
	{"memory usage k", "[2]"},
	{"xgroup create s g $", "[2]"},
	{"xinfo stream s", "[2]"},
	{"bitop and d a b", "[2 3 4]"},
	{"lmove a b left right", "[1 2]"},
	{"rename a b", "[1 2]"},
	{"zrangestore d s 0 1", "[1 2]"},
	{"set k v ex 10", "[1]"},
	{"publish ch msg", "[1]"},
	{"spublish ch msg", "[1]"},
	{"ping", "[]"},
}

func TestKeyIndexes(t *testing.T) {
	for _, tt := range keyCases {
		a := args(tt.in)
		c := Lookup(a[0]).Resolve(a)
		if got := fmt.Sprint(c.KeyIndexes(a, nil)); got != tt.want {
			t.Errorf("KeyIndexes(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestKeyIndexesNoAlloc(t *testing.T) {
	a := args("zunionstore d 2 a b weights 1 2")
	c := Lookup(a[0])
	dst := make([]int, 0, 8)
	if n := testing.AllocsPerRun(100, func() { dst = c.KeyIndexes(a, dst[:0]) }); n != 0 {
		t.Errorf("KeyIndexes allocates %v times", n)
	}
}

func TestCommandReplies(t *testing.T) {
	if got := string(AppendCommandCount(nil)); got != fmt.Sprintf(":%d\r\n", len(Commands())) {
		t.Errorf("COMMAND COUNT = %q", got)
	}
	for _, b := range [][]byte{AppendCommandAll(nil), AppendCommandInfo(nil, args("get nosuch client|setname")),
		AppendCommandDocs(nil, nil), AppendCommandList(nil)} {
		if n, _, err := ParseReply(b); n != len(b) || err != nil {
			t.Errorf("reply %.40q... framed %d of %d bytes, %v", b, n, len(b), err)
		}
	}
	if got, want := string(AppendCommandDocs(nil, args("get nosuch"))), "*2\r\n$3\r\nget\r\n*0\r\n"; got != want {
		t.Errorf("COMMAND DOCS get nosuch = %q; want %q", got, want)
	}
}

func TestEncoders(t *testing.T) {
	tests := []struct{ got, want string }{
		{string(AppendError(nil, "ERR a\r\nb")), "-ERR a  b\r\n"},
		{string(AppendSimple(nil, "OK")), "+OK\r\n"},
		{string(AppendInt(nil, -7)), ":-7\r\n"},
		{string(AppendBulk(nil, []byte("ab"))), "$2\r\nab\r\n"},
		{string(AppendBulkString(nil, "")), "$0\r\n\r\n"},
		{string(AppendNullBulk(nil)), "$-1\r\n"},
		{string(AppendNullArray(nil)), "*-1\r\n"},
		{string(AppendArrayHeader(nil, 3)), "*3\r\n"},
		{string(ErrCrossSlot(nil)), "-CROSSSLOT Keys in request don't hash to the same server\r\n"},
		{string(ErrNotAllowed(nil, "flushall")), "-ERR command 'flushall' is not allowed through the proxy\r\n"},
		{string(ErrUnsupported(nil, "wait", "why")), "-ERR command 'wait' is not supported through the proxy: why\r\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q; want %q", tt.got, tt.want)
		}
	}
}

// commandsDoc renders the Redis section of docs/commands.md.
func commandsDoc() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "## Redis\n\n")
	fmt.Fprintf(&b, "Generated from the command table in `proxy/resp` (redis-server %s's `COMMAND`, classes in\n", generatedVersion)
	b.WriteString("`proxy/resp/classes.go`); `go test ./proxy/resp -run TestCommandsDoc -args -update` rewrites it.\n\n")
	b.WriteString("Classes: **single** hashed on its key; **split** split per server and merged; **same-server** all keys\n")
	b.WriteString("must hash to one server, else `-CROSSSLOT`; **local** answered by the proxy; **fan-out** sent to every\n")
	b.WriteString("server and merged; **any** sent to one server; **dedicated** a backend connection of its own;\n")
	b.WriteString("**refused** `-ERR command 'x' is not allowed through the proxy` unless allowed in the config;\n")
	b.WriteString("**unsupported** an error with the reason; **container** resolved by its subcommand.\n\n")
	b.WriteString("| command | class | notes |\n|---|---|---|\n")
	row := func(c *Command) {
		var notes []string
		if c.Merge != MergeNone {
			notes = append(notes, "merge: "+c.Merge.String())
		}
		if c.Reason != "" {
			notes = append(notes, c.Reason)
		}
		if c.Flags&FlagBlocking != 0 && c.Class == ClassDedicated {
			notes = append(notes, "blocking")
		}
		if c.Name == "publish" {
			notes = append(notes, "hashed on the channel")
		}
		switch c.Name {
		case "set":
			notes = append(notes, "`EX`/`PX` spread by `hot_keys.ttl_jitter` (hotkeys.md)")
		case "setex", "psetex":
			notes = append(notes, "expiry spread by `hot_keys.ttl_jitter` (hotkeys.md)")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", strings.ToUpper(strings.ReplaceAll(c.Name, "|", " ")), c.Class, strings.Join(notes, "; "))
	}
	for _, c := range Commands() {
		row(c)
		for _, s := range c.Sub {
			row(s)
		}
	}
	return b.Bytes()
}

func TestCommandsDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "commands.md")
	want := commandsDoc()
	cur, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatalf("%v (run with -args -update to create it)", err)
	}
	if len(cur) == 0 {
		cur = []byte("# Commands\n\nEvery command cacheproxy knows and how it routes it.\n\n## memcached\n\n(filled in by the memcached codec)\n\n")
	}
	start := bytes.Index(cur, []byte("## Redis\n"))
	end := len(cur)
	if start < 0 {
		start = len(cur)
	} else if i := bytes.Index(cur[start+1:], []byte("\n## ")); i >= 0 {
		end = start + 1 + i // keep the blank line before the next heading
	}
	if bytes.Equal(cur[start:end], want) {
		return
	}
	if !*update {
		t.Fatalf("docs/commands.md Redis section is out of date: go test ./proxy/resp -run TestCommandsDoc -args -update")
	}
	out := append(append(append([]byte{}, cur[:start]...), want...), cur[end:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLookup(b *testing.B) {
	name := []byte("ZREVRANGEBYSCORE")
	b.ReportAllocs()
	for b.Loop() {
		if Lookup(name) == nil {
			b.Fatal("not found")
		}
	}
}
