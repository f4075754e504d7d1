package hashring

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func servers(n int) []Server {
	s := make([]Server, n)
	for i := range s {
		s[i] = Server{Name: fmt.Sprintf("127.0.0.1:%d", 21211+i), Weight: 1}
	}
	return s
}

func testKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%d:profile", i)
	}
	return keys
}

func TestNewErrors(t *testing.T) {
	long := strings.Repeat("x", 83) // "x...x-10" is 86 bytes
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"distribution", Options{Distribution: "maglev", Servers: servers(2)}, `unknown distribution "maglev"`},
		{"hash", Options{Distribution: "ketama", Hash: "sha1", Servers: servers(2)}, `unknown hash "sha1"`},
		{"tag", Options{Distribution: "ketama", HashTag: "{", Servers: servers(2)}, `hash tag "{" is not two characters`},
		{"no servers", Options{Distribution: "modula"}, "no servers"},
		{"weight", Options{Distribution: "ketama", Servers: []Server{{"a", 1}, {"b", 0}}}, `server 1 ("b"): weight 0 is not positive`},
		{"duplicate", Options{Distribution: "jump", Servers: []Server{{"a", 1}, {"b", 1}, {"a", 2}}}, `servers 0 and 2 have the same name "a"`},
		{"live", Options{Distribution: "random", Servers: servers(3), Live: []bool{true}}, "1 live flags for 3 servers"},
		{"long name", Options{Distribution: "ketama", Servers: []Server{{long, 1}, {"b", 1}}}, "too long for twemproxy's ketama"},
	}
	for _, tt := range tests {
		_, err := New(tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got error %v; want one containing %q", tt.name, err, tt.want)
		}
	}
	// The longest name twemproxy formats without truncation is accepted.
	if _, err := New(Options{Distribution: "ketama", Servers: []Server{{long[:82], 1}, {"b", 1}}}); err != nil {
		t.Errorf("82-byte name: %v", err)
	}
	// Modula does not format names, so length does not matter.
	if _, err := New(Options{Distribution: "modula", Servers: []Server{{long, 1}, {"b", 1}}}); err != nil {
		t.Errorf("modula with long name: %v", err)
	}
}

func TestDefaultHash(t *testing.T) {
	def := mustNew(t, Options{Distribution: "modula", Servers: servers(3)})
	fnv := mustNew(t, Options{Distribution: "modula", Hash: "fnv1a_64", Servers: servers(3)})
	for _, k := range testKeys(200) {
		if got, want := def.Route(k), fnv.Route(k); got != want {
			t.Fatalf("key %q: default hash gives %+v; fnv1a_64 gives %+v", k, got, want)
		}
	}
}

func TestEmptyKeyAndSingleServer(t *testing.T) {
	for _, dist := range []string{"ketama", "modula"} {
		r := mustNew(t, Options{Distribution: dist, Hash: "md5", Servers: servers(3)})
		if got := r.Route(nil).Hash; got != 0 {
			t.Errorf("%s: hash of empty key = %#x; want 0", dist, got)
		}
		if got := r.Route([]byte("{}")).Hash; got == 0 {
			t.Errorf("%s: hash of %q = 0; want md5 of the key (no tag configured)", dist, "{}")
		}
		one := mustNew(t, Options{Distribution: dist, Hash: "md5", Servers: servers(1)})
		if got := one.Route([]byte("foo")); got.Server != 0 || got.Hash != 0 {
			t.Errorf("%s one server: Route(foo) = %+v; want server 0, hash 0", dist, got)
		}
	}
	tagged := mustNew(t, Options{Distribution: "ketama", Hash: "md5", HashTag: "{}", Servers: servers(3)})
	plain := mustNew(t, Options{Distribution: "ketama", Hash: "md5", Servers: servers(3)})
	if got, want := tagged.Route([]byte("a{user7}b")), plain.Route([]byte("user7")); got != want {
		t.Errorf("tagged Route = %+v; want %+v", got, want)
	}
}

// TestLiveMatchesSmallerPool: a ring with server i ejected places keys as a
// ring built without server i does (twemproxy rebuilds from live servers).
func TestLiveMatchesSmallerPool(t *testing.T) {
	all := []Server{{"alpha", 2}, {"b", 1}, {"gamma:1", 3}, {"d", 1}}
	for _, dist := range Distributions() {
		if dist == "random" {
			continue
		}
		for out := range all {
			live := []bool{true, true, true, true}
			live[out] = false
			var rest []Server
			var restIdx []int
			for i, s := range all {
				if i != out {
					rest = append(rest, s)
					restIdx = append(restIdx, i)
				}
			}
			ejected := mustNew(t, Options{Distribution: dist, Hash: "murmur", Servers: all, Live: live})
			smaller := mustNew(t, Options{Distribution: dist, Hash: "murmur", Servers: rest})
			for _, k := range testKeys(500) {
				got, want := ejected.Pick(k), restIdx[smaller.Pick(k)]
				if got != want {
					t.Fatalf("%s without %d, key %q: got %d; want %d", dist, out, k, got, want)
				}
			}
		}
	}
}

func TestKetamaEjectMovesOnlyItsKeys(t *testing.T) {
	full := mustNew(t, Options{Distribution: "ketama", Hash: "md5", Servers: servers(4)})
	ejected := mustNew(t, Options{Distribution: "ketama", Hash: "md5", Servers: servers(4), Live: []bool{true, false, true, true}})
	moved := 0
	for _, k := range testKeys(2000) {
		before, after := full.Pick(k), ejected.Pick(k)
		if after == 1 {
			t.Fatalf("key %q on ejected server", k)
		}
		if before != 1 && before != after {
			t.Fatalf("key %q moved from live server %d to %d", k, before, after)
		}
		if before != after {
			moved++
		}
	}
	if moved == 0 {
		t.Errorf("no key moved off the ejected server")
	}
}

func TestNoLiveServer(t *testing.T) {
	for _, dist := range Distributions() {
		r := mustNew(t, Options{Distribution: dist, Servers: servers(2), Live: []bool{false, false}})
		if got := r.Pick([]byte("foo")); got != -1 {
			t.Errorf("%s: Pick with no live server = %d; want -1", dist, got)
		}
		if got := r.Route([]byte("foo")).Server; got != -1 {
			t.Errorf("%s: Route with no live server = %d; want -1", dist, got)
		}
	}
}

func TestModulaWeights(t *testing.T) {
	r := mustNew(t, Options{Distribution: "modula", Servers: []Server{{"bb", 2}, {"a", 1}}}).(*Modula)
	// Sorted by name: "a" (index 1) once, then "bb" (index 0) twice.
	if got, want := fmt.Sprint(r.slots), "[1 0 0]"; got != want {
		t.Errorf("slots: got %q; want %q", got, want)
	}
}

func TestJump(t *testing.T) {
	keys := testKeys(30000)
	counts := make([]int, 5)
	r5 := mustNew(t, Options{Distribution: "jump", Servers: servers(5)})
	// Weights are ignored.
	weighted := mustNew(t, Options{Distribution: "jump", Servers: []Server{{"127.0.0.1:21211", 9}, {"127.0.0.1:21212", 1},
		{"127.0.0.1:21213", 1}, {"127.0.0.1:21214", 1}, {"127.0.0.1:21215", 1}}})
	r6 := mustNew(t, Options{Distribution: "jump", Servers: servers(6)})
	for _, k := range keys {
		a := r5.Pick(k)
		counts[a]++
		if w := weighted.Pick(k); w != a {
			t.Fatalf("key %q: weighted pool picks %d; equal weights pick %d", k, w, a)
		}
		// Appending a server moves keys only to the new server.
		if b := r6.Pick(k); b != a && b != 5 {
			t.Fatalf("key %q moved from %d to %d after appending server 5", k, a, b)
		}
	}
	for i, c := range counts {
		if c < 5400 || c > 6600 { // 6000 each, +-10%
			t.Errorf("server %d holds %d of %d keys; want about %d", i, c, len(keys), len(keys)/5)
		}
	}
	if got := r5.Route([]byte("foo")).Hash; got != uint32(JumpKey([]byte("foo"))) {
		t.Errorf("Route(foo).Hash = %#x; want low bits of JumpKey %#x", got, uint32(JumpKey([]byte("foo"))))
	}
	tagged := mustNew(t, Options{Distribution: "jump", HashTag: "{}", Servers: servers(5)})
	if got, want := tagged.Pick([]byte("x{user:1}y")), r5.Pick([]byte("user:1")); got != want {
		t.Errorf("tagged jump: got %d; want %d", got, want)
	}
}

func TestRandom(t *testing.T) {
	o := Options{Distribution: "random", Servers: servers(4), Live: []bool{true, false, true, true}, Seed: 42}
	a, b := mustNew(t, o), mustNew(t, o)
	counts := make([]int, 4)
	var seqA, seqB []int
	for range 4000 {
		x := a.Pick([]byte("k"))
		counts[x]++
		seqA = append(seqA, x)
		seqB = append(seqB, b.Pick([]byte("k")))
	}
	if !slices.Equal(seqA, seqB) {
		t.Errorf("two rings with seed 42 gave different sequences")
	}
	if counts[1] != 0 {
		t.Errorf("ejected server picked %d times", counts[1])
	}
	for _, i := range []int{0, 2, 3} {
		if counts[i] < 1100 || counts[i] > 1570 { // 1333 each
			t.Errorf("server %d picked %d of 4000 times; want about 1333", i, counts[i])
		}
	}
	o.Seed = 43
	if c := mustNew(t, o); slices.Equal(seqA[:20], pickN(c, 20)) {
		t.Errorf("seeds 42 and 43 gave the same first 20 picks %v", seqA[:20])
	}
}

func pickN(r Ring, n int) []int {
	var s []int
	for range n {
		s = append(s, r.Pick(nil))
	}
	return s
}

// TestConcurrentPick runs every distribution from several goroutines; the
// race detector checks that rings are safe to share.
func TestConcurrentPick(t *testing.T) {
	keys := testKeys(1000)
	for _, dist := range Distributions() {
		r := mustNew(t, Options{Distribution: dist, HashTag: "{}", Servers: servers(5)})
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for g := range 4 {
			wg.Go(func() {
				for _, k := range keys {
					if got := r.Pick(k); got < 0 || got >= 5 {
						errs <- fmt.Sprintf("%s goroutine %d: Pick(%q) = %d", dist, g, k, got)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	key := []byte("user:{12345}:profile:ключ")
	for _, dist := range Distributions() {
		for _, h := range HashNames() {
			r := mustNew(t, Options{Distribution: dist, Hash: h, HashTag: "{}", Servers: servers(5)})
			if n := testing.AllocsPerRun(50, func() { r.Pick(key) }); n != 0 {
				t.Errorf("%s/%s: Pick allocates %v times; want 0", dist, h, n)
			}
		}
	}
}

// FuzzPick checks that every ring picks a live server for any key and that
// Pick and Route agree.
func FuzzPick(f *testing.F) {
	f.Add([]byte("foo"), uint8(0))
	f.Add([]byte("{}abc"), uint8(3))
	f.Add([]byte("a{\xff\x80}b"), uint8(7))
	all := servers(4)
	f.Fuzz(func(t *testing.T, key []byte, liveMask uint8) {
		live := []bool{liveMask&1 != 0, liveMask&2 != 0, liveMask&4 != 0, liveMask&8 != 0}
		for _, dist := range []string{"ketama", "modula", "jump"} {
			for _, h := range HashNames() {
				r := mustNew(t, Options{Distribution: dist, Hash: h, HashTag: "{}", Servers: all, Live: live})
				got := r.Pick(key)
				if !slices.Contains(live, true) {
					if got != -1 {
						t.Fatalf("%s/%s: Pick(%q) = %d with no live server", dist, h, key, got)
					}
					continue
				}
				if got < 0 || got >= 4 || !live[got] {
					t.Fatalf("%s/%s: Pick(%q) = %d; live %v", dist, h, key, got, live)
				}
				if rt := r.Route(key); rt.Server != got {
					t.Fatalf("%s/%s: Route(%q).Server = %d; Pick = %d", dist, h, key, rt.Server, got)
				}
			}
		}
	})
}
