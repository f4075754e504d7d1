package memcache

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestTTL checks which requests report a relative expiry that
// AppendForwardTTL may rewrite, and the rewritten bytes.
func TestTTL(t *testing.T) {
	cases := []struct {
		in   string
		ttl  int64 // 0: TTL reports none
		want string
	}{
		{"set k 0 1000 1\r\nx\r\n", 1000, "set k 0 777 1\r\nx\r\n"},
		{"add k 3 60 1\r\nx\r\n", 60, "add k 3 777 1\r\nx\r\n"},
		{"replace k 0 9 2\r\nxy\r\n", 9, "replace k 0 777 2\r\nxy\r\n"},
		{"cas k 0 2592000 1 42\r\nx\r\n", 2592000, "cas k 0 777 1 42\r\nx\r\n"},
		{"set  k  0  0001000  1\nx\r\n", 1000, "set  k  0  777  1\nx\r\n"},
		{"set k 0 1000 1 noreply\r\nx\r\n", 1000, "set k 0 777 1\r\nx\r\n"},
		{"cas  k 0 50 1 7   noreply\r\nx\r\n", 50, "cas k 0 777 1 7\r\nx\r\n"},
		{"ms k 1 T1000\r\nx\r\n", 1000, "ms k 1 T777\r\nx\r\n"},
		{"ms k 1 F5 T30 c\r\nx\r\n", 30, "ms k 1 F5 T777 c\r\nx\r\n"},
		{"ms k 1 q T30\r\nx\r\n", 30, "ms k 1 q T777\r\nx\r\nmn\r\n"},
		{"ms k 1 ME T30\r\nx\r\n", 30, "ms k 1 ME T777\r\nx\r\n"},
		{"ms k 1 T30 MR\r\nx\r\n", 30, "ms k 1 T777 MR\r\nx\r\n"},
		{"ms k 1 T30 Ms\r\nx\r\n", 30, "ms k 1 T777 Ms\r\nx\r\n"},
		{"ms Zm9v 1 b T5\r\nx\r\n", 5, "ms Zm9v 1 b T777\r\nx\r\n"},
		// Left alone: no expiry, never, expired, absolute, other spellings,
		// commands whose expiry is not a set's.
		{"set k 0 0 1\r\nx\r\n", 0, ""},
		{"set k 0 -1 1\r\nx\r\n", 0, ""},
		{"set k 0 2592001 1\r\nx\r\n", 0, ""},
		{"set k 0 99999999999 1\r\nx\r\n", 0, ""},
		{"set k 0 +60 1\r\nx\r\n", 0, ""},
		{"set k\t 0\t 60 1\r\nx\r\n", 60, "set k\t 0\t 777 1\r\nx\r\n"},
		{"set k 0 \t60 1\r\nx\r\n", 0, ""},
		{"append k 0 60 1\r\nx\r\n", 0, ""},
		{"prepend k 0 60 1\r\nx\r\n", 0, ""},
		{"touch k 60\r\n", 0, ""},
		{"gat 60 k\r\n", 0, ""},
		{"ms k 1\r\nx\r\n", 0, ""},
		{"ms k 1 T0\r\nx\r\n", 0, ""},
		{"ms k 1 T-1\r\nx\r\n", 0, ""},
		{"ms k 1 T\r\nx\r\n", 0, ""},
		{"ms k 1 Tx\r\nx\r\n", 0, ""},
		{"ms k 1 MA T60\r\nx\r\n", 0, ""},
		{"ms k 1 T60 Mp\r\nx\r\n", 0, ""},
		{"ms k 1 T3000000\r\nx\r\n", 0, ""},
		{"mg k T60 v\r\n", 0, ""},
	}
	p := NewParser(Limits{})
	var req Request
	for _, c := range cases {
		if n, err := p.Parse([]byte(c.in), &req); err != nil || n != len(c.in) {
			t.Fatalf("Parse(%q) = %d, %v", c.in, n, err)
		}
		ttl, ok := req.TTL()
		if !ok {
			ttl = 0
		}
		if ttl != c.ttl || ok != (c.ttl > 0) {
			t.Errorf("%q: TTL() = %d, %v; want %d, %v", c.in, ttl, ok, c.ttl, c.ttl > 0)
		}
		got := string(req.AppendForwardTTL([]byte("pre:"), 777))
		want := c.want
		if !ok {
			want = string(req.AppendForward(nil)) // untouched
		}
		if got != "pre:"+want {
			t.Errorf("AppendForwardTTL(%q, 777) = %q; want %q", c.in, got, "pre:"+want)
		}
		// Out of range: sent as it is.
		for _, bad := range []int64{0, -5, MaxRelativeTTL + 1} {
			if got, want := string(req.AppendForwardTTL(nil, bad)), string(req.AppendForward(nil)); got != want {
				t.Errorf("AppendForwardTTL(%q, %d) = %q; want AppendForward's %q", c.in, bad, got, want)
			}
		}
	}
	// An incomplete request leaves nothing behind.
	if n, err := p.Parse([]byte("set k 0 60 5\r\nab"), &req); n != 0 || err != nil {
		t.Fatalf("Parse(incomplete) = %d, %v", n, err)
	}
	if _, ok := req.TTL(); ok {
		t.Errorf("incomplete set: TTL reports one")
	}
	if _, err := p.Parse([]byte("get k\r\n"), &req); err != nil {
		t.Fatal(err)
	}
	if _, ok := req.TTL(); ok {
		t.Errorf("get after a set: TTL reports one")
	}
}

// TestAppendForwardTTLAllocs checks the rewrite allocates nothing.
func TestAppendForwardTTLAllocs(t *testing.T) {
	for _, in := range []string{
		"set user:1 0 3600 100\r\n" + strings.Repeat("v", 100) + "\r\n",
		"set user:1 0 3600 5 noreply\r\nhello\r\n",
		"ms user:1 5 q T3600\r\nhello\r\n",
	} {
		p := NewParser(Limits{})
		var req Request
		if _, err := p.Parse([]byte(in), &req); err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, 0, 512)
		if n := testing.AllocsPerRun(100, func() { dst = req.AppendForwardTTL(dst[:0], 3599) }); n != 0 {
			t.Errorf("%q: AppendForwardTTL allocates %v times; want 0", in, n)
		}
	}
}

func BenchmarkAppendForwardTTL(b *testing.B) {
	p := NewParser(Limits{})
	var req Request
	if _, err := p.Parse([]byte("set user:1234567890:profile 0 3600 100\r\n"+strings.Repeat("v", 100)+"\r\n"), &req); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = req.AppendForwardTTL(dst[:0], 3599)
	}
}

// mgTTL reads key's remaining TTL from memcached at addr with "mg key t":
// -1 for none, -2 for a miss.
func mgTTL(t *testing.T, addr, key string) int64 {
	t.Helper()
	r := roundTrip(t, addr, "mg "+key+" t\r\n")
	if r == "EN\r\n" {
		return -2
	}
	var v int64
	if _, err := fmt.Sscanf(r, "HD t%d\r\n", &v); err != nil {
		t.Fatalf("mg %s t: got %q", key, r)
	}
	return v
}

// TestTTLRewriteMatchesMemcached is a differential check: two real
// memcached servers run the same setup; one gets each request as the
// client sent it, the other its forwarded form with the expiry rewritten.
// Both must answer the same (after Suppress, for noreply and q), and the
// item's TTL read back must be the original on the first and the new one
// on the second.
func TestTTLRewriteMatchesMemcached(t *testing.T) {
	orig, rewr := testserver.Memcached(t), testserver.Memcached(t)
	cases := []struct {
		setup, in string // in: %s is the key; CAS the cas value after setup
		orig, ttl int64  // the expiry in, the one it is rewritten with
	}{
		{"", "set %s 0 1000 1\r\nx\r\n", 1000, 5},
		{"", "set %s 0 1000 1\r\nx\r\n", 1000, 2592000},
		{"", "set %s 7 9 3 noreply\r\nabc\r\n", 9, 1234567},
		{"", "set  %s  0  0001000  1\nx\r\n", 1000, 777},
		{"", "add %s 0 60 1\r\nx\r\n", 60, 777},
		{"set %s 0 0 1\r\nq\r\n", "add %s 0 60 1\r\nx\r\n", 60, 777}, // NOT_STORED: TTL stays none
		{"set %s 0 0 1\r\nq\r\n", "replace %s 0 60 1\r\nx\r\n", 60, 777},
		{"", "replace %s 0 60 1\r\nx\r\n", 60, 777},
		{"set %s 0 0 1\r\nq\r\n", "cas %s 0 60 1 CAS\r\nx\r\n", 60, 777},
		{"set %s 0 0 1\r\nq\r\n", "cas %s 0 60 1 CAS noreply\r\nx\r\n", 60, 777},
		{"", "ms %s 1 T1000\r\nx\r\n", 1000, 999},
		{"", "ms %s 1 q T1000 F3\r\nx\r\n", 1000, 2592000},
		{"", "ms %s 1 ME T60 c\r\nx\r\n", 60, 5},
		{"set %s 0 0 1\r\nq\r\n", "ms %s 1 MR T60\r\nx\r\n", 60, 1234},
		{"set %s 0 0 1\r\nq\r\n", "ms %s 1 MS T60 I\r\nx\r\n", 60, 1234},
		{"set %s 0 0 1\r\nq\r\n", "ms %s 1 T60 CCAS\r\nx\r\n", 60, 1234},
		{"set %s 0 0 1\r\nq\r\n", "ms %s 1 T60 C1\r\nx\r\n", 60, 1234}, // EX: TTL stays none
	}
	for i, c := range cases {
		key := "k" + strconv.Itoa(i)
		var outs [2]string
		var ttls [2]int64
		for s, addr := range []string{orig.Addr, rewr.Addr} {
			if c.setup != "" {
				roundTrip(t, addr, fmt.Sprintf(c.setup, key))
			}
			in := fmt.Sprintf(c.in, key)
			if strings.Contains(in, "CAS") {
				var cas string
				if _, err := fmt.Sscanf(roundTrip(t, addr, "mg "+key+" c\r\n"), "HD c%s", &cas); err != nil {
					t.Fatalf("mg %s c: %v", key, err)
				}
				in = strings.Replace(in, "CAS", cas, 1)
			}
			if s == 0 {
				outs[0] = roundTrip(t, addr, in)
			} else {
				p := NewParser(Limits{})
				var req Request
				if n, err := p.Parse([]byte(in), &req); err != nil || n != len(in) {
					t.Fatalf("Parse(%q) = %d, %v", in, n, err)
				}
				if _, ok := req.TTL(); !ok {
					t.Fatalf("%q: TTL reports none", in)
				}
				fwd := string(req.AppendForwardTTL(nil, c.ttl))
				parse, rb := ParseReply, ""
				if req.Quiet {
					parse, rb = ParseQuietReply, roundTripRaw(t, addr, fwd) // fwd ends in "mn"
				} else {
					rb = roundTrip(t, addr, fwd)
				}
				rn, rep, err := parse([]byte(rb), req.Cmd)
				if err != nil || rn != len(rb) {
					t.Fatalf("%q forwarded as %q: reply %q is not one complete reply (%d, %v)", in, fwd, rb, rn, err)
				}
				got := rb
				if req.Quiet {
					got = rb[:rep.Body]
				}
				if Suppress(&req, rep) {
					got = ""
				}
				outs[1] = got
			}
			ttls[s] = mgTTL(t, addr, key)
		}
		if outs[0] != outs[1] {
			t.Errorf("%q: memcached answers %q to the original, %q to the rewritten form", c.in, outs[0], outs[1])
		}
		stored := outs[0] == "STORED\r\n" || outs[0] == "" || strings.HasPrefix(outs[0], "HD")
		if !stored {
			if ttls[0] != ttls[1] {
				t.Errorf("%q not stored: TTLs %d and %d; want the same", c.in, ttls[0], ttls[1])
			}
			continue
		}
		// mg t reads the seconds left; a second may tick between the set
		// and the read (two on a loaded machine). The rewritten TTLs are at
		// least 5, so the item cannot expire in between.
		origTTL := c.orig
		if ttls[0] > origTTL || ttls[0] < origTTL-2 {
			t.Errorf("%q: original: TTL %d; want %d (-2)", c.in, ttls[0], origTTL)
		}
		if ttls[1] > c.ttl || ttls[1] < c.ttl-2 || ttls[1] < 0 {
			t.Errorf("%q rewritten with %d: TTL %d; want %d (-2)", c.in, c.ttl, ttls[1], c.ttl)
		}
	}
}
