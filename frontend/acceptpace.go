package frontend

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/sccgo/sccgo/internal/schedlat"
)

// Accept pacing by scheduling latency (AcceptLatencyTarget). A churn of
// connections (an attack, or clients that keep reconnecting) costs a
// frontend an accept, an upgrade, a handshake and a teardown each, and
// the clients that connect together arrive in bursts. With one CPU,
// each burst queues hundreds of goroutines ahead of those serving the
// sockets already open, whose messages then wait tens of milliseconds
// while the process as a whole is far from busy (chaos attack 8). The
// controller watches how long goroutines wait to run and, while that is
// over the target, paces accepts: the connections beyond the pace wait
// in the kernel's listen queue, where they cost nothing, as under
// MaxHandshakesPerSecond. The pace halves in each interval over the
// target and grows by a tenth in each under half of it, and is lifted
// once it is far above what clients ask for. A churn in bursts leaves
// most intervals quiet; growing by a tenth (less than 2^(1/3)) means the
// pace still falls when one interval in four is over the target.

// acceptInterval is how often the controller samples and adjusts.
const acceptInterval = 250 * time.Millisecond

// minLatencySamples is the fewest scheduling latencies an interval needs
// to count as loud (the runtime records one goroutine transition in
// several).
const minLatencySamples = 8

// acceptLaw returns the accept pace for the next interval (0: none)
// from the current one (0: none), the accepts per second in the last
// interval, and that interval's scheduling latency p99 against target.
func acceptLaw(pace, accepted float64, p99, target time.Duration, floor float64) float64 {
	switch {
	case p99 > target:
		base := accepted
		if pace > 0 {
			base = min(base, pace)
		}
		return max(floor, base/2)
	case pace > 0 && p99 <= target/2:
		next := pace * 1.1
		if next > 8*max(accepted, floor) {
			return 0 // far above what is asked for: lift it
		}
		return next
	}
	return pace
}

// acceptControl runs the controller until the server stops.
func (s *Server) acceptControl() {
	target := s.cfg.AcceptLatencyTarget
	floor := s.cfg.AcceptRateFloor
	static := s.cfg.MaxHandshakesPerSecond
	lat := schedlat.New()
	t := time.NewTicker(acceptInterval)
	defer t.Stop()
	var pace float64
	last := s.accepted.Load()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		p99, n := lat.Sample(0.99)
		now := s.accepted.Load()
		accepted := float64(now-last) / acceptInterval.Seconds()
		last = now
		if n < minLatencySamples {
			// So few goroutines ran that the process is close to idle:
			// counts as under the target (holding would keep an idle
			// process's pace low for good).
			p99 = 0
		}
		next := acceptLaw(pace, accepted, p99, target, floor)
		if next == pace {
			continue
		}
		pace = next
		s.acceptPace.Store(math.Float64bits(pace))
		limit := rate.Inf
		if pace > 0 {
			limit = rate.Limit(pace)
		}
		if static > 0 && (limit == rate.Inf || float64(limit) > static) {
			limit = rate.Limit(static)
		}
		s.acceptLim.SetLimit(limit)
		if pace > 0 {
			s.acceptLim.SetBurst(max(1, int(pace/10)))
		} else {
			s.acceptLim.SetBurst(s.cfg.HandshakeBurst)
		}
	}
}

// acceptPaceNow is the controller's current pace, 0 for none.
func (s *Server) acceptPaceNow() float64 { return math.Float64frombits(s.acceptPace.Load()) }
