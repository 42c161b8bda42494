package bench

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/sccgo/sccgo/client"
)

// dropStats counts DropEvery's cuts and the recoveries that follow.
type dropStats struct {
	drops, recovered, failed atomic.Int64
	next                     int // rotating start over the subscribers (dropper goroutine only)
}

func (d *dropStats) onRecovery(r client.Recovery) {
	if !r.Asked {
		return
	}
	if r.Recovered {
		d.recovered.Add(1)
	} else {
		d.failed.Add(1)
	}
}

// report moves the counts into rep; the cuts are not disconnects.
func (d *dropStats) report(rep *roundReport) {
	rep.Drops = d.drops.Swap(0)
	rep.Recovered = d.recovered.Swap(0)
	rep.RecoveryFailed = d.failed.Swap(0)
	rep.Disconnects = max(0, rep.Disconnects-rep.Drops)
}

// startDrops cuts DropFraction of this worker's subscriber connections
// every DropEvery until the returned func is called.
func (w *worker) startDrops() (stop func()) {
	if w.cfg.DropEvery <= 0 || len(w.subs) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(w.cfg.DropEvery)
		defer t.Stop()
		n := max(1, int(math.Ceil(float64(len(w.subs))*w.cfg.DropFraction)))
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for range n {
				sc := w.subs[w.drops.next%len(w.subs)]
				w.drops.next++
				if sc != nil && sc.c.Drop() {
					w.drops.drops.Add(1)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
