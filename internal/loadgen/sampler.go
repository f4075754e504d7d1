package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Sampler draws key ranks in [0, N()). Rank 0 is the most popular key of a
// skewed distribution. A Sampler is immutable and safe for concurrent use;
// each caller passes its own random source.
type Sampler interface {
	// Next returns a rank drawn with r.
	Next(r *rand.Rand) int
	// N returns the number of ranks.
	N() int
	// Prob returns the probability of drawing rank k.
	Prob(k int) float64
}

var (
	_ Sampler = Uniform(0)
	_ Sampler = (*Zipf)(nil)
)

// Uniform draws every one of its n ranks with equal probability.
type Uniform int

// Next returns a uniformly drawn rank.
func (u Uniform) Next(r *rand.Rand) int { return r.IntN(int(u)) }

// N returns the number of ranks.
func (u Uniform) N() int { return int(u) }

// Prob returns 1/n for every rank in range and 0 outside it.
func (u Uniform) Prob(k int) float64 {
	if k < 0 || k >= int(u) {
		return 0
	}
	return 1 / float64(u)
}

// Zipf draws rank k (0-based) with probability proportional to 1/(k+1)^s,
// for any s > 0, by inverse-CDF sampling: the cumulative distribution over
// all ranks is computed once (8 bytes per key) and a uniform draw is
// binary-searched in it, O(log n) per draw. Unlike math/rand's Zipf it needs
// no s > 1.
type Zipf struct {
	s   float64
	cdf []float64 // cdf[k] = P(rank <= k); cdf[n-1] == 1
}

// MaxZipfKeys bounds the key count of a Zipf sampler (its table takes 8 bytes
// per key).
const MaxZipfKeys = 1 << 26

// NewZipf returns a Zipf sampler over n ranks with exponent s.
func NewZipf(n int, s float64) (*Zipf, error) {
	if n < 1 || n > MaxZipfKeys {
		return nil, fmt.Errorf("zipf: key count %d out of range [1, %d]", n, MaxZipfKeys)
	}
	if !(s > 0) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("zipf: exponent s=%v must be a finite number > 0", s)
	}
	cdf := make([]float64, n)
	sum := 0.0
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	cdf[n-1] = 1
	return &Zipf{s: s, cdf: cdf}, nil
}

// Next returns a rank drawn with r.
func (z *Zipf) Next(r *rand.Rand) int {
	u := r.Float64() // [0, 1)
	// First k with cdf[k] > u.
	lo, hi := 0, len(z.cdf)-1 // cdf[hi] == 1 > u always
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if z.cdf[mid] > u {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// N returns the number of ranks.
func (z *Zipf) N() int { return len(z.cdf) }

// S returns the exponent.
func (z *Zipf) S() float64 { return z.s }

// Prob returns the probability of drawing rank k.
func (z *Zipf) Prob(k int) float64 {
	if k < 0 || k >= len(z.cdf) {
		return 0
	}
	if k == 0 {
		return z.cdf[0]
	}
	return z.cdf[k] - z.cdf[k-1]
}
