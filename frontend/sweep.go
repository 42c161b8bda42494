package frontend

import (
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Sweeper bounds: the tick is a quarter of the shortest liveness period,
// kept between these.
const (
	minSweepTick = 5 * time.Millisecond
	maxSweepTick = time.Second
)

func (s *Server) sweepTick() time.Duration {
	d := min(s.cfg.PingInterval, s.cfg.PingTimeout-s.cfg.PingInterval, s.cfg.HandshakeTimeout) / 4
	return max(minSweepTick, min(maxSweepTick, d))
}

// sweep is the one liveness goroutine: instead of timers per connection it
// walks every socket each tick to queue pings, to close sockets whose
// handshake or pong is overdue, and to deauthenticate sockets whose auth
// token has expired.
func (s *Server) sweep() {
	t := time.NewTicker(s.sweepTick())
	defer t.Stop()
	interval := int64(s.cfg.PingInterval)
	timeout := int64(s.cfg.PingTimeout)
	handshake := int64(s.cfg.HandshakeTimeout)
	detach := int64(s.cfg.IdleDetach) // only parked sockets detach (tryDetach)
	var expired []*Socket
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := s.clock()
		unix := time.Now().Unix()
		expired = expired[:0]
		s.eachSocket(func(sock *Socket) {
			if sock.closing.Load() {
				return
			}
			// An expired token is noticed within a tick, not only at the
			// socket's next packet or pong; it is dropped after the walk,
			// outside the table's lock.
			if exp := sock.authExp.Load(); exp != 0 && unix >= exp {
				expired = append(expired, sock)
			}
			switch {
			case !sock.handshook.Load() && now-sock.opened > handshake:
				sock.closeWith(protocol.CloseHandshakeTimeout, reasonHandshakeTimeout, false)
			case now-sock.lastSeen.Load() > timeout:
				sock.closeWith(protocol.ClosePongTimeout, reasonPongTimeout, false)
			case now-sock.lastPing.Load() >= interval:
				sock.lastPing.Store(now)
				sock.ping()
			}
			if detach > 0 {
				sock.tryDetach(now - detach)
			}
		})
		for i, sock := range expired {
			sock.checkExpiry()
			expired[i] = nil
		}
	}
}
