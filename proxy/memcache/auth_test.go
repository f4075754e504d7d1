package memcache

import (
	"strings"
	"testing"
)

func TestParseAuth(t *testing.T) {
	for _, tc := range []struct {
		in         string
		n          int
		reply      string
		user, pass string
		close      bool
	}{
		{"set a 0 0 10\r\napp secret\r\n", 26, "", "app", "secret", false},
		{"set a 0 0 13\r\napp sec ret:x\r\nget k\r\n", 29, "", "app", "sec", false},
		{"set a 0 0 11\r\n  app  p:w \r\n", 27, "", "app", "p:w", false},
		{"set a 0 0 5\r\napp  \r\n", 20, AuthBadFormat, "", "", false},
		{"set   a 0 0 10 noreply\r\napp secret\r\n", 36, "", "app", "secret", false},
		{"set a 0 0 +10\r\napp secret\r\n", 27, "", "app", "secret", false},
		{"set a 0 0 10\napp secret\r\n", 25, "", "app", "secret", false},
		{"get k\r\n", 7, AuthUnauthenticated, "", "", false},
		{"SET a 0 0 10\r\napp secret\r\n", 14, AuthUnauthenticated, "", "", false},
		{"set a 0 0\r\n", 11, AuthUnauthenticated, "", "", false},
		{"set a 0 0 -1\r\n", 14, AuthUnauthenticated, "", "", false},
		{"set a 0 0 1x\r\n", 14, AuthUnauthenticated, "", "", false},
		{"\r\n", 2, AuthUnauthenticated, "", "", false},
		{"set a 0 0 16385\r\n", 17, AuthTooLong, "", "", false},
		{"set a 0 0 99999999999999999999\r\n", 32, AuthTooLong, "", "", false},
		{"set a 0 0 3\r\nabc\r\n", 18, AuthBadFormat, "", "", false},
		{"set a 0 0 0\r\n\r\n", 15, AuthBadFormat, "", "", false},
		{"set a 0 0 10\r\napp secretXX", 26, AuthBadTermination, "", "", false},
		{"set a 0 0 10\r\napp secret\r", 0, "", "", "", false},
		{"set a 0 0 10\r\n", 0, "", "", "", false},
		{"set a 0 0", 0, "", "", "", false},
		{strings.Repeat("x", 2049), 2049, "", "", "", true},
	} {
		st := ParseAuth([]byte(tc.in))
		if st.N != tc.n || st.Reply != tc.reply || string(st.User) != tc.user || string(st.Pass) != tc.pass || st.Close != tc.close {
			t.Errorf("ParseAuth(%q) = %d %q %q %q close=%t; want %d %q %q %q close=%t", tc.in,
				st.N, st.Reply, st.User, st.Pass, st.Close, tc.n, tc.reply, tc.user, tc.pass, tc.close)
		}
	}
}

// TestParseAuthSplit: every proper prefix of a complete step needs more
// input (memcached answers nothing until the data is in), and the whole
// gives the same step wherever the reads split it.
func TestParseAuthSplit(t *testing.T) {
	for _, in := range []string{"set a 0 0 10\r\napp secret\r\n", "set a 0 0 3\r\nabc\r\n", "get k\r\n"} {
		want := ParseAuth([]byte(in))
		for i := 0; i < len(in); i++ {
			if st := ParseAuth([]byte(in[:i])); st.N != 0 || st.Reply != "" || st.Close {
				t.Errorf("ParseAuth(%q) = %+v; want more input needed", in[:i], st)
			}
		}
		if want.N != len(in) {
			t.Errorf("ParseAuth(%q) used %d of %d bytes", in, want.N, len(in))
		}
	}
}

func TestParseAuthNoAlloc(t *testing.T) {
	in := []byte("set a 0 0 10\r\napp secret\r\n")
	if n := testing.AllocsPerRun(100, func() { ParseAuth(in) }); n != 0 {
		t.Errorf("ParseAuth: %v allocations; want 0", n)
	}
}

// FuzzParseAuth: never a panic; a step uses at most the input; a step
// that takes input has an outcome (a reply, a login or a close) and one
// that takes none (more input needed) has none.
func FuzzParseAuth(f *testing.F) {
	for _, s := range []string{"set a 0 0 10\r\napp secret\r\n", "get k\r\n", "set a 0 0 3\r\nabc\r\n", "set a 0 0 16385\r\n", "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		st := ParseAuth(in)
		if st.N < 0 || st.N > len(in) {
			t.Fatalf("ParseAuth(%q): N %d of %d bytes", in, st.N, len(in))
		}
		if st.N == 0 && (st.Reply != "" || st.User != nil || st.Close) {
			t.Fatalf("ParseAuth(%q) = %+v with N 0", in, st)
		}
		if st.N > 0 && st.Reply == "" && st.User == nil && !st.Close {
			t.Fatalf("ParseAuth(%q) = %+v: no outcome", in, st)
		}
	})
}
