package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestHealthEjectProbeReadmit(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	probeOK := false
	var probes []int
	var changes [][]bool
	h := NewHealth(HealthConfig{
		Servers: 3, AutoEject: true, FailureLimit: 2, RetryTimeout: 30 * time.Second,
		Probe: func(_ context.Context, i int) error {
			probes = append(probes, i)
			if probeOK {
				return nil
			}
			return errors.New("connection refused")
		},
		OnChange: func(live []bool) { changes = append(changes, live) },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      clock.Now,
	})
	ctx := context.Background()

	h.Failure(1)
	h.step(ctx)
	if got := h.State(1); got != StateFailing {
		t.Fatalf("after 1 failure: got %v; want failing", got)
	}
	h.Success(1)
	if got := h.State(1); got != StateUp {
		t.Fatalf("after success: got %v; want up", got)
	}
	h.Failure(1)
	h.Failure(1)
	h.step(ctx)
	if got := h.State(1); got != StateEjected {
		t.Fatalf("after 2 failures: got %v; want ejected", got)
	}
	if want := [][]bool{{true, false, true}}; !slices.EqualFunc(changes, want, slices.Equal) {
		t.Fatalf("changes %v; want %v", changes, want)
	}
	// Not yet due: no probe.
	clock.Add(29 * time.Second)
	h.step(ctx)
	if len(probes) != 0 {
		t.Fatalf("probed %v before retry timeout", probes)
	}
	// Due, but the probe fails: stays ejected for another retry timeout.
	clock.Add(time.Second)
	h.step(ctx)
	if !slices.Equal(probes, []int{1}) || h.State(1) != StateEjected {
		t.Fatalf("probes %v state %v; want [1] ejected", probes, h.State(1))
	}
	clock.Add(10 * time.Second)
	h.step(ctx)
	if len(probes) != 1 {
		t.Fatalf("probed again before the next retry time: %v", probes)
	}
	probeOK = true
	clock.Add(20 * time.Second)
	h.step(ctx)
	if h.State(1) != StateUp {
		t.Fatalf("after good probe: got %v; want up", h.State(1))
	}
	if want := [][]bool{{true, false, true}, {true, true, true}}; !slices.EqualFunc(changes, want, slices.Equal) {
		t.Fatalf("changes %v; want %v", changes, want)
	}
	if h.Ejections(1) != 1 || h.Failures(1) != 3 {
		t.Fatalf("ejections %d failures %d; want 1 and 3", h.Ejections(1), h.Failures(1))
	}
}

func TestHealthNeverEjectsLastServer(t *testing.T) {
	h := NewHealth(HealthConfig{Servers: 2, AutoEject: true, FailureLimit: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.Failure(0)
	h.Failure(1)
	h.step(context.Background())
	ejected := 0
	for i := 0; i < 2; i++ {
		if h.State(i) == StateEjected {
			ejected++
		}
	}
	if ejected != 1 {
		t.Fatalf("ejected %d servers; want exactly 1 (the last one stays)", ejected)
	}
}

func TestHealthEjectAllEjectsEveryServer(t *testing.T) {
	probeOK := false
	h := NewHealth(HealthConfig{Servers: 2, AutoEject: true, FailureLimit: 1, EjectAll: true,
		RetryTimeout: time.Nanosecond,
		Probe: func(context.Context, int) error {
			if probeOK {
				return nil
			}
			return errors.New("connection refused")
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.Failure(0)
	h.Failure(1)
	h.step(context.Background())
	for i := 0; i < 2; i++ {
		if h.State(i) != StateEjected {
			t.Fatalf("server %d: %v; want ejected (EjectAll keeps none)", i, h.State(i))
		}
	}
	probeOK = true
	h.step(context.Background())
	for i := 0; i < 2; i++ {
		if h.State(i) != StateUp {
			t.Fatalf("server %d after a good probe: %v; want up", i, h.State(i))
		}
	}
}

func TestHealthWithoutAutoEjectOnlyCounts(t *testing.T) {
	h := NewHealth(HealthConfig{Servers: 1, FailureLimit: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for i := 0; i < 5; i++ {
		h.Failure(0)
	}
	h.step(context.Background())
	if h.State(0) != StateFailing || h.Failures(0) != 5 {
		t.Fatalf("state %v failures %d; want failing, 5", h.State(0), h.Failures(0))
	}
}

func TestHealthRunStopsWithContext(t *testing.T) {
	h := NewHealth(HealthConfig{Servers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, time.Millisecond) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
