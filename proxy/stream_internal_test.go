package proxy

import (
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/proxy/memcache"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// feedAll feeds buf to cur in pieces of the given sizes (the last piece
// repeated), the way a backend connection hands over what each read
// brought: bytes the cursor did not take are offered again with more. It
// returns where the reply ended (0 if it did not) and the first error.
func feedAll(cur replyCursor, buf []byte, piece int) (end int, err error) {
	off, avail := 0, 0
	for off < len(buf) {
		avail = min(max(avail, off)+piece, len(buf))
		for {
			n, done, err := cur.feed(buf[off:avail])
			off += n
			if err != nil {
				return 0, err
			}
			if done {
				return off, nil
			}
			if n == 0 || off == avail {
				break
			}
		}
		if avail == len(buf) && off < len(buf) {
			return 0, nil
		}
	}
	return 0, nil
}

func TestCursorsFrameRepliesSplitAnywhere(t *testing.T) {
	big := strings.Repeat("x", 70000)
	for _, tc := range []struct {
		name   string
		cursor func() replyCursor
		reply  string
		hits   int
	}{
		{"get", func() replyCursor { return &mcCursor{cmd: memcache.CmdGet} },
			"VALUE a 0 3\r\nabc\r\nVALUE b 5 70000 12\r\n" + big + "\r\nEND\r\n", 2},
		{"get miss", func() replyCursor { return &mcCursor{cmd: memcache.CmdGet} }, "END\r\n", 0},
		{"get error", func() replyCursor { return &mcCursor{cmd: memcache.CmdGets} }, "SERVER_ERROR out of memory\r\n", 0},
		{"value with CRLF inside", func() replyCursor { return &mcCursor{cmd: memcache.CmdGet} },
			"VALUE a 0 7\r\nEND\r\n\r\n\r\nEND\r\n", 1},
		{"mg", func() replyCursor { return &mcCursor{cmd: memcache.CmdMetaGet} }, "VA 70000 f1\r\n" + big + "\r\n", 1},
		{"mg miss", func() replyCursor { return &mcCursor{cmd: memcache.CmdMetaGet} }, "EN\r\n", 0},
		{"stats", func() replyCursor { return &mcCursor{cmd: memcache.CmdStats} }, "STAT a 1\r\nSTAT b 2\r\nEND\r\n", 0},
		{"set", func() replyCursor { return &mcCursor{cmd: memcache.CmdSet} }, "STORED\r\n", 0},
		{"bulk", func() replyCursor { return &respCursor{} }, "$70000\r\n" + big + "\r\n", 0},
		{"null", func() replyCursor { return &respCursor{} }, "$-1\r\n", 0},
		{"empty bulk", func() replyCursor { return &respCursor{} }, "$0\r\n\r\n", 0},
		{"array", func() replyCursor { return &respCursor{} },
			"*4\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n+OK\r\n$70000\r\n" + big + "\r\n", 0},
		{"empty array", func() replyCursor { return &respCursor{} }, "*0\r\n", 0},
		{"map and attribute", func() replyCursor { return &respCursor{} },
			"|1\r\n+a\r\n:1\r\n%2\r\n+k\r\n$1\r\nv\r\n+k2\r\n_\r\n", 0},
		{"error", func() replyCursor { return &respCursor{} }, "-ERR nope\r\n", 0},
	} {
		// A second reply follows, which the cursor must not take.
		buf := []byte(tc.reply + "+NEXT\r\n")
		for _, piece := range []int{len(buf), 1, 2, 3, 7, 4096, 65536} {
			cur := tc.cursor()
			end, err := feedAll(cur, buf, piece)
			if err != nil || end != len(tc.reply) {
				t.Errorf("%s, pieces of %d: got end %d, error %v; want %d", tc.name, piece, end, err, len(tc.reply))
				continue
			}
			if cur.hits() != tc.hits {
				t.Errorf("%s, pieces of %d: got %d hits; want %d", tc.name, piece, cur.hits(), tc.hits)
			}
		}
	}
}

func TestCursorsRejectMalformed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cur   replyCursor
		reply string
	}{
		{"get junk", &mcCursor{cmd: memcache.CmdGet}, "STORED\r\n"},
		{"value not closed", &mcCursor{cmd: memcache.CmdGet}, "VALUE a 0 3\r\nabcd\r\nEND\r\n"},
		{"bad length", &mcCursor{cmd: memcache.CmdGet}, "VALUE a 0 -3\r\nabc\r\nEND\r\n"},
		{"bulk not closed", &respCursor{}, "$3\r\nabcd\r\n"},
		{"bad type", &respCursor{}, "?3\r\n"},
		{"CR without LF", &respCursor{}, "+OK\rX"},
		{"bad bulk length", &respCursor{}, "$x\r\n"},
	} {
		if _, err := feedAll(tc.cur, []byte(tc.reply), len(tc.reply)); err == nil {
			t.Errorf("%s: %q framed without error", tc.name, tc.reply)
		}
	}
}

func TestMemcacheCursorCutsBetweenValues(t *testing.T) {
	cur := &mcCursor{cmd: memcache.CmdGet}
	buf := []byte("VALUE a 0 3\r\nabc\r\nVALUE b 0 3\r\nxyz\r\nEND\r\n")
	n, done, err := cur.feed(buf[:15]) // the line and part of the data
	if err != nil || done || n != 15 || cur.cuttable() {
		t.Fatalf("inside a value: got n %d done %v err %v cuttable %v; want 15 false nil false", n, done, err, cur.cuttable())
	}
	n, done, err = cur.feed(buf[15:])
	if err != nil || done || n != 3 || !cur.cuttable() {
		t.Fatalf("after a value: got n %d done %v err %v cuttable %v; want 3 false nil true", n, done, err, cur.cuttable())
	}
	if (&respCursor{}).mayCut() {
		t.Error("a RESP reply claims it may be cut")
	}
}

// FuzzRespCursor: wherever resp.ParseReply frames a complete reply, the
// cursor ends it at the same byte, fed whole or a byte at a time.
func FuzzRespCursor(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$3\r\nabc\r\n", "*2\r\n$1\r\na\r\n:5\r\n", "%1\r\n+a\r\n*0\r\n", "|1\r\n+a\r\n+b\r\n+c\r\n", "$-1\r\n", "*-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		n, _, err := resp.ParseReply(buf)
		if err != nil || n == 0 {
			return
		}
		for _, piece := range []int{len(buf), 1} {
			end, cerr := feedAll(&respCursor{}, buf, piece)
			if cerr != nil || end != n {
				t.Fatalf("%q in pieces of %d: cursor ended at %d (%v); ParseReply at %d", buf, piece, end, cerr, n)
			}
		}
	})
}

// FuzzMemcacheCursor: the same against memcache.ParseReply for get replies.
func FuzzMemcacheCursor(f *testing.F) {
	for _, s := range []string{"END\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n", "VALUE a 0 1 5\r\nx\r\nVALUE b 1 0\r\n\r\nEND\r\n", "SERVER_ERROR x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		n, _, err := memcache.ParseReply(buf, memcache.CmdGet)
		if err != nil || n == 0 {
			return
		}
		for _, piece := range []int{len(buf), 1} {
			end, cerr := feedAll(&mcCursor{cmd: memcache.CmdGet}, buf, piece)
			if cerr != nil || end != n {
				t.Fatalf("%q in pieces of %d: cursor ended at %d (%v); ParseReply at %d", buf, piece, end, cerr, n)
			}
		}
	})
}
