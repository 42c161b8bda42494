package netpoll

import (
	"errors"
	"sync"
)

// ErrUnsupported is returned by New where the platform has no
// implementation.
var ErrUnsupported = errors.New("netpoll: not supported on this platform")

// ErrClosed is returned by Arm once the Poller is closed.
var ErrClosed = errors.New("netpoll: poller is closed")

// Waker is what a Poller calls when an armed descriptor becomes readable
// or is hung up. It runs on the Poller's goroutine and must not block:
// typically it starts a reader goroutine.
type Waker interface {
	Wake()
}

// Handle is a connection's place in a Poller. The zero Handle is not
// registered; Arm registers it, Release gives its place back. A Handle is
// used by one goroutine at a time (the connection's reader).
type Handle struct {
	slot  uint32 // index+1 into the Poller's slots; 0: none
	gen   uint32
	added bool // the descriptor is in the epoll set
}

// slot is one registered Waker; gen tells a stale event (for a handle
// released meanwhile, or armed again by a later owner of the slot) from a
// live one.
type slot struct {
	gen uint32
	w   Waker
}

// table maps event tokens to Wakers. Freed slots are reused, so it holds
// as many entries as connections were ever parked at once.
type table struct {
	mu    sync.Mutex
	slots []slot
	free  []uint32
}

func (t *table) add(w Waker) (idx, gen uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, slot{})
		idx = uint32(len(t.slots) - 1)
	}
	s := &t.slots[idx]
	s.gen++
	s.w = w
	return idx, s.gen
}

func (t *table) remove(idx, gen uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(idx) >= len(t.slots) || t.slots[idx].gen != gen {
		return
	}
	t.slots[idx].w = nil
	t.free = append(t.free, idx)
}

// lookup appends the live Wakers of the given tokens to dst.
func (t *table) lookup(dst []Waker, tokens []uint64) []Waker {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tok := range tokens {
		idx, gen := uint32(tok), uint32(tok>>32)
		if int(idx) < len(t.slots) && t.slots[idx].gen == gen && t.slots[idx].w != nil {
			dst = append(dst, t.slots[idx].w)
		}
	}
	return dst
}

// Len returns how many handles are registered.
func (p *Poller) Len() int {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	return len(p.t.slots) - len(p.t.free)
}
