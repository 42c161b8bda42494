package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDecide(t *testing.T) {
	const live = 64 << 20
	for _, c := range []struct {
		name      string
		wasIdle   bool
		allocated uint64 // in one second
		want      bool
	}{
		{"pings only: idle", false, live / 200, true},
		{"a message load: busy", true, live / 4, false},
		{"between the thresholds, idle stays idle", true, live / 48, true},
		{"between the thresholds, busy stays busy", false, live / 48, false},
	} {
		if got := Decide(c.wasIdle, c.allocated, live, time.Second); got != c.want {
			t.Errorf("%s: idle %v, want %v", c.name, got, c.want)
		}
	}
	if !Decide(true, 1<<30, 0, time.Second) || Decide(false, 0, live, 0) {
		t.Error("a sample without a live heap or a duration changed the state")
	}
}

// TestRunLowersTheTargetWhileIdle runs the tuner on this process: while
// the test allocates little the GC percent goes to IdlePercent; under an
// allocation load it goes back to BusyPercent; at the end it is restored.
func TestRunLowersTheTargetWhileIdle(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	// A live heap for the rates to be measured against.
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	defer runtime.KeepAlive(live)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Run(ctx, Config{IdlePercent: 25, BusyPercent: 100, Interval: 20 * time.Millisecond}) })
	defer func() { cancel(); wg.Wait() }()

	percent := func() int {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	waitFor := func(what string, want int, load func()) {
		deadline := time.Now().Add(10 * time.Second)
		for percent() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GC percent %d, want %d", what, percent(), want)
			}
			load()
		}
	}
	waitFor("idle", 25, func() { time.Sleep(5 * time.Millisecond) })
	var sink []byte
	waitFor("allocating", 100, func() {
		for range 64 {
			sink = make([]byte, 64<<10)
		}
		time.Sleep(time.Millisecond)
	})
	_ = sink
	waitFor("idle again", 25, func() { time.Sleep(5 * time.Millisecond) })
	cancel()
	wg.Wait()
	if p := percent(); p != 100 {
		t.Fatalf("after Run ended: GC percent %d, want 100", p)
	}
}
