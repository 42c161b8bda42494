package gossip

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// errStreamTooLarge ends an inbound stream that sent more than
// MaxStreamBytes.
var errStreamTooLarge = errors.New("gossip: inbound stream over MaxStreamBytes")

// guardedTransport is memberlist's NetTransport with bounds on inbound TCP
// streams, which memberlist reads in full (up to 20 MiB) before it
// decrypts and so before it knows whether the sender holds the key: at
// most maxStreams open at once, maxPerSource from one IP (more are closed
// at once), each closed after maxBytes and given a deadline of timeout.
type guardedTransport struct {
	*memberlist.NetTransport
	maxBytes     int64
	maxStreams   int
	maxPerSource int
	timeout      time.Duration
	reject       func(reason string)

	out      chan net.Conn
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	open     int
	bySource map[string]int
}

func newGuardedTransport(nt *memberlist.NetTransport, cfg Config, reject func(string)) *guardedTransport {
	t := &guardedTransport{
		NetTransport: nt,
		maxBytes:     cfg.MaxStreamBytes,
		maxStreams:   cfg.MaxStreams,
		maxPerSource: cfg.MaxStreamsPerSource,
		timeout:      cfg.TCPTimeout,
		reject:       reject,
		out:          make(chan net.Conn),
		done:         make(chan struct{}),
		bySource:     make(map[string]int),
	}
	t.wg.Add(1)
	go t.loop()
	return t
}

// StreamCh returns the admitted, bounded inbound streams.
func (t *guardedTransport) StreamCh() <-chan net.Conn { return t.out }

// Shutdown stops the listeners and the admission loop. It is idempotent.
func (t *guardedTransport) Shutdown() error {
	var err error
	t.stopOnce.Do(func() {
		err = t.NetTransport.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}

func (t *guardedTransport) loop() {
	defer t.wg.Done()
	in := t.NetTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			gc := t.admit(c)
			if gc == nil {
				continue
			}
			select {
			case t.out <- gc:
			case <-t.done:
				gc.Close()
				return
			}
		}
	}
}

// admit wraps c, or closes it and counts why when a cap is reached.
func (t *guardedTransport) admit(c net.Conn) net.Conn {
	src := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(src); err == nil {
		src = host
	}
	t.mu.Lock()
	reason := ""
	switch {
	case t.open >= t.maxStreams:
		reason = ReasonStreamTotal
	case t.bySource[src] >= t.maxPerSource:
		reason = ReasonStreamSource
	default:
		t.open++
		t.bySource[src]++
	}
	t.mu.Unlock()
	if reason != "" {
		t.reject(reason)
		c.Close()
		return nil
	}
	// memberlist sets its own deadline too; this one also covers the time
	// before it does.
	_ = c.SetDeadline(time.Now().Add(t.timeout))
	return &guardedConn{Conn: c, t: t, src: src, left: t.maxBytes}
}

func (t *guardedTransport) release(src string) {
	t.mu.Lock()
	t.open--
	if t.bySource[src]--; t.bySource[src] <= 0 {
		delete(t.bySource, src)
	}
	t.mu.Unlock()
}

// guardedConn is an admitted inbound stream: reads stop after maxBytes,
// Close frees its slot.
type guardedConn struct {
	net.Conn
	t      *guardedTransport
	src    string
	left   int64
	over   bool
	closed atomic.Bool
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if !c.over {
			c.over = true
			c.t.reject(ReasonStreamTooLarge)
		}
		return 0, errStreamTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *guardedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.t.release(c.src)
	}
	return c.Conn.Close()
}
