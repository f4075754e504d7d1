package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAppendRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"mc get", AppendGet(nil, Memcache, []byte("k1")), "get k1\r\n"},
		{"mc set", AppendSet(nil, Memcache, []byte("k1"), []byte("hello")), "set k1 0 0 5\r\nhello\r\n"},
		{"mc set empty", AppendSet(nil, Memcache, []byte("k"), nil), "set k 0 0 0\r\n\r\n"},
		{"redis get", AppendGet(nil, Redis, []byte("k1")), "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n"},
		{"redis set", AppendSet(nil, Redis, []byte("k1"), []byte("hello")), "*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$5\r\nhello\r\n"},
		{"appends", AppendGet([]byte("x"), Memcache, []byte("a")), "xget a\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %q; want %q", tc.name, tc.got, tc.want)
		}
	}
}

// readAll parses every reply in the stream r and renders each as
// "kind[key]=value", ending with "!err" when parsing stops on an error
// other than a clean EOF between replies.
func readAll(r io.Reader, p Protocol) []string {
	rd := NewReader(bufio.NewReaderSize(r, 64), p)
	var out []string
	for {
		rep, err := rd.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				out = append(out, "!"+errClass(err))
			}
			return out
		}
		out = append(out, fmt.Sprintf("%v[%s]=%s", rep.Kind, rep.Key, rep.Value))
	}
}

func errClass(err error) string {
	switch {
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return err.Error()
}

var readerCases = []struct {
	name  string
	proto Protocol
	in    string
	want  []string
}{
	{"mc hit", Memcache, "VALUE k1 0 5\r\nhello\r\nEND\r\n", []string{"hit[k1]=hello"}},
	{"mc hit cas", Memcache, "VALUE k1 3 2 99\r\nhi\r\nEND\r\n", []string{"hit[k1]=hi"}},
	{"mc value with CRLF inside", Memcache, "VALUE k 0 4\r\na\r\nb\r\nEND\r\n", []string{"hit[k]=a\r\nb"}},
	{"mc miss", Memcache, "END\r\n", []string{"miss[]="}},
	{"mc stored", Memcache, "STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\n", []string{"stored[]=", "not-stored[]=", "not-stored[]=", "not-stored[]="}},
	{"mc errors", Memcache, "ERROR\r\nCLIENT_ERROR bad\r\nSERVER_ERROR out of memory\r\n", []string{"error[]=ERROR", "error[]=CLIENT_ERROR bad", "error[]=SERVER_ERROR out of memory"}},
	{"mc pipeline", Memcache, "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nEND\r\n", []string{"stored[]=", "hit[a]=x", "miss[]="}},
	{"mc big value", Memcache, "VALUE big 0 100\r\n" + strings.Repeat("v", 100) + "\r\nEND\r\n", []string{"hit[big]=" + strings.Repeat("v", 100)}},
	{"mc unknown", Memcache, "HELLO\r\n", []string{"!protocol"}},
	{"mc bare LF", Memcache, "END\n", []string{"!protocol"}},
	{"mc bad length", Memcache, "VALUE k 0 x\r\n", []string{"!protocol"}},
	{"mc short VALUE", Memcache, "VALUE k\r\n", []string{"!protocol"}},
	{"mc value without CRLF", Memcache, "VALUE k 0 2\r\nabcEND\r\n", []string{"!protocol"}},
	{"mc two values", Memcache, "VALUE k 0 1\r\na\r\nVALUE j 0 1\r\nb\r\nEND\r\n", []string{"!protocol"}},
	{"mc truncated value", Memcache, "VALUE k 0 5\r\nhel", []string{"!truncated"}},
	{"mc truncated line", Memcache, "STOR", []string{"!truncated"}},
	{"mc line too long", Memcache, strings.Repeat("x", 100) + "\r\n", []string{"!protocol"}},
	{"redis hit", Redis, "$5\r\nhello\r\n", []string{"hit[]=hello"}},
	{"redis empty", Redis, "$0\r\n\r\n", []string{"hit[]="}},
	{"redis nil", Redis, "$-1\r\n_\r\n", []string{"miss[]=", "miss[]="}},
	{"redis ok", Redis, "+OK\r\n", []string{"stored[]="}},
	{"redis int", Redis, ":1\r\n:-3\r\n", []string{"integer[]=", "integer[]="}},
	{"redis err", Redis, "-ERR wrong\r\n-MOVED 1 x\r\n", []string{"error[]=ERR wrong", "error[]=MOVED 1 x"}},
	{"redis pipeline", Redis, "+OK\r\n$1\r\nx\r\n$-1\r\n", []string{"stored[]=", "hit[]=x", "miss[]="}},
	{"redis array", Redis, "*1\r\n$1\r\nx\r\n", []string{"!protocol"}},
	{"redis bad len", Redis, "$-2\r\n", []string{"!protocol"}},
	{"redis huge len", Redis, "$999999999999\r\n", []string{"!protocol"}},
	{"redis bad int", Redis, ":x\r\n", []string{"!protocol"}},
	{"redis empty line", Redis, "\r\n", []string{"!protocol"}},
	{"redis bulk without CRLF", Redis, "$1\r\nab\r\n", []string{"!protocol"}},
	{"redis truncated", Redis, "$5\r\nhe", []string{"!truncated"}},
}

func TestReader(t *testing.T) {
	for _, tc := range readerCases {
		got := readAll(strings.NewReader(tc.in), tc.proto)
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("%s: got %q; want %q", tc.name, got, tc.want)
		}
		// One byte per read gives the same result.
		got = readAll(iotest.OneByteReader(strings.NewReader(tc.in)), tc.proto)
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("%s, one byte per read: got %q; want %q", tc.name, got, tc.want)
		}
	}
}

// splitReader returns its input in two reads, split at n.
func splitReader(in []byte, n int) io.Reader {
	return io.MultiReader(bytes.NewReader(in[:n]), bytes.NewReader(in[n:]))
}

func FuzzReader(f *testing.F) {
	for _, tc := range readerCases {
		f.Add([]byte(tc.in), tc.proto == Redis)
	}
	f.Fuzz(func(t *testing.T, in []byte, redis bool) {
		p := Memcache
		if redis {
			p = Redis
		}
		whole := fmt.Sprintf("%q", readAll(bytes.NewReader(in), p))
		for i := 0; i <= len(in); i++ {
			if got := fmt.Sprintf("%q", readAll(splitReader(in, i), p)); got != whole {
				t.Fatalf("input %q split at %d: got %s; want %s", in, i, got, whole)
			}
		}
	})
}

// repeatReader serves the same bytes forever.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

func benchReader(b *testing.B, p Protocol, reply string) {
	rd := NewReader(bufio.NewReaderSize(&repeatReader{b: []byte(reply)}, 64<<10), p)
	b.ReportAllocs()
	b.SetBytes(int64(len(reply)))
	for b.Loop() {
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderMemcacheHit(b *testing.B) {
	benchReader(b, Memcache, "VALUE cb:12345 0 32\r\nkey:cb:12345:xxxxxxxxxxxxxxxxxxx\r\nEND\r\n")
}

func BenchmarkReaderRESPHit(b *testing.B) {
	benchReader(b, Redis, "$32\r\nkey:cb:12345:xxxxxxxxxxxxxxxxxxx\r\n")
}

func BenchmarkReaderMemcacheStored(b *testing.B) { benchReader(b, Memcache, "STORED\r\n") }

func BenchmarkAppendBatch(b *testing.B) {
	ks := newKeyspace("cb:", 32)
	var buf, key, val []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for k := range 16 {
			key = ks.appendKey(key[:0], k)
			if k%10 == 0 {
				val = ks.appendValue(val[:0], key)
				buf = AppendSet(buf, Redis, key, val)
			} else {
				buf = AppendGet(buf, Redis, key)
			}
		}
	}
}
