package hashring

import (
	"fmt"
	"slices"
	"testing"
)

func TestHashFoo(t *testing.T) {
	tests := []struct {
		name string
		want uint32
	}{
		{"fnv1a_64", 0xfed9d577},
		{"fnv1_64", 0x6ba13533},
		{"fnv1_32", 0x408f5e13},
		{"fnv1a_32", 0xa9f37ed7},
		{"one_at_a_time", 0x238678dd},
		{"md5", 0xdb18bdac},
		{"crc16", 0x0c3caf96},
		{"crc32", 0x0c73},
		{"crc32a", 0x8c736521},
		{"hsieh", 0x76d4d427},
		{"murmur", 0xc4e0338f},
		{"jenkins", 0x99f84f99},
	}
	if len(tests) != len(HashNames()) {
		t.Fatalf("table has %d hashes; HashNames has %d", len(tests), len(HashNames()))
	}
	for _, tt := range tests {
		h, ok := Hash(tt.name)
		if !ok {
			t.Errorf("Hash(%q) not found", tt.name)
			continue
		}
		if got := h([]byte("foo")); got != tt.want {
			t.Errorf("%s(\"foo\") = %#08x; want %#08x", tt.name, got, tt.want)
		}
	}
}

func TestHashNames(t *testing.T) {
	names := HashNames()
	if !slices.IsSorted(names) {
		t.Errorf("HashNames() = %q; want sorted", names)
	}
	for _, n := range names {
		if _, ok := Hash(n); !ok {
			t.Errorf("Hash(%q) not found though listed", n)
		}
	}
	if _, ok := Hash("fnv1a"); ok {
		t.Errorf("Hash(%q) found; want unknown", "fnv1a")
	}
}

func TestKetamaVector(t *testing.T) {
	want := []uint32{0x597dee54, 0xfe2cb6d7, 0x517cbd9b, 0x94398729}
	r, err := New(Options{Distribution: "ketama", Servers: []Server{{Name: "127.0.0.1:21211", Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	k := r.(*Ketama)
	for _, w := range want {
		if !slices.Contains(k.points, w) {
			t.Errorf("continuum of 127.0.0.1:21211 lacks point %#08x", w)
		}
	}
	if got := k.Points(); got != 160 {
		t.Errorf("Points() = %d; want 160", got)
	}
}

func TestKetamaPoints(t *testing.T) {
	tests := []struct {
		weight, total, nlive int
		want                 uint32
	}{
		{1, 3, 3, 160},
		{1, 1, 1, 160},
		{1, 13, 4, 48},  // 0.0769.. * 40 * 4 = 12.3 -> 12 -> 48
		{7, 13, 4, 344}, // 86.15 -> 86
		{2, 3, 2, 212},  // 53.33 -> 53
		{1, 2, 2, 160},
		{1, 25, 5, 28},   // exact arithmetic gives 32; float32 is just below 8
		{4, 25, 5, 124},  // exact 128
		{29, 60, 3, 228}, // exact 232
	}
	for _, tt := range tests {
		if got := ketamaPoints(tt.weight, tt.total, tt.nlive); got != tt.want {
			t.Errorf("ketamaPoints(%d, %d, %d) = %d; want %d", tt.weight, tt.total, tt.nlive, got, tt.want)
		}
	}
}

func TestTag(t *testing.T) {
	tests := []struct{ key, tag, want string }{
		{"foo", "{}", "foo"},
		{"{user1}.name", "{}", "user1"},
		{"a{b}c{d}", "{}", "b"},
		{"{}abc", "{}", "{}abc"},
		{"abc{", "{}", "abc{"},
		{"}x{y}", "{}", "y"},
		{"{{x}}", "{}", "{x"},
		{"{user1}.name", "", "{user1}.name"},
		{"$a$b", "$$", "a"},
		{"", "{}", ""},
	}
	for _, tt := range tests {
		if got := string(Tag([]byte(tt.key), tt.tag)); got != tt.want {
			t.Errorf("Tag(%q, %q) = %q; want %q", tt.key, tt.tag, got, tt.want)
		}
	}
}

// TestSample is the table in /work/shared/design/placement.md.
func TestSample(t *testing.T) {
	plain := []Server{{"127.0.0.1:21211", 1}, {"127.0.0.1:21212", 1}, {"127.0.0.1:21213", 1}}
	named := []Server{{"server1", 1}, {"server2", 1}, {"server3", 1}}
	ketama := mustNew(t, Options{Distribution: "ketama", Hash: "fnv1a_64", Servers: plain})
	namedRing := mustNew(t, Options{Distribution: "ketama", Hash: "fnv1a_64", Servers: named})
	ports := []string{"21211", "21212", "21213"}
	tests := []struct {
		key          string
		hash         uint32
		plain, named string
	}{
		{"foo", 0xfed9d577, "21211", "21211"},
		{"bar", 0x1339461a, "21213", "21212"},
		{"a", 0x8601ec8c, "21211", "21213"},
		{"key:0", 0x962f5916, "21213", "21213"},
		{"key:999", 0xe7ce03c3, "21212", "21211"},
		{"hello", 0x80aabd0b, "21212", "21212"},
	}
	for _, tt := range tests {
		r := ketama.Route([]byte(tt.key))
		if r.Hash != tt.hash {
			t.Errorf("hash(%q) = %#08x; want %#08x", tt.key, r.Hash, tt.hash)
		}
		if got := ports[r.Server]; got != tt.plain {
			t.Errorf("mc_ketama %q: got %q; want %q", tt.key, got, tt.plain)
		}
		if got := ports[namedRing.Pick([]byte(tt.key))]; got != tt.named {
			t.Errorf("mc_named %q: got %q; want %q", tt.key, got, tt.named)
		}
	}
	count := func(r Ring) string {
		n := make([]int, 3)
		for i := range 1000 {
			n[r.Pick(fmt.Appendf(nil, "key:%d", i))]++
		}
		return fmt.Sprint(n)
	}
	if got, want := count(ketama), "[300 490 210]"; got != want {
		t.Errorf("mc_ketama split: got %q; want %q", got, want)
	}
	if got, want := count(namedRing), "[540 290 170]"; got != want {
		t.Errorf("mc_named split: got %q; want %q", got, want)
	}
	modula := mustNew(t, Options{Distribution: "modula", Servers: plain})
	// placement.md gives the split as 910/90/0 without saying which server
	// takes which share; the modula fixtures from nutcracker pin the order.
	if got, want := count(modula), "[90 0 910]"; got != want {
		t.Errorf("modula default-hash split: got %q; want %q", got, want)
	}
}

func mustNew(t testing.TB, o Options) Ring {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	return r
}
