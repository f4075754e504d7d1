package hashring

import (
	"fmt"
	"testing"
)

func BenchmarkHash(b *testing.B) {
	for _, n := range []int{10, 64} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte('a' + i%26)
		}
		for _, name := range HashNames() {
			h, _ := Hash(name)
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(n))
				for b.Loop() {
					h(key)
				}
			})
		}
	}
}

func BenchmarkPick(b *testing.B) {
	keys := testKeys(1024)
	for _, dist := range Distributions() {
		for _, n := range []int{3, 100} {
			r := mustNew(b, Options{Distribution: dist, Hash: "murmur", HashTag: "{}", Servers: servers(n)})
			b.Run(fmt.Sprintf("%s/%d", dist, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					r.Pick(keys[i&1023])
					i++
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	keys := testKeys(1024)
	for _, dist := range Distributions() {
		r := mustNew(b, Options{Distribution: dist, Hash: "murmur", Servers: servers(10)})
		b.Run(dist, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Pick(keys[i&1023])
					i++
				}
			})
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, dist := range []string{"ketama", "modula"} {
		b.Run(dist, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mustNew(b, Options{Distribution: dist, Servers: servers(100)})
			}
		})
	}
}
