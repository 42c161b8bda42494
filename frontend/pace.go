package frontend

import (
	"context"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// A reconnect storm is mostly excess: thousands of clients dial at once
// and all but the burst must wait. Answering each of them with HTTP 503
// costs the frontend an accept, a request parse, a response and a close
// per attempt (half its CPU in a 10k-client storm, measured), and every
// retry costs it again. Pacing accepts instead leaves the excess in the
// kernel's listen queue, where a connection that has completed its TCP
// handshake and sent its upgrade request waits for free; a full queue
// makes the kernel drop SYNs, which the clients' TCP retries with its own
// exponential backoff. The frontend then spends CPU only on the
// connections it admits, and the sockets it already serves keep theirs.
// HAProxy's "rate-limit sessions" works the same way.

// pacedListener hands out connections no faster than lim allows.
type pacedListener struct {
	net.Listener
	lim       *rate.Limiter
	accepted  *atomic.Uint64
	onPaced   func()
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept takes the next connection, then holds it until the rate allows
// it. Waiting after the accept means a failed accept (EMFILE, which
// net/http retries) costs no token; only the one connection in hand waits
// in user space, the rest in the listen queue.
func (l *pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	if d := l.lim.Reserve().Delay(); d > 0 {
		l.onPaced()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return c, nil
}

func (l *pacedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// pace wraps ln for Serve when the handshake rate is limited and pacing is
// on, and sizes its listen backlog to rate × HandshakeQueue. It returns ln
// unchanged otherwise.
func (s *Server) pace(ln net.Listener) net.Listener {
	if s.acceptLim == nil {
		return ln
	}
	if s.cfg.MaxHandshakesPerSecond > 0 {
		// (Paced by AcceptLatencyTarget alone, the system's backlog
		// stays: the pace is not known in advance.)
		backlog := int(math.Ceil(s.cfg.MaxHandshakesPerSecond * s.cfg.HandshakeQueue.Seconds()))
		backlog = max(backlog, s.cfg.HandshakeBurst)
		if err := setBacklog(ln, backlog); err != nil {
			s.log.Warn("listen backlog not set; the system's stays", "backlog", backlog, "err", err)
		}
	}
	return &pacedListener{Listener: ln, lim: s.acceptLim, accepted: &s.accepted, onPaced: s.m.acceptsPaced.Inc, closed: make(chan struct{})}
}

// track adds ln to the listeners the listen-queue gauge reads, until
// the returned func is called.
func (s *Server) track(ln net.Listener) (untrack func()) {
	s.httpMu.Lock()
	s.listeners = append(s.listeners, ln)
	s.httpMu.Unlock()
	return func() {
		s.httpMu.Lock()
		s.listeners = slices.DeleteFunc(s.listeners, func(l net.Listener) bool { return l == ln })
		s.httpMu.Unlock()
	}
}

// listenQueue sums the connections waiting in Serve's listen queues.
func (s *Server) listenQueue() float64 {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	n := 0
	for _, ln := range s.listeners {
		n += listenQueueLen(ln)
	}
	return float64(n)
}

// prepaidKey marks, in a paced connection's context, the upgrade its
// accept already paid for.
type prepaidKey struct{}

func prepaidContext(ctx context.Context, _ net.Conn) context.Context {
	p := new(atomic.Bool)
	p.Store(true)
	return context.WithValue(ctx, prepaidKey{}, p)
}

// admitHandshake takes the handshake token for an upgrade on ctx's
// connection: the first upgrade of a paced connection was paid for by its
// accept; any other takes one from the HTTP-level bucket.
func (s *Server) admitHandshake(ctx context.Context) bool {
	if p, ok := ctx.Value(prepaidKey{}).(*atomic.Bool); ok && p.CompareAndSwap(true, false) {
		return true
	}
	return s.allowHandshake()
}
