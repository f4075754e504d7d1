package resp

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// expiryCase is one command for the Expiry tests: args split on spaces,
// setup run before it (";"-separated commands), i, v, ms what Expiry must
// say (i == 0: none), other that Redis gives the key an expiry Expiry must
// not report (absolute, or a command other than a set), missing that the
// command sets nothing (XX without the key).
type expiryCase struct {
	args, setup        string
	i                  int
	v                  int64
	ms, other, missing bool
}

func expiryCases() []expiryCase {
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	return []expiryCase{
		{args: "SET k v EX 100", i: 4, v: 100},
		{args: "set k v px 100000", i: 4, v: 100000, ms: true},
		{args: "SET k v NX EX 100", i: 5, v: 100},
		{args: "SET k v XX PX 5000", setup: "SET k old", i: 5, v: 5000, ms: true},
		{args: "SET k v GET EX 100", setup: "SET k old", i: 5, v: 100},
		{args: "SET k v EX 10 EX 100", i: 6, v: 100},
		{args: "SET k v Px 10 pX 100000", i: 6, v: 100000, ms: true},
		{args: "SET k v nx NX get Ex 100", i: 7, v: 100},
		{args: "SET k v PX 100000 GET XX XX", setup: "SET k old", i: 4, v: 100000, ms: true},
		{args: "SETEX k 100 v", i: 2, v: 100},
		{args: "setex k 100 v", i: 2, v: 100},
		{args: "PSETEX k 100000 v", i: 2, v: 100000, ms: true},
		// Nothing to spread.
		{args: "SET k v"},
		{args: "SET k v NX GET"},
		{args: "SET k v KEEPTTL", setup: "SET k old EX 100", other: true},
		{args: "SET k v EXAT " + future, other: true},
		{args: "SET k v PXAT " + future + "000", other: true},
		{args: "SET k v EXAT " + future + " EXAT " + future, other: true},
		{args: "GETEX k EX 100", setup: "SET k old", other: true},
		{args: "EXPIRE k 100", setup: "SET k old", other: true},
		{args: "SET k v XX EX 100", i: 5, v: 100, missing: true}, // no key: nothing set either way
		// Refused by Redis, so left for it to refuse.
		{args: "SET k v EX 0"},
		{args: "SET k v EX -5"},
		{args: "SET k v EX 05"},
		{args: "SET k v EX +5"},
		{args: "SET k v EX x"},
		{args: "SET k v EX"},
		{args: "SET k v EX 10 PX 100"},
		{args: "SET k v KEEPTTL EX 10"},
		{args: "SET k v EX 10 KEEPTTL"},
		{args: "SET k v NX XX EX 10"},
		{args: "SET k v EXAT " + future + " EX 5"},
		{args: "SET k v FOO EX 5"},
		{args: "SET k v PERSIST"},
		{args: "SETEX k 0 v"},
		{args: "SETEX k -1 v"},
		{args: "PSETEX k 99999999999999999999 v"},
	}
}

func splitArgs(s string) [][]byte {
	var args [][]byte
	for _, f := range strings.Fields(s) {
		args = append(args, []byte(f))
	}
	return args
}

func TestExpiry(t *testing.T) {
	for _, c := range expiryCases() {
		args := splitArgs(c.args)
		i, v, ms, ok := Expiry(strings.ToLower(string(args[0])), args)
		if ok != (c.i > 0) || i != c.i || v != c.v || ms != c.ms {
			t.Errorf("Expiry(%s) = %d, %d, %v, %v; want %d, %d, %v, %v", c.args, i, v, ms, ok, c.i, c.v, c.ms, c.i > 0)
		}
	}
	if _, _, _, ok := Expiry("get", splitArgs("GET k")); ok {
		t.Errorf("Expiry(GET k) reports an expiry")
	}
}

// TestExpiryMatchesRedis checks Expiry against a real redis-server: a
// command it reports gets the same reply when sent with the expiry
// rewritten (AppendForwardArg), and leaves the key with the original TTL,
// or the rewritten one; a command it does not report is one Redis refuses,
// or that leaves no TTL, or one marked other.
func TestExpiryMatchesRedis(t *testing.T) {
	srv := testserver.Redis(t)
	run := func(cmds ...[]byte) [][]byte {
		t.Helper()
		var in []byte
		for _, c := range cmds {
			in = append(in, c...)
		}
		out := exchange(t, srv.Addr, in, len(cmds), false)
		var reps [][]byte
		for len(out) > 0 {
			n, _, err := ParseReply(out)
			if err != nil || n == 0 {
				t.Fatalf("reply %q: %v", out, err)
			}
			reps, out = append(reps, out[:n]), out[n:]
		}
		return reps
	}
	// send runs the case's setup, then cmd, and returns cmd's reply and
	// the key's PTTL after it.
	send := func(c expiryCase, cmd []byte) (reply string, pttl int64) {
		cmds := [][]byte{AppendCommand(nil, []byte("DEL"), []byte("k"))}
		if c.setup != "" {
			for _, s := range strings.Split(c.setup, ";") {
				cmds = append(cmds, AppendCommand(nil, splitArgs(s)...))
			}
		}
		cmds = append(cmds, cmd, AppendCommand(nil, []byte("PTTL"), []byte("k")))
		reps := run(cmds...)
		last := reps[len(reps)-1]
		p, err := strconv.ParseInt(string(bytes.TrimSuffix(last[1:], []byte("\r\n"))), 10, 64)
		if err != nil || last[0] != ':' {
			t.Fatalf("PTTL: %q", last)
		}
		return string(reps[len(reps)-2]), p
	}
	// near reports whether a PTTL read just after a set is the expiry v
	// (ms: in milliseconds), allowing 5 s for a loaded machine.
	near := func(pttl, v int64, ms bool) bool {
		if !ms {
			v *= 1000
		}
		return pttl <= v && pttl > v-5000
	}
	for _, c := range expiryCases() {
		args := splitArgs(c.args)
		var req Request
		p := NewParser(Limits{})
		in := AppendCommand(nil, args...)
		if n, err := p.Parse(in, &req); err != nil || n != len(in) {
			t.Fatalf("Parse(%s) = %d, %v", c.args, n, err)
		}
		reply, pttl := send(c, req.AppendForward(nil))
		i, v, ms, ok := Expiry(strings.ToLower(string(args[0])), req.Args)
		if !ok {
			if !strings.HasPrefix(reply, "-") && pttl != -1 && pttl != -2 && !c.other {
				t.Errorf("%s: Expiry reports none, but Redis answers %q and leaves PTTL %d", c.args, reply, pttl)
			}
			continue
		}
		if strings.HasPrefix(reply, "-") {
			t.Errorf("%s: Expiry reports %d at %d, but Redis refuses it: %q", c.args, v, i, reply)
			continue
		}
		if !near(pttl, v, ms) && !(c.missing && pttl == -2) {
			t.Errorf("%s: PTTL %d; want about %d (ms %v)", c.args, pttl, v, ms)
		}
		const nv = 777777
		rewritten := req.AppendForwardArg(nil, i, nv)
		reply2, pttl2 := send(c, rewritten)
		if reply2 != reply {
			t.Errorf("%s rewritten as %q: Redis answers %q; the original got %q", c.args, rewritten, reply2, reply)
		}
		if !near(pttl2, nv, ms) && !(c.missing && pttl2 == -2) {
			t.Errorf("%s rewritten as %q: PTTL %d; want about %d (ms %v)", c.args, rewritten, pttl2, nv, ms)
		}
	}
}

// TestAppendForwardArg checks the rewritten encoding, of a multibulk and
// of an inline request, and that it allocates nothing.
func TestAppendForwardArg(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	for _, c := range []struct{ in, want string }{
		{"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$3\r\n100\r\n", "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$4\r\n1234\r\n"},
		{"SET k \"a b\" EX 100\r\n", "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na b\r\n$2\r\nEX\r\n$4\r\n1234\r\n"},
	} {
		if n, err := p.Parse([]byte(c.in), &req); err != nil || n != len(c.in) {
			t.Fatalf("Parse(%q) = %d, %v", c.in, n, err)
		}
		if got := string(req.AppendForwardArg([]byte("pre:"), 4, 1234)); got != "pre:"+c.want {
			t.Errorf("AppendForwardArg(%q) = %q; want %q", c.in, got, "pre:"+c.want)
		}
		dst := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() { dst = req.AppendForwardArg(dst[:0], 4, 1234) }); n != 0 {
			t.Errorf("%q: AppendForwardArg allocates %v times; want 0", c.in, n)
		}
	}
}

func BenchmarkExpiry(b *testing.B) {
	args := splitArgs("SET user:1234567890:profile v NX EX 3600")
	b.ReportAllocs()
	for b.Loop() {
		if i, _, _, ok := Expiry("set", args); !ok || i != 5 {
			b.Fatal("no expiry")
		}
	}
}

func BenchmarkAppendForwardArg(b *testing.B) {
	p := NewParser(Limits{})
	var req Request
	in := AppendCommand(nil, splitArgs("SET user:1234567890:profile "+strings.Repeat("v", 100)+" EX 3600")...)
	if _, err := p.Parse(in, &req); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = req.AppendForwardArg(dst[:0], 4, 3599)
	}
}
