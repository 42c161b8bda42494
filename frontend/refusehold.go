package frontend

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// A client refused right after the accept for its address's limit
// closes (sources.go) learns it at once, and a client that redials at
// once learns it again a few milliseconds later: a few hundred such
// sockets made 1,000–2,300 attempts a second, each an accept, a refusal
// and a close on the CPU the frontend's sockets need. So a refused
// connection is first held, unanswered and unread, for RefusalHold (the
// 503's Retry-After), and only then answered and closed: a client that
// waits for the answer before it dials again makes one attempt per hold,
// and a client that gives up sooner spends its own time. Held connections
// cost a descriptor and a timer each, no goroutine, and are bounded by
// RefusalHoldMax; beyond it a refusal is answered at once, as before.
// Each hold is drawn between RefusalHold and half as long again: clients
// refused together would otherwise be answered together and dial again
// together, a wave of accepts every hold that the sockets already open
// feel (chaos attack 8).

// refusalHolds is the set of held refused connections.
type refusalHolds struct {
	mu     sync.Mutex
	held   map[net.Conn]*time.Timer
	closed bool
	wg     sync.WaitGroup // one per held connection until it is answered
}

// holdRefusal holds nc for the server's RefusalHold and then answers it;
// false when holding is off or full (the caller answers at once).
func (s *Server) holdRefusal(nc net.Conn) bool {
	h := &s.refusals
	if s.cfg.RefusalHold <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.held) >= s.cfg.RefusalHoldMax {
		return false
	}
	if h.held == nil {
		h.held = make(map[net.Conn]*time.Timer)
	}
	h.wg.Add(1)
	hold := s.cfg.RefusalHold + rand.N(s.cfg.RefusalHold/2+1)
	h.held[nc] = time.AfterFunc(hold, func() {
		defer h.wg.Done()
		h.mu.Lock()
		_, ok := h.held[nc]
		delete(h.held, nc)
		h.mu.Unlock()
		if ok {
			drainRequest(nc)
			refuseNow(nc)
		}
	})
	s.m.refusalHolds.Inc()
	return true
}

// holdHTTPRefusal waits, before a refusal answered over HTTP, as long as
// holdRefusal would (within RefusalHoldMax), or until ctx ends or the
// server starts draining.
func (s *Server) holdHTTPRefusal(ctx context.Context) {
	if s.cfg.RefusalHold <= 0 || ctx.Err() != nil {
		return
	}
	if s.shortWaiters.Add(1) > int64(s.cfg.RefusalHoldMax) {
		s.shortWaiters.Add(-1)
		return
	}
	defer s.shortWaiters.Add(-1)
	s.m.refusalHolds.Inc()
	t := time.NewTimer(s.cfg.RefusalHold + rand.N(s.cfg.RefusalHold/2+1))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.drainStarted:
	}
}

// heldRefusals returns how many refused connections are held now.
func (s *Server) heldRefusals() int {
	s.refusals.mu.Lock()
	defer s.refusals.mu.Unlock()
	return len(s.refusals.held)
}

// closeRefusals closes every held connection unanswered and waits for
// the answers already under way.
func (s *Server) closeRefusals() {
	h := &s.refusals
	h.mu.Lock()
	h.closed = true
	for nc, t := range h.held {
		if t.Stop() {
			h.wg.Done()
		}
		_ = nc.Close()
		delete(h.held, nc)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// drainRequest reads what the client sent during the hold (its upgrade
// request, typically), so that closing the connection sends a FIN after
// the 503 rather than a reset, which some clients and proxies report
// instead of the answer. It reads for at most 20 ms and 64 KiB.
func drainRequest(nc net.Conn) {
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var buf [4096]byte
	for range 16 {
		if n, err := nc.Read(buf[:]); err != nil || n < len(buf) {
			return
		}
	}
}

// refuseNow answers a refused connection with the bare 503 and closes it.
func refuseNow(nc net.Conn) {
	_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = nc.Write([]byte(sourceRefusal))
	_ = nc.Close()
}
