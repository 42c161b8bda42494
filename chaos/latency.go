package chaos

import (
	"sync"
	"time"

	"github.com/sccgo/sccgo/bench"
)

// Latency records end-to-end delivery latency (receive time minus the
// payload's send time) in phases: Cut returns the phase's summary and
// starts the next one. A delivery counts in the phase its message was sent
// in, so a phase boundary does not smear one phase's backlog into the next.
type Latency struct {
	mu    sync.Mutex
	h     *bench.Hist
	since time.Time
	// secs splits the phase by the second its messages were sent in.
	secs []*bench.Hist
	last []float64
}

// NewLatency starts the first phase now.
func NewLatency() *Latency { return &Latency{h: bench.NewHist(), since: time.Now()} }

// Observe records one delivery; it fits clustertest.TrafficOptions.OnDeliver.
func (l *Latency) Observe(p bench.Payload, recv time.Time) {
	d := recv.Sub(p.SentAt)
	l.mu.Lock()
	if !p.SentAt.Before(l.since) {
		l.h.Record(d)
		if i := int(p.SentAt.Sub(l.since) / time.Second); i < 600 {
			for len(l.secs) <= i {
				l.secs = append(l.secs, bench.NewHist())
			}
			l.secs[i].Record(d)
		}
	}
	l.mu.Unlock()
}

// Cut ends the current phase, returns its summary and starts a new one.
func (l *Latency) Cut() bench.LatencySummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.h.Summary()
	l.h.Reset()
	l.last = l.last[:0]
	for _, h := range l.secs {
		l.last = append(l.last, h.Summary().P99)
	}
	l.secs = l.secs[:0]
	l.since = time.Now()
	return s
}

// PerSecond returns the p99 (ms) of each second of the phase that the
// last Cut ended, by the second its messages were sent in.
func (l *Latency) PerSecond() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]float64(nil), l.last...)
}
