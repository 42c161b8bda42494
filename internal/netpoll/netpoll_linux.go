package netpoll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxEvents is how many events one epoll_wait returns; more ready
// descriptors are taken by the next call, at once.
const maxEvents = 256

// armEvents: readable, or the peer hung up or reset. One-shot, so a
// descriptor wakes its Waker once per Arm; level-triggered, so Arm on a
// descriptor that is readable already reports it at once.
const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// Poller watches armed descriptors on one epoll instance and calls their
// Wakers from its Run goroutine.
type Poller struct {
	epfd int
	f    *os.File // epfd, waited on through Go's poller
	rc   syscall.RawConn
	t    table

	closeOnce sync.Once
	mu        sync.RWMutex // held for reading by Arm, so Close never closes epfd under it
	isClosed  bool
}

// New creates a Poller. Run must be called for it to deliver events.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: setting the epoll descriptor non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "netpoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	return &Poller{epfd: epfd, f: f, rc: rc}, nil
}

// Run delivers events until Close. Each ready descriptor's Waker is called
// once per Arm.
func (p *Poller) Run() {
	events := make([]unix.EpollEvent, maxEvents)
	tokens := make([]uint64, 0, maxEvents)
	var wakers []Waker
	for {
		var n int
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				var werr error
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr == unix.EINTR {
					continue
				}
				// Nothing ready: park on Go's poller until the epoll
				// descriptor is readable.
				return n > 0 || werr != nil
			}
		})
		if err != nil {
			return // closed
		}
		tokens = tokens[:0]
		for i := range n {
			e := &events[i]
			tokens = append(tokens, uint64(uint32(e.Fd))|uint64(uint32(e.Pad))<<32)
		}
		wakers = p.t.lookup(wakers[:0], tokens)
		for i, w := range wakers {
			w.Wake()
			wakers[i] = nil
		}
	}
}

// Close stops Run and releases the epoll descriptor. Descriptors still
// armed are not woken. It is idempotent.
func (p *Poller) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.isClosed = true
		p.mu.Unlock()
		err = p.f.Close()
	})
	return err
}

// Arm watches rc's descriptor until it is readable or hung up, then calls
// w.Wake once, on the Poller's goroutine. A descriptor that is readable
// already wakes at once. The first Arm registers h; later ones re-arm it.
// After an error the caller must not rely on a wake.
func (p *Poller) Arm(h *Handle, rc syscall.RawConn, w Waker) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.isClosed {
		return ErrClosed
	}
	if h.slot == 0 {
		idx, gen := p.t.add(w)
		h.slot, h.gen, h.added = idx+1, gen, false
	}
	ev := unix.EpollEvent{Events: armEvents, Fd: int32(h.slot - 1), Pad: int32(h.gen)}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		if h.added {
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
			if !errors.Is(cerr, unix.ENOENT) {
				return
			}
		}
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		if cerr == nil {
			h.added = true
		}
	})
	if err != nil {
		return fmt.Errorf("netpoll: arming: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("netpoll: arming: %w", cerr)
	}
	return nil
}

// Release stops watching rc's descriptor and gives h's place back. A wake
// already under way may still arrive; the Waker must tolerate it. Release
// of a zero Handle does nothing.
func (p *Poller) Release(h *Handle, rc syscall.RawConn) {
	if h.slot == 0 {
		return
	}
	if h.added {
		p.mu.RLock()
		if !p.isClosed {
			// A closed connection has left the epoll set by itself, and
			// Control refuses to run.
			_ = rc.Control(func(fd uintptr) {
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			})
		}
		p.mu.RUnlock()
	}
	p.t.remove(h.slot-1, h.gen)
	*h = Handle{}
}
