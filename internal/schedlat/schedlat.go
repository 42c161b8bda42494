// Package schedlat reads how long this process's goroutines wait to run:
// the Go scheduler's latency histogram (runtime/metrics
// /sched/latencies:seconds), as a quantile over the interval between two
// samples. A server uses it to tell when the work it takes on delays the
// goroutines serving what it already has.
package schedlat

import (
	"math"
	"runtime/metrics"
	"time"
)

const name = "/sched/latencies:seconds"

// Sampler returns quantiles of the scheduling latency since its previous
// Sample. It is not safe for concurrent use.
type Sampler struct {
	s    []metrics.Sample
	prev []uint64
}

// New returns a Sampler whose first Sample covers the time since New.
func New() *Sampler {
	s := &Sampler{s: []metrics.Sample{{Name: name}}}
	metrics.Read(s.s)
	if h := s.hist(); h != nil {
		s.prev = append([]uint64(nil), h.Counts...)
	}
	return s
}

func (s *Sampler) hist() *metrics.Float64Histogram {
	if s.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	return s.s[0].Value.Float64Histogram()
}

// Sample returns the q quantile (0 < q < 1) of the scheduling latencies
// recorded since the previous call, and how many were recorded (the
// runtime records a sample of goroutine transitions, not every one). With
// none it returns 0, 0. A quantile in a bucket is its upper bound (its
// lower bound for the last, unbounded bucket).
func (s *Sampler) Sample(q float64) (time.Duration, uint64) {
	metrics.Read(s.s)
	h := s.hist()
	if h == nil {
		return 0, 0
	}
	if len(s.prev) != len(h.Counts) {
		s.prev = make([]uint64, len(h.Counts))
	}
	var n uint64
	for i, c := range h.Counts {
		n += c - s.prev[i]
	}
	if n == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	var at time.Duration
	for i, c := range h.Counts {
		seen += c - s.prev[i]
		if seen >= rank {
			b := h.Buckets[i+1]
			if math.IsInf(b, 1) {
				b = h.Buckets[i]
			}
			at = time.Duration(b * float64(time.Second))
			break
		}
	}
	copy(s.prev, h.Counts)
	return at, n
}
