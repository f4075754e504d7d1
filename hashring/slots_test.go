package hashring

import (
	"strings"
	"testing"
)

func TestCRC16(t *testing.T) {
	// The check value of CRC-16/XMODEM, as in Redis's crc16.c.
	if got := CRC16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("CRC16(123456789) = %#x; want 0x31c3", got)
	}
}

func TestKeySlot(t *testing.T) {
	// Slots as redis-server 7.0's CLUSTER KEYSLOT answers them (the proxy
	// test compares hundreds more against a live cluster).
	for _, tc := range []struct {
		key  string
		slot int
	}{
		{"", 0},
		{"foo", 12182},
		{"bar", 5061},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"user1000", 3443},
		{"foo{}{bar}", 8363}, // empty first tag: the whole key
		{"foo{{bar}}zap", 4015},
		{"foo{bar}{zap}", 5061}, // the first tag: "bar"
	} {
		if got := KeySlot([]byte(tc.key)); got != tc.slot {
			t.Errorf("KeySlot(%q) = %d; want %d", tc.key, got, tc.slot)
		}
	}
}

func TestClusterTag(t *testing.T) {
	for _, tc := range []struct{ key, tag string }{
		{"abc", "abc"},
		{"{a}b", "a"},
		{"x{a}b{c}", "a"},
		{"{}a", "{}a"},
		{"{a", "{a"},
		{"a}b{c", "a}b{c"},
		{"{{a}}", "{a"},
		{"a{b}", "b"},
		{"a{}{b}", "a{}{b}"},
	} {
		if got := string(ClusterTag([]byte(tc.key))); got != tc.tag {
			t.Errorf("ClusterTag(%q) = %q; want %q", tc.key, got, tc.tag)
		}
	}
}

func TestSlotsRing(t *testing.T) {
	servers := []Server{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 1}}
	r, err := New(Options{Distribution: "slots", Servers: servers,
		Slots: [][]SlotRange{{{0, 5460}}, {{5461, 10922}}, {{10923, 16383}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key    string
		server int
	}{{"foo", 2}, {"bar", 0}, {"{user1000}.x", 0}, {"c", 1}} {
		if got := r.Pick([]byte(tc.key)); got != tc.server {
			t.Errorf("Pick(%q) = %d; want %d (slot %d)", tc.key, got, tc.server, KeySlot([]byte(tc.key)))
		}
		if rt := r.Route([]byte(tc.key)); rt.Server != tc.server || int(rt.Hash) != KeySlot([]byte(tc.key)) {
			t.Errorf("Route(%q) = %+v", tc.key, rt)
		}
	}
	s := r.(*Slots)
	m := s.WithOwner(KeySlot([]byte("foo")), 1)
	if m.Pick([]byte("foo")) != 1 || s.Pick([]byte("foo")) != 2 {
		t.Errorf("WithOwner changed the original or not the copy")
	}
	// Slots no server owns go to server 0 (which answers with the
	// cluster's own redirect or error).
	r, err = New(Options{Distribution: "slots", Servers: servers, Slots: [][]SlotRange{nil, {{12182, 12182}}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Pick([]byte("foo")) != 1 || r.Pick([]byte("bar")) != 0 {
		t.Errorf("partial map: foo -> %d, bar -> %d; want 1, 0", r.Pick([]byte("foo")), r.Pick([]byte("bar")))
	}
}

func TestSlotsRingRefuses(t *testing.T) {
	servers := []Server{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}}
	for _, tc := range []struct {
		slots [][]SlotRange
		want  string
	}{
		{[][]SlotRange{{{0, 100}}, {{100, 200}}}, "slot 100 belongs to servers 0"},
		{[][]SlotRange{{{5, 4}}}, "not within"},
		{[][]SlotRange{{{0, 16384}}}, "not within"},
		{[][]SlotRange{nil, nil, nil}, "slots for 3 servers"},
	} {
		_, err := New(Options{Distribution: "slots", Servers: servers, Slots: tc.slots})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) = %v; want an error with %q", tc.slots, err, tc.want)
		}
	}
	if _, err := New(Options{Distribution: "slots"}); err == nil {
		t.Error("no servers: no error")
	}
}

func BenchmarkSlotsPick(b *testing.B) {
	r, _ := New(Options{Distribution: "slots", Servers: []Server{{Name: "a", Weight: 1}}, Slots: [][]SlotRange{{{0, 16383}}}})
	key := []byte("user:{12345}:profile")
	b.ReportAllocs()
	for b.Loop() {
		r.Pick(key)
	}
}
