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
}

// NewLatency starts the first phase now.
func NewLatency() *Latency { return &Latency{h: bench.NewHist(), since: time.Now()} }

// Observe records one delivery; it fits clustertest.TrafficOptions.OnDeliver.
func (l *Latency) Observe(p bench.Payload, recv time.Time) {
	d := recv.Sub(p.SentAt)
	l.mu.Lock()
	if !p.SentAt.Before(l.since) {
		l.h.Record(d)
	}
	l.mu.Unlock()
}

// Cut ends the current phase, returns its summary and starts a new one.
func (l *Latency) Cut() bench.LatencySummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.h.Summary()
	l.h.Reset()
	l.since = time.Now()
	return s
}
