// Package dedupe remembers recent idempotency keys: the owning broker (and
// a standalone frontend's in-process broker) asks it whether a publish with
// a key was already seen, so a backend that retries a server API publish
// after a timeout, possibly through another frontend, does not deliver twice.
//
// The set is bounded both in entries and in time: a key is remembered for
// at most TTL and, when more than Max keys arrived within TTL, the oldest
// are forgotten first. A forgotten key's retry is delivered again.
package dedupe

import (
	"sync"
	"time"
)

// Set is a bounded, time-limited set of keys. It is safe for concurrent use.
type Set struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	seen  map[string]time.Time // key → when first seen
	order []entry              // FIFO ring of keys by arrival
	head  int                  // index of the oldest entry in order
	n     int                  // entries in order
}

type entry struct {
	key string
	at  time.Time
}

// New returns a Set that remembers up to max keys for ttl each. max < 1
// or ttl <= 0 gives a Set that remembers nothing.
func New(max int, ttl time.Duration) *Set {
	if max < 1 || ttl <= 0 {
		return &Set{}
	}
	return &Set{ttl: ttl, max: max, now: time.Now, seen: make(map[string]time.Time), order: make([]entry, max)}
}

// FirstSeen records key and reports whether it was not already in the set
// (true: deliver; false: a duplicate within the window).
func (s *Set) FirstSeen(key string) bool {
	if s.max == 0 {
		return true
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if _, ok := s.seen[key]; ok {
		return false
	}
	if s.n == s.max {
		s.popLocked()
	}
	s.order[(s.head+s.n)%s.max] = entry{key: key, at: now}
	s.n++
	s.seen[key] = now
	return true
}

// Len returns how many keys are remembered.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *Set) expireLocked(now time.Time) {
	for s.n > 0 && now.Sub(s.order[s.head].at) >= s.ttl {
		s.popLocked()
	}
}

func (s *Set) popLocked() {
	e := s.order[s.head]
	if at, ok := s.seen[e.key]; ok && at.Equal(e.at) {
		delete(s.seen, e.key)
	}
	s.order[s.head] = entry{}
	s.head = (s.head + 1) % s.max
	s.n--
}
