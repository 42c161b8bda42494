// Package gctune lowers the garbage collector's target while the process
// is idle, so that a server holding many idle connections keeps close to
// its live heap in memory instead of up to twice it.
//
// Go collects when the heap has grown by GOGC percent (default 100) over
// what was live after the last collection, so a server's resident memory
// swings between its live heap and about twice it, whatever its load. How
// much a collection costs depends on the live heap; how often one runs
// depends on how fast the process allocates. An idle server (pings and
// pongs on idle sockets) allocates a small share of its live heap a
// second, so a low target there costs little CPU: at the idle threshold
// (live/64 a second) and IdlePercent 10, one collection per 6.4 s, and
// 10,000 idle sockets with pings every 8 s allocate about a third of that
// (one collection per 12 s, about 1% of a CPU). On turning idle the free
// heap goes back to the system at once. Once the
// process allocates faster than that it runs at the normal target again,
// so the collector's cost under load is unchanged.
//
// With Config.IdleLimit, while idle it also sets a soft memory limit
// (debug.SetMemoryLimit) just above what the runtime uses: the memory it holds minus the free heap
// pages it keeps for reuse, plus the heap growth IdlePercent allows
// before the next collection. The runtime's scavenger otherwise keeps
// about a tenth over the heap goal in free pages mapped (at 10,000 idle
// sockets about 1 KB a socket); under the limit it returns them as they
// free up. The limit follows the process every Interval, never binds
// tighter than the idle GC percent would, and is lifted (back to the
// limit the process started with, GOMEMLIMIT) as soon as it is busy. It
// costs CPU: the scavenger returns pages that later allocations fault
// back in (at 10,000 idle sockets about a twentieth of a CPU for about
// 0.7 KB a socket), so it is off unless asked for.
package gctune

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config is the tuner's setting.
type Config struct {
	// IdlePercent is the GC percent while idle (0 turns the tuner off).
	IdlePercent int
	// BusyPercent is the GC percent otherwise (GOGC's default: 100).
	BusyPercent int
	// Interval is how often the allocation rate is sampled (1s).
	Interval time.Duration
	// IdleLimit sets the idle memory limit (see the package comment).
	IdleLimit bool
}

// Idle thresholds, as the share of the live heap allocated a second:
// below idleShare the process turns idle; above busyShare it is busy
// again (between the two it stays as it is).
const (
	idleShare = 1.0 / 64
	busyShare = 1.0 / 32
)

// freeEvery is the least time between two returns of the free heap to
// the system when the process turns idle.
const freeEvery = time.Minute

// Decide returns whether the process is idle after a sample in which it
// allocated allocated bytes over el with a live heap of live bytes, given
// whether it was idle before.
func Decide(wasIdle bool, allocated, live uint64, el time.Duration) bool {
	if live == 0 || el <= 0 {
		return wasIdle
	}
	share := float64(allocated) / float64(live) / el.Seconds()
	switch {
	case share < idleShare:
		return true
	case share > busyShare:
		return false
	}
	return wasIdle
}

// minHeadroom is the least room IdleLimit leaves above the memory in
// use, so a small process is not collected at every allocation.
const minHeadroom = 4 << 20

// IdleLimit is the soft memory limit for an idle process that has inUse
// bytes of runtime memory in use (mapped and not released, less the free
// heap pages kept for reuse) and a live heap of live bytes, at GC percent
// percent: the memory in use plus the growth the GC percent allows and a
// twentieth (at least minHeadroom), and never above ceiling (the limit
// the process was started with).
func IdleLimit(inUse, live uint64, percent int, ceiling int64) int64 {
	// The runtime aims a few percent below the limit (its own headroom):
	// a twentieth of the memory in use more keeps collections about as
	// far apart as the GC percent alone would.
	room := max(live*uint64(percent)/100+inUse/20, minHeadroom)
	l := inUse + room
	if l > math.MaxInt64 || int64(l) > ceiling {
		return ceiling
	}
	return int64(l)
}

// Run tunes the GC percent and the idle memory limit until ctx ends,
// then restores BusyPercent and the memory limit it started with.
func Run(ctx context.Context, cfg Config) {
	if cfg.IdlePercent <= 0 {
		return
	}
	if cfg.BusyPercent <= 0 {
		cfg.BusyPercent = 100
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	var v [5]uint64
	read := func() (alloc, live uint64) {
		metrics.Read(samples)
		for i, s := range samples {
			v[i] = 0
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = s.Value.Uint64()
			}
		}
		return v[0], v[1]
	}
	// inUse is the runtime memory the last read found in use: what the
	// memory limit counts (mapped, not released) less the free heap pages.
	inUse := func() uint64 {
		held := v[2] - min(v[2], v[3])
		return held - min(held, v[4])
	}
	ceiling := debug.SetMemoryLimit(-1)
	if cfg.IdleLimit {
		defer debug.SetMemoryLimit(ceiling)
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	defer debug.SetGCPercent(cfg.BusyPercent)
	idle := false
	var lastFree time.Time
	lastAlloc, _ := read()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			alloc, live := read()
			next := Decide(idle, alloc-lastAlloc, live, now.Sub(lastAt))
			if cfg.IdleLimit && next {
				debug.SetMemoryLimit(IdleLimit(inUse(), live, cfg.IdlePercent, ceiling))
			} else if cfg.IdleLimit && idle {
				debug.SetMemoryLimit(ceiling)
			}
			if next != idle {
				idle = next
				if idle {
					debug.SetGCPercent(cfg.IdlePercent)
					// The busy heap's free pages would go back to the
					// system only slowly: return them now, at most
					// once per freeEvery (a load that comes and goes
					// does not pay a full collection each time).
					if lastFree.IsZero() || now.Sub(lastFree) >= freeEvery {
						debug.FreeOSMemory()
						lastFree = now
					}
				} else {
					debug.SetGCPercent(cfg.BusyPercent)
				}
			}
			lastAlloc, lastAt = alloc, now
		}
	}
}
