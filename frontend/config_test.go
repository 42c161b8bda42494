package frontend

import (
	"testing"
	"time"
)

func TestNextCoalesceFollowsWait(t *testing.T) {
	const budget, target, minBusy = 25 * time.Millisecond, time.Millisecond, 0.2
	ms := time.Millisecond
	for _, c := range []struct {
		name string
		gap  time.Duration
		mean time.Duration // wait per frame
		busy float64       // share of the CPUs writing frames
		want time.Duration
	}{
		{"keeping up at any rate", 0, 50 * time.Microsecond, 0.9, 0},
		{"idle", 0, 0, 0, 0},
		{"at the target", 0, target, 0.9, 0},
		{"waits, but frames are cheap", 0, 5 * ms, 0.1, 0},
		{"behind: first step", 0, 3 * ms, 0.5, coalesceStep},
		{"behind by half the target", 4 * ms, 1500 * time.Microsecond, 0.5, 6 * ms},
		{"far behind: doubles at most", 4 * ms, 20 * ms, 0.5, 8 * ms},
		{"capped at the budget", 20 * ms, 20 * ms, 0.5, budget},
		{"between half and the target: stays", 8 * ms, 700 * time.Microsecond, 0.5, 8 * ms},
		{"waits, frames between half and the share: stays", 8 * ms, 2 * ms, 0.15, 8 * ms},
		{"caught up: shrinks", 8 * ms, 100 * time.Microsecond, 0.5, 7 * ms},
		{"frames cheap again: shrinks", 8 * ms, 2 * ms, 0.05, 7 * ms},
		{"small gap drops to 0", 500 * time.Microsecond, 0, 0, 0},
	} {
		got, behind := nextCoalesce(c.gap, true, budget, target, minBusy, c.mean, c.busy)
		if got != c.want {
			t.Errorf("%s: gap %v, want %v", c.name, got, c.want)
		}
		if behind != (c.mean > target && c.busy >= minBusy) {
			t.Errorf("%s: behind %v", c.name, behind)
		}
	}
	// Behind in one sample alone (a hiccup) changes nothing.
	for _, gap := range []time.Duration{0, 4 * ms} {
		if got, behind := nextCoalesce(gap, false, budget, target, minBusy, 3*ms, 0.5); got != gap || !behind {
			t.Errorf("one sample behind from %v: gap %v, behind %v", gap, got, behind)
		}
	}
}

func TestValidateCoalescing(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.WriteCoalesce = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceWait = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceBusy = -0.1 },
		func(c *Config) { c.WriteCoalesceBusy = 1.5 },
		func(c *Config) { c.WriterLinger = -time.Millisecond },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
