package wsconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

	"github.com/coder/websocket"
)

// Default buffer sizes for Accept. Frames larger than a buffer bypass it, so
// small buffers cost an extra syscall on big frames, never correctness;
// frames written between Raw.Cork and Raw.Uncork leave in one write
// whatever the write buffer's size.
const (
	DefaultReadBufferSize  = 256
	DefaultWriteBufferSize = 128
	minBufferSize          = 64
)

// AcceptOptions configures Accept.
type AcceptOptions struct {
	// ReadBufferSize is the bufio read buffer per connection, in bytes.
	// Default DefaultReadBufferSize.
	ReadBufferSize int
	// WriteBufferSize is the bufio write buffer per connection, in bytes.
	// Default DefaultWriteBufferSize.
	WriteBufferSize int
	// WebSocket is passed to websocket.Accept.
	WebSocket websocket.AcceptOptions
	// Meter, if set, is charged for every byte and frame read from the
	// connection before the WebSocket library parses them.
	Meter Meter
}

// Accept upgrades an HTTP request to a WebSocket like websocket.Accept, but
// with small per-connection buffers, and also returns the underlying
// net.Conn (for deadlines and for a forced close).
//
// net/http's hijacked buffers are 4 KiB each and coder/websocket keeps
// using them for the life of the connection. Accept wraps the
// ResponseWriter so that Hijack returns fresh buffers of the configured
// sizes instead. Bytes the client sent right behind the upgrade request
// (typically its first WebSocket frame, in the same TCP segment) are
// already in net/http's read buffer; they are served first by the returned
// connection, so nothing is lost.
//
// The caller must return from the HTTP handler soon after Accept: the
// handler's goroutine and net/http's per-request state stay alive until it
// does, which is most of the memory a connection would otherwise cost.
func Accept(w http.ResponseWriter, r *http.Request, opts AcceptOptions) (*websocket.Conn, *Raw, error) {
	h := &hijackWriter{ResponseWriter: w, rsize: opts.ReadBufferSize, wsize: opts.WriteBufferSize, meter: opts.Meter}
	if h.rsize <= 0 {
		h.rsize = DefaultReadBufferSize
	}
	if h.wsize <= 0 {
		h.wsize = DefaultWriteBufferSize
	}
	h.rsize = max(h.rsize, minBufferSize)
	h.wsize = max(h.wsize, minBufferSize)
	wo := opts.WebSocket
	ws, err := websocket.Accept(h, r, &wo)
	if err != nil {
		return nil, nil, err
	}
	if h.raw == nil {
		ws.CloseNow()
		return nil, nil, errors.New("wsconn: upgrade did not hijack the connection")
	}
	return ws, h.raw, nil
}

// Raw is the network side of an accepted connection.
type Raw struct {
	// Conn is the TCP connection under the WebSocket, for deadlines and
	// for cutting the connection off.
	net.Conn
	br    *bufio.Reader
	rd    io.Reader // what br reads from
	rsize int       // br's size
	// shed: br's buffer is in readerPool (ReleaseReadBuffer).
	shed   bool
	prefix *prefixConn
	cork   corkWriter // the write side, in the same allocation
	rc     syscall.RawConn
	// bw and wsConn are what the WebSocket was given (its write buffer,
	// and the connection it reads from and closes), for Reattach.
	bw     *bufio.Writer
	wsConn net.Conn
}

func newRaw(nc net.Conn, br *bufio.Reader, rd io.Reader, rsize int, pc *prefixConn, w net.Conn) *Raw {
	r := &Raw{Conn: nc, br: br, rd: rd, rsize: rsize, prefix: pc}
	r.cork.Conn = w
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	return r
}

// Buffered reports whether bytes already read from the socket are waiting
// in user space (the read buffer, or bytes carried over from the upgrade).
// It must not run concurrently with a read of the WebSocket, including the
// one websocket.Conn.Close does for the close handshake.
func (r *Raw) Buffered() bool {
	return r.br.Buffered() > 0 || (r.prefix != nil && len(r.prefix.prefix) > 0)
}

// WaitReadable blocks until the socket has bytes in the kernel to read (or
// is closed or failed), without reading them. A reader goroutine parks here
// between messages instead of inside websocket.Conn.Reader, whose deeper
// call stack would keep several KiB of goroutine stack per idle
// connection. Check Buffered first: bytes already in user space make no
// readiness edge. WaitReadable touches no user-space buffer, so it may run
// concurrently with a close handshake.
func (r *Raw) WaitReadable() error {
	if r.rc == nil {
		return nil
	}
	return waitReadable(r.rc)
}

// Full read buffers of idle connections, and empty bufio.Reader shells
// to move them in, for ReleaseReadBuffer.
var readerPool, shellPool sync.Pool

// ReleaseReadBuffer gives the read buffer to a pool shared by every
// connection, for a connection about to be idle: a connection parked
// without a reader needs none. It reports whether the buffer is released;
// it is not when bytes are buffered. RestoreReadBuffer must run before the
// WebSocket is read again (the close handshake reads it too). Neither may
// run concurrently with the other or with a read of the WebSocket.
//
// coder/websocket keeps a pointer to the bufio.Reader, and bufio has no
// way to drop a buffer, so the Reader's value moves: into a pooled shell
// here, and back from a pooled Reader in RestoreReadBuffer.
func (r *Raw) ReleaseReadBuffer() bool {
	if r.shed {
		return true
	}
	if r.Buffered() {
		return false
	}
	sh, _ := shellPool.Get().(*bufio.Reader)
	if sh == nil {
		sh = new(bufio.Reader)
	}
	*sh = *r.br
	*r.br = bufio.Reader{}
	readerPool.Put(sh)
	r.shed = true
	return true
}

// RestoreReadBuffer gives the connection a read buffer again after
// ReleaseReadBuffer; otherwise it does nothing.
func (r *Raw) RestoreReadBuffer() {
	if !r.shed {
		return
	}
	r.shed = false
	full, _ := readerPool.Get().(*bufio.Reader)
	if full == nil || full.Size() != r.rsize {
		full = bufio.NewReaderSize(r.rd, r.rsize)
	} else {
		full.Reset(r.rd)
	}
	*r.br = *full
	*full = bufio.Reader{}
	shellPool.Put(full)
}

// Readable reports, without blocking, whether a read of the socket
// would not block: bytes are waiting in the kernel, or the peer closed or
// reset the connection. Like WaitReadable it ignores bytes already in
// user space (see Buffered). It reports true where it cannot tell.
func (r *Raw) Readable() bool {
	if r.rc == nil {
		return true
	}
	return peekReadable(r.rc)
}

// RawConn returns the socket's raw connection, for readiness polling, or
// nil when the connection has none (TLS): bytes can then wait inside the
// connection where no readiness shows them.
func (r *Raw) RawConn() syscall.RawConn { return r.rc }

// Abort makes the next Close reset the connection (SO_LINGER 0) instead
// of sending a FIN and waiting for the peer's ACK. Use it when the peer is
// known to be gone, so nothing still to be sent could be read: the close
// then costs one RST and frees the socket at once.
func (r *Raw) Abort() {
	// Wrappers (*tls.Conn, a counting listener's conn) unwrap to the TCP
	// connection.
	c := r.Conn
	for c != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
			return
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = w.NetConn()
	}
}

// Cork holds back everything written to the connection, including what
// the write buffer flushes, until Uncork sends it in one write. A frame
// bigger than the small write buffer would otherwise cost one write syscall
// for the buffer and another for the rest (and one segment each on the
// wire). Every Cork must be followed by Uncork.
func (r *Raw) Cork() { r.cork.corkOn() }

// Uncork writes what was held since Cork in one write and returns its
// error.
func (r *Raw) Uncork() error { return r.cork.uncork() }

// corkWriter is the write side under the bufio.Writer coder/websocket
// uses. Writes pass straight through unless corked; then they are appended
// to a pooled buffer and written in one go by uncork. Control frames that
// coder/websocket writes from another goroutine while the connection is
// corked join the held bytes in order and leave with them.
type corkWriter struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	held   *[]byte
}

// maxPooledCork is the largest cork buffer kept for reuse.
const maxPooledCork = 64 << 10

var corkPool sync.Pool

func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.corked {
		return w.Conn.Write(p)
	}
	if w.held == nil {
		w.held, _ = corkPool.Get().(*[]byte)
		if w.held == nil {
			w.held = new([]byte)
		}
	}
	*w.held = append(*w.held, p...)
	return len(p), nil
}

func (w *corkWriter) corkOn() {
	w.mu.Lock()
	w.corked = true
	w.mu.Unlock()
}

func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	if w.held == nil {
		return nil
	}
	b := w.held
	w.held = nil
	var err error
	if len(*b) > 0 {
		_, err = w.Conn.Write(*b)
	}
	if cap(*b) <= maxPooledCork {
		*b = (*b)[:0]
		corkPool.Put(b)
	}
	return err
}

// hijackWriter is an http.ResponseWriter whose Hijack returns small
// buffers. It deliberately has no Unwrap method, so websocket.Accept finds
// this Hijack and not the inner one.
type hijackWriter struct {
	http.ResponseWriter
	rsize, wsize int
	meter        Meter
	raw          *Raw
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("wsconn: ResponseWriter is not an http.Hijacker")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	var conn net.Conn = nc
	var pc *prefixConn
	if n := brw.Reader.Buffered(); n > 0 {
		b, err := brw.Reader.Peek(n)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		pc = &prefixConn{Conn: nc, prefix: append([]byte(nil), b...)}
		conn = pc
	}
	w := conn
	if h.meter != nil {
		// coder/websocket may re-point the read buffer at the returned
		// connection, so the meter is that connection.
		conn = &meterConn{Conn: conn, m: h.meter}
	}
	br := bufio.NewReaderSize(conn, h.rsize)
	h.raw = newRaw(nc, br, conn, h.rsize, pc, w)
	h.raw.bw = bufio.NewWriterSize(&h.raw.cork, h.wsize)
	h.raw.wsConn = conn
	return conn, bufio.NewReadWriter(br, h.raw.bw), nil
}

// prefixConn serves bytes already read from the socket before reading from
// it again.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}
