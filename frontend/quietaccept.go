package frontend

import (
	"net"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Accepts held while the process is behind (AcceptRunnableMax). A burst
// of new connections (a reconnect storm, or chaos attacks 5 and 8, whose
// hundreds of sockets connect at once) costs an upgrade and a handshake
// each, and their goroutines queue ahead of those serving the sockets
// already open: with one CPU, the open sockets' messages then wait out
// the whole burst (tens of milliseconds). Holding each accepted
// connection while more than AcceptRunnableMax goroutines are ready to
// run lets the open sockets' work go first; the connections behind it
// wait in the kernel's listen queue. A process that keeps up is never
// held, a storm on an idle process is held only while its own
// handshakes queue up, and holds take at most half the wall time, so a
// process that is never idle still accepts.

// quietSlice is how often a held accept looks at the run queue again.
const quietSlice = 250 * time.Microsecond

// quietShare is the most of the wall time that holds may take, so that a
// process that is never idle still accepts at least at half its pace:
// holds draw on a budget that grows by quietShare of each second, up to
// that much.
const quietShare = 0.5

// runnableGoroutines returns the runtime's count of goroutines ready to
// run and not running.
func runnableGoroutines() uint64 {
	s := [1]rtmetrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	rtmetrics.Read(s[:])
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

type quietListener struct {
	net.Listener
	max       uint64
	maxWait   time.Duration
	runnable  func() uint64
	clock     func() int64 // ns
	onHeld    func()
	closed    chan struct{}
	closeOnce sync.Once
	// budget is the hold time left (ns); only Accept's goroutine uses it.
	budget bucket
}

func (l *quietListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.runnable() <= l.max {
		return c, nil
	}
	start := l.clock()
	left := l.budget.peek(start, quietShare*1e9, quietShare*1e9)
	if left <= 0 {
		return c, nil
	}
	l.onHeld()
	deadline := start + min(int64(l.maxWait), int64(left))
	t := time.NewTimer(quietSlice)
	defer t.Stop()
	for l.runnable() > l.max && l.clock() < deadline {
		select {
		case <-t.C:
			t.Reset(quietSlice)
		case <-l.closed:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	now := l.clock()
	l.budget.take(now, float64(now-start), quietShare*1e9, quietShare*1e9)
	return c, nil
}

func (l *quietListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// quiet wraps ln when AcceptRunnableMax is set.
func (s *Server) quiet(ln net.Listener) net.Listener {
	if s.cfg.AcceptRunnableMax <= 0 {
		return ln
	}
	return &quietListener{Listener: ln, max: uint64(s.cfg.AcceptRunnableMax), maxWait: s.cfg.AcceptHoldMax,
		runnable: runnableGoroutines, clock: s.clock, onHeld: s.m.acceptsHeld.Inc, closed: make(chan struct{}),
		budget: bucket{tokens: quietShare * 1e9, at: s.clock()}}
}
