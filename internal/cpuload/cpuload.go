// Package cpuload measures how busy the CPUs this process may run on are,
// from the kernel's per-CPU counters. A server uses it to trade latency for
// throughput only when the machine is short of CPU.
package cpuload

import (
	"errors"
	"sync"
)

// ErrUnsupported is returned by New where per-CPU counters are not
// available.
var ErrUnsupported = errors.New("cpuload: per-CPU counters are not available on this system")

// Sampler reports the busy fraction of the process's CPUs between calls.
type Sampler struct {
	mu          sync.Mutex
	read        func() (busy, total uint64, err error)
	busy, total uint64
}

// Sample returns the fraction (0 to 1) of time the process's CPUs were
// busy, in any process, since the previous call (or since New).
func (s *Sampler) Sample() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy, total, err := s.read()
	if err != nil {
		return 0, err
	}
	if total <= s.total || busy < s.busy {
		s.busy, s.total = busy, total
		return 0, nil
	}
	db, dt := busy-s.busy, total-s.total
	s.busy, s.total = busy, total
	return min(float64(db)/float64(dt), 1), nil
}
