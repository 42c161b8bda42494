package frontend

import (
	"errors"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/wsconn"
	"github.com/sccgo/sccgo/protocol"
)

// Detached sockets. A parked socket that has carried nothing but pings
// and pongs for Config.IdleDetach also drops its websocket.Conn (about
// 1.4 KiB of coder/websocket state, the largest thing an idle socket
// holds). While it is detached the sweeper writes its pings straight to
// the descriptor and its reader takes the client's pongs from the read
// buffer itself (wsconn.Raw.TryWrite, TakeFrames); anything else read
// or written builds a Conn again first (wsconn.Raw.Reattach).
//
// Socket.cmu guards ws and its users. Whoever reads or writes through
// the Conn (the reader for a message, the queue's writer for a run, a
// close) holds a use from conn to doneConn; the sweeper detaches only a
// parked socket whose Conn has no user. Lock order: cmu, then rmu.

// acceptOptions are the WebSocket options of every client socket, at the
// upgrade and when a detached socket is given a Conn again.
var acceptOptions = websocket.AcceptOptions{
	InsecureSkipVerify: true, // origins are checked by upgrade, SocketCluster's way
	CompressionMode:    websocket.CompressionDisabled,
}

// Why a detached socket was given a Conn again (label of
// scc_frontend_socket_reattaches_total).
const (
	reattachRead  = "read"
	reattachWrite = "write"
	reattachClose = "close"
)

// conn returns the socket's Conn, building one if it is detached, and
// counts a use of it until doneConn. It returns nil only if a Conn cannot
// be built, which closes the connection.
func (s *Socket) conn(by string) *websocket.Conn {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.ws == nil {
		if s.wsGone && by != reattachClose {
			// Torn down: only a close handshake still needs a Conn (the
			// reader may end before the close it started runs).
			return nil
		}
		s.rmu.Lock()
		ws, err := s.nc.Reattach(&acceptOptions)
		s.rmu.Unlock()
		if err != nil {
			s.srv.log.Error("rebuilding a detached socket's WebSocket failed", "conn", s.id, "err", err)
			s.nc.Close()
			return nil
		}
		ws.SetReadLimit(s.srv.cfg.MaxPayload)
		s.ws = ws
		if !s.wsGone {
			s.srv.detachedN.Add(-1) // teardown counted it out already
		}
		s.srv.m.reattaches.WithLabelValues(by).Inc()
	}
	s.wsUsers++
	return s.ws
}

// doneConn ends a use begun by conn. active restarts the socket's idle
// time (IdleDetach): it carried something other than a ping or a pong.
func (s *Socket) doneConn(active bool) {
	var now int64
	if active {
		now = s.srv.clock()
	}
	s.cmu.Lock()
	s.wsUsers--
	if active {
		s.lastUse = now
	}
	s.cmu.Unlock()
}

// closeNow drops the connection without a close handshake.
func (s *Socket) closeNow() {
	s.cmu.Lock()
	ws := s.ws
	s.cmu.Unlock()
	if ws != nil {
		ws.CloseNow()
		return
	}
	s.nc.Close()
}

// tryDetach drops the Conn of a parked socket unused since before
// cutoff (server clock) and with no writer started (a writer that has
// not taken the Conn yet would only build it again).
func (s *Socket) tryDetach(cutoff int64) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.ws == nil || s.wsUsers != 0 || s.lastUse > cutoff || s.closing.Load() || s.rstate.Load() != readerParked || s.q.Writing() {
		return
	}
	wsconn.Detach(s.ws)
	s.ws = nil
	s.srv.detachedN.Add(1)
}

// ping sends the sweeper's ping: straight to the descriptor when the
// socket is detached and its send buffer takes it, else through the
// queue (which builds a Conn if need be).
func (s *Socket) ping() {
	s.cmu.Lock()
	if s.ws == nil {
		n, err := s.nc.TryWrite(s.srv.pingFrame)
		switch {
		case err == nil && n == len(s.srv.pingFrame):
			s.cmu.Unlock()
			s.srv.m.detachedPings.Inc()
			return
		case n > 0 || (err != nil && err != wsconn.ErrWouldBlock && !errors.Is(err, errors.ErrUnsupported)):
			// Part of a frame is out and the send buffer is full (a
			// client that stopped reading), or the connection failed:
			// nothing more can be written to it in order.
			s.cmu.Unlock()
			if s.closing.CompareAndSwap(false, true) {
				s.setCloseReason(protocol.CloseAbnormal, reasonWriteError)
			}
			s.q.Close()
			s.nc.Abort()
			s.nc.Close()
			s.wake()
			return
		}
	}
	s.cmu.Unlock()
	s.q.Ping(s.srv.ping)
}

// readDetached runs when a socket's reader wakes. For a detached socket
// it takes the pongs at the head of what arrived without building a
// Conn, and reports whether that was everything (pongsOnly: the reader
// then looks again, and parks), or the read error it met. Anything else
// is left to a Conn, built for by.
func (s *Socket) readDetached() (pongsOnly bool, by string, err error) {
	s.cmu.Lock()
	detached := s.ws == nil
	s.cmu.Unlock()
	if !detached {
		return false, reattachRead, nil
	}
	s.rmu.Lock()
	if s.closeStarted {
		s.rmu.Unlock()
		return false, reattachClose, nil
	}
	s.nc.RestoreReadBuffer()
	taken, more, err := s.nc.TakeFrames(isPong)
	s.rmu.Unlock()
	if taken > 0 && !s.closing.Load() {
		pong := s.srv.cfg.ProtocolVersion.PongFrame()
		s.srv.m.detachedPongs.Add(float64(taken))
		s.srv.m.bytesIn.Add(float64(taken * len(pong)))
		for range taken - 1 {
			s.srv.m.inPong.Inc()
		}
		s.handleMessage(pong)
	}
	return err == nil && !more, reattachRead, err
}

// isPong reports whether a text message is a SocketCluster pong (of
// either protocol version, as the reader accepts both).
func isPong(p []byte) bool {
	switch protocol.Classify(p) {
	case protocol.KindEmpty, protocol.KindV1Pong:
		return true
	}
	return false
}

// errDetachedClosed is the queue's error when a detached socket's
// WebSocket state could not be rebuilt (its connection is then closed).
var errDetachedClosed = errors.New("frontend: socket's WebSocket state could not be rebuilt")

// socketLender is the queue's view of a Socket (wsconn.Lender), so that
// Socket's API grows no such methods.
type socketLender Socket

func (l *socketLender) AcquireConn() (*websocket.Conn, error) {
	ws := (*Socket)(l).conn(reattachWrite)
	if ws == nil {
		return nil, errDetachedClosed
	}
	return ws, nil
}

func (l *socketLender) ReleaseConn(data bool) { (*Socket)(l).doneConn(data) }
