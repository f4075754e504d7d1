package pool

import "testing"

func TestQueueFIFOAcrossGrowthAndWrap(t *testing.T) {
	var q Queue[int]
	next, want := 0, 0
	// Interleave pushes and pops so the ring wraps at several sizes.
	for round := 0; round < 50; round++ {
		for i := 0; i < round%13+1; i++ {
			q.Push(next)
			next++
		}
		for i := 0; i < round%7; i++ {
			v, ok := q.Pop()
			if !ok {
				break
			}
			if v != want {
				t.Fatalf("round %d: got %d; want %d", round, v, want)
			}
			want++
		}
		if q.Len() != next-want {
			t.Fatalf("round %d: Len %d; want %d", round, q.Len(), next-want)
		}
		if q.Len() > 0 {
			if f, _ := q.Front(); f != want {
				t.Fatalf("Front %d; want %d", f, want)
			}
			if a := q.At(q.Len() - 1); a != next-1 {
				t.Fatalf("At(last) %d; want %d", a, next-1)
			}
		}
	}
	for q.Len() > 0 {
		v, _ := q.Pop()
		if v != want {
			t.Fatalf("drain: got %d; want %d", v, want)
		}
		want++
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("Pop on empty queue returned ok")
	}
	if _, ok := q.Front(); ok {
		t.Fatal("Front on empty queue returned ok")
	}
}

func BenchmarkQueuePushPop(b *testing.B) {
	b.ReportAllocs()
	var q Queue[*int]
	x := new(int)
	for i := 0; i < b.N; i++ {
		q.Push(x)
		q.Push(x)
		q.Pop()
		q.Pop()
	}
}
