package hotkey

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const window = 100 * time.Millisecond

var epoch = time.Unix(1000, 0)

// sim drives a Tracker's recorders and merges in simulated time: each
// window every recorder observes its share of the requests, then publishes,
// then the tracker merges.
type sim struct {
	t   *Tracker
	rs  []*Recorder
	now time.Time
}

func newSim(t *testing.T, s Settings, loops int) *sim {
	t.Helper()
	tr := NewTracker(s)
	sm := &sim{t: tr, now: epoch}
	for range loops {
		r := tr.Recorder()
		r.Publish(sm.now) // start the window
		sm.rs = append(sm.rs, r)
	}
	return sm
}

// step runs one window: request i goes to recorder i%loops; writes[i] marks
// writes (nil: all reads).
func (sm *sim) step(reqs [][]byte, write func(i int) bool) {
	for i, k := range reqs {
		sm.rs[i%len(sm.rs)].Observe(k, write != nil && write(i))
	}
	sm.now = sm.now.Add(window)
	for _, r := range sm.rs {
		r.Publish(sm.now)
	}
	sm.t.Merge(sm.now)
}

// repeat returns n requests for key.
func repeat(key []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = key
	}
	return out
}

func snapshotKeys(t *Tracker) []string {
	var out []string
	for _, h := range t.Snapshot() {
		out = append(out, h.Key)
	}
	return out
}

func TestPromotesZipfHotKeysNotUniform(t *testing.T) {
	// 8 servers, 2 loops, 10k requests per 100 ms window (100k/s): the
	// promotion rate is max(0.01*100k/8, 100) = 125/s.
	const perWindow = 10000
	t.Run("zipf", func(t *testing.T) {
		sm := newSim(t, Settings{Servers: 8}, 2)
		stream := zipfStream(20000, 1.1, 11*perWindow, 5) // rounding drops some
		if len(stream) < 10*perWindow {
			t.Fatalf("stream of %d; want %d", len(stream), 10*perWindow)
		}
		var key0 float64 // key:0's true rate
		for _, k := range stream[:10*perWindow] {
			if string(k) == "key:0" {
				key0 += 1 / (10 * window.Seconds())
			}
		}
		for w := range 10 {
			sm.step(stream[w*perWindow:(w+1)*perWindow], nil)
		}
		for i := range 10 {
			if k := fmt.Sprintf("key:%d", i); !sm.t.Hot([]byte(k)) {
				t.Fatalf("%s not hot; snapshot %v", k, snapshotKeys(sm.t))
			}
		}
		for _, k := range []string{"key:5000", "key:19999", "absent"} {
			if sm.t.Hot([]byte(k)) {
				t.Fatalf("%s is hot; want cold", k)
			}
		}
		snap := sm.t.Snapshot()
		if snap[0].Key != "key:0" {
			t.Fatalf("hottest %q; want key:0; snapshot %v", snap[0].Key, snapshotKeys(sm.t))
		}
		// Zipf 1.1 over 20000 keys: key i gets i^-1.1/H(20000,1.1) of the
		// requests (key:0 about 14800/s); those at 125/s or more are the
		// first 75 keys.
		if n := len(snap); n < 60 || n > 80 {
			t.Fatalf("%d keys promoted; want about 75: %v", n, snapshotKeys(sm.t))
		}
		if got := snap[0].Rate; got < 0.95*key0 || got > 1.05*key0 {
			t.Fatalf("key:0 rate %.0f/s; want %.0f/s within 5%%", got, key0)
		}
		if got := snap[0].ReadShare; got != 1 {
			t.Fatalf("key:0 read share %v; want 1", got)
		}
		if st := sm.t.Stats(); st.Promotions != uint64(len(snap)) || st.Demotions != 0 {
			t.Fatalf("stats %+v; want %d promotions, 0 demotions", st, len(snap))
		}
	})
	t.Run("uniform", func(t *testing.T) {
		sm := newSim(t, Settings{Servers: 8}, 2)
		stream := uniformStream(20000, perWindow) // 5/s per key
		for range 10 {
			sm.step(stream, nil)
		}
		if got := snapshotKeys(sm.t); len(got) != 0 {
			t.Fatalf("uniform keys promoted: %v", got)
		}
		if sm.t.Hot([]byte("key:0")) {
			t.Fatal("key:0 hot under a uniform load")
		}
	})
	t.Run("write-heavy", func(t *testing.T) {
		// "w" takes 10% of the requests but 1 in 5 of them is a write.
		sm := newSim(t, Settings{Servers: 8}, 2)
		stream := uniformStream(20000, perWindow)
		var reqs [][]byte
		for i, k := range stream {
			if i%10 == 0 {
				k = []byte("w")
			}
			reqs = append(reqs, k)
		}
		for range 10 {
			sm.step(reqs, func(i int) bool { return i%50 == 0 })
		}
		if sm.t.Hot([]byte("w")) {
			t.Fatalf("write-heavy key promoted: %+v", sm.t.Snapshot())
		}
	})
}

func TestFollowsAShiftingHotSet(t *testing.T) {
	sm := newSim(t, Settings{Servers: 4}, 2)
	noise := uniformStream(2000, 4000)
	hotSet := func(prefix string) [][]byte {
		reqs := slices.Clone(noise)
		for i := range 10 {
			k := []byte(fmt.Sprintf("%s%d", prefix, i))
			for range 100 + 10*i {
				reqs = append(reqs, k)
			}
		}
		return reqs
	}
	oldSet, newSet := hotSet("old"), hotSet("new")
	for range 20 { // 2 s of the old hot set
		sm.step(oldSet, nil)
	}
	for i := range 10 {
		k := []byte(fmt.Sprintf("old%d", i))
		if !sm.t.Hot(k) {
			t.Fatalf("%s not hot; snapshot %v", k, snapshotKeys(sm.t))
		}
		c := sm.t.Cache()
		c.Fill(k, c.Begin(k), []byte("VALUE"))
	}
	// The new top-10 leads within 0.25 s: two merges at 100 ms.
	sm.step(newSet, nil)
	sm.step(newSet, nil)
	top := snapshotKeys(sm.t)
	if len(top) < 10 {
		t.Fatalf("snapshot after 0.2 s: %v; want the 10 new keys first", top)
	}
	for i, k := range top[:10] {
		if k[:3] != "new" {
			t.Fatalf("snapshot[%d] = %q after 0.2 s: %v; want the 10 new keys first", i, k, top)
		}
	}
	// The old keys are demoted within a second and their entries dropped.
	for range 8 {
		sm.step(newSet, nil)
	}
	for i := range 10 {
		k := []byte(fmt.Sprintf("old%d", i))
		if sm.t.Hot(k) {
			t.Fatalf("%s still hot after 1 s; snapshot %v", k, snapshotKeys(sm.t))
		}
		if v, ok := sm.t.Cache().Get(k); ok {
			t.Fatalf("demoted %s still cached: %q", k, v)
		}
	}
	if st := sm.t.Stats(); st.Demotions != 10 || st.Bytes != 0 {
		t.Fatalf("stats %+v; want 10 demotions and 0 bytes", st)
	}
}

func TestDemotionHysteresis(t *testing.T) {
	// One loop, one key: the pool's rate is the key's, so the promotion
	// rate is MinRate (100/s), the demotion rate 50/s. No smoothing, so
	// each window's rate is exact.
	sm := newSim(t, Settings{Servers: 1, MinRate: 100}, 1)
	sm.t.halfLife = time.Nanosecond
	key := []byte("k")
	reqs := func(n int) [][]byte { return repeat(key, n) }
	sm.step(reqs(9), nil) // 90/s: below the promotion rate
	if sm.t.Hot(key) {
		t.Fatal("promoted at 90/s; want not below 100/s")
	}
	sm.step(reqs(10), nil) // 100/s
	if !sm.t.Hot(key) {
		t.Fatalf("not promoted at 100/s; snapshot %+v", sm.t.Snapshot())
	}
	c := sm.t.Cache()
	if !c.Fill(key, c.Begin(key), []byte("VALUE\r\n")) {
		t.Fatal("fill of a hot key failed")
	}
	for range 5 { // 60/s: below the promotion rate, above half of it
		sm.step(reqs(6), nil)
		if !sm.t.Hot(key) {
			t.Fatal("demoted at 60/s; want kept above half the promotion rate")
		}
	}
	sm.step(reqs(4), nil) // 40/s: one window below half
	if !sm.t.Hot(key) {
		t.Fatal("demoted after one window below half; want two")
	}
	sm.step(reqs(6), nil) // back above half: the count starts over
	sm.step(reqs(4), nil)
	if !sm.t.Hot(key) {
		t.Fatal("demoted after windows below half that were not in a row")
	}
	if v, ok := c.Get(key); !ok || string(v) != "VALUE\r\n" {
		t.Fatalf("Get = %q, %v; want the filled value", v, ok)
	}
	sm.step(reqs(4), nil) // the second window in a row below half
	if sm.t.Hot(key) {
		t.Fatal("still hot after two windows below half the promotion rate")
	}
	if v, ok := c.Get(key); ok {
		t.Fatalf("demoted key still cached: %q", v)
	}
	if st := sm.t.Stats(); st.Promotions != 1 || st.Demotions != 1 || st.Bytes != 0 {
		t.Fatalf("stats %+v; want 1 promotion, 1 demotion, 0 bytes", st)
	}
	if got := sm.t.Snapshot(); len(got) != 0 {
		t.Fatalf("snapshot %+v after demotion; want empty", got)
	}
}

func TestDemotedWhenReadShareFalls(t *testing.T) {
	sm := newSim(t, Settings{Servers: 1, MinRate: 100}, 1)
	sm.t.halfLife = time.Nanosecond
	key := []byte("k")
	reqs := repeat(key, 100)
	sm.step(reqs, nil)
	if !sm.t.Hot(key) {
		t.Fatal("not promoted at 1000 reads/s")
	}
	sm.step(reqs, func(i int) bool { return i%5 == 0 }) // 20% writes
	if sm.t.Hot(key) {
		t.Fatalf("still hot with 20%% writes: %+v", sm.t.Snapshot())
	}
}

func TestFillAfterInvalidateIsDropped(t *testing.T) {
	c := NewTracker(Settings{}).Cache()
	key, val := []byte("k"), []byte("VALUE 1\r\n")

	g := c.Begin(key)
	c.Invalidate(key)
	if c.Fill(key, g, val) {
		t.Fatal("Fill after Invalidate stored; want dropped")
	}
	if v, ok := c.Get(key); ok {
		t.Fatalf("Get after a dropped fill = %q; want a miss", v)
	}

	g = c.Begin(key)
	if !c.Fill(key, g, val) {
		t.Fatal("Fill with a fresh token dropped")
	}
	val[0] = 'X' // the cache holds its own copy
	if v, ok := c.Get(key); !ok || string(v) != "VALUE 1\r\n" {
		t.Fatalf("Get = %q, %v; want %q", v, ok, "VALUE 1\r\n")
	}
	// A token taken before the entry was invalidated stays stale.
	c.Invalidate(key)
	if _, ok := c.Get(key); ok {
		t.Fatal("Get after Invalidate hit")
	}
	if c.Fill(key, g, []byte("old")) {
		t.Fatal("Fill with a token from before Invalidate stored")
	}

	other := []byte("other")
	g, g2 := c.Begin(key), c.Begin(other)
	c.InvalidateAll()
	if c.Fill(key, g, val) || c.Fill(other, g2, val) {
		t.Fatal("Fill after InvalidateAll stored")
	}
	g = c.Begin(key)
	if !c.Fill(key, g, val) {
		t.Fatal("Fill after InvalidateAll with a fresh token dropped")
	}
	c.InvalidateAll()
	if v, ok := c.Get(key); ok {
		t.Fatalf("Get after InvalidateAll = %q; want a miss", v)
	}

	// Too large a reply is not cached.
	c2 := NewTracker(Settings{MaxValue: 8}).Cache()
	if c2.Fill(key, c2.Begin(key), []byte("123456789")) {
		t.Fatal("Fill of 9 bytes with MaxValue 8 stored")
	}
	if !c2.Fill(key, c2.Begin(key), []byte("12345678")) {
		t.Fatal("Fill of 8 bytes with MaxValue 8 dropped")
	}
}

// fakeClock is an otter.Clock in simulated time.
type fakeClock struct{ nanos atomic.Int64 }

func (f *fakeClock) NowNano() int64                      { return f.nanos.Load() }
func (f *fakeClock) Tick(time.Duration) <-chan time.Time { return nil }
func (f *fakeClock) add(d time.Duration)                 { f.nanos.Add(int64(d)) }

func TestExpiringAndTTL(t *testing.T) {
	clk := &fakeClock{}
	clk.nanos.Store(epoch.UnixNano())
	c := newCache(Settings{TTL: time.Second}.withDefaults(), clk)
	key := []byte("k")
	if c.Expiring(key) {
		t.Fatal("Expiring of an absent key")
	}
	c.Fill(key, c.Begin(key), []byte("v"))
	clk.add(749 * time.Millisecond)
	if c.Expiring(key) {
		t.Fatal("Expiring at 749 ms of a 1 s TTL; want only in the last quarter")
	}
	clk.add(2 * time.Millisecond)
	if !c.Expiring(key) {
		t.Fatal("not Expiring at 751 ms of a 1 s TTL")
	}
	if v, ok := c.Get(key); !ok || string(v) != "v" {
		t.Fatalf("Get at 751 ms = %q, %v; want a hit", v, ok)
	}
	// A refresh fill restarts the TTL.
	c.Fill(key, c.Begin(key), []byte("v2"))
	if c.Expiring(key) {
		t.Fatal("Expiring right after a refresh")
	}
	clk.add(time.Second)
	if v, ok := c.Get(key); ok {
		t.Fatalf("Get 1 s after the fill = %q; want expired", v)
	}
	// A new TTL applies to later fills.
	c.update(Settings{TTL: 10 * time.Second}.withDefaults())
	c.Fill(key, c.Begin(key), []byte("v3"))
	clk.add(5 * time.Second)
	if _, ok := c.Get(key); !ok || c.Expiring(key) {
		t.Fatal("5 s into a 10 s TTL: want a hit, not expiring")
	}
}

func TestCacheBytesBounded(t *testing.T) {
	const bound = 256 << 10
	c := NewTracker(Settings{CacheSize: bound}).Cache()
	val := bytes.Repeat([]byte("x"), 1000)
	for i := range 5000 { // about 5.6 MB offered
		k := []byte(fmt.Sprintf("key:%d", i))
		c.Fill(k, c.Begin(k), val)
	}
	c.c.CleanUp()
	got := c.Bytes()
	if got > bound+2000 {
		t.Fatalf("Bytes = %d after 5000 fills of 1000 bytes; want <= %d (+ one entry)", got, bound)
	}
	if got < bound/2 {
		t.Fatalf("Bytes = %d; want the cache near its bound %d", got, bound)
	}
	// A smaller bound (reload) evicts at once.
	c.update(Settings{CacheSize: bound / 4}.withDefaults())
	c.c.CleanUp()
	if got := c.Bytes(); got > bound/4+2000 {
		t.Fatalf("Bytes = %d after shrinking to %d", got, bound/4)
	}
}

func TestUpdateChangesK(t *testing.T) {
	tr := NewTracker(Settings{Servers: 1})
	r := tr.Recorder()
	if r.d.k != 64 {
		t.Fatalf("K = %d for 1 server; want 64", r.d.k)
	}
	tr.Update(Settings{Servers: 64}) // 4*64*ln 64 = 1064.7: clamped
	r.Publish(epoch)
	if r.d.k != 1024 {
		t.Fatalf("K = %d for 64 servers after Publish; want 1024", r.d.k)
	}
	if got := topK(8); got != 67 {
		t.Fatalf("topK(8) = %d; want 67", got)
	}
}

// TestConcurrentUse runs loops observing and publishing, a merger, and
// readers filling and invalidating at once; run it with -race.
func TestConcurrentUse(t *testing.T) {
	tr := NewTracker(Settings{Servers: 2, MinRate: 1})
	var clock atomic.Int64 // simulated ns since epoch
	now := func() time.Time { return epoch.Add(time.Duration(clock.Load())) }
	stream := zipfStream(500, 1.1, 20000, 11)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for l := range 3 {
		r := tr.Recorder()
		wg.Go(func() {
			for i := range 10000 {
				r.Observe(stream[(i*(l+1))%len(stream)], i%97 == 0)
				if i%1000 == 0 {
					clock.Add(int64(time.Millisecond))
					r.Publish(now())
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tr.Merge(now())
			tr.Snapshot()
			tr.Stats()
		}
	})
	var readers sync.WaitGroup
	for g := range 2 {
		readers.Go(func() {
			c := tr.Cache()
			for i := range 10000 {
				k := stream[(i*3+g)%len(stream)]
				if tr.Hot(k) {
					if _, ok := c.Get(k); !ok {
						c.Fill(k, c.Begin(k), k)
					}
					c.Expiring(k)
				}
				if i%50 == 0 {
					c.Invalidate(k)
				}
				if i%5000 == 0 {
					c.InvalidateAll()
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	tr.Merge(now())
	if st := tr.Stats(); st.Promotions == 0 {
		t.Fatalf("no promotions under a Zipf load: %+v", st)
	}
	for _, h := range tr.Snapshot() {
		if v, ok := tr.Cache().Get([]byte(h.Key)); ok && string(v) != h.Key {
			t.Fatalf("cached %q = %q; want the key itself", h.Key, v)
		}
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	sm := newSim(t, Settings{Servers: 8}, 1)
	stream := zipfStream(2000, 1.1, 20000, 3)
	for range 5 {
		sm.step(stream, nil)
	}
	hot, cold := []byte("key:0"), []byte("key:1999")
	if !sm.t.Hot(hot) {
		t.Fatalf("key:0 not hot: %v", snapshotKeys(sm.t))
	}
	c := sm.t.Cache()
	c.Fill(hot, c.Begin(hot), []byte("VALUE\r\n"))
	r, i := sm.rs[0], 0
	for name, f := range map[string]func(){
		"Observe": func() { r.Observe(stream[i%len(stream)], i%10 == 0); i++ },
		"Hot":     func() { sm.t.Hot(hot); sm.t.Hot(cold) },
		"Get":     func() { c.Get(hot); c.Get(cold) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per run; want 0", name, n)
		}
	}
}

// TestNoStaleFillAfterInvalidate races fills against a writer: once the
// writer's Invalidate (or InvalidateAll) returns, the cache never serves a
// value older than the one it wrote before it.
func TestNoStaleFillAfterInvalidate(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all=%v", all), func(t *testing.T) {
			c := NewTracker(Settings{}).Cache()
			key := []byte("k")
			var backend atomic.Int64 // the server's value
			done := make(chan struct{})
			var readers sync.WaitGroup
			for range 2 {
				readers.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						g := c.Begin(key) // before the read is sent
						v := backend.Load()
						runtime.Gosched() // the reply takes a while
						c.Fill(key, g, []byte(fmt.Sprint(v)))
					}
				})
			}
			hits := 0
			for n := int64(1); n <= 3000; n++ {
				backend.Store(n) // the write reaches the server
				if all {         // its reply comes: invalidate again
					c.InvalidateAll()
				} else {
					c.Invalidate(key)
				}
				for range 3 {
					runtime.Gosched()
					if v, ok := c.Get(key); ok {
						hits++
						var got int64
						fmt.Sscan(string(v), &got)
						if got < n {
							close(done)
							readers.Wait()
							t.Fatalf("after write %d the cache served %d", n, got)
						}
					}
				}
			}
			close(done)
			readers.Wait()
			if hits == 0 {
				t.Fatal("no Get hit: the test raced nothing")
			}
			t.Logf("%d hits", hits)
		})
	}
}

func TestDemotedWhenOutOfEveryTop(t *testing.T) {
	sm := newSim(t, Settings{Servers: 1, MinRate: 100}, 2)
	key := []byte("k")
	reqs := repeat(key, 200)
	sm.step(reqs, nil)
	if !sm.t.Hot(key) {
		t.Fatal("not promoted at 2000 reads/s")
	}
	c := sm.t.Cache()
	c.Fill(key, c.Begin(key), []byte("v"))
	// The loops stop publishing (their tops go stale after a second).
	sm.now = sm.now.Add(900 * time.Millisecond)
	sm.t.Merge(sm.now)
	if !sm.t.Hot(key) {
		t.Fatal("demoted while the last tops were still fresh")
	}
	// In no fresh top, the key's windows count as zero reads: its rate
	// decays, and it is demoted after two merges below half the promotion
	// rate, not at once (a pause is not a demotion).
	sm.now = sm.now.Add(200 * time.Millisecond)
	sm.t.Merge(sm.now)
	if !sm.t.Hot(key) {
		t.Fatal("demoted on the first merge with no fresh top; want the hysteresis first")
	}
	merges := 1
	for sm.t.Hot(key) && merges < 20 {
		sm.now = sm.now.Add(window)
		sm.t.Merge(sm.now)
		merges++
	}
	// 2000/s halves every 100 ms: below 50/s after 6 merges, plus one more
	// window in a row below it.
	if sm.t.Hot(key) || merges < 3 || merges > 8 {
		t.Fatalf("hot=%v after %d merges with no fresh top; want demoted after 3..8", sm.t.Hot(key), merges)
	}
	if _, ok := c.Get(key); ok {
		t.Fatal("demoted key still cached")
	}
	if st := sm.t.Stats(); st.Demotions != 1 {
		t.Fatalf("stats %+v; want 1 demotion", st)
	}
}

func TestRecorderClose(t *testing.T) {
	sm := newSim(t, Settings{Servers: 1, MinRate: 100}, 2)
	if n := sm.t.Stats().Recorders; n != 2 {
		t.Fatalf("%d recorders registered; want 2", n)
	}
	key := []byte("k")
	reqs := repeat(key, 200)
	sm.step(reqs, nil)
	if !sm.t.Hot(key) {
		t.Fatal("not promoted at 2000 reads/s")
	}
	// Closed recorders are no longer merged: whatever they still publish
	// (the test keeps them counting the same traffic), the key's windows
	// count as zero reads and it is demoted.
	for _, r := range sm.rs {
		r.Close()
	}
	sm.rs[0].Close() // twice: harmless
	if n := sm.t.Stats().Recorders; n != 0 {
		t.Fatalf("%d recorders registered after Close; want 0", n)
	}
	for range 20 {
		sm.step(reqs, nil)
	}
	if sm.t.Hot(key) {
		t.Fatal("key still hot with every recorder closed")
	}
	for range 100 {
		sm.t.Recorder().Close()
	}
	if n := sm.t.Stats().Recorders; n != 0 {
		t.Fatalf("%d recorders registered after 100 Recorder+Close; want 0", n)
	}
}
