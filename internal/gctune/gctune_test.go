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

	"github.com/sccgo/sccgo/internal/testwait"
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

// startTuner runs Run with cfg on this process, over a live heap of
// liveMiB, until the returned stop is called (also at the test's end).
func startTuner(t *testing.T, cfg Config, liveMiB int) (stop func()) {
	t.Helper()
	prev := debug.SetGCPercent(100)
	live := make([][]byte, liveMiB)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Run(ctx, cfg) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			runtime.KeepAlive(live)
			debug.SetGCPercent(prev)
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitPercent drives load until the GC percent is want, checking each
// round that check holds (nil: nothing to check).
func waitPercent(t *testing.T, what string, want int, load func(), check func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GC percent %d, want %d", what, gcPercent(), want)
		}
		if check != nil {
			check()
		}
		load()
	}
}

// quiet allocates nothing for a moment; busy allocates 4 MiB.
func quiet() { time.Sleep(5 * time.Millisecond) }

var sink []byte

func busy() {
	for range 64 {
		sink = make([]byte, 64<<10)
	}
	time.Sleep(time.Millisecond)
}

// TestRunLowersTheTargetWhileIdle runs the tuner on this process: while
// the test allocates little the GC percent goes to IdlePercent and a
// memory limit a little above the live heap is set; under an allocation
// load both go back; at the end both are restored.
func TestRunLowersTheTargetWhileIdle(t *testing.T) {
	start := memLimit()
	stop := startTuner(t, Config{IdlePercent: 25, BusyPercent: 100, Interval: 20 * time.Millisecond, IdleLimit: true}, 64)
	waitPercent(t, "idle", 25, quiet, nil)
	testwait.For(t, 10*time.Second, "a memory limit above the 64 MiB live heap", func() bool {
		l := memLimit()
		return l >= 64<<20 && l < 256<<20
	})
	waitPercent(t, "allocating", 100, busy, nil)
	if l := memLimit(); l != start {
		t.Fatalf("busy: memory limit %d, want the starting %d", l, start)
	}
	waitPercent(t, "idle again", 25, quiet, nil)
	stop()
	if p := gcPercent(); p != 100 {
		t.Fatalf("after Run ended: GC percent %d, want 100", p)
	}
	if l := memLimit(); l != start {
		t.Fatalf("after Run ended: memory limit %d, want the starting %d", l, start)
	}
}

// TestRunSetsNoLimitUnlessAsked: without IdleLimit the tuner leaves the
// memory limit alone through idle, busy and idle again.
func TestRunSetsNoLimitUnlessAsked(t *testing.T) {
	start := memLimit()
	startTuner(t, Config{IdlePercent: 25, BusyPercent: 100, Interval: 20 * time.Millisecond}, 16)
	unchanged := func() {
		if l := memLimit(); l != start {
			t.Fatalf("without IdleLimit: memory limit %d, want the starting %d", l, start)
		}
	}
	waitPercent(t, "idle", 25, quiet, unchanged)
	waitPercent(t, "allocating", 100, busy, unchanged)
	waitPercent(t, "idle again", 25, quiet, unchanged)
	unchanged()
}
