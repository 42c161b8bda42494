package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/wsconn"
	"github.com/sccgo/sccgo/protocol"
)

// callResult is the outcome of one request: the reply's data or error.
type callResult struct {
	data json.RawMessage
	err  error
}

// segment is one outbound frame being built: packets separated by commas
// after a leading '['. A segment holding one packet is written without the
// brackets.
type segment struct {
	buf []byte
	n   int
}

// conn is one WebSocket connection and everything that lives and dies with
// it: the outbound queue, the pending calls and the reader.
type conn struct {
	c   *Client
	ws  *websocket.Conn
	nc  net.Conn // the TCP connection when the Client dialed it, else nil
	ctx context.Context
	// cancel ends ctx, which server-RPC handlers run under.
	cancel context.CancelFunc

	pingTimeout time.Duration
	lastPing    atomic.Int64 // unix nanoseconds of the last ping (or the open)

	readerDone chan struct{} // closed when the reader returns
	lost       chan struct{} // closed once the Client has forgotten this conn
	wg         sync.WaitGroup

	closeOnce   sync.Once
	localCode   atomic.Int64 // close code we sent, 0 if none
	remoteCode  int          // written by the reader before readerDone closes
	remoteText  string
	remoteClose bool

	qmu     sync.Mutex
	segs    []*segment
	free    []*segment
	qbytes  int
	pongs   int
	qclosed bool
	space   chan struct{} // closed when the writer drains the queue
	wake    chan struct{}

	callsMu     sync.Mutex
	calls       map[int64]func(callResult)
	callsClosed bool
}

func newConn(c *Client, ws *websocket.Conn, nc net.Conn) *conn {
	cn := &conn{
		c:          c,
		ws:         ws,
		nc:         nc,
		readerDone: make(chan struct{}),
		lost:       make(chan struct{}),
		wake:       make(chan struct{}, 1),
		calls:      make(map[int64]func(callResult)),
	}
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
	cn.lastPing.Store(time.Now().UnixNano())
	return cn
}

// register records fn as the completion of call id. It fails once the
// connection has ended; fn then never runs.
func (cn *conn) register(id int64, fn func(callResult)) bool {
	cn.callsMu.Lock()
	defer cn.callsMu.Unlock()
	if cn.callsClosed {
		return false
	}
	cn.calls[id] = fn
	return true
}

// take removes and returns the completion of call id, or nil.
func (cn *conn) take(id int64) func(callResult) {
	cn.callsMu.Lock()
	fn := cn.calls[id]
	delete(cn.calls, id)
	cn.callsMu.Unlock()
	return fn
}

// failAll completes every pending call with err and refuses new ones.
func (cn *conn) failAll(err error) {
	cn.callsMu.Lock()
	calls := cn.calls
	cn.calls = nil
	cn.callsClosed = true
	cn.callsMu.Unlock()
	for _, fn := range calls {
		fn(callResult{err: err})
	}
}

// push appends one packet to the queue. The caller holds qmu.
func (cn *conn) push(pkt []byte) {
	maxFrame := cn.c.opts.MaxFrameBytes
	var s *segment
	if k := len(cn.segs); k > 0 {
		s = cn.segs[k-1]
		if s.n > 0 && (len(s.buf)+1+len(pkt) > maxFrame || s.n >= cn.c.opts.MaxFramePackets) {
			s = nil
		}
	}
	if s == nil {
		if k := len(cn.free); k > 0 {
			s = cn.free[k-1]
			cn.free = cn.free[:k-1]
		} else {
			s = &segment{buf: make([]byte, 0, 512)}
		}
		s.buf = append(s.buf[:0], '[')
		s.n = 0
		cn.segs = append(cn.segs, s)
	}
	if s.n > 0 {
		s.buf = append(s.buf, ',')
	}
	s.buf = append(s.buf, pkt...)
	s.n++
	cn.qbytes += len(pkt)
}

func (cn *conn) signal() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// enqueueCtl queues protocol packets regardless of the queue bound: they
// are small and must not be lost (acks, subscribes, pongs). Packets given
// in one call go out in the same frame unless it exceeds MaxFrameBytes or
// MaxFramePackets.
func (cn *conn) enqueueCtl(pkts ...[]byte) bool {
	cn.qmu.Lock()
	if cn.qclosed {
		cn.qmu.Unlock()
		return false
	}
	for _, p := range pkts {
		cn.push(p)
	}
	cn.qmu.Unlock()
	cn.signal()
	return true
}

// enqueuePong queues one pong frame.
func (cn *conn) enqueuePong() {
	cn.qmu.Lock()
	if cn.qclosed {
		cn.qmu.Unlock()
		return
	}
	cn.pongs++
	cn.qmu.Unlock()
	cn.signal()
}

// tryEnqueue queues a packet if there is room under SendQueueBytes, else
// returns ErrQueueFull without waiting.
func (cn *conn) tryEnqueue(pkt []byte) error {
	cn.qmu.Lock()
	if cn.qclosed {
		cn.qmu.Unlock()
		return ErrNotConnected
	}
	if cn.qbytes != 0 && cn.qbytes+len(pkt) > cn.c.opts.SendQueueBytes {
		cn.qmu.Unlock()
		return ErrQueueFull
	}
	cn.push(pkt)
	cn.qmu.Unlock()
	cn.signal()
	return nil
}

// enqueueWait queues a packet, waiting for room under SendQueueBytes until
// ctx ends. An empty queue always takes the packet, however large.
func (cn *conn) enqueueWait(ctx context.Context, pkt []byte) error {
	limit := cn.c.opts.SendQueueBytes
	for {
		cn.qmu.Lock()
		if cn.qclosed {
			cn.qmu.Unlock()
			return ErrNotConnected
		}
		if cn.qbytes == 0 || cn.qbytes+len(pkt) <= limit {
			cn.push(pkt)
			cn.qmu.Unlock()
			cn.signal()
			return nil
		}
		if cn.space == nil {
			cn.space = make(chan struct{})
		}
		space := cn.space
		cn.qmu.Unlock()
		select {
		case <-space:
		case <-cn.readerDone:
			return ErrNotConnected
		case <-ctx.Done():
			return errors.Join(ErrQueueFull, ctx.Err())
		}
	}
}

// flush writes everything queued: pongs first (they are separate raw
// frames), then one frame per segment.
func (cn *conn) flush() error {
	cn.qmu.Lock()
	segs := cn.segs
	cn.segs = nil
	pongs := cn.pongs
	cn.pongs = 0
	cn.qbytes = 0
	if cn.space != nil {
		close(cn.space)
		cn.space = nil
	}
	cn.qmu.Unlock()

	var err error
	if pongs > 0 {
		pong := cn.c.opts.ProtocolVersion.PongFrame()
		for range pongs {
			if err = cn.write(pong); err != nil {
				break
			}
		}
	}
	for _, s := range segs {
		if err != nil {
			break
		}
		if s.n == 1 {
			err = cn.write(s.buf[1:])
		} else {
			s.buf = append(s.buf, ']')
			err = cn.write(s.buf)
		}
	}

	cn.qmu.Lock()
	for _, s := range segs {
		// Keep a few small buffers; let big ones go.
		if len(cn.free) < 4 && cap(s.buf) <= 2*cn.c.opts.MaxFrameBytes {
			cn.free = append(cn.free, s)
		}
	}
	cn.qmu.Unlock()
	return err
}

func (cn *conn) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(cn.ctx, cn.c.opts.WriteTimeout)
	defer cancel()
	return cn.ws.Write(ctx, websocket.MessageText, frame)
}

// closeWith starts the closing handshake with code once. It does not wait:
// awaitEnd does.
func (cn *conn) closeWith(code int, reason string) {
	cn.closeOnce.Do(func() {
		cn.localCode.Store(int64(code))
		cn.wg.Go(func() {
			// The result is the peer's echo or a timeout; the reader
			// reports how the connection ended.
			_ = cn.ws.Close(websocket.StatusCode(code), reason)
		})
	})
}

// awaitEnd waits for the reader to stop, cutting the TCP connection when
// the closing handshake takes longer than CloseTimeout, then stops the
// queue and waits for every goroutine of the connection. The caller has
// called closeWith or seen readerDone.
func (cn *conn) awaitEnd() {
	t := time.NewTimer(cn.c.opts.CloseTimeout)
	select {
	case <-cn.readerDone:
	case <-t.C:
		if cn.nc != nil {
			_ = cn.nc.Close()
		}
		<-cn.readerDone
	}
	t.Stop()
	if cn.nc != nil {
		// Frees the socket at once even if the peer never answers the
		// closing handshake.
		_ = cn.nc.Close()
	}
	_ = cn.ws.CloseNow()
	cn.qmu.Lock()
	cn.qclosed = true
	cn.segs = nil
	cn.qmu.Unlock()
	cn.cancel()
	cn.wg.Wait()
}

// status returns the close code and reason the connection ended with:
// the code we sent if we closed it, else the peer's, else 1006.
func (cn *conn) status() (int, string) {
	if code := int(cn.localCode.Load()); code != 0 && code != protocol.CloseAbnormal {
		return code, protocol.CloseReason(code)
	}
	if cn.remoteClose {
		r := cn.remoteText
		if r == "" {
			r = protocol.CloseReason(cn.remoteCode)
		}
		return cn.remoteCode, r
	}
	return protocol.CloseAbnormal, protocol.CloseReason(protocol.CloseAbnormal)
}

// readLoop owns reading: it answers pings, completes calls and dispatches
// events until the connection fails. On the way out it fails every pending
// call with the close status.
func (cn *conn) readLoop() {
	defer close(cn.readerDone)
	c := cn.c
	v1 := c.opts.ProtocolVersion == protocol.V1
	// Frames are read into one reused buffer and then copied once at their
	// exact size (decoded messages keep slices of it): io.ReadAll would
	// grow a fresh buffer several times per frame.
	var rbuf []byte
	for {
		typ, msg, err := cn.readFrame(&rbuf)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				cn.remoteClose = true
				cn.remoteCode = int(ce.Code)
				cn.remoteText = ce.Reason
			}
			code, reason := cn.status()
			cn.failAll(&CloseError{Code: code, Reason: reason})
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		switch protocol.Classify(msg) {
		case protocol.KindEmpty:
			if !v1 {
				cn.lastPing.Store(time.Now().UnixNano())
				cn.enqueuePong()
			}
		case protocol.KindV1Ping:
			if v1 {
				cn.lastPing.Store(time.Now().UnixNano())
				cn.enqueuePong()
			}
		case protocol.KindJSON:
			pkts, err := protocol.DecodePackets(msg)
			if err != nil {
				continue // a raw string: SocketCluster ignores it too
			}
			for i := range pkts {
				c.handlePacket(cn, &pkts[i])
			}
		}
	}
}

// readFrame reads one message into *buf (reused across calls) and returns
// an exact-size copy.
func (cn *conn) readFrame(buf *[]byte) (websocket.MessageType, []byte, error) {
	typ, r, err := cn.ws.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	b, err := wsconn.ReadAppend((*buf)[:0], r)
	if err != nil {
		return 0, nil, err
	}
	msg := bytes.Clone(b)
	if cap(b) <= maxReadBuffer {
		*buf = b[:0]
	} else {
		*buf = nil
	}
	return typ, msg, nil
}

// maxReadBuffer is the largest read buffer a connection keeps between
// frames.
const maxReadBuffer = 16 << 10
