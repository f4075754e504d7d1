package main

import (
	"syscall"
	"testing"
)

func TestRaiseFDLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	low := syscall.Rlimit{Cur: min(orig.Max, 256), Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	before, after, hard, err := raiseFDLimit()
	if err != nil {
		t.Fatal(err)
	}
	if before != low.Cur || after != orig.Max || hard != orig.Max {
		t.Errorf("raiseFDLimit: got %d, %d, %d; want %d, %d, %d", before, after, hard, low.Cur, orig.Max, orig.Max)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur != orig.Max {
		t.Errorf("soft limit after: got %d; want the hard limit %d", now.Cur, orig.Max)
	}
}
