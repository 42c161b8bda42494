package coalesce

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func newController() *Controller {
	return &Controller{Budget: 25 * ms, Target: ms, MinBusy: 0.2}
}

// feed gives c n samples of the same wait and busy share and returns the
// gap after the last.
func feed(c *Controller, n int, mean time.Duration, busy float64) time.Duration {
	for range n {
		c.Next(mean, busy)
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

func TestShortBehindIsAHiccup(t *testing.T) {
	confirm := int(Confirm / Sample)
	c := newController()
	if gap := feed(c, confirm-1, 20*ms, 0.5); gap != 0 {
		t.Fatalf("behind for less than Confirm: gap %v, want 0", gap)
	}
	c.Next(0, 0.5)
	if gap := feed(c, confirm-1, 20*ms, 0.5); gap != 0 {
		t.Fatalf("behind for Confirm, not in a row: gap %v, want 0", gap)
	}
	if gap := feed(c, 1, 20*ms, 0.5); gap != 20*ms {
		t.Fatalf("behind for Confirm in a row: gap %v, want 20ms", gap)
	}
	// Once frames are held, two samples in a row are enough.
	c.Next(0, 0.5)
	c.Next(3*ms, 0.5)
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
	// From a gap: by the excess wait, doubling at most, each growth
	// judged two samples after it (the wait must have fallen by a fifth,
	// or be a backlog longer than the gap) before the next.
	c := newController()
	feed(c, int(Confirm/Sample), 4*ms, 0.5)
	if got := feed(c, 1, 3*ms, 0.5); got != 4*ms {
		t.Errorf("one sample after a growth: gap %v, want 4ms (not judged yet)", got)
	}
	if got := feed(c, 1, 3*ms, 0.5); got != 8*ms {
		t.Errorf("4ms, the wait fell from 4 to 3ms: gap %v, want 8ms (doubles at most)", got)
	}
	if got := feed(c, 2, 1500*time.Microsecond, 0.5); got != 12*ms {
		t.Errorf("8ms, the wait fell to half over the target: gap %v, want 12ms", got)
	}
	// A backlog longer than the gap: holding more is what shortens it.
	if got := feed(c, 2, 50*ms, 0.5); got != 24*ms {
		t.Errorf("12ms far behind: gap %v, want 24ms", got)
	}
	if got := feed(c, 2, 50*ms, 0.5); got != 25*ms {
		t.Errorf("gap %v, want the budget", got)
	}
}

// plant is a frontend as the controller sees it: the wait its frames see
// and the share of the CPUs spent writing them, under a gap.
type plant func(gap time.Duration) (time.Duration, float64)

// drive runs c against p for n samples and returns the gaps it chose.
func drive(c *Controller, p plant, n int) []time.Duration {
	gaps := make([]time.Duration, 0, n)
	for range n {
		gaps = append(gaps, c.Next(p(c.Gap())))
	}
	return gaps
}

// mostly returns the gap c held for most of gaps, and the largest.
func mostly(gaps []time.Duration) (typical, largest time.Duration) {
	count := map[time.Duration]int{}
	for _, g := range gaps {
		count[g]++
		largest = max(largest, g)
	}
	for g, n := range count {
		if n > count[typical] {
			typical = g
		}
	}
	return typical, largest
}

// A CPU near saturation: frames wait 2ms for their writers whatever the
// gap, because other work keeps the CPU busy. Holding frames would only
// add the gap to every delivery: the gap goes back to 0 and stays there,
// and the wait is remembered as the floor. Under the law without the
// judgement of each growth it climbed to the budget.
func TestHoldingThatDoesNotHelpIsUndone(t *testing.T) {
	c := newController()
	cpuBound := func(time.Duration) (time.Duration, float64) { return 2 * ms, 0.4 }
	gaps := drive(c, cpuBound, 400) // 10 s
	typical, largest := mostly(gaps)
	if typical != 0 || c.Gap() != 0 {
		t.Fatalf("gap mostly %v, %v at the end, want 0", typical, c.Gap())
	}
	if largest > 2*ms {
		t.Fatalf("gap reached %v, want at most the first step (the wait, 2ms)", largest)
	}
	if c.Floor() != 2*ms {
		t.Fatalf("floor %v, want 2ms", c.Floor())
	}
	// A heavier load, whose frames do pile up unless held: the floor is
	// forgotten and the gap grows.
	backlog := func(g time.Duration) (time.Duration, float64) {
		if g < 8*ms {
			return 30 * ms, 0.6
		}
		return 2 * ms, 0.5
	}
	if _, largest := mostly(drive(c, backlog, 40)); largest < 8*ms {
		t.Fatalf("gap at most %v under a backlog, want it to reach 8ms", largest)
	}
	// The load gone, the floor goes too.
	drive(c, func(time.Duration) (time.Duration, float64) { return 100 * time.Microsecond, 0.05 }, 400)
	if c.Gap() != 0 || c.Floor() != 0 {
		t.Fatalf("gap %v, floor %v after the load went, want 0 and 0", c.Gap(), c.Floor())
	}
}

// Frames that pile up unless held at least 8ms, on a CPU whose writers
// wait 2ms at best: the gap settles at the smallest that holds the wait at
// that floor, not at the budget where the growth stopped paying.
func TestGapSettlesWhereHoldingStopsPaying(t *testing.T) {
	c := newController()
	need := func(g time.Duration) (time.Duration, float64) {
		if g < 8*ms {
			return 30 * ms, 0.6
		}
		return 2 * ms, 0.5
	}
	gaps := drive(c, need, 1200) // 30 s
	typical, _ := mostly(gaps[400:])
	if typical < 8*ms || typical > 10*ms {
		t.Fatalf("gap mostly %v over the last 20 s, want 8-10ms", typical)
	}
	below := 0
	for _, g := range gaps[400:] {
		if g < 8*ms {
			below++
		}
	}
	if below > 20 {
		t.Fatalf("%d samples of the last 20 s below the 8ms the frames need", below)
	}
}

// The wait falls as the gap grows, down to a floor at 10ms: growth stops
// paying there, and the gap is not left at the budget.
func TestDiminishingReturnsStopGrowth(t *testing.T) {
	c := newController()
	diminishing := func(g time.Duration) (time.Duration, float64) {
		w := 2*ms + time.Duration(float64(20*ms)*max(0, 1-float64(g)/float64(10*ms)))
		return w, 0.5
	}
	gaps := drive(c, diminishing, 1200)
	typical, _ := mostly(gaps[400:])
	if typical < 9*ms || typical > 13*ms {
		t.Fatalf("gap mostly %v over the last 20 s, want about 10ms", typical)
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
		if c.Next(50*time.Microsecond, 0.02) == 0 {
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
			c.Next(100*time.Microsecond, 0.5)
		} else {
			shrinks++
			c.Next(3*ms, 0.5)
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
