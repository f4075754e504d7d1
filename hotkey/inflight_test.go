package hotkey

import (
	"testing"
	"time"
)

// TestWriteInFlightClosesKey: between WriteBegin and WriteEnd a key is
// neither served nor filled, even with a token taken after WriteBegin; a
// token taken before WriteEnd cannot fill after it; one taken after can.
func TestWriteInFlightClosesKey(t *testing.T) {
	c := NewTracker(Settings{}).Cache()
	key, old, val := []byte("k"), []byte("old"), []byte("new")
	if !c.Fill(key, c.Begin(key), old) {
		t.Fatal("first fill dropped")
	}
	c.WriteBegin(key)
	if v, ok := c.Get(key); ok {
		t.Fatalf("Get with a write in flight = %q; want a miss", v)
	}
	during := c.Begin(key)
	if c.Fill(key, during, old) {
		t.Fatal("Fill with a write in flight stored (a read that reached the server first would be cached)")
	}
	c.WriteEnd(key)
	if c.Fill(key, during, old) {
		t.Fatal("Fill with a token taken while the write was in flight stored after it")
	}
	if !c.Fill(key, c.Begin(key), val) {
		t.Fatal("Fill after the write's end dropped")
	}
	if v, ok := c.Get(key); !ok || string(v) != "new" {
		t.Fatalf("Get = %q, %v; want \"new\"", v, ok)
	}

	// A flush in flight closes every key.
	c.FlushBegin()
	if _, ok := c.Get(key); ok {
		t.Fatal("Get with a flush in flight hit")
	}
	if c.Fill([]byte("other"), c.Begin([]byte("other")), val) {
		t.Fatal("Fill with a flush in flight stored")
	}
	c.FlushEnd()
	if !c.Fill(key, c.Begin(key), val) {
		t.Fatal("Fill after the flush dropped")
	}

	// A delayed flush closes the cache until a second after its time,
	// then empties it.
	c.FlushAt(time.Now().Add(-time.Second + 50*time.Millisecond))
	if _, ok := c.Get(key); ok {
		t.Fatal("Get with a delayed flush pending hit")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !c.Fill(key, c.Begin(key), val) {
		if time.Now().After(deadline) {
			t.Fatal("the cache stayed closed after the delayed flush's time")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// TestLongKeyLookupsDoNotAllocate: Get and Invalidate of keys longer than
// the runtime's small-string buffer make no allocation.
func TestLongKeyLookupsDoNotAllocate(t *testing.T) {
	c := NewTracker(Settings{}).Cache()
	key := []byte("a-key-that-is-longer-than-thirty-two-bytes:12345")
	c.Fill(key, c.Begin(key), []byte("v"))
	if n := testing.AllocsPerRun(100, func() { c.Get(key) }); n != 0 {
		t.Errorf("Get of a long key: %v allocations; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.Invalidate(key) }); n != 0 {
		t.Errorf("Invalidate of a long key: %v allocations; want 0", n)
	}
}
