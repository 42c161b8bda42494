package frontend

import "time"

// When thousands of clients vanish at once (a load balancer or a client
// fleet restarting), closing their sockets is most of the teardown's CPU:
// close(2) runs the TCP close and the epoll removal, about 40µs each. Done
// by every socket's own goroutine, ten thousand of them crowd the run
// queue at once and the sockets that still have traffic wait behind them
// for a quarter of a second. The closer does those closes on one
// goroutine, paced to CloserShare of one CPU: it works in slices of
// closerSlice and rests in between, so a storm's closes are spread over
// a second or two and neither the frontend's live sockets nor the
// processes it shares a CPU with wait behind them. Only connections whose
// peer is already gone go this way: nothing waits for their close, and
// their sockets are reset (SO_LINGER 0), which frees them at once.

// defaultCloserSlice is how long the closer works before it rests.
const defaultCloserSlice = time.Millisecond

// closeLater closes sock's connection on the closer goroutine, or at once
// when there is none (before Serve, or once the server has stopped), and
// then releases its place in the connection count.
func (s *Server) closeLater(sock *Socket) {
	s.closeMu.Lock()
	if !s.closerOn {
		s.closeMu.Unlock()
		s.closeNow(sock)
		return
	}
	s.closeQ = append(s.closeQ, sock)
	s.closePending.Add(1)
	s.closeMu.Unlock()
	select {
	case s.closeWake <- struct{}{}:
	default:
	}
}

// closer runs from begin until the server stops, then closes what is left.
func (s *Server) closer() {
	for {
		stop := false
		select {
		case <-s.closeWake:
		case <-s.ctx.Done():
			stop = true
		}
		s.closeMu.Lock()
		q := s.closeQ
		s.closeQ = nil
		if stop {
			s.closerOn = false
		}
		s.closeMu.Unlock()
		s.closeAll(q, !stop)
		if stop {
			return
		}
	}
}

func (s *Server) closeNow(sock *Socket) {
	sock.closeNow()
	s.release(sock)
	// A closed descriptor leaves the poller's set without an event: a
	// parked socket learns of the close from here.
	sock.wake()
}

// closeAll closes q, resting between slices when paced.
func (s *Server) closeAll(q []*Socket, paced bool) {
	share := s.cfg.CloserShare
	paced = paced && share > 0 && share < 1
	var rest *time.Timer
	start := time.Now()
	for i, sock := range q {
		s.closeNow(sock)
		s.closePending.Add(-1)
		q[i] = nil
		if !paced {
			continue
		}
		if worked := time.Since(start); worked >= s.closerSlice {
			d := time.Duration(float64(worked) * (1 - share) / share)
			if rest == nil {
				rest = time.NewTimer(d)
			} else {
				rest.Reset(d)
			}
			select {
			case <-rest.C:
			case <-s.ctx.Done():
				paced = false
			}
			start = time.Now()
		}
	}
	if rest != nil {
		rest.Stop()
	}
}
