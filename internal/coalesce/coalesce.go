// Package coalesce decides how long a frontend's writers hold frames to
// batch them (the write-coalescing gap) from what its clients experience.
//
// The frontend samples its writers every Sample: how long frames waited
// for their writer on average (Mean; deliberate holds excluded), the
// share of its CPUs spent writing them (Busy), and the share of its CPUs
// the whole process used (CPU). It is behind when frames wait longer than
// Target, writing them costs at least MinBusy, and the process uses at
// least MinCPU of its CPUs: the frames are what it cannot afford, so
// fewer, larger ones help. A wait with cheap frames is not shortened by
// holding frames, only lengthened; nor is a wait while the process has
// CPU to spare (the writers of a fan-out burst queued behind each other,
// a busy neighbour on a shared CPU): it can afford the frames, and holding
// them only adds the gap to every message.
//
// The Controller is the control law, with no clock and no I/O:
//
//   - While the frontend keeps up the gap is 0 and no frame is held,
//     whatever the message rate.
//   - Behind for Confirm in a row from a gap of 0 (shorter is a hiccup: a
//     GC, a descheduled thread), or in two samples in a row once frames
//     are held, the gap grows: from 0 straight to the wait the frames
//     already see (at least Step), since holding a frame for as long as it
//     waits anyway costs it little; from a gap, by the excess wait,
//     doubling at most. Never past Budget.
//   - Once the wait is well below Target (or the frames are cheap again,
//     or the process uses under half of MinCPU) for Hold, the gap shrinks by an eighth. A shrink that holds (the
//     frontend stays ahead for the next calm period) halves the calm
//     wanted before the next, down to MinHold, so a gap whose load has
//     gone returns to 0 within about two seconds. A shrink that puts the
//     frontend behind again was a mistake: the gap goes straight back to
//     what it was, and the calm wanted before the next shrink doubles (at
//     least Hold, up to MaxHold). So under a steady load the gap settles
//     where the writers keep up, probing below it ever more rarely,
//     instead of swinging between backlog and batch.
package coalesce

import "time"

// Defaults of the control law's timing.
const (
	// Sample is how often the frontend samples its writers.
	Sample = 25 * time.Millisecond
	// Confirm is how long the frontend must be behind, sample after
	// sample, before a gap of 0 grows.
	Confirm = 100 * time.Millisecond
	// Step is the smallest gap: below it a gap batches little, as few
	// sockets receive more than once a millisecond, and a shrinking gap
	// below half of it drops to 0.
	Step = time.Millisecond
	// Hold is the calm wanted before the first shrink after the frontend
	// was behind.
	Hold = 500 * time.Millisecond
	// MinHold is the least calm wanted between two shrinks.
	MinHold = 25 * time.Millisecond
	// MaxHold bounds the calm wanted after shrinks that failed.
	MaxHold = 16 * time.Second
)

// Controller holds the gap between samples. The zero value is not usable:
// set Budget, Target and MinBusy (Sample, Step, Hold and MaxHold default
// to the package constants when 0).
type Controller struct {
	// Budget is the largest gap.
	Budget time.Duration
	// Target is the mean wait of a frame for its writer above which the
	// frontend may be behind.
	Target time.Duration
	// MinBusy is the share (0-1) of the CPUs spent writing frames from
	// which a wait above Target counts as behind.
	MinBusy float64
	// MinCPU is the share (0-1) of its CPUs the process must use for a
	// wait above Target to count as behind (0: any).
	MinCPU float64
	// Sample, Confirm, Step, Hold, MinHold, MaxHold: see the package
	// constants.
	Sample, Confirm, Step, Hold, MinHold, MaxHold time.Duration

	gap       time.Duration
	behind    bool          // the previous sample was behind
	behindFor time.Duration // behind, sample after sample, this long
	calm      time.Duration // time since the last behind sample or shrink
	hold      time.Duration // calm wanted before the next shrink
	shrunk    bool          // the last change was a shrink, within hold
	preShrink time.Duration // the gap before that shrink
}

// Gap is the gap in force.
func (c *Controller) Gap() time.Duration { return c.gap }

func (c *Controller) init() {
	if c.Sample <= 0 {
		c.Sample = Sample
	}
	if c.Step <= 0 {
		c.Step = Step
	}
	if c.Confirm <= 0 {
		c.Confirm = Confirm
	}
	if c.Hold <= 0 {
		c.Hold = Hold
	}
	if c.MinHold <= 0 {
		c.MinHold = min(MinHold, c.Hold)
	}
	if c.MaxHold < c.Hold {
		c.MaxHold = max(MaxHold, c.Hold)
	}
	if c.hold == 0 {
		c.hold = c.Hold
	}
}

// Behind reports whether a sample in which frames waited mean for their
// writers, writing them took the busy share of the CPUs and the process
// used the cpu share of them is behind.
func (c *Controller) Behind(mean time.Duration, busy, cpu float64) bool {
	return mean > c.Target && busy >= c.MinBusy && cpu >= c.MinCPU
}

// Next takes one sample and returns the gap for the next one.
func (c *Controller) Next(mean time.Duration, busy, cpu float64) time.Duration {
	c.init()
	behind := c.Behind(mean, busy, cpu)
	wasBehind := c.behind
	c.behind = behind
	if behind {
		c.behindFor += c.Sample
	} else {
		c.behindFor = 0
	}
	switch {
	case behind:
		c.calm = 0
		if c.shrunk {
			// The last shrink put the frontend behind: undo it, and wait
			// longer before the next.
			c.shrunk = false
			c.gap = max(c.gap, c.preShrink)
			c.hold = min(max(2*c.hold, c.Hold), c.MaxHold)
			return c.gap
		}
		c.hold = max(c.hold, c.Hold)
		if !wasBehind || c.gap == 0 && c.behindFor < c.Confirm {
			return c.gap
		}
		if c.gap == 0 {
			c.gap = max(c.Step, mean)
		} else {
			excess := float64(mean-c.Target) / float64(c.Target)
			c.gap += time.Duration(float64(c.gap) * min(1, excess))
		}
		c.gap = min(c.gap, c.Budget)
	case mean < c.Target/2 || busy < c.MinBusy/2 || cpu < c.MinCPU/2:
		c.calm += c.Sample
		if c.calm < c.hold {
			return c.gap
		}
		c.calm = 0
		if c.shrunk {
			// The previous shrink held for a whole hold: the load
			// allows shrinking sooner again.
			c.hold = max(c.hold/2, c.MinHold)
		}
		if c.gap == 0 {
			c.shrunk = false
			return 0
		}
		c.shrunk, c.preShrink = true, c.gap
		c.gap -= c.gap / 8
		if c.gap < c.Step/2 {
			c.gap = 0
		}
	default:
		// Neither behind nor clearly ahead: stay, and keep counting the
		// time since the last change towards a failed shrink.
		c.calm += c.Sample
		if c.shrunk && c.calm >= c.hold {
			c.shrunk = false
		}
	}
	return c.gap
}
