package wsconn

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"runtime"
	"syscall"

	"github.com/coder/websocket"
)

// A connection that stays idle need not keep its websocket.Conn: about
// 1.4 KiB of coder/websocket state (the struct, its control-frame buffer,
// its channel-based locks, its message reader and writer) that holds
// nothing between messages. Detach drops it, Reattach builds a new one
// over the same connection and buffers when it is needed again, and
// meanwhile TakeFrames and TryWrite let the owner answer the liveness
// traffic of an idle connection (SocketCluster's pings and pongs are
// small text frames) without one.

// Detach prepares ws to be dropped while the connection under it stays
// open. coder/websocket sets a finalizer on every Conn (to close the
// connection), and a Conn refers to itself (its reader, writer and locks
// point back to it), which keeps an object with a finalizer from ever
// being collected: with the finalizer in place a dropped Conn would stay
// in memory for good. Detach clears it. ws must not be used afterwards.
func Detach(ws *websocket.Conn) { runtime.SetFinalizer(ws, nil) }

// Reattach returns a new websocket.Conn over the connection, for one
// detached (or never given one) by its owner, with the options the
// connection was accepted with (compression must be off: a detached
// connection has no compression context to resume). Bytes already in the
// read buffer are the new Conn's first. It must not run concurrently
// with a read of the connection, and no other Conn may be in use on it.
func (r *Raw) Reattach(opts *websocket.AcceptOptions) (*websocket.Conn, error) {
	if r.bw == nil {
		return nil, errors.New("wsconn: connection was not accepted by Accept")
	}
	// websocket.Accept re-points the hijacked read buffer at what it had
	// buffered followed by the connection. That is right at an upgrade;
	// here the buffer must stay as it is, so it is saved and restored
	// around the call, and Accept works on a copy of an empty one meanwhile
	// (which allocates nothing, unlike a shed buffer would).
	saved := *r.br
	*r.br = scratchReader
	h := &reattachWriter{raw: r}
	ws, err := websocket.Accept(h, reattachRequest, opts)
	*r.br = saved
	if err != nil {
		return nil, err
	}
	return ws, nil
}

// scratchReader is an empty bufio.Reader with a buffer, copied into a
// connection's reader while Reattach runs Accept: resetting a copy never
// writes to the shared buffer.
var scratchReader = *bufio.NewReaderSize(nil, 16)

// reattachRequest is a valid upgrade request: Reattach runs the upgrade
// only to have coder/websocket build a Conn; nothing of it is sent.
var reattachRequest = func() *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://reattach/", nil)
	if err != nil {
		panic(err)
	}
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "c2NjZ28gcmVhdHRhY2ghIQ==")
	return r
}()

// reattachWriter is the upgrade's ResponseWriter in Reattach: the
// response is discarded and Hijack hands over the connection's own
// buffers.
type reattachWriter struct {
	raw *Raw
	hdr http.Header
}

func (w *reattachWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = make(http.Header, 4)
	}
	return w.hdr
}

func (w *reattachWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *reattachWriter) WriteHeader(int)             {}

func (w *reattachWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.raw.wsConn, bufio.NewReadWriter(w.raw.br, w.raw.bw), nil
}

// maxTakenPayload is the largest frame payload TakeFrames hands to match.
const maxTakenPayload = 125

// TakeFrames consumes, from the read buffer, leading whole frames that
// are final, masked, unfragmented text frames of at most 125 bytes whose
// unmasked payload match accepts, and returns how many it took. It reads
// from the socket at most once, and only when the buffer is empty and the
// kernel has bytes (so it never blocks, and a flood of pongs cannot keep
// it): more may then still wait in the kernel. more reports
// bytes left buffered that are not such a frame (another message, a
// control frame, or a frame not yet whole): a websocket.Conn must read
// them. A read error is returned (more is then true: the Conn's read
// meets it too). The read buffer must be restored, and nothing else may
// read the connection meanwhile.
func (r *Raw) TakeFrames(match func(payload []byte) bool) (taken int, more bool, err error) {
	var payload [maxTakenPayload]byte
	filled := false
	for {
		if r.prefix != nil && len(r.prefix.prefix) > 0 {
			// Bytes from the upgrade not yet in the buffer: rare enough
			// to leave to the Conn.
			return taken, true, nil
		}
		if r.br.Buffered() == 0 {
			if filled || !r.Readable() {
				return taken, false, nil
			}
			filled = true
			if _, err := r.br.Peek(1); err != nil {
				return taken, true, err
			}
		}
		n := r.br.Buffered()
		b, _ := r.br.Peek(n)
		if n < 2 || b[0] != 0x81 || b[1]&0x80 == 0 || int(b[1]&0x7f) > maxTakenPayload {
			return taken, true, nil
		}
		plen := int(b[1] & 0x7f)
		if n < 6+plen {
			return taken, true, nil
		}
		key := b[2:6]
		p := payload[:plen]
		for i := range p {
			p[i] = b[6+i] ^ key[i&3]
		}
		if !match(p) {
			return taken, true, nil
		}
		r.br.Discard(6 + plen)
		taken++
	}
}

// ErrWouldBlock is TryWrite's error when the socket's send buffer is
// full and nothing was written.
var ErrWouldBlock = errors.New("wsconn: write would block")

// TryWrite writes p with one non-blocking write, for a connection with
// no websocket.Conn in use and nothing corked. It returns how much was
// written: all of p, or nothing with ErrWouldBlock, or a part when the
// send buffer filled (the caller then owns the rest of a frame). A
// connection without a raw descriptor (TLS) cannot be written this way
// (errors.ErrUnsupported).
func (r *Raw) TryWrite(p []byte) (int, error) {
	if r.rc == nil {
		return 0, errors.ErrUnsupported
	}
	r.cork.mu.Lock()
	defer r.cork.mu.Unlock()
	if r.cork.corked {
		return 0, ErrWouldBlock
	}
	var n int
	var werr error
	err := r.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			n += m
		}
		return true
	})
	if err != nil {
		return n, err
	}
	if n == 0 && (werr == syscall.EAGAIN || werr == syscall.EWOULDBLOCK) {
		return 0, ErrWouldBlock
	}
	if n < len(p) && werr == syscall.EAGAIN {
		werr = nil
	}
	return n, werr
}
