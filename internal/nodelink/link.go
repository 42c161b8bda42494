package nodelink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/wsconn"
	"github.com/sccgo/sccgo/protocol"
)

// ErrClosed is returned by Send on a closed link; the error Run returns
// (a *CloseError) wraps it too.
var ErrClosed = errors.New("nodelink: link closed")

// ErrTooLarge is returned by Send for a message larger than MaxFrameBytes.
var ErrTooLarge = errors.New("nodelink: message larger than MaxFrameBytes")

// ErrQueueFull is returned by Send when the writer queue is at QueueMaxBytes.
var ErrQueueFull = errors.New("nodelink: link queue full")

// CloseError says why a link closed: Reason is one of the Reason*
// constants (or the reason given to Close) and Err the underlying cause, if
// any. It matches ErrClosed with errors.Is.
type CloseError struct {
	Reason string
	Err    error
}

func (e *CloseError) Error() string {
	if e.Err != nil {
		return "nodelink: link closed (" + e.Reason + "): " + e.Err.Error()
	}
	return "nodelink: link closed (" + e.Reason + ")"
}

// Unwrap returns ErrClosed and the cause.
func (e *CloseError) Unwrap() []error { return []error{ErrClosed, e.Err} }

// Peer describes the node at the other end of a link, as it presented
// itself in the handshake.
type Peer struct {
	NodeID      string
	Role        string
	Addr        string // acceptor side: the Hello's advertised address; dialer side: the address dialed
	GossipAddr  string // acceptor side only
	RingVersion uint64 // acceptor side only
	Draining    bool   // acceptor side only
	RulesDigest string // acceptor side only; "" from nodes that do not send it
	Proto       int    // the negotiated protocol version
	Seeds       []string
}

// Handler receives what arrives on a link.
type Handler interface {
	// HandleMessages is called from the link's reader goroutine with the
	// messages of one frame, in order. msgs and their Bodies are valid only
	// until it returns (they alias the read buffer). Ping and Pong are
	// answered by the link and not passed on. It should not block for long:
	// the link reads nothing meanwhile.
	HandleMessages(l *Link, msgs []protocol.Message)
	// Closed is called once, after the link has closed and its writer has
	// exited, with a *CloseError.
	Closed(l *Link, err error)
}

// chunk is a run of whole encoded messages waiting for the writer. An owned
// chunk belongs to the link (Send appends to it); a shared one belongs to a
// SendRaw caller and is never written to.
type chunk struct {
	b     []byte
	n     int // messages in b
	owned bool
	after func() // a flush marker: called once everything before it is written
}

// epoch anchors the monotonic timestamps links keep in atomics.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// Link is an established, authenticated inter-node connection. Send and
// SendRaw may be called from any goroutine; Run must be called once to read
// and write.
type Link struct {
	conn *websocket.Conn
	cfg  Config
	peer Peer
	log  *slog.Logger
	m    *Metrics

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu     sync.Mutex
	chunks []chunk
	queued int
	closed bool
	cerr   *CloseError

	wake     chan struct{}
	running  atomic.Bool
	lastRecv atomic.Int64
	lastSend atomic.Int64
}

func newLink(conn *websocket.Conn, cfg Config, peer Peer) *Link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		conn:   conn,
		cfg:    cfg,
		peer:   peer,
		log:    cfg.Logger.With("peer", peer.NodeID),
		m:      cfg.Metrics,
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
	}
	t := now()
	l.lastRecv.Store(t)
	l.lastSend.Store(t)
	return l
}

// Peer returns the other node's identity.
func (l *Link) Peer() Peer { return l.peer }

// Done is closed when the link closes.
func (l *Link) Done() <-chan struct{} { return l.ctx.Done() }

// Err returns why the link closed (a *CloseError), or nil while it is open.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cerr == nil {
		return nil
	}
	return l.cerr
}

// QueuedBytes returns the bytes waiting for the writer.
func (l *Link) QueuedBytes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// Send encodes one message and enqueues it. It never blocks on the
// network; a message that does not fit is dropped, counted and reported
// with ErrQueueFull.
func (l *Link) Send(t protocol.MsgType, body any) error {
	// Encode outside the lock, then append to the owned tail chunk.
	var scratch [256]byte
	msg, err := protocol.AppendMessage(scratch[:0], t, body)
	if err != nil {
		return err
	}
	return l.enqueue(msg, true)
}

// SendRaw enqueues already-encoded messages (one or more whole messages,
// e.g. from protocol.AppendDeliverMsg) without copying them: the same
// slice may be handed to many links, and the caller must not modify it
// afterwards. It reports false if the bytes were dropped (queue full, too
// large or link closed), which is counted.
func (l *Link) SendRaw(msgs []byte) bool {
	return l.enqueue(msgs, false) == nil
}

// TrySendRaw is SendRaw reporting why msgs were not queued: ErrClosed,
// ErrTooLarge or ErrQueueFull.
func (l *Link) TrySendRaw(msgs []byte) error {
	return l.enqueue(msgs, false)
}

// enqueue adds msg to the queue; copy says whether msg must be copied (it
// is in the caller's scratch space).
func (l *Link) enqueue(msg []byte, copy bool) error {
	n := len(msg)
	if n == 0 {
		return nil
	}
	if int64(n) > l.cfg.MaxFrameBytes {
		l.m.Drops.WithLabelValues(ReasonTooLarge).Inc()
		return ErrTooLarge
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.m.Drops.WithLabelValues(ReasonClosed).Inc()
		return ErrClosed
	}
	if l.queued+n > l.cfg.QueueMaxBytes {
		l.mu.Unlock()
		l.m.Drops.WithLabelValues(ReasonQueueFull).Inc()
		return ErrQueueFull
	}
	l.queued += n
	if !copy {
		l.chunks = append(l.chunks, chunk{b: msg, n: 1})
	} else if k := len(l.chunks) - 1; k >= 0 && l.chunks[k].owned && int64(len(l.chunks[k].b)+n) <= l.cfg.MaxFrameBytes {
		l.chunks[k].b = append(l.chunks[k].b, msg...)
		l.chunks[k].n++
	} else {
		b := make([]byte, 0, max(n, 512))
		l.chunks = append(l.chunks, chunk{b: append(b, msg...), n: 1, owned: true})
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// AfterFlush calls fn on the writer goroutine once every message queued
// before it has been written to the socket (handed to the kernel, so it
// survives this process dying), or when the link closes first. fn must not
// block. A broker acknowledges publishes this way only after the
// deliveries they caused are written, so what a crash loses is exactly what
// the publisher's frontend saw unacknowledged.
func (l *Link) AfterFlush(fn func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		fn()
		return
	}
	l.chunks = append(l.chunks, chunk{after: fn})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take moves the longest prefix of the queue that fits in one frame into
// batch (at least one chunk if any is queued).
func (l *Link) take(batch []chunk) ([]chunk, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	total, i := 0, 0
	for ; i < len(l.chunks); i++ {
		n := len(l.chunks[i].b)
		if i > 0 && int64(total+n) > l.cfg.MaxFrameBytes {
			break
		}
		total += n
	}
	batch = append(batch, l.chunks[:i]...)
	rest := copy(l.chunks, l.chunks[i:])
	clear(l.chunks[rest:])
	l.chunks = l.chunks[:rest]
	l.queued -= total
	return batch, total
}

// Close closes the link; reason should be one of a small fixed set (it is
// a metric label). Queued messages are discarded. It is idempotent and does
// not wait for Run to return.
func (l *Link) Close(reason string) error {
	l.closeWith(reason, nil)
	return nil
}

func (l *Link) closeWith(reason string, cause error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.cerr = &CloseError{Reason: reason, Err: cause}
	var afters []func()
	unsent := 0
	for _, c := range l.chunks {
		if c.after != nil {
			afters = append(afters, c.after)
		}
		unsent += c.n
	}
	if unsent > 0 {
		// What a dead or partitioned peer never got is a drop too.
		l.m.Drops.WithLabelValues(ReasonUnsent).Add(float64(unsent))
	}
	clear(l.chunks)
	l.chunks = nil
	l.queued = 0
	l.mu.Unlock()
	for _, fn := range afters {
		fn()
	}
	l.m.Closes.WithLabelValues(reason).Inc()
	if cause != nil {
		l.log.Info("link closed", "reason", reason, "err", cause)
	} else {
		l.log.Debug("link closed", "reason", reason)
	}
	l.cancel()
	_ = l.conn.CloseNow()
}

// Run reads and writes the link until it closes, then calls h.Closed and
// returns the *CloseError. It must be called once; it owns the link's
// writer goroutine and returns only after it has exited.
func (l *Link) Run(h Handler) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("nodelink: Run called twice")
	}
	t := now()
	l.lastRecv.Store(t)
	l.lastSend.Store(t)
	var wg sync.WaitGroup
	wg.Go(l.writeLoop)
	reason, err := l.readLoop(h)
	l.closeWith(reason, err)
	wg.Wait()
	cerr := l.Err()
	h.Closed(l, cerr)
	return cerr
}

// readLoop returns why reading stopped.
func (l *Link) readLoop(h Handler) (string, error) {
	var buf []byte
	var out []protocol.Message
	for {
		typ, r, err := l.conn.Reader(l.ctx)
		if err != nil {
			return ReasonReadError, err
		}
		buf, err = readAll(r, buf[:0])
		if err != nil {
			return ReasonReadError, err
		}
		l.lastRecv.Store(now())
		l.m.FramesIn.Inc()
		l.m.BytesIn.Add(float64(len(buf)))
		if typ != websocket.MessageBinary {
			return ReasonProtocol, errors.New("text frame on a node link")
		}
		msgs, splitErr := protocol.SplitMessages(buf)
		out = out[:0]
		for _, m := range msgs {
			switch m.Type {
			case protocol.MsgPing:
				var p protocol.Ping
				if err := m.Decode(&p); err != nil {
					return ReasonProtocol, err
				}
				_ = l.Send(protocol.MsgPong, protocol.Pong(p))
			case protocol.MsgPong:
			case protocol.MsgChallenge, protocol.MsgHello, protocol.MsgWelcome:
				return ReasonProtocol, fmt.Errorf("%v after the handshake", m.Type)
			case protocol.MsgReject:
				var rj protocol.Reject
				_ = m.Decode(&rj)
				return ReasonRejected, &RejectError{Reason: rj.Reason, Message: rj.Message}
			default:
				out = append(out, m)
			}
		}
		if len(out) > 0 {
			h.HandleMessages(l, out)
		}
		if splitErr != nil {
			return ReasonProtocol, splitErr
		}
		if cap(buf) > maxKeptBuffer {
			buf = nil
		}
		clear(out)
	}
}

// maxKeptBuffer bounds the read and write buffers a link keeps between
// frames; a larger frame's buffer is freed after use.
const maxKeptBuffer = 1 << 20

// readAll reads r to EOF, appending to buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 16<<10)
	}
	return wsconn.ReadAppend(buf, r)
}

func (l *Link) writeLoop() {
	// Liveness is checked twice per PingInterval, so a dead peer is closed
	// at most PingInterval/2 after PingTimeout.
	tick := time.NewTicker(max(l.cfg.PingInterval/2, time.Millisecond))
	defer tick.Stop()
	var (
		batch   []chunk
		afters  []func()
		wbuf    []byte
		pingSeq uint64
	)
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.wake:
		case <-tick.C:
			t := now()
			if time.Duration(t-l.lastRecv.Load()) > l.cfg.PingTimeout {
				l.closeWith(ReasonPingTimeout, fmt.Errorf("nothing received for %v", l.cfg.PingTimeout))
				return
			}
			if time.Duration(t-l.lastSend.Load()) >= l.cfg.PingInterval {
				pingSeq++
				_ = l.Send(protocol.MsgPing, protocol.Ping{Seq: pingSeq})
			}
		}
		for {
			var total int
			batch, total = l.take(batch[:0])
			if len(batch) == 0 {
				break
			}
			afters = afters[:0]
			for _, c := range batch {
				if c.after != nil {
					afters = append(afters, c.after)
				}
			}
			if total == 0 { // only flush markers
				clear(batch)
				runAll(afters)
				continue
			}
			frame := batch[0].b
			if len(batch) > 1 {
				wbuf = wbuf[:0]
				for _, c := range batch {
					wbuf = append(wbuf, c.b...)
				}
				frame = wbuf
			}
			clear(batch)
			// A peer that takes nothing for PingTimeout is as dead as one
			// that sends nothing: the liveness check runs on this
			// goroutine, so a blocked write must not outlast it.
			ctx, cancel := context.WithTimeout(l.ctx, min(l.cfg.WriteTimeout, l.cfg.PingTimeout))
			err := l.conn.Write(ctx, websocket.MessageBinary, frame)
			cancel()
			if err != nil {
				runAll(afters)
				l.closeWith(ReasonWriteError, err)
				return
			}
			runAll(afters)
			l.lastSend.Store(now())
			l.m.FramesOut.Inc()
			l.m.BytesOut.Add(float64(total))
			if cap(wbuf) > maxKeptBuffer {
				wbuf = nil
			}
		}
	}
}

func runAll(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}
