package coalesce

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func newController() *Controller {
	return &Controller{Budget: 25 * ms, Target: ms, MinBusy: 0.2, MinCPU: 0.7}
}

// feed gives c n samples of the same wait and busy share, with the process
// at all its CPUs unless cpu gives its share, and returns the gap after
// the last.
func feed(c *Controller, n int, mean time.Duration, busy float64, cpu ...float64) time.Duration {
	share := 1.0
	if len(cpu) > 0 {
		share = cpu[0]
	}
	for range n {
		c.Next(mean, busy, share)
	}
	return c.Gap()
}

func TestKeepingUpHoldsNothing(t *testing.T) {
	for _, s := range []struct {
		name string
		mean time.Duration
		busy float64
	}{
		{"keeping up at any rate", 50 * time.Microsecond, 0.9},
		{"idle", 0, 0},
		{"at the target", ms, 0.9},
		{"waits, but frames are cheap", 5 * ms, 0.1},
	} {
		c := newController()
		if gap := feed(c, 400, s.mean, s.busy); gap != 0 {
			t.Errorf("%s: gap %v after 10 s, want 0", s.name, gap)
		}
	}
}

// TestSpareCPUHoldsNothing: frames that wait while the process has CPU to
// spare (a fan-out burst's writers queued behind each other, a neighbour
// on a shared CPU) are not held, however long they wait and whatever
// share of the CPU the writes take.
func TestSpareCPUHoldsNothing(t *testing.T) {
	c := newController()
	for range 400 {
		if gap := c.Next(10*ms, 0.5, 0.6); gap != 0 {
			t.Fatalf("frames wait 10ms, writes take half the CPUs, the process uses 60%%: gap %v, want 0", gap)
		}
	}
	// The same wait with the process at its CPUs is behind.
	if gap := feed(c, int(Confirm/Sample), 10*ms, 0.5); gap == 0 {
		t.Fatalf("the same at 100%% CPU: gap 0, want it to grow")
	}
}

// TestSpareCPUShrinks: a gap whose process then uses less than half of
// MinCPU (the load went, and holding frames is not what keeps it down)
// shrinks back to 0 even while frames still wait; between half and all of
// MinCPU it stays.
func TestSpareCPUShrinks(t *testing.T) {
	c := newController()
	gap := feed(c, int(Confirm/Sample)+4, 10*ms, 0.5)
	if gap == 0 {
		t.Fatal("behind: gap 0")
	}
	if got := feed(c, 200, 10*ms, 0.5, 0.5); got != gap {
		t.Fatalf("process at half its CPUs (between MinCPU/2 and MinCPU): gap %v, want it to stay at %v", got, gap)
	}
	if got := feed(c, 200, 10*ms, 0.5, 0.3); got != 0 {
		t.Fatalf("process under MinCPU/2 for 5s: gap %v, want 0", got)
	}
}

func TestShortBehindIsAHiccup(t *testing.T) {
	confirm := int(Confirm / Sample)
	c := newController()
	if gap := feed(c, confirm-1, 20*ms, 0.5); gap != 0 {
		t.Fatalf("behind for less than Confirm: gap %v, want 0", gap)
	}
	c.Next(0, 0.5, 1)
	if gap := feed(c, confirm-1, 20*ms, 0.5); gap != 0 {
		t.Fatalf("behind for Confirm, not in a row: gap %v, want 0", gap)
	}
	if gap := feed(c, 1, 20*ms, 0.5); gap != 20*ms {
		t.Fatalf("behind for Confirm in a row: gap %v, want 20ms", gap)
	}
	// Once frames are held, two samples in a row are enough.
	c.Next(0, 0.5, 1)
	c.Next(3*ms, 0.5, 1)
	if gap := feed(c, 1, 3*ms, 0.5); gap != 25*ms {
		t.Fatalf("held, behind twice: gap %v, want the budget", gap)
	}
}

func TestBehindGrows(t *testing.T) {
	for _, s := range []struct {
		name string
		gap  time.Duration // reached before
		mean time.Duration
		want time.Duration
	}{
		{"from 0, a small wait: the first step", 0, 1500 * time.Microsecond, 1500 * time.Microsecond},
		{"from 0, a long wait: the wait", 0, 9 * ms, 9 * ms},
		{"from 0, past the budget: the budget", 0, 80 * ms, 25 * ms},
	} {
		c := newController()
		if got := feed(c, int(Confirm/Sample), s.mean, 0.5); got != s.want {
			t.Errorf("%s: gap %v, want %v", s.name, got, s.want)
		}
	}
	// From a gap: by the excess wait, doubling at most.
	c := newController()
	feed(c, int(Confirm/Sample), 4*ms, 0.5)
	if got := feed(c, 1, 1500*time.Microsecond, 0.5); got != 6*ms {
		t.Errorf("4ms behind by half the target: gap %v, want 6ms", got)
	}
	if got := feed(c, 1, 50*ms, 0.5); got != 12*ms {
		t.Errorf("6ms far behind: gap %v, want 12ms (doubles at most)", got)
	}
	if got := feed(c, 3, 50*ms, 0.5); got != 25*ms {
		t.Errorf("gap %v, want the budget", got)
	}
}

func TestBetweenStays(t *testing.T) {
	c := newController()
	feed(c, int(Confirm/Sample), 8*ms, 0.5)
	for _, s := range []struct {
		name string
		mean time.Duration
		busy float64
	}{
		{"wait between half the target and the target", 700 * time.Microsecond, 0.5},
		{"waits, frames between half the share and the share", 2 * ms, 0.15},
	} {
		if got := feed(c, 200, s.mean, s.busy); got != 8*ms {
			t.Errorf("%s: gap %v, want 8ms", s.name, got)
		}
	}
}

func TestCaughtUpShrinksAfterHold(t *testing.T) {
	c := newController()
	feed(c, int(Confirm/Sample), 8*ms, 0.5)
	holdSamples := int(Hold / Sample)
	if got := feed(c, holdSamples-1, 100*time.Microsecond, 0.5); got != 8*ms {
		t.Fatalf("calm for less than the hold: gap %v, want 8ms", got)
	}
	if got := feed(c, 1, 100*time.Microsecond, 0.5); got != 7*ms {
		t.Fatalf("calm for the hold: gap %v, want 7ms", got)
	}
	// Frames cheap again also counts as calm; the load gone, the gap
	// reaches 0 and stays there.
	if got := feed(c, 40*holdSamples, 2*ms, 0.05); got != 0 {
		t.Fatalf("gap %v after a long calm, want 0", got)
	}
}

// Once the load has gone, shrinks that hold come ever sooner: a gap at the
// budget is back to 0 within 2.5 s.
func TestGoneLoadReturnsToZeroSoon(t *testing.T) {
	c := newController()
	feed(c, int(Confirm/Sample)+5, 80*ms, 0.9)
	if c.Gap() != 25*ms {
		t.Fatalf("gap %v, want the budget", c.Gap())
	}
	for i := range 100 { // 2.5 s
		if c.Next(50*time.Microsecond, 0.02, 1) == 0 {
			t.Logf("gap 0 after %v", time.Duration(i+1)*Sample)
			return
		}
	}
	t.Fatalf("gap %v 2.5 s after the load went, want 0", c.Gap())
}

// A shrink that puts the frontend behind is undone at once, and the next
// shrink comes only after twice the calm: under a steady load the gap does
// not keep swinging below what the writers need.
func TestFailedShrinkIsUndoneAndBacksOff(t *testing.T) {
	c := newController()
	feed(c, int(Confirm/Sample), 16*ms, 0.5)
	if c.Gap() != 16*ms {
		t.Fatalf("gap %v, want 16ms", c.Gap())
	}
	holdSamples := int(Hold / Sample)
	shrinks := 0
	// The writers keep up at 16ms and fall behind below it.
	for range 40 * holdSamples { // 20 s
		if c.Gap() >= 16*ms {
			c.Next(100*time.Microsecond, 0.5, 1)
		} else {
			shrinks++
			c.Next(3*ms, 0.5, 1)
			if c.Gap() < 16*ms {
				t.Fatalf("behind after a shrink: gap %v, want it back at 16ms", c.Gap())
			}
		}
	}
	// Holds of 0.5, 1, 2, 4, 8 and then 16 s: at most 6 failed shrinks
	// in 20 s, where a fixed hold would have made 40.
	if shrinks > 6 {
		t.Errorf("%d failed shrinks in 20 s, want at most 6", shrinks)
	}
	if shrinks < 3 {
		t.Errorf("%d shrinks tried in 20 s: the gap never probes the load", shrinks)
	}
}

func TestBudget(t *testing.T) {
	c := &Controller{Budget: 5 * ms, Target: ms, MinBusy: 0.2}
	if got := feed(c, 50, 100*ms, 1); got != 5*ms {
		t.Fatalf("gap %v, want the budget 5ms", got)
	}
}

// TestProcessCPUCounts: the process's CPU time grows by what a busy loop
// spends.
func TestProcessCPUCounts(t *testing.T) {
	t0, ok := ProcessCPU()
	if !ok {
		t.Skip("no process CPU time on this system")
	}
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		if t1, _ := ProcessCPU(); t1-t0 >= 50*ms {
			return
		}
	}
	t.Fatalf("process CPU did not grow by 50ms in 5s of a busy loop (%d)", x)
}
