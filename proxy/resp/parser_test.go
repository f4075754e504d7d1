package resp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// parseAll parses every request in in, returning each request's args (joined
// by "|", inline marked with a leading "i:") and the first error reply.
func parseAll(t testing.TB, p *Parser, in []byte) (got []string, errReply string) {
	var req Request
	for len(in) > 0 {
		n, err := p.Parse(in, &req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return got, string(e.Reply)
		}
		if n == 0 {
			return got, ""
		}
		if len(req.Args) > 0 {
			if !bytes.Equal(req.Raw, in[:n]) {
				t.Fatalf("Raw %q; want %q", req.Raw, in[:n])
			}
			s := string(bytes.Join(req.Args, []byte("|")))
			if req.Inline {
				s = "i:" + s
			}
			got = append(got, s)
		}
		in = in[n:]
	}
	return got, ""
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"get", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"GET|k"}, ""},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nset\r\n$1\r\nk\r\n$0\r\n\r\n", []string{"PING", "set|k|"}, ""},
		{"binary", "*2\r\n$4\r\necho\r\n$4\r\n\r\n\x00x\r\n", []string{"echo|\r\n\x00x"}, ""},
		{"empty multibulk skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", []string{"PING"}, ""},
		{"incomplete header", "*2\r", nil, ""},
		{"incomplete bulk", "*2\r\n$3\r\nget\r\n$5\r\nab", nil, ""},
		{"inline", "PING\r\n", []string{"i:PING"}, ""},
		{"inline LF only", "set a b\n", []string{"i:set|a|b"}, ""},
		{"inline blanks", "  get \t  k  \r\n", []string{"i:get|k"}, ""},
		{"empty lines skipped", "\r\n\n   \r\nPING\r\n", []string{"i:PING"}, ""},
		{"inline double quotes", `set "a b" "c\"d\n\x41\x4g\z"` + "\r\n", []string{"i:set|a b|c\"d\nAx4gz"}, ""},
		{"inline single quotes", `set 'it\'s' 'a\nb'` + "\r\n", []string{"i:set|it's|a\\nb"}, ""},
		{"inline quote inside token", `set ab"c d"` + "\r\n", []string{"i:set|abc d"}, ""},
		{"inline empty quoted", `echo ""` + "\r\n", []string{"i:echo|"}, ""},
		// strchr(3) stops at a NUL: Redis waits for a newline it never sees.
		{"inline NUL hides the newline", "get a\x00b c\r\nPING\r\n", nil, ""},
		{"inline NUL after the newline", "get a\r\nb\x00", []string{"i:get|a"}, ""},
		{"inline vertical tab inside an argument", "get a\vb\r\n", []string{"i:get|a\vb"}, ""},
		{"inline leading vertical tab skipped", "\v\fget a\r\n", []string{"i:get|a"}, ""},
		{"multibulk NUL hides the count's CR", "*1\x00\r\n$4\r\nPING\r\n", nil, ""},
		{"multibulk NUL hides the length's CR", "*1\r\n$4\x00\r\nPING\r\n", nil, ""},
		{"multibulk NUL in data", "*1\r\n$4\r\nPI\x00G\r\n", []string{"PI\x00G"}, ""},
		{"count CR then any byte", "*1\rX$4\r\nPING\r\n", []string{"PING"}, ""},
		{"length CR then any byte", "*1\r\n$4\rXPING\r\n", []string{"PING"}, ""},
		{"count CR last waits", "*1\r", nil, ""},
		{"negative count skipped", "*-5\r\n*1\r\n$4\r\nPING\r\n", []string{"PING"}, ""},
		{"dollar checked only on a whole line", "*1\r\nx", nil, ""},
		{"CR instead of dollar", "*1\r\n\r\n", nil, "-ERR Protocol error: expected '$', got ' '\r\n"},
		{"LF instead of dollar", "*1\r\n\nab\r\n", nil, "-ERR Protocol error: expected '$', got ' '\r\n"},
		{"inline incomplete", "get a", nil, ""},
		{"unbalanced", `set "a` + "\r\n", nil, "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"quote then text", `get "a"b` + "\r\n", nil, "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"single unbalanced", "get 'a\r\n", nil, "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"bad count", "*x\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"count leading zero", "*01\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"count plus", "*+1\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"count too big", "*2147483648\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"no dollar", "*1\r\n:3\r\n", nil, "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"bad bulk len", "*1\r\n$x\r\n", nil, "-ERR Protocol error: invalid bulk length\r\n"},
		{"negative bulk", "*1\r\n$-1\r\n", nil, "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk too big", "*1\r\n$536870913\r\n", nil, "-ERR Protocol error: invalid bulk length\r\n"},
		// Redis skips the two bytes after the data unchecked.
		{"bulk without CRLF", "*1\r\n$3\r\ngetXY", []string{"get"}, ""},
		{"bulk without CRLF, next request", "*1\r\n$4\r\nPING\n\n*1\r\n$4\r\nPING\r\n", []string{"PING", "PING"}, ""},
		{"pipeline then error", "PING\r\n*1\r\nx\r\n", []string{"i:PING"}, "-ERR Protocol error: expected '$', got 'x'\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errReply := parseAll(t, NewParser(Limits{}), []byte(tt.in))
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("args %q; want %q", got, tt.want)
			}
			if errReply != tt.err {
				t.Errorf("error %q; want %q", errReply, tt.err)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	lim := Limits{MaxMultibulk: 3, MaxBulk: 10, MaxInline: 16}
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"args at limit", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", []string{"a|b|c"}, ""},
		{"too many args", "*4\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"too many inline args", "a b c d\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"bulk at limit", "*1\r\n$10\r\n0123456789\r\n", []string{"0123456789"}, ""},
		{"bulk too big", "*1\r\n$11\r\n", nil, "-ERR Protocol error: invalid bulk length\r\n"},
		{"inline at limit", strings.Repeat("a", 16) + "\r\n", []string{"i:" + strings.Repeat("a", 16)}, ""},
		{"inline at limit waiting for LF", strings.Repeat("a", 16), nil, ""},
		{"inline past limit waiting for LF", strings.Repeat("a", 16) + "\r", nil, "-ERR Protocol error: too big inline request\r\n"},
		{"inline longer than the limit, arriving whole", strings.Repeat("a", 17) + "\r\n", []string{"i:" + strings.Repeat("a", 17)}, ""},
		{"inline too long, no LF", strings.Repeat("a", 18), nil, "-ERR Protocol error: too big inline request\r\n"},
		{"mbulk count string", "*" + strings.Repeat("1", 17), nil, "-ERR Protocol error: too big mbulk count string\r\n"},
		{"mbulk count line longer than the limit, arriving whole", "*" + strings.Repeat("1", 17) + "\r\n", nil,
			"-ERR Protocol error: invalid multibulk length\r\n"},
		{"NUL hides the line end past the limit", "get a\x00" + strings.Repeat("b", 11) + "\r\n", nil,
			"-ERR Protocol error: too big inline request\r\n"},
		{"bulk count string", "*1\r\n$" + strings.Repeat("1", 17), nil, "-ERR Protocol error: too big bulk count string\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errReply := parseAll(t, NewParser(lim), []byte(tt.in))
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("args %q; want %q", got, tt.want)
			}
			if errReply != tt.err {
				t.Errorf("error %q; want %q", errReply, tt.err)
			}
		})
	}
}

// feed gives in to a parser the way a connection does: bytes arrive in
// chunks of at most chunk, the unconsumed rest is kept and appended to.
func feed(t testing.TB, p *Parser, in []byte, chunk int) (got []string, errReply string) {
	var buf []byte
	var req Request
	for off := 0; off < len(in) || len(buf) > 0; {
		if off < len(in) {
			end := min(off+chunk, len(in))
			buf = append(buf, in[off:end]...)
			off = end
		}
		progressed := false
		for len(buf) > 0 {
			if need := p.Need(); need > len(buf) {
				break
			}
			n, err := p.Parse(buf, &req)
			if err != nil {
				return got, string(err.(*Error).Reply)
			}
			if n == 0 {
				break
			}
			progressed = true
			if len(req.Args) > 0 {
				s := string(bytes.Join(req.Args, []byte("|")))
				if req.Inline {
					s = "i:" + s
				}
				got = append(got, s)
			}
			// Move the rest to a fresh buffer so stale slices would show.
			buf = append([]byte(nil), buf[n:]...)
		}
		if off >= len(in) && !progressed {
			break
		}
	}
	return got, ""
}

func TestParseSplitReads(t *testing.T) {
	in := []byte("*3\r\n$3\r\nset\r\n$3\r\nkey\r\n$10\r\n0123456789\r\nPING\r\n\r\nset \"a b\" 'c'\r\n*0\r\n*2\r\n$3\r\nget\r\n$3\r\nkey\r\n")
	want, wantErr := parseAll(t, NewParser(Limits{}), in)
	if len(want) != 4 || wantErr != "" {
		t.Fatalf("whole input: %q %q", want, wantErr)
	}
	for chunk := 1; chunk <= len(in); chunk++ {
		got, errReply := feed(t, NewParser(Limits{}), in, chunk)
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) || errReply != "" {
			t.Fatalf("chunk %d: %q %q; want %q", chunk, got, errReply, want)
		}
	}
}

func TestParseNeed(t *testing.T) {
	p := NewParser(Limits{})
	in := []byte("*2\r\n$3\r\nset\r\n$100\r\n0123")
	var req Request
	n, err := p.Parse(in, &req)
	if n != 0 || err != nil {
		t.Fatalf("Parse = %d, %v; want 0, nil", n, err)
	}
	if got, want := p.Need(), len("*2\r\n$3\r\nset\r\n$100\r\n")+102; got != want {
		t.Errorf("Need() = %d; want %d", got, want)
	}
}

func TestAppendForward(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	for _, tt := range []struct{ in, want string }{
		{"set \"a b\" c\r\n", "*3\r\n$3\r\nset\r\n$3\r\na b\r\n$1\r\nc\r\n"},
		{"*1\r\n$4\r\nPING\r\n", "*1\r\n$4\r\nPING\r\n"},
	} {
		if _, err := p.Parse([]byte(tt.in), &req); err != nil {
			t.Fatal(err)
		}
		if got := string(req.AppendForward(nil)); got != tt.want {
			t.Errorf("AppendForward(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	if got, want := string(AppendCommand(nil, []byte("MGET"), []byte("a"))), "*2\r\n$4\r\nMGET\r\n$1\r\na\r\n"; got != want {
		t.Errorf("AppendCommand = %q; want %q", got, want)
	}
}

func TestParseCmd(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	if _, err := p.Parse([]byte("*2\r\n$3\r\nGeT\r\n$1\r\nk\r\n"), &req); err != nil {
		t.Fatal(err)
	}
	if req.Cmd == nil || req.Cmd.Name != "get" {
		t.Fatalf("Cmd = %+v; want get", req.Cmd)
	}
	if _, err := p.Parse([]byte("nosuch a\r\n"), &req); err != nil {
		t.Fatal(err)
	}
	if req.Cmd != nil {
		t.Fatalf("Cmd = %q; want nil", req.Cmd.Name)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "PING\r\n", `set "a\x41" 'b\''` + "\n", "*0\r\n", "*1\r\n$-1\r\n",
		"*1\r\nx", "\r\n\r\nget a\r\n", "*3\r\n$3\r\nset\r\n$1\r\na\r\n$2\r\nbb\r\nget a\n",
	} {
		f.Add([]byte(s))
	}
	// MaxInline is out of reach: whether a line longer than it is refused
	// depends, as in Redis, on how much of it is in when the parser looks
	// (TestParseLimits covers it).
	lim := Limits{MaxMultibulk: 8, MaxBulk: 64, MaxInline: 1 << 30}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := parseAll(t, NewParser(lim), in)
		for chunk := 1; chunk <= len(in); chunk++ {
			got, errReply := feed(t, NewParser(lim), in, chunk)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) || errReply != wantErr {
				t.Fatalf("chunk %d: %q %q; whole: %q %q", chunk, got, errReply, want, wantErr)
			}
		}
	})
}

func benchParse(b *testing.B, in []byte) {
	p := NewParser(Limits{})
	var req Request
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		n, err := p.Parse(in, &req)
		if n != len(in) || err != nil {
			b.Fatalf("Parse = %d, %v", n, err)
		}
	}
}

func BenchmarkParseSet(b *testing.B) {
	benchParse(b, AppendCommand(nil, []byte("SET"), []byte("key:000000000042"), bytes.Repeat([]byte("v"), 100)))
}

func BenchmarkParseGet(b *testing.B) {
	benchParse(b, AppendCommand(nil, []byte("GET"), []byte("key:000000000042")))
}

func BenchmarkParseInline(b *testing.B) {
	benchParse(b, []byte("SET key:000000000042 \"hello world\"\r\n"))
}

func TestParseUnauthenticated(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"10 arguments", "*10\r\n" + strings.Repeat("$1\r\nk\r\n", 10), []string{strings.TrimSuffix(strings.Repeat("k|", 10), "|")}, ""},
		{"11 arguments", "*11\r\n", nil, "-ERR Protocol error: unauthenticated multibulk length\r\n"},
		{"bad count first", "*x1\r\n", nil, "-ERR Protocol error: invalid multibulk length\r\n"},
		{"16384 bytes", "*1\r\n$16384\r\n" + strings.Repeat("a", 16384) + "\r\n", []string{strings.Repeat("a", 16384)}, ""},
		{"16385 bytes", "*1\r\n$16385\r\n", nil, "-ERR Protocol error: unauthenticated bulk length\r\n"},
		{"inline is not limited", strings.Repeat("a ", 11) + "\r\n", []string{"i:" + strings.TrimSuffix(strings.Repeat("a|", 11), "|")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser(Limits{})
			p.Unauthenticated = true
			got, errReply := parseAll(t, p, []byte(tt.in))
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("args %q; want %q", got, tt.want)
			}
			if errReply != tt.err {
				t.Errorf("error %q; want %q", errReply, tt.err)
			}
		})
	}
}

func TestAppendForwardReencodesOddSeparators(t *testing.T) {
	p := NewParser(Limits{})
	var req Request
	in := "*2\rX$3\r\nGET\r\n$1\r\nkXY"
	n, err := p.Parse([]byte(in), &req)
	if err != nil || n != len(in) {
		t.Fatalf("Parse: %d, %v; want %d, nil", n, err, len(in))
	}
	if got, want := string(req.AppendForward(nil)), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"; got != want {
		t.Fatalf("AppendForward: got %q; want %q", got, want)
	}
	in = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
	if _, err := p.Parse([]byte(in), &req); err != nil {
		t.Fatal(err)
	}
	if got := string(req.AppendForward(nil)); got != in {
		t.Fatalf("AppendForward of a canonical request: got %q; want it as received", got)
	}
}
