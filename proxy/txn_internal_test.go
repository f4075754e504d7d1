package proxy

import (
	"strings"
	"testing"
)

// TestTxnTagged: the hash tag example in transaction errors keeps the keys'
// common prefix as the tag, else adds a tag of its own, in the pool's tag
// characters.
func TestTxnTagged(t *testing.T) {
	tests := []struct {
		a, b, tag, wantA, wantB string
	}{
		{"user:1", "user:2", "{}", "{user}:1", "{user}:2"},
		{"user:1:name", "user:22:mail", "{}", "{user}:1:name", "{user}:22:mail"},
		{"cart:9", "user:9", "{}", "{tag}:cart:9", "{tag}:user:9"},
		{"a", "b", "[]", "[tag]:a", "[tag]:b"},
		{"", "x:1", "{}", "{user}:1", "{user}:2"}, // no first key: the generic example
	}
	for _, tc := range tests {
		a, b := tagged(tc.a, tc.b, tc.tag)
		if a != tc.wantA || b != tc.wantB {
			t.Errorf("tagged(%q, %q, %q) = %q, %q; want %q, %q", tc.a, tc.b, tc.tag, a, b, tc.wantA, tc.wantB)
		}
	}
}

// TestTxnQuoteKey: keys in transaction errors are quoted and clipped.
func TestTxnQuoteKey(t *testing.T) {
	if got, want := quoteKey("user:1"), "'user:1'"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	long := strings.Repeat("k", 100)
	if got, want := quoteKey(long), "'"+strings.Repeat("k", maxKeyInMessage)+"...'"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
