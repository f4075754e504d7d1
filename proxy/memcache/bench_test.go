package memcache

import (
	"strconv"
	"strings"
	"testing"
)

func benchParse(b *testing.B, in []byte) {
	p := NewParser(Limits{})
	var req Request
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if n, err := p.Parse(in, &req); n != len(in) || err != nil {
			b.Fatalf("Parse = %d, %v", n, err)
		}
	}
}

func BenchmarkParseGet(b *testing.B) {
	benchParse(b, []byte("get user:1234567890:profile\r\n"))
}

func BenchmarkParseSet(b *testing.B) {
	benchParse(b, []byte("set user:1234567890:profile 0 3600 100\r\n"+strings.Repeat("v", 100)+"\r\n"))
}

func BenchmarkParseMetaGet(b *testing.B) {
	benchParse(b, []byte("mg user:1234567890:profile v f t q Oab12\r\n"))
}

func BenchmarkParseMultiGet100(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("get")
	for i := range 100 {
		sb.WriteString(" user:" + strconv.Itoa(i*7919) + ":profile")
	}
	sb.WriteString("\r\n")
	benchParse(b, []byte(sb.String()))
}

func BenchmarkParseReplyValue(b *testing.B) {
	in := []byte("VALUE user:1234567890:profile 0 100\r\n" + strings.Repeat("v", 100) + "\r\nEND\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if n, rep, err := ParseReply(in, CmdGet); n != len(in) || err != nil || rep.Hits != 1 {
			b.Fatalf("ParseReply = %d, %+v, %v", n, rep, err)
		}
	}
}

func BenchmarkParseReplyStored(b *testing.B) {
	in := []byte("STORED\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := ParseReply(in, CmdSet); n != len(in) || err != nil {
			b.Fatalf("ParseReply = %d, %v", n, err)
		}
	}
}

func benchForward(b *testing.B, in string) {
	p := NewParser(Limits{})
	var req Request
	if _, err := p.Parse([]byte(in), &req); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = req.AppendForward(dst[:0])
	}
}

func BenchmarkAppendForward(b *testing.B) {
	benchForward(b, "set user:1234567890:profile 0 3600 100\r\n"+strings.Repeat("v", 100)+"\r\n")
}

func BenchmarkAppendForwardNoreply(b *testing.B) {
	benchForward(b, "set user:1234567890:profile 0 3600 100 noreply\r\n"+strings.Repeat("v", 100)+"\r\n")
}

func BenchmarkAppendMultiGet(b *testing.B) {
	p := NewParser(Limits{})
	var req Request
	if _, err := p.Parse([]byte("get a:1 b:2 c:3 d:4 e:5 f:6\r\n"), &req); err != nil {
		b.Fatal(err)
	}
	idx := []int{0, 2, 4}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		dst = req.AppendMultiGet(dst[:0], idx)
	}
}

func BenchmarkHashKeyBase64(b *testing.B) {
	p := NewParser(Limits{})
	var req Request
	if _, err := p.Parse([]byte("mg dXNlcjoxMjM0NTY3ODkw b v\r\n"), &req); err != nil {
		b.Fatal(err)
	}
	scratch := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		scratch = req.HashKey(0, scratch)
	}
}
