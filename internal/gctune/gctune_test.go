package gctune

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gcPercent and memLimit read the collector's settings without changing
// them (SetGCPercent(-1) and setting it back would race with Run).
func gcPercent() int { return int(readMetric("/gc/gogc:percent")) }

func memLimit() int64 { return int64(readMetric("/gc/gomemlimit:bytes")) }

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

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

func TestIdleLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name          string
		inUse, live   uint64
		percent       int
		ceiling, want int64
	}{
		{"in use plus the idle growth and a twentieth", 60 * mib, 40 * mib, 10, math.MaxInt64, 67 * mib},
		{"a small heap keeps the least room", 10 * mib, 5 * mib, 10, math.MaxInt64, 14 * mib},
		{"never above the limit the process started with", 60 * mib, 40 * mib, 10, 50 * mib, 50 * mib},
		{"a larger percent leaves more room", 60 * mib, 40 * mib, 50, math.MaxInt64, 83 * mib},
	} {
		if got := IdleLimit(c.inUse, c.live, c.percent, c.ceiling); got != c.want {
			t.Errorf("%s: %d MiB, want %d MiB", c.name, got/mib, c.want/mib)
		}
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
	wg.Go(func() {
		Run(ctx, Config{IdlePercent: 25, BusyPercent: 100, Interval: 20 * time.Millisecond, IdleLimit: true})
	})
	defer func() { cancel(); wg.Wait() }()

	percent, limit := gcPercent, memLimit
	start := limit()
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
	// Idle: a memory limit a little above the 64 MiB live heap.
	waitLimit := func(what string, ok func(int64) bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !ok(limit()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: memory limit %d", what, limit())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLimit("idle", func(l int64) bool { return l >= 64<<20 && l < 256<<20 })
	var sink []byte
	waitFor("allocating", 100, func() {
		for range 64 {
			sink = make([]byte, 64<<10)
		}
		time.Sleep(time.Millisecond)
	})
	_ = sink
	if l := limit(); l != start {
		t.Fatalf("busy: memory limit %d, want the starting %d", l, start)
	}
	waitFor("idle again", 25, func() { time.Sleep(5 * time.Millisecond) })
	cancel()
	wg.Wait()
	if p := percent(); p != 100 {
		t.Fatalf("after Run ended: GC percent %d, want 100", p)
	}
	if l := limit(); l != start {
		t.Fatalf("after Run ended: memory limit %d, want the starting %d", l, start)
	}
}

// TestRunSetsNoLimitUnlessAsked: without IdleLimit the idle tuner leaves
// the memory limit alone.
func TestRunSetsNoLimitUnlessAsked(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	live := make([][]byte, 16)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	defer runtime.KeepAlive(live)
	start := memLimit()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Run(ctx, Config{IdlePercent: 25, BusyPercent: 100, Interval: 20 * time.Millisecond}) })
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := gcPercent()
		if p == 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d, want the idle 25", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A window of five more idle samples, in which the limit must stay
	// unset.
	time.Sleep(5 * 20 * time.Millisecond)
	if l := memLimit(); l != start {
		t.Fatalf("idle without IdleLimit: memory limit %d, want the starting %d", l, start)
	}
}
