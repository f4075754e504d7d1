package resp

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		rep      Reply
	}{
		{"simple", "+OK\r\nrest", 5, Reply{Type: '+', Data: []byte("OK")}},
		{"error", "-ERR bad\r\n", 10, Reply{Type: '-', Data: []byte("ERR bad")}},
		{"int", ":-42\r\n", 6, Reply{Type: ':', Int: -42, Data: []byte("-42")}},
		{"bulk", "$3\r\nfoo\r\n", 9, Reply{Type: '$', Len: 3, Data: []byte("foo")}},
		{"bulk with CRLF inside", "$4\r\n\r\n\r\n\r\n", 10, Reply{Type: '$', Len: 4, Data: []byte("\r\n\r\n")}},
		{"empty bulk", "$0\r\n\r\n", 6, Reply{Type: '$', Len: 0, Data: []byte{}}},
		{"null bulk", "$-1\r\n", 5, Reply{Type: '$', Len: -1}},
		{"null array", "*-1\r\n", 5, Reply{Type: '*', Len: -1}},
		{"empty array", "*0\r\n", 4, Reply{Type: '*', Len: 0}},
		{"array", "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n+x\r\n", 20, Reply{Type: '*', Len: 3}},
		{"nested", "*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n$1\r\nb\r\n", 27, Reply{Type: '*', Len: 2}},
		{"resp3 null", "_\r\n", 3, Reply{Type: '_', Len: -1, Data: []byte{}}},
		{"resp3 double", ",3.14\r\n", 7, Reply{Type: ',', Data: []byte("3.14")}},
		{"resp3 bool", "#t\r\n", 4, Reply{Type: '#', Data: []byte("t")}},
		{"resp3 bignum", "(123\r\n", 6, Reply{Type: '(', Data: []byte("123")}},
		{"resp3 blob error", "!5\r\nERR x\r\n", 11, Reply{Type: '!', Len: 5, Data: []byte("ERR x")}},
		{"resp3 verbatim", "=7\r\ntxt:abc\r\n", 13, Reply{Type: '=', Len: 7, Data: []byte("txt:abc")}},
		{"resp3 map", "%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n", 24, Reply{Type: '%', Len: 2}},
		{"resp3 set", "~2\r\n+a\r\n+b\r\n", 12, Reply{Type: '~', Len: 2}},
		{"resp3 push", ">2\r\n+message\r\n+x\r\n", 18, Reply{Type: '>', Len: 2}},
		{"resp3 attribute then reply", "|1\r\n+k\r\n+v\r\n:5\r\n", 16, Reply{Type: '|', Len: 1}},
		{"partial line", "+OK\r", 0, Reply{}},
		{"partial bulk", "$3\r\nfo", 0, Reply{}},
		{"partial array", "*2\r\n:1\r\n", 0, Reply{}},
		{"partial nested", "*1\r\n*1\r\n", 0, Reply{}},
		{"empty", "", 0, Reply{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, rep, err := ParseReply([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseReply(%q): %v", tt.in, err)
			}
			if n != tt.n || fmt.Sprintf("%c %d %d %q", rep.Type, rep.Int, rep.Len, rep.Data) !=
				fmt.Sprintf("%c %d %d %q", tt.rep.Type, tt.rep.Int, tt.rep.Len, tt.rep.Data) {
				t.Errorf("got %d %c/%d/%d/%q; want %d %c/%d/%d/%q", n, rep.Type, rep.Int, rep.Len, rep.Data,
					tt.n, tt.rep.Type, tt.rep.Int, tt.rep.Len, tt.rep.Data)
			}
		})
	}
}

func TestParseReplyMalformed(t *testing.T) {
	for _, in := range []string{
		"?x\r\n", "+OK\rX", ":12a\r\n", ":\r\n", "$-2\r\n", "$3\r\nfooXY", "*-2\r\n", "*x\r\n", "_x\r\n", "#x\r\n",
		"!-1\r\n", "%-1\r\n", "*1\r\n?\r\n", "$?\r\n",
	} {
		n, _, err := ParseReply([]byte(in))
		if !errors.Is(err, ErrMalformed) || n != 0 {
			t.Errorf("ParseReply(%q) = %d, %v; want 0, ErrMalformed", in, n, err)
		}
	}
}

func TestParseReplyDeep(t *testing.T) {
	const depth = 1_000_000
	in := strings.Repeat("*1\r\n", depth) + ":1\r\n"
	n, rep, err := ParseReply([]byte(in))
	if err != nil || n != len(in) || rep.Type != '*' {
		t.Fatalf("ParseReply(deep) = %d, %c, %v; want %d", n, rep.Type, err, len(in))
	}
	if n, _, err := ParseReply([]byte(in[:len(in)-1])); n != 0 || err != nil {
		t.Fatalf("ParseReply(deep, partial) = %d, %v; want 0, nil", n, err)
	}
}

func TestElements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:2\r\n", []string{"$1\r\na\r\n", "$-1\r\n", "*1\r\n:2\r\n"}},
		{"%1\r\n+k\r\n+v\r\n", []string{"+k\r\n", "+v\r\n"}},
		{"*-1\r\n", nil},
		{"+OK\r\n", nil},
	}
	for _, tt := range tests {
		var got []string
		it := NewElements([]byte(tt.in))
		for it.Next() {
			got = append(got, string(it.Elem()))
		}
		if it.Err() != nil || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
			t.Errorf("Elements(%q) = %q, %v; want %q", tt.in, got, it.Err(), tt.want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"-LOADING Redis is loading\r\n", "LOADING"},
		{"-BUSY Redis is busy\r\n", "BUSY"},
		{"-OOM command not allowed\r\n", "OOM"},
		{"-MOVED 3999 127.0.0.1:6381\r\n", "MOVED"},
		{"-ERR\r\n", "ERR"},
		{"!9\r\nNOPROTO x\r\n", "NOPROTO"},
		{"+OK\r\n", ""},
	} {
		if got := string(ErrorCode([]byte(tt.in))); got != tt.want {
			t.Errorf("ErrorCode(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	if !IsError([]byte("-ERR x\r\n")) || IsError([]byte("+OK\r\n")) {
		t.Error("IsError wrong")
	}
}

// frameAll frames every reply in in.
func frameAll(in []byte) (lens []int, err error) {
	for len(in) > 0 {
		n, _, err := ParseReply(in)
		if err != nil || n == 0 {
			return lens, err
		}
		lens = append(lens, n)
		in = in[n:]
	}
	return lens, nil
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$3\r\nfoo\r\n*2\r\n:1\r\n$-1\r\n", "%1\r\n+a\r\n~1\r\n_\r\n", "|1\r\n+a\r\n+b\r\n#t\r\n",
		"*1\r\n*1\r\n*0\r\n", "!3\r\nERR\r\n=5\r\ntxt:a\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := frameAll(in)
		// Feeding a growing prefix must frame the same replies at the same
		// points: a reply is complete exactly when all its bytes are there.
		var got []int
		var gotErr error
		start := 0
		for end := 1; end <= len(in); end++ {
			n, _, err := ParseReply(in[start:end])
			if err != nil {
				gotErr = err
				break
			}
			if n > 0 {
				if n != end-start {
					t.Fatalf("prefix [%d:%d] framed %d bytes, want all of it", start, end, n)
				}
				got = append(got, n)
				start = end
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("split: %v %v; whole: %v %v", got, gotErr, want, wantErr)
		}
		// The resumable framer, fed the same growing prefixes with one
		// state, frames the same replies with the same descriptions.
		var st ReplyState
		got, gotErr, start = nil, nil, 0
		for end := 1; end <= len(in); end++ {
			n, rep, err := ParseReplyResume(in[start:end], &st)
			if err != nil {
				gotErr = err
				break
			}
			if n > 0 {
				_, whole, _ := ParseReply(in[start:end])
				if n != end-start || rep.Type != whole.Type || rep.Len != whole.Len || rep.Int != whole.Int {
					t.Fatalf("resume [%d:%d]: %d %+v; whole %+v", start, end, n, rep, whole)
				}
				got = append(got, n)
				start = end
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("resume: %v %v; whole: %v %v", got, gotErr, want, wantErr)
		}
	})
}

func TestParseReplyResumeLargeArray(t *testing.T) {
	var in []byte
	in = AppendArrayHeader(in, 10000)
	for i := 0; i < 10000; i++ {
		in = AppendBulkString(in, fmt.Sprintf("element-%d", i))
	}
	var st ReplyState
	for end := 1000; ; end += 1000 {
		end = min(end, len(in))
		n, rep, err := ParseReplyResume(in[:end], &st)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if end == len(in) {
				t.Fatal("whole reply not framed")
			}
			continue
		}
		if n != len(in) || rep.Type != '*' || rep.Len != 10000 {
			t.Fatalf("framed %d of %d bytes, %+v", n, len(in), rep)
		}
		return
	}
}

func BenchmarkParseReplyBulk(b *testing.B) {
	in := AppendBulk(nil, []byte(strings.Repeat("v", 100)))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if n, _, err := ParseReply(in); n != len(in) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseReplyArray(b *testing.B) {
	in := AppendArrayHeader(nil, 16)
	for i := 0; i < 16; i++ {
		in = AppendBulk(in, []byte(strings.Repeat("v", 32)))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if n, _, err := ParseReply(in); n != len(in) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func TestReplyTypes(t *testing.T) {
	tests := []struct {
		name  string
		allow string // type bytes allowed, besides '-'
	}{
		{"incr", ":"},
		{"get", "$"},
		{"set", "+$"},
		{"lpop", "$*"},
		{"zadd", ":$"},
		{"hgetall", "*"},
		{"object|encoding", "$"},
		{"eval", "+-:$*"}, // not checked
	}
	for _, tt := range tests {
		c := LookupFull([]byte(tt.name))
		if c == nil {
			t.Fatalf("%s: not in the table", tt.name)
		}
		for _, ty := range []byte("+-:$*") {
			want := ty == '-' || strings.IndexByte(tt.allow, ty) >= 0
			if got := c.Replies.Allows(ty); got != want {
				t.Errorf("%s allows %q: %v; want %v", tt.name, ty, got, want)
			}
		}
	}
}

func TestParseReplyRESP2(t *testing.T) {
	for _, in := range []string{">1\r\n$1\r\nx\r\n", "_\r\n", "%1\r\n+a\r\n+b\r\n", "*2\r\n:1\r\n,1.5\r\n", "#t\r\n", "|1\r\n+a\r\n+b\r\n+c\r\n"} {
		var st ReplyState
		if _, _, err := ParseReplyRESP2([]byte(in), &st); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseReplyRESP2(%q): %v; want ErrMalformed", in, err)
		}
		if n, _, err := ParseReplyResume([]byte(in), &st); err != nil || n != len(in) {
			t.Errorf("ParseReplyResume(%q): %d, %v; want %d, nil", in, n, err, len(in))
		}
	}
	for _, in := range []string{"+OK\r\n", "-ERR x\r\n", ":-1\r\n", "$-1\r\n", "*-1\r\n", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n"} {
		var st ReplyState
		if n, _, err := ParseReplyRESP2([]byte(in), &st); err != nil || n != len(in) {
			t.Errorf("ParseReplyRESP2(%q): %d, %v; want %d, nil", in, n, err, len(in))
		}
	}
}
