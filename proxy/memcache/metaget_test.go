package memcache

import (
	"testing"
)

func parseOne(t *testing.T, line string) *Request {
	t.Helper()
	var req Request
	p := NewParser(Limits{})
	in := []byte(line)
	if n, err := p.Parse(in, &req); err != nil || n != len(in) {
		t.Fatalf("Parse(%q) = %d, %v", line, n, err)
	}
	return &req
}

func TestNearMetaGet(t *testing.T) {
	for _, c := range []struct {
		line      string
		ok, fills bool
	}{
		{"mg k\r\n", true, false},
		{"mg k v\r\n", true, false},
		{"mg k v f\r\n", true, true},
		{"mg k f s k O12 q v\r\n", true, true},
		{"mg Zm9v b v f\r\n", true, true},
		{"mg Zm9v b k v\r\n", false, false}, // k of a base64 key: version-dependent echo
		{"mg k b v\r\n", false, false},      // "k" is not base64
		{"mg k v v\r\n", false, false},      // duplicate: CLIENT_ERROR from memcached
		{"mg k O1 O2\r\n", false, false},
		{"mg k vx\r\n", false, false},
		{"mg k t v\r\n", false, false},
		{"mg k c\r\n", false, false},
		{"mg k h\r\n", false, false},
		{"mg k l\r\n", false, false},
		{"mg k N30 v\r\n", false, false},
		{"mg k T30 v\r\n", false, false},
		{"mg k R30 v\r\n", false, false},
		{"mg k E5 v\r\n", false, false},
		{"mg k O123456789012345678901234567890123\r\n", false, false},
		{"mg k O1234567890123456789012345678901\r\n", true, false},
		{"get k\r\n", false, false},
	} {
		ok, fills := parseOne(t, c.line).NearMetaGet()
		if ok != c.ok || fills != c.fills {
			t.Errorf("%q: NearMetaGet = %v, %v; want %v, %v", c.line, ok, fills, c.ok, c.fills)
		}
	}
}

func TestAppendMetaHit(t *testing.T) {
	block := []byte("VALUE foo 5 3\r\nbar\r\n")
	flags, data, ok := ValueBlock(block)
	if !ok || string(flags) != "5" || string(data) != "bar" {
		t.Fatalf("ValueBlock = %q, %q, %v", flags, data, ok)
	}
	for line, want := range map[string]string{
		"mg foo\r\n":                  "HD\r\n",
		"mg foo q\r\n":                "HD\r\n",
		"mg foo v\r\n":                "VA 3\r\nbar\r\n",
		"mg foo k q s f v O9\r\n":     "VA 3 kfoo s3 f5 O9\r\nbar\r\n",
		"mg foo  s   O\r\n":           "HD s3 O\r\n",
		"mg Zm9v b f\r\n":             "HD f5\r\n",
		"mg foo O123 v k\r\n":         "VA 3 O123 kfoo\r\nbar\r\n",
		"mg foo f v s k O1 q\r\n":     "VA 3 f5 s3 kfoo O1\r\nbar\r\n",
		"mg foo v f\x00 t c\r\n":      "VA 3 f5\r\nbar\r\n", // memcached reads up to the NUL
		"mg foo s\r\n":                "HD s3\r\n",
		"mg foo f k O000 v s q b\r\n": "",
	} {
		req := parseOne(t, line)
		if ok, _ := req.NearMetaGet(); !ok {
			if want != "" {
				t.Errorf("%q: not answerable", line)
			}
			continue
		}
		if got := string(req.AppendMetaHit(nil, flags, data)); got != want {
			t.Errorf("%q: AppendMetaHit = %q; want %q", line, got, want)
		}
	}
	for _, bad := range []string{"VALUE foo 5 4\r\nbar\r\n", "VALUE foo 5 3\nbar\r\n", "VA 3\r\nbar\r\n", "VALUE 3\r\nbar\r\n"} {
		if _, _, ok := ValueBlock([]byte(bad)); ok {
			t.Errorf("ValueBlock(%q) accepted", bad)
		}
	}
}

func TestAppendValueBlock(t *testing.T) {
	for reply, want := range map[string]string{
		"VA 3 f5\r\nbar\r\n":                     "VALUE foo 5 3\r\nbar\r\n",
		"VA 3 kfoo s3 f4294967295 O9\r\nbar\r\n": "VALUE foo 4294967295 3\r\nbar\r\n",
		"VA 0 f0\r\n\r\n":                        "VALUE foo 0 0\r\n\r\n",
		"VA 3\r\nbar\r\n":                        "", // no client flags
		"VA 4 f5\r\nbar\r\n":                     "", // short block
		"HD f5\r\n":                              "",
		"VA 3 fx\r\nbar\r\n":                     "",
	} {
		got, ok := AppendValueBlock(nil, []byte("foo"), []byte(reply))
		if ok != (want != "") || string(got) != want {
			t.Errorf("AppendValueBlock(%q) = %q, %v; want %q", reply, got, ok, want)
		}
	}
}

// TestMetaHitAllocs: answering an mg hit from a cached block allocates
// nothing once the destination has room.
func TestMetaHitAllocs(t *testing.T) {
	req := parseOne(t, "mg user:1234 k q s f v O9\r\n")
	block := []byte("VALUE user:1234 5 3\r\nbar\r\n")
	dst := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		ok, _ := req.NearMetaGet()
		flags, data, ok2 := ValueBlock(block)
		if !ok || !ok2 {
			t.Fatal("not answerable")
		}
		dst = req.AppendMetaHit(dst[:0], flags, data)
		dst, _ = AppendValueBlock(dst[:0], []byte("user:1234"), []byte("VA 3 f5\r\nbar\r\n"))
	})
	if allocs != 0 {
		t.Errorf("allocations per mg hit: %v; want 0", allocs)
	}
}
