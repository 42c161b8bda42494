package dedupe

import (
	"fmt"
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(3, time.Minute)
	s.now = func() time.Time { return now }
	if !s.FirstSeen("a") || s.FirstSeen("a") {
		t.Fatal("a: first true, then false")
	}
	s.FirstSeen("b")
	s.FirstSeen("c")
	s.FirstSeen("d") // evicts a, the oldest
	if s.Len() != 3 {
		t.Fatalf("Len = %d, want 3", s.Len())
	}
	if !s.FirstSeen("a") {
		t.Fatal("a was evicted by size and must be new again")
	}
	if s.FirstSeen("d") {
		t.Fatal("d is recent")
	}
	now = now.Add(time.Minute)
	if !s.FirstSeen("d") {
		t.Fatal("d expired and must be new again")
	}
	if s.Len() != 1 {
		t.Fatalf("after expiry Len = %d, want 1", s.Len())
	}
}

func TestSetDisabled(t *testing.T) {
	s := New(0, time.Minute)
	if !s.FirstSeen("a") || !s.FirstSeen("a") {
		t.Fatal("a disabled set remembers nothing")
	}
}

func TestSetBounded(t *testing.T) {
	s := New(100, time.Hour)
	for i := range 10000 {
		s.FirstSeen(fmt.Sprint(i))
	}
	if s.Len() != 100 || len(s.seen) != 100 {
		t.Fatalf("Len = %d, map %d; want 100", s.Len(), len(s.seen))
	}
}
