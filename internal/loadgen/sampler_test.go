package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
)

// chiSquare draws draws ranks from s and returns Pearson's statistic against
// s.Prob over all ranks.
func chiSquare(s Sampler, draws int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	counts := make([]int, s.N())
	for range draws {
		counts[s.Next(r)]++
	}
	chi := 0.0
	for k, c := range counts {
		e := s.Prob(k) * float64(draws)
		chi += (float64(c) - e) * (float64(c) - e) / e
	}
	return chi
}

// critical999df99 is the 99.9% quantile of the chi-square distribution with
// 99 degrees of freedom (100 ranks).
const critical999df99 = 148.23

func TestZipfMatchesDistribution(t *testing.T) {
	for _, s := range []float64{0.5, 0.99, 1, 1.2, 2} {
		z, err := NewZipf(100, s)
		if err != nil {
			t.Fatalf("NewZipf(100, %v): %v", s, err)
		}
		// The table itself: P(k) proportional to 1/(k+1)^s.
		if got, want := z.Prob(0)/z.Prob(9), math.Pow(10, s); math.Abs(got-want) > 1e-9*want {
			t.Errorf("s=%v: P(0)/P(9) = %v; want %v", s, got, want)
		}
		sum := 0.0
		for k := range 100 {
			sum += z.Prob(k)
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("s=%v: probabilities sum to %v; want 1", s, sum)
		}
		if chi := chiSquare(z, 1_000_000, 42); chi > critical999df99 {
			t.Errorf("s=%v: chi-square %.1f over %d draws; want <= %.2f", s, chi, 1_000_000, critical999df99)
		}
	}
}

func TestZipfTopRankFrequency(t *testing.T) {
	// Per-rank check on a larger key space: the observed share of the top
	// ranks is within 2% (relative) of the exact probability.
	for _, s := range []float64{0.99, 1.2} {
		z, err := NewZipf(100_000, s)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(7, 7))
		const draws = 2_000_000
		counts := make([]int, 5)
		for range draws {
			if k := z.Next(r); k < len(counts) {
				counts[k]++
			}
		}
		for k, c := range counts {
			got, want := float64(c)/draws, z.Prob(k)
			if math.Abs(got-want) > 0.02*want {
				t.Errorf("s=%v rank %d: share %.5f; want %.5f within 2%%", s, k, got, want)
			}
		}
	}
}

func TestZipfSkewsTowardsLowRanks(t *testing.T) {
	z, err := NewZipf(1000, 0.99)
	if err != nil {
		t.Fatal(err)
	}
	for k := 1; k < 1000; k++ {
		if z.Prob(k) >= z.Prob(k-1) {
			t.Fatalf("P(%d) = %v >= P(%d) = %v; want strictly decreasing", k, z.Prob(k), k-1, z.Prob(k-1))
		}
	}
}

func TestUniformMatchesDistribution(t *testing.T) {
	if chi := chiSquare(Uniform(100), 1_000_000, 42); chi > critical999df99 {
		t.Errorf("uniform: chi-square %.1f; want <= %.2f", chi, critical999df99)
	}
	if got, want := Uniform(4).Prob(3), 0.25; got != want {
		t.Errorf("Uniform(4).Prob(3) = %v; want %v", got, want)
	}
	if got := Uniform(4).Prob(4); got != 0 {
		t.Errorf("Uniform(4).Prob(4) = %v; want 0", got)
	}
}

func TestNewZipfRejects(t *testing.T) {
	for _, tc := range []struct {
		n int
		s float64
	}{{0, 1}, {10, 0}, {10, -1}, {10, math.NaN()}, {10, math.Inf(1)}, {MaxZipfKeys + 1, 1}} {
		if _, err := NewZipf(tc.n, tc.s); err == nil {
			t.Errorf("NewZipf(%d, %v) = nil error; want an error", tc.n, tc.s)
		}
	}
}

func TestZipfSingleKey(t *testing.T) {
	z, err := NewZipf(1, 0.99)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 100 {
		if k := z.Next(r); k != 0 {
			t.Fatalf("Next = %d; want 0", k)
		}
	}
}

func BenchmarkZipfNext(b *testing.B) {
	z, err := NewZipf(1_000_000, 0.99)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	b.ReportAllocs()
	for b.Loop() {
		_ = z.Next(r)
	}
}

// mislabelled draws from one sampler and claims another's probabilities, to
// show the chi-square check has the power to reject a wrong sampler.
type mislabelled struct {
	Sampler
	claims Sampler
}

func (m mislabelled) Prob(k int) float64 { return m.claims.Prob(k) }

func TestChiSquareRejectsWrongSkew(t *testing.T) {
	z099, _ := NewZipf(100, 0.99)
	z1, _ := NewZipf(100, 1.0)
	if chi := chiSquare(mislabelled{z099, z1}, 1_000_000, 42); chi <= critical999df99 {
		t.Errorf("s=0.99 draws against s=1.0 probabilities: chi-square %.1f; want > %.2f", chi, critical999df99)
	}
}
