package frontend

import (
	"net/netip"
	"sync"
	"time"
)

// subscribeBucket is SubscribeRate's token bucket. Its clock is read
// under its lock: a bucket that many readers charge at once must not see
// time go back (golang.org/x/time/rate reads it before its lock, and
// under contention gives out more than its rate).
type subscribeBucket struct {
	mu sync.Mutex
	b  bucket
}

// Subscribe pacing reasons (subscribes_paced_total).
const (
	pacedSubscribeRate      = "subscribe_rate"
	pacedSubscribeRatePerIP = "subscribe_rate_per_ip"
	// An #unsubscribe held by the same buckets.
	pacedUnsubscribeRate      = "unsubscribe_rate"
	pacedUnsubscribeRatePerIP = "unsubscribe_rate_per_ip"
)

// subscribePaceSlice is how long a pacing wait sleeps between looks at
// the socket: a socket closed meanwhile stops waiting within it.
const subscribePaceSlice = 250 * time.Millisecond

// paceSubscribe waits, on the socket's reader, for one subscribe's turn
// under SubscribeRate and SubscribeRatePerIP. A subscription storm is
// slowed to the rates at no cost to the frontend (its sockets' later
// packets wait unread), and no subscribe is refused, so a client that
// resubscribes many channels after a reconnect gets all of them, later.
// The socket counts as alive while it waits. It returns false when the
// socket closed or the server stopped meanwhile.
func (s *Socket) paceSubscribe() bool {
	cfg := &s.srv.cfg
	return s.pace(&s.srv.subLim, cfg.SubscribeRate, cfg.SubscribeBurst, pacedSubscribeRate, pacedSubscribeRatePerIP)
}

// paceUnsubscribe is paceSubscribe for #unsubscribe: subscribes and
// unsubscribes share SubscribeRate and the address's SubscribeRatePerIP
// bucket, which bound subscription changes, so a client that subscribes
// and unsubscribes in a loop pays for both halves, and the broker
// traffic a storm of them causes is bounded like its subscribes'.
func (s *Socket) paceUnsubscribe() bool {
	cfg := &s.srv.cfg
	return s.pace(&s.srv.subLim, cfg.SubscribeRate, cfg.SubscribeBurst, pacedUnsubscribeRate, pacedUnsubscribeRatePerIP)
}

// chargeReleased charges the subscriptions a closing socket released to
// SubscribeRate and its address's SubscribeRatePerIP bucket, without
// waiting (the socket is gone): the subscribes that follow wait for them.
// A subscription storm of sockets that subscribe and leave then gets the
// rate for its subscribes and unsubscribes together, not for each. The
// debt is bounded by the burst, so a mass disconnect delays the
// resubscribes after it by at most burst/rate; a deeper debt, of turns
// already reserved by waiting sockets, is neither deepened nor forgiven.
func (s *Server) chargeReleased(ip netip.Addr, n int) {
	if n <= 0 {
		return
	}
	if r := s.cfg.SubscribeRate; r > 0 {
		burst := float64(s.cfg.SubscribeBurst)
		l := &s.subLim
		l.mu.Lock()
		l.b.chargeBounded(s.clock(), float64(n), r, burst)
		l.mu.Unlock()
	}
	if r := s.cfg.SubscribeRatePerIP; r > 0 && ip.IsValid() {
		burst := float64(s.cfg.SubscribeBurstPerIP)
		s.sources.with(ip, false, func(now int64, e *source) {
			e.subs.chargeBounded(now, float64(n), r, burst)
		})
	}
}

// pace waits for one token of l (rate r, burst burst) and of the
// address's subscription bucket; reason and reasonIP name the one that
// held it.
func (s *Socket) pace(l *subscribeBucket, r float64, burst int, reason, reasonIP string) bool {
	srv := s.srv
	var d time.Duration
	var cancel func()
	if r > 0 {
		l.mu.Lock()
		l.b.take(srv.clock(), 1, r, float64(burst))
		if l.b.tokens < 0 {
			d = time.Duration(-l.b.tokens / r * 1e9)
		}
		l.mu.Unlock()
		cancel = func() {
			l.mu.Lock()
			l.b.tokens++
			l.mu.Unlock()
		}
	}
	if r := srv.cfg.SubscribeRatePerIP; r > 0 && s.ip.IsValid() {
		burst := float64(srv.cfg.SubscribeBurstPerIP)
		srv.sources.with(s.ip, true, func(now int64, e *source) {
			e.subs.take(now, 1, r, burst)
			if e.subs.tokens < 0 {
				if w := time.Duration(-e.subs.tokens / r * 1e9); w > d {
					d, reason = w, reasonIP
				}
			}
		})
	}
	if d <= 0 {
		return true
	}
	srv.m.subscribesPaced.WithLabelValues(reason).Inc()
	if s.paceWait(d) {
		return true
	}
	if cancel != nil {
		cancel()
	}
	return false
}

// paceRefusal charges a refused publish to the socket's
// PublishRefusalRate; over it, the reader waits the debt off once the
// message is handled (waitRefusals), holding neither the message's
// buffer nor its read budget meanwhile. A publish refused for its channel's rate or delivery budget (or
// any other reason) costs the frontend a decode, an answer and a frame
// however fast the client sends the next, so a client that publishes
// into a full channel as fast as its inbound rate allows (thousands a
// second) would spend the frontend's CPU on refusals; paced, it gets its
// refusals at the rate, and its later packets wait unread.
func (s *Socket) paceRefusal() {
	cfg := &s.srv.cfg
	r := cfg.PublishRefusalRate
	if r <= 0 {
		return
	}
	if !s.refused.take(s.srv.clock(), 1, r, float64(cfg.PublishRefusalBurst)) {
		s.srv.m.publishRefusalsPaced.Inc()
	}
}

// waitRefusals holds the reader, between two messages, until the
// socket's refused publishes are within PublishRefusalRate again: a
// message that was a batch of refused publishes is paid for after it,
// all at once. False when the socket closed or the server stopped.
func (s *Socket) waitRefusals() bool {
	r := s.srv.cfg.PublishRefusalRate
	if r <= 0 {
		return true
	}
	s.refused.take(s.srv.clock(), 0, r, float64(s.srv.cfg.PublishRefusalBurst))
	if s.refused.tokens >= 0 {
		return true
	}
	return s.paceWait(time.Duration(-s.refused.tokens / r * 1e9))
}

// paceWait holds the socket's reader for d: its later packets wait unread,
// and it counts as alive meanwhile (its pongs are among them). It looks
// at the socket every subscribePaceSlice and returns false as soon as
// the socket closes or the server stops.
func (s *Socket) paceWait(d time.Duration) bool {
	srv := s.srv
	t := time.NewTimer(min(d, subscribePaceSlice))
	defer t.Stop()
	until := time.Now().Add(d)
	for {
		select {
		case <-srv.ctx.Done():
			return false
		case <-t.C:
		}
		s.lastSeen.Store(srv.clock())
		if s.closing.Load() {
			return false
		}
		left := time.Until(until)
		if left <= 0 {
			return true
		}
		t.Reset(min(left, subscribePaceSlice))
	}
}
