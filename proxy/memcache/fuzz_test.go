package memcache

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// parseAll parses every request of in, feeding it in chunks of size chunk
// (0: all at once) the way a connection would: buffered bytes accumulate,
// complete requests are consumed, Skip discards input, Close stops. It
// returns a description of the sequence of results.
func parseAll(in []byte, chunk int) string {
	p := NewParser(Limits{MaxKeyLength: 16, MaxValueSize: 64, MaxLineLength: 128, MaxKeys: 4})
	var req Request
	var out bytes.Buffer
	var buf []byte
	skip := 0
	for off := 0; off < len(in) || len(buf) > 0; {
		if chunk == 0 {
			buf = append(buf, in[off:]...)
			off = len(in)
		} else if off < len(in) {
			end := min(off+chunk, len(in))
			buf = append(buf, in[off:end]...)
			off = end
		}
		if skip > 0 {
			d := min(skip, len(buf))
			buf, skip = buf[d:], skip-d
		}
		for skip == 0 && len(buf) > 0 {
			n, err := p.Parse(buf, &req)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					panic(fmt.Sprintf("Parse error %v is not *Error", err))
				}
				fmt.Fprintf(&out, "err %q skip %d close %v\n", e.Reply, e.Skip, e.Close)
				if e.Close {
					return out.String()
				}
				if e.Skip <= 0 {
					panic("error without skip or close")
				}
				d := min(e.Skip, len(buf))
				buf, skip = buf[d:], e.Skip-d
				continue
			}
			if n == 0 {
				if need := p.Need(); need != 0 && need <= len(buf) {
					panic(fmt.Sprintf("incomplete but Need %d <= buffered %d", need, len(buf)))
				}
				break
			}
			if n != len(req.Raw) || !bytes.Equal(req.Raw, buf[:n]) {
				panic("Raw does not match consumed bytes")
			}
			fwd := req.AppendForward(nil)
			checkForward(&req, fwd)
			ttl, ok := req.TTL()
			if ok {
				for _, nt := range []int64{1, 9, MaxRelativeTTL} {
					checkForwardTTL(&req, nt)
				}
			}
			fmt.Fprintf(&out, "req %v %q keys %q nr %v q %v b %v val %q args %q fwd %q ttl %d %v\n",
				req.Cmd, req.Raw, req.Keys, req.Noreply, req.Quiet, req.Base64, req.Value, req.Args, fwd, ttl, ok)
			buf = buf[n:]
		}
		if off >= len(in) && (skip > 0 || len(buf) > 0) {
			var n int
			if skip == 0 {
				n, _ = p.Parse(buf, &req)
			}
			if n == 0 {
				fmt.Fprintf(&out, "incomplete %d skip %d\n", len(buf), skip)
				break
			}
		}
	}
	return out.String()
}

// checkForward panics unless what the backend is sent reads, as a fresh
// parser reads it, as the same request: same command, keys and value, and
// no noreply (the backend must answer); a quiet meta request is sent as it
// is followed by "mn".
func checkForward(req *Request, fwd []byte) {
	if req.Cmd.Class() == ClassLocal {
		return
	}
	p := NewParser(Limits{MaxKeyLength: 16, MaxValueSize: 64, MaxLineLength: 128, MaxKeys: 4})
	var r Request
	n, err := p.Parse(fwd, &r)
	want := len(fwd)
	if req.Quiet {
		want -= len(QuietSentinel)
		if !bytes.HasSuffix(fwd, []byte(QuietSentinel)) {
			panic(fmt.Sprintf("quiet %q forwarded without mn: %q", req.Raw, fwd))
		}
	}
	if err != nil || n != want || r.Cmd != req.Cmd || r.Noreply || r.Quiet != req.Quiet ||
		!bytes.Equal(r.Value, req.Value) || fmt.Sprintf("%q", r.Keys) != fmt.Sprintf("%q", req.Keys) {
		panic(fmt.Sprintf("%q forwarded as %q, which reads as %v %q nr %v (n %d of %d, err %v)",
			req.Raw, fwd, r.Cmd, r.Keys, r.Noreply, n, want, err))
	}
}

// checkForwardTTL panics unless the request sent with its expiry
// rewritten to ttl reads as the same request (checkForward) whose TTL is
// ttl, and differs from AppendForward's bytes only in that token.
func checkForwardTTL(req *Request, ttl int64) {
	fwd := req.AppendForwardTTL(nil, ttl)
	checkForward(req, fwd)
	p := NewParser(Limits{MaxKeyLength: 16, MaxValueSize: 64, MaxLineLength: 128, MaxKeys: 4})
	var r Request
	if _, err := p.Parse(fwd, &r); err != nil {
		panic(err)
	}
	if got, ok := r.TTL(); !ok || got != ttl {
		panic(fmt.Sprintf("%q rewritten with TTL %d as %q, which reads TTL %d, %v", req.Raw, ttl, fwd, got, ok))
	}
	if again := r.AppendForwardTTL(nil, ttl); !bytes.Equal(again, fwd) {
		panic(fmt.Sprintf("%q rewritten with TTL %d as %q, rewritten again as %q", req.Raw, ttl, fwd, again))
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range goodCases {
		f.Add([]byte(c.in))
	}
	for _, c := range badCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte("get a b\r\nset k 0 0 3 noreply\r\nabc\r\nmg a q v\r\nms a 2 q\nhi\r\nmn\r\n"))
	f.Add([]byte("set k 0 0 100\r\nxx\r\nget a\r\nbogus\r\nget a\r\n"))
	f.Add([]byte("incr zz 1 noreply\x00\r\nset \x10k 0 0 2 noreply\x00x\r\nab\r\ndelete noreply\r\nmg k q q\r\n"))
	f.Add([]byte("set k \t1 +0 4294967297\r\nx\r\nset k 0 0 1 noreply\r\nxyzset k 0 0 a noreply\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("set k 0 60 1 noreply\r\nx\r\ncas  k 1 2592000 1 5\nx\r\nms k 1 q T30 MS\r\nx\r\nms k 1 T5 MA\r\nx\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := parseAll(in, 0)
		for _, chunk := range []int{1, 2, 3, 7} {
			if got := parseAll(in, chunk); got != whole {
				t.Fatalf("chunks of %d:\n%s\nall at once:\n%s", chunk, got, whole)
			}
		}
	})
}

// replyAll frames every reply in in for cmd, fed in chunks (0: at once).
func replyAll(in []byte, cmd Command, chunk int) string {
	var out bytes.Buffer
	var buf []byte
	for off := 0; off < len(in) || len(buf) > 0; {
		if chunk == 0 {
			buf = append(buf, in...)
			off = len(in)
		} else if off < len(in) {
			end := min(off+chunk, len(in))
			buf = append(buf, in[off:end]...)
			off = end
		}
		for len(buf) > 0 {
			n, rep, err := ParseReply(buf, cmd)
			if err != nil {
				if !errors.Is(err, ErrMalformedReply) {
					panic(fmt.Sprintf("error %v does not wrap ErrMalformedReply", err))
				}
				fmt.Fprintf(&out, "malformed\n")
				return out.String()
			}
			if n == 0 {
				break
			}
			if rep.Body > n || rep.Body < 0 {
				panic("Body outside the reply")
			}
			fmt.Fprintf(&out, "reply %q %+v\n", buf[:n], rep)
			buf = buf[n:]
		}
		if off >= len(in) {
			if len(buf) > 0 {
				fmt.Fprintf(&out, "incomplete %d\n", len(buf))
			}
			break
		}
	}
	return out.String()
}

func FuzzParseReply(f *testing.F) {
	for _, c := range replyCases {
		f.Add(uint8(c.cmd), []byte(c.in))
	}
	f.Add(uint8(CmdGet), []byte("VALUE a 0 5\r\nEND\r\n\r\nVALUE b 0 5\r\nVALUE\r\nEND\r\nEND\r\n"))
	f.Fuzz(func(t *testing.T, cmd uint8, in []byte) {
		c := Command(cmd % uint8(numCommands))
		whole := replyAll(in, c, 0)
		for _, chunk := range []int{1, 2, 5} {
			if got := replyAll(in, c, chunk); got != whole {
				t.Fatalf("cmd %v chunks of %d:\n%s\nall at once:\n%s", c, chunk, got, whole)
			}
		}
	})
}
