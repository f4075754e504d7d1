package hashring

import (
	"bytes"
	"cmp"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/dgryski/go-jump"
)

// Server is one backend as the ring sees it.
type Server struct {
	// Name is the ring name, already resolved by configuration: the server's
	// name if given, else "host:port", or "host" when the port is 11211
	// (twemproxy's libmemcached-compatible rule).
	Name string
	// Weight is the server's share of the ring; it must be > 0.
	Weight int
}

// Options builds a ring.
type Options struct {
	// Distribution is ketama, modula, random or jump; or slots, Redis
	// Cluster's (used by cluster pools only, not listed by Distributions).
	Distribution string
	// Hash is a twemproxy hash name (see HashNames). If empty, DefaultHash
	// (fnv1a_64) is used, as in twemproxy.
	Hash string
	// HashTag is "" (hash the whole key) or two characters such as "{}".
	HashTag string
	// Servers lists the backends in configuration order. Names must be
	// unique.
	Servers []Server
	// Live marks which servers take part. If nil, all do; otherwise it has
	// one entry per server and Live[i] false leaves server i out (ejected).
	Live []bool
	// Slots, for the slots distribution only, are the Redis Cluster hash
	// slots each server owns (indexed like Servers; nil: none).
	Slots [][]SlotRange
	// Seed seeds the random distribution's generator; other distributions
	// ignore it. Tests pass a fixed one.
	Seed uint64
}

// Ring picks a server for a key. Rings are immutable and safe for concurrent
// use; a membership change builds a new ring.
type Ring interface {
	// Pick returns the index (into Options.Servers, configuration order) of
	// the server for key, after hash-tag extraction. With no live server it
	// returns -1.
	Pick(key []byte) int
	// Route explains a placement: server index, the key's hash, and for
	// ketama the continuum point chosen (0 otherwise).
	Route(key []byte) Route
}

// Route is the explanation of one placement.
type Route struct {
	// Server is what Pick returns.
	Server int
	// Hash is the key's hash as the distribution used it: the twemproxy hash
	// (0 for an empty key or a one-server pool) for ketama, modula and
	// random (which does not use it), and the low 32 bits of the 64-bit
	// key hash for jump.
	Hash uint32
	// Point is the ketama continuum point the key landed on; 0 for other
	// distributions.
	Point uint32
}

// Compile-time checks that every distribution is a Ring.
var (
	_ Ring = (*Ketama)(nil)
	_ Ring = (*Modula)(nil)
	_ Ring = (*Random)(nil)
	_ Ring = (*Jump)(nil)
)

// Distributions lists the valid distribution names: ketama, modula, random,
// jump.
func Distributions() []string {
	return []string{"ketama", "modula", "random", "jump"}
}

// Tag returns the part of key that is hashed under hashTag (twemproxy rule:
// the text between the first open character and the next close character,
// if non-empty; else the whole key). An empty hashTag returns key.
func Tag(key []byte, hashTag string) []byte {
	if len(hashTag) != 2 {
		return key
	}
	i := bytes.IndexByte(key, hashTag[0])
	if i < 0 {
		return key
	}
	j := bytes.IndexByte(key[i+1:], hashTag[1])
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// New builds the ring that o describes. It fails for an unknown distribution
// or hash, a hash tag that is not two characters, no servers, a weight
// below 1, duplicate server names, or a Live of the wrong length.
func New(o Options) (Ring, error) {
	if o.Distribution == "slots" {
		return newSlots(o)
	}
	b, err := newBase(o)
	if err != nil {
		return nil, err
	}
	switch o.Distribution {
	case "ketama":
		return newKetama(b, o)
	case "modula":
		return newModula(b, o), nil
	case "random":
		r := &Random{base: b, live: liveIndexes(o)}
		r.state.Store(o.Seed)
		return r, nil
	case "jump":
		return &Jump{base: b, live: liveIndexes(o)}, nil
	}
	return nil, fmt.Errorf("hashring: unknown distribution %q (want one of %v)", o.Distribution, Distributions())
}

// base is what every distribution shares: the hash and the hash tag.
type base struct {
	hash   HashFunc
	tag    string
	single bool // one server configured: twemproxy skips hashing
}

func newBase(o Options) (base, error) {
	name := o.Hash
	if name == "" {
		name = DefaultHash
	}
	h, ok := Hash(name)
	if !ok {
		return base{}, fmt.Errorf("hashring: unknown hash %q (want one of %v)", o.Hash, HashNames())
	}
	if o.HashTag != "" && len(o.HashTag) != 2 {
		return base{}, fmt.Errorf("hashring: hash tag %q is not two characters", o.HashTag)
	}
	if len(o.Servers) == 0 {
		return base{}, errors.New("hashring: no servers")
	}
	if o.Live != nil && len(o.Live) != len(o.Servers) {
		return base{}, fmt.Errorf("hashring: %d live flags for %d servers", len(o.Live), len(o.Servers))
	}
	seen := make(map[string]int, len(o.Servers))
	for i, s := range o.Servers {
		if s.Weight < 1 {
			return base{}, fmt.Errorf("hashring: server %d (%q): weight %d is not positive", i, s.Name, s.Weight)
		}
		if j, dup := seen[s.Name]; dup {
			return base{}, fmt.Errorf("hashring: servers %d and %d have the same name %q", j, i, s.Name)
		}
		seen[s.Name] = i
	}
	return base{hash: h, tag: o.HashTag, single: len(o.Servers) == 1}, nil
}

// keyHash is twemproxy's server_pool_hash after hash-tag extraction: 0 for an
// empty key or a pool of one server.
func (b *base) keyHash(key []byte) uint32 {
	key = Tag(key, b.tag)
	if len(key) == 0 || b.single {
		return 0
	}
	return b.hash(key)
}

func isLive(o Options, i int) bool { return o.Live == nil || o.Live[i] }

// sortedLive returns the indexes of the live servers in twemproxy's server
// order: names sorted shorter first, equal lengths by bytes.
func sortedLive(o Options) []int32 {
	var idx []int32
	for i := range o.Servers {
		if isLive(o, i) {
			idx = append(idx, int32(i))
		}
	}
	slices.SortFunc(idx, func(x, y int32) int {
		a, b := o.Servers[x].Name, o.Servers[y].Name
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return idx
}

// liveIndexes returns the indexes of the live servers in configuration order.
func liveIndexes(o Options) []int32 {
	var idx []int32
	for i := range o.Servers {
		if isLive(o, i) {
			idx = append(idx, int32(i))
		}
	}
	return idx
}

// Ketama is twemproxy's consistent-hashing ring (libmemcached compatible):
// 160 points per server at equal weights, from MD5 of "name-i".
type Ketama struct {
	base
	points []uint32 // sorted ascending
	owner  []int32  // owner[i] is the server index of points[i]
}

// ketamaMaxHost is twemproxy's KETAMA_MAX_HOSTLEN: the "name-i" string is
// formatted into a buffer of this size, so a longer one is cut short (and
// twemproxy then hashes bytes past the buffer, which cannot be matched).
const ketamaMaxHost = 86

func newKetama(b base, o Options) (*Ketama, error) {
	servers := sortedLive(o)
	k := &Ketama{base: b}
	if len(servers) == 0 {
		return k, nil
	}
	total := 0
	for _, i := range servers {
		total += o.Servers[i].Weight
	}
	type point struct {
		value uint32
		owner int32
	}
	var pts []point
	var buf []byte
	for _, i := range servers {
		s := o.Servers[i]
		for n := range ketamaPoints(s.Weight, total, len(servers)) / 4 {
			buf = append(append(append(buf[:0], s.Name...), '-'), strconv.FormatUint(uint64(n), 10)...)
			if len(buf) >= ketamaMaxHost {
				return nil, fmt.Errorf("hashring: server name %q is too long for twemproxy's ketama (%q is %d bytes, limit %d)",
					s.Name, buf, len(buf), ketamaMaxHost-1)
			}
			d := md5.Sum(buf)
			for a := range 4 {
				pts = append(pts, point{binary.LittleEndian.Uint32(d[4*a:]), i})
			}
		}
	}
	// Stable, as glibc's qsort (a merge sort) is: equal points keep server
	// order, and the first of them wins.
	slices.SortStableFunc(pts, func(x, y point) int { return cmp.Compare(x.value, y.value) })
	k.points = make([]uint32, len(pts))
	k.owner = make([]int32, len(pts))
	for i, p := range pts {
		k.points[i], k.owner[i] = p.value, p.owner
	}
	return k, nil
}

// ketamaPoints is twemproxy's points-per-server formula, in its float32
// arithmetic (and one double addition). Each step is converted explicitly so
// the compiler cannot fuse operations.
func ketamaPoints(weight, total, nlive int) uint32 {
	pct := float32(weight) / float32(total)
	x := float32(pct * 160)
	x = float32(x / 4)
	x = float32(x * float32(nlive))
	f := float32(float64(x) + 0.0000000001)
	return uint32(float32(math.Floor(float64(f))) * 4)
}

// search returns the index of the first point >= h, wrapping to 0.
func (k *Ketama) search(h uint32) int {
	lo, hi := 0, len(k.points)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(k.points) {
		return 0
	}
	return lo
}

// Pick implements Ring.
func (k *Ketama) Pick(key []byte) int {
	if len(k.points) == 0 {
		return -1
	}
	return int(k.owner[k.search(k.keyHash(key))])
}

// Route implements Ring.
func (k *Ketama) Route(key []byte) Route {
	h := k.keyHash(key)
	if len(k.points) == 0 {
		return Route{Server: -1, Hash: h}
	}
	i := k.search(h)
	return Route{Server: int(k.owner[i]), Hash: h, Point: k.points[i]}
}

// Points returns the number of points on the continuum.
func (k *Ketama) Points() int { return len(k.points) }

// Modula is twemproxy's modula distribution: each live server appears
// weight times, in twemproxy's sorted server order, and a key goes to
// entry hash % entries.
type Modula struct {
	base
	slots []int32
}

func newModula(b base, o Options) *Modula {
	m := &Modula{base: b}
	for _, i := range sortedLive(o) {
		for range o.Servers[i].Weight {
			m.slots = append(m.slots, i)
		}
	}
	return m
}

// Pick implements Ring.
func (m *Modula) Pick(key []byte) int {
	if len(m.slots) == 0 {
		return -1
	}
	return int(m.slots[m.keyHash(key)%uint32(len(m.slots))])
}

// Route implements Ring.
func (m *Modula) Route(key []byte) Route {
	h := m.keyHash(key)
	if len(m.slots) == 0 {
		return Route{Server: -1, Hash: h}
	}
	return Route{Server: int(m.slots[h%uint32(len(m.slots))]), Hash: h}
}

// Random sends each request to a uniformly random live server, ignoring
// weights as twemproxy does. Its generator is SplitMix64 whose state is one
// atomic counter: a Pick costs one atomic add and a few multiplications, with
// no lock, and a fixed Seed gives a fixed sequence in a single goroutine.
type Random struct {
	base
	live  []int32
	state atomic.Uint64
}

// Pick implements Ring.
func (r *Random) Pick(key []byte) int {
	if len(r.live) == 0 {
		return -1
	}
	x := splitmix64(r.state.Add(0x9e3779b97f4a7c15))
	hi, _ := bits.Mul64(x, uint64(len(r.live))) // uniform in [0, len)
	return int(r.live[hi])
}

// Route implements Ring.
func (r *Random) Route(key []byte) Route {
	return Route{Server: r.Pick(key), Hash: r.keyHash(key)}
}

// Jump is cacheproxy's own distribution: Google's jump consistent hash over
// the live servers in configuration order, keyed by JumpKey of the (tagged)
// key. It ignores weights. Appending a server moves 1/n of the keys to it and
// removing the last moves only its keys, but removing (ejecting) a server in
// the middle renumbers every server after it.
type Jump struct {
	base
	live []int32
}

// JumpKey is the 64-bit key hash jump uses: 64-bit FNV-1a of the key's bytes
// followed by the SplitMix64 finaliser, so that short and similar keys spread
// over all 64 bits.
func JumpKey(key []byte) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, b := range key {
		h ^= uint64(b)
		h *= 0x100000001b3
	}
	return splitmix64(h)
}

// Pick implements Ring.
func (j *Jump) Pick(key []byte) int {
	if len(j.live) == 0 {
		return -1
	}
	return int(j.live[jump.Hash(JumpKey(Tag(key, j.tag)), len(j.live))])
}

// Route implements Ring.
func (j *Jump) Route(key []byte) Route {
	k := JumpKey(Tag(key, j.tag))
	if len(j.live) == 0 {
		return Route{Server: -1, Hash: uint32(k)}
	}
	return Route{Server: int(j.live[jump.Hash(k, len(j.live))]), Hash: uint32(k)}
}

// splitmix64 is the SplitMix64 output function (a strong 64-bit mixer).
func splitmix64(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
