package hashring

import (
	"crypto/md5"
	"encoding/binary"
	"hash/crc32"
	"math/bits"
	"slices"
)

// HashFunc hashes a key as twemproxy does.
type HashFunc func(key []byte) uint32

// DefaultHash is the hash used when Options.Hash is empty, as in twemproxy.
const DefaultHash = "fnv1a_64"

// Hash returns the twemproxy hash function with that name (one_at_a_time,
// md5, crc16, crc32, crc32a, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh,
// murmur, jenkins) and whether it exists.
//
// The functions are bit-exact copies of twemproxy 0.5.0 on x86-64, including
// its quirks: several read key bytes through a signed char (a byte >= 0x80 is
// sign-extended), fnv1a_64 uses 32-bit arithmetic, crc32 keeps only 15 bits,
// and hsieh is seeded with 0. The returned function hashes the bytes it is
// given; twemproxy's rules for empty keys and one-server pools live in the
// rings.
func Hash(name string) (HashFunc, bool) {
	switch name {
	case "one_at_a_time":
		return oneAtATime, true
	case "md5":
		return md5Hash, true
	case "crc16":
		return crc16, true
	case "crc32":
		return crc32Libmemcached, true
	case "crc32a":
		return crc32a, true
	case "fnv1_64":
		return fnv1_64, true
	case "fnv1a_64":
		return fnv1a_64, true
	case "fnv1_32":
		return fnv1_32, true
	case "fnv1a_32":
		return fnv1a_32, true
	case "hsieh":
		return hsieh, true
	case "murmur":
		return murmur, true
	case "jenkins":
		return jenkins, true
	}
	return nil, false
}

// HashNames lists the valid hash names, sorted.
func HashNames() []string {
	names := []string{"one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64",
		"fnv1a_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins"}
	slices.Sort(names)
	return names
}

// sx widens a byte the way x86 C code widens a (signed) char to 32 bits.
func sx(b byte) uint32 { return uint32(int32(int8(b))) }

func oneAtATime(key []byte) uint32 {
	var h uint32
	for _, b := range key {
		h += sx(b)
		h += h << 10
		h ^= h >> 6
	}
	h += h << 3
	h ^= h >> 11
	h += h << 15
	return h
}

func md5Hash(key []byte) uint32 {
	d := md5.Sum(key)
	return binary.LittleEndian.Uint32(d[:4])
}

// crc16Table is the CRC-16/XMODEM table (polynomial 0x1021). Read only.
var crc16Table = func() (t [256]uint32) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = uint32(c)
	}
	return t
}()

// crc16 is twemproxy's CRC-16/XMODEM whose state is a uint32 that is never
// masked back to 16 bits, so long keys give values above 0xffff.
func crc16(key []byte) uint32 {
	var crc uint32
	for _, b := range key {
		crc = crc<<8 ^ crc16Table[(crc>>8^uint32(b))&0xff]
	}
	return crc
}

// crc32Libmemcached is libmemcached's "crc32": bits 16..30 of the standard
// CRC-32, so only 15 bits.
func crc32Libmemcached(key []byte) uint32 {
	return crc32.ChecksumIEEE(key) >> 16 & 0x7fff
}

func crc32a(key []byte) uint32 { return crc32.ChecksumIEEE(key) }

// fnv1_64 is 64-bit FNV-1 truncated to 32 bits; bytes are sign-extended.
func fnv1_64(key []byte) uint32 {
	h := uint64(0xcbf29ce484222325)
	for _, b := range key {
		h *= 0x100000001b3
		h ^= uint64(int64(int8(b)))
	}
	return uint32(h)
}

// fnv1a_64 is twemproxy's default hash: FNV-1a with the 64-bit constants
// truncated to 32 bits and 32-bit arithmetic. Its prime 0x1b3 = 3*3*7*7 is
// divisible by 3, which spreads keys badly over three servers.
func fnv1a_64(key []byte) uint32 {
	h := uint32(0x84222325)
	for _, b := range key {
		h ^= sx(b)
		h *= 0x1b3
	}
	return h
}

func fnv1_32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h *= 16777619
		h ^= sx(b)
	}
	return h
}

func fnv1a_32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h ^= sx(b)
		h *= 16777619
	}
	return h
}

// hsieh is Paul Hsieh's SuperFastHash as twemproxy has it: seeded with 0,
// 16-bit little-endian reads, the third byte of a 3-byte tail sign-extended.
func hsieh(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	var h uint32
	n := len(key) >> 2
	for range n {
		h += uint32(key[0]) | uint32(key[1])<<8
		tmp := (uint32(key[2])|uint32(key[3])<<8)<<11 ^ h
		h = h<<16 ^ tmp
		key = key[4:]
		h += h >> 11
	}
	switch len(key) {
	case 3:
		h += uint32(key[0]) | uint32(key[1])<<8
		h ^= h << 16
		h ^= sx(key[2]) << 18
		h += h >> 11
	case 2:
		h += uint32(key[0]) | uint32(key[1])<<8
		h ^= h << 11
		h += h >> 17
	case 1:
		h += uint32(key[0])
		h ^= h << 10
		h += h >> 1
	}
	h ^= h << 3
	h += h >> 5
	h ^= h << 4
	h += h >> 17
	h ^= h << 25
	h += h >> 6
	return h
}

// murmur is MurmurHash2 with twemproxy's seed (0xdeadbeef * len).
func murmur(key []byte) uint32 {
	const m = 0x5bd1e995
	n := uint32(len(key))
	h := 0xdeadbeef*n ^ n
	for len(key) >= 4 {
		k := binary.LittleEndian.Uint32(key)
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		key = key[4:]
	}
	switch len(key) {
	case 3:
		h ^= uint32(key[2]) << 16
		h ^= uint32(key[1]) << 8
		h ^= uint32(key[0])
		h *= m
	case 2:
		h ^= uint32(key[1]) << 8
		h ^= uint32(key[0])
		h *= m
	case 1:
		h ^= uint32(key[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// jenkins is Bob Jenkins' lookup3 hashlittle with initval 13.
func jenkins(key []byte) uint32 {
	a := 0xdeadbeef + uint32(len(key)) + 13
	b, c := a, a
	for len(key) > 12 {
		a += binary.LittleEndian.Uint32(key)
		b += binary.LittleEndian.Uint32(key[4:])
		c += binary.LittleEndian.Uint32(key[8:])
		a -= c
		a ^= bits.RotateLeft32(c, 4)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 6)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 8)
		b += a
		a -= c
		a ^= bits.RotateLeft32(c, 16)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 19)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 4)
		b += a
		key = key[12:]
	}
	if len(key) == 0 {
		return c
	}
	// The tail of 1..12 bytes, little-endian, zero-padded.
	var tail [12]byte
	copy(tail[:], key)
	a += binary.LittleEndian.Uint32(tail[:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
