//go:build linux

package netpoll

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type waker struct {
	n  atomic.Int64
	ch chan struct{}
}

func newWaker() *waker { return &waker{ch: make(chan struct{}, 16)} }

func (w *waker) Wake() {
	w.n.Add(1)
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// woken waits up to d for a wake.
func (w *waker) woken(d time.Duration) bool {
	select {
	case <-w.ch:
		return true
	case <-time.After(d):
		return false
	}
}

func startPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(p.Run)
	t.Cleanup(func() {
		p.Close()
		wg.Wait()
	})
	return p
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// A negative wait: long enough that a wake would have come on an idle
// machine; the tests pass either way if the code is right, and fail when
// a wake that must not happen does.
const quiet = 100 * time.Millisecond

func TestArmWakesOncePerArm(t *testing.T) {
	p := startPoller(t)
	s, c := tcpPair(t)
	rc := rawConn(t, s)
	w := newWaker()
	var h Handle
	if err := p.Arm(&h, rc, w); err != nil {
		t.Fatal(err)
	}
	if w.woken(quiet) {
		t.Fatal("woken with nothing to read")
	}
	c.Write([]byte("x"))
	if !w.woken(5 * time.Second) {
		t.Fatal("not woken by a readable descriptor")
	}
	// One-shot: the byte is still unread, but nothing more comes until
	// the next Arm.
	c.Write([]byte("y"))
	if w.woken(quiet) {
		t.Fatal("woken twice for one Arm")
	}
	// Level-triggered: arming a descriptor that is readable already wakes
	// at once.
	if err := p.Arm(&h, rc, w); err != nil {
		t.Fatal(err)
	}
	if !w.woken(5 * time.Second) {
		t.Fatal("re-arming a readable descriptor did not wake")
	}
	p.Release(&h, rc)
	if h != (Handle{}) || p.Len() != 0 {
		t.Fatalf("after Release: handle %+v, %d registered", h, p.Len())
	}
}

func TestHangUpWakes(t *testing.T) {
	p := startPoller(t)
	s, c := tcpPair(t)
	rc := rawConn(t, s)
	w := newWaker()
	var h Handle
	if err := p.Arm(&h, rc, w); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !w.woken(5 * time.Second) {
		t.Fatal("a peer's close did not wake")
	}
	p.Release(&h, rc)
}

func TestReleasedHandleDoesNotWake(t *testing.T) {
	p := startPoller(t)
	s, c := tcpPair(t)
	rc := rawConn(t, s)
	w := newWaker()
	var h Handle
	if err := p.Arm(&h, rc, w); err != nil {
		t.Fatal(err)
	}
	p.Release(&h, rc)
	c.Write([]byte("x"))
	if w.woken(quiet) {
		t.Fatal("a released handle was woken")
	}
	// The slot is reused by another handle, with a new generation.
	s2, c2 := tcpPair(t)
	rc2 := rawConn(t, s2)
	w2 := newWaker()
	var h2 Handle
	if err := p.Arm(&h2, rc2, w2); err != nil {
		t.Fatal(err)
	}
	if h2.slot != 1 {
		t.Fatalf("slot %d not reused", h2.slot)
	}
	c2.Write([]byte("x"))
	if !w2.woken(5 * time.Second) {
		t.Fatal("reused slot not woken")
	}
	if w.n.Load() != 0 {
		t.Fatal("the released waker was woken")
	}
	p.Release(&h2, rc2)
}

func TestArmClosedConn(t *testing.T) {
	p := startPoller(t)
	s, _ := tcpPair(t)
	rc := rawConn(t, s)
	s.Close()
	var h Handle
	if err := p.Arm(&h, rc, newWaker()); err == nil {
		t.Fatal("Arm of a closed connection succeeded")
	}
	p.Release(&h, rc)
	if p.Len() != 0 {
		t.Fatalf("%d registered after Release", p.Len())
	}
}

func TestClosedPoller(t *testing.T) {
	p := startPoller(t)
	s, _ := tcpPair(t)
	rc := rawConn(t, s)
	p.Close()
	var h Handle
	if err := p.Arm(&h, rc, newWaker()); err != ErrClosed {
		t.Fatalf("Arm after Close: %v, want ErrClosed", err)
	}
	p.Release(&h, rc)
}

// TestManyWakes arms a thousand connections and makes them all readable
// at once: every one is woken exactly once.
func TestManyWakes(t *testing.T) {
	p := startPoller(t)
	const n = 1000
	type pair struct {
		rc syscall.RawConn
		c  *net.TCPConn
		h  Handle
	}
	ps := make([]pair, n)
	var woken atomic.Int64
	done := make(chan struct{})
	w := wakeFunc(func() {
		if woken.Add(1) == n {
			close(done)
		}
	})
	for i := range ps {
		s, c := tcpPair(t)
		ps[i].rc, ps[i].c = rawConn(t, s), c
		if err := p.Arm(&ps[i].h, ps[i].rc, w); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ps {
		ps[i].c.Write([]byte("x"))
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d woken", woken.Load(), n)
	}
	if w := woken.Load(); w != n {
		t.Fatalf("%d wakes, want %d", w, n)
	}
	for i := range ps {
		p.Release(&ps[i].h, ps[i].rc)
	}
	if p.Len() != 0 {
		t.Fatalf("%d registered after Release", p.Len())
	}
}

type wakeFunc func()

func (f wakeFunc) Wake() { f() }
