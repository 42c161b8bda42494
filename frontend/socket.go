package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/netpoll"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/internal/wsconn"
	"github.com/sccgo/sccgo/protocol"
)

// Errors returned by Socket methods.
var (
	// ErrSocketClosed means the socket is closed or closing.
	ErrSocketClosed = errors.New("frontend: socket is closed")
	// ErrNotHandshaken means the socket has not completed #handshake yet.
	ErrNotHandshaken = errors.New("frontend: socket has not completed the handshake")
	// ErrNotSubscribed means the socket is not subscribed to the channel.
	ErrNotSubscribed = errors.New("frontend: socket is not subscribed to the channel")
	// ErrNoSocket means no open socket has the given id.
	ErrNoSocket = errors.New("frontend: no such socket")
)

// Socket is one client connection. Its reader owns its lifetime: it
// reads, dispatches packets in order and tears the socket down when the
// connection ends. The reader is a goroutine only while there is
// something to read; an idle socket is parked in the server's poller (see
// serve). Other goroutines only enqueue (Transmit, Invoke,
// SetAuthToken, deliveries) and never write to the connection themselves.
type Socket struct {
	srv *Server
	id  string
	nc  *wsconn.Raw
	q   wsconn.Queue

	// cmu guards the WebSocket state, nil while the socket is detached
	// (detach.go), and who uses it.
	cmu     sync.Mutex
	ws      *websocket.Conn
	wsUsers int32
	wsGone  bool  // torn down: a detached socket gets a Conn again only to close
	lastUse int64 // server clock of the last use's end

	opened    int64        // server clock, ns
	lastSeen  atomic.Int64 // server clock of the last inbound message
	lastPing  atomic.Int64 // server clock of the last ping queued
	handshook atomic.Bool
	closing   atomic.Bool
	// closeDeferred: the connection is closed by the server's closer,
	// which then releases its place in the connection count (released:
	// exactly once), so MaxConnections still bounds open descriptors.
	closeDeferred atomic.Bool
	released      atomic.Bool
	authExp       atomic.Int64 // exp of the current token (unix s), 0 if none
	hk            *hookState   // nil unless a backend hook is configured (hookcalls.go)

	// Inbound limits, charged by the reader and by the meter under the
	// WebSocket's reads (which the close handshake may run elsewhere).
	limMu     sync.Mutex
	msgs      bucket      // InboundRate
	bytes     bucket      // InboundByteRate
	fragments int32       // frames of the message being received
	readsCut  atomic.Bool // closed for a limit: read nothing more
	refused   bucket      // PublishRefusalRate; the reader's alone
	ip        netip.Addr

	// rmu orders the reader's look at the read buffer before a close
	// handshake that reads the same buffer from another goroutine.
	rmu          sync.Mutex
	closeStarted bool

	rstate atomic.Int32   // reader state: readerRunning, readerParked, ...
	parked netpoll.Handle // the socket's place in the server's poller

	mu          sync.Mutex
	closeReason string
	closeCode   int
	auth        *tokenInfo
	channels    []string // subscribed channels; a slice is smaller than a map for the usual few
	nextCID     int64
	calls       map[int64]chan callResult
	apiUser     string // user whose control channel holds the socket (server API)
	apiGone     bool   // torn down: no more control channel bindings
}

type callResult struct {
	data json.RawMessage
	err  error
}

// ID returns the socket id sent to the client in the handshake reply.
func (s *Socket) ID() string { return s.id }

// RemoteAddr returns the client's address.
func (s *Socket) RemoteAddr() net.Addr { return s.nc.RemoteAddr() }

// IsAuthenticated reports whether the socket holds a valid auth token.
func (s *Socket) IsAuthenticated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth != nil
}

// AuthToken returns the claims of the socket's auth token, or nil. The map
// must not be modified.
func (s *Socket) AuthToken() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		return nil
	}
	return s.auth.claims
}

// SignedAuthToken returns the socket's signed token, or "".
func (s *Socket) SignedAuthToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		return ""
	}
	return s.auth.signed
}

// Channels returns the channels the socket is subscribed to.
func (s *Socket) Channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.channels...)
}

// Transmit sends an event with no reply expected. data is marshalled with
// encoding/json; json.RawMessage is sent as is; nil leaves the data out.
func (s *Socket) Transmit(event string, data any) error {
	b, err := marshalData(data)
	if err != nil {
		return err
	}
	if !s.send(protocol.AppendEvent(nil, event, b, 0)) {
		return ErrSocketClosed
	}
	return nil
}

// Invoke calls a procedure on the client and waits for its reply, for at
// most the configured AckTimeout (then it fails with a TimeoutError
// *protocol.Error) or until ctx is done. A client error reply comes back as
// a *protocol.Error.
func (s *Socket) Invoke(ctx context.Context, event string, data any) (json.RawMessage, error) {
	b, err := marshalData(data)
	if err != nil {
		return nil, err
	}
	ch := make(chan callResult, 1)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return nil, ErrSocketClosed
	}
	s.nextCID++
	cid := s.nextCID
	if s.calls == nil {
		s.calls = make(map[int64]chan callResult)
	}
	s.calls[cid] = ch
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		delete(s.calls, cid)
		s.mu.Unlock()
	}
	if !s.send(protocol.AppendEvent(nil, event, b, cid)) {
		drop()
		return nil, ErrSocketClosed
	}
	t := time.NewTimer(s.srv.cfg.AckTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-t.C:
		drop()
		return nil, protocol.NewError(protocol.ErrNameTimeout, fmt.Sprintf("Event response for %s timed out", event))
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// SetAuthToken signs claims (adding iat, and exp from the default expiry
// unless claims has one), makes them the socket's token and sends
// #setAuthToken. If signing fails the socket is closed with 4002, as
// SocketCluster does.
func (s *Socket) SetAuthToken(claims map[string]any) error {
	if !s.handshook.Load() {
		return ErrNotHandshaken
	}
	info, err := s.srv.auth.sign(claims)
	if err != nil {
		s.closeWith(protocol.CloseAuthSignFailed, reasonAuthSignFailed, true)
		return err
	}
	s.setAuth(info)
	data, _ := json.Marshal(protocol.SetAuthTokenData{Token: info.signed})
	if !s.send(protocol.AppendEvent(nil, protocol.EventSetAuthToken, data, 0)) {
		return ErrSocketClosed
	}
	return nil
}

// Deauthenticate drops the socket's token and sends #removeAuthToken.
func (s *Socket) Deauthenticate() {
	s.setAuth(nil)
	s.send(removeAuthTokenFrame)
}

// KickOut sends #kickOut for channel and unsubscribes the socket from it.
func (s *Socket) KickOut(channel, message string) error {
	if !s.dropChannel(channel) {
		return ErrNotSubscribed
	}
	s.srv.subs.unsubscribe(channel, s)
	data, _ := json.Marshal(protocol.KickOutData{Channel: channel, Message: message})
	s.send(protocol.AppendEvent(nil, protocol.EventKickOut, data, 0))
	s.kickCompanion(channel)
	return nil
}

// Close closes the socket with a close code, after the packets already
// queued have been written.
func (s *Socket) Close(code int, reason string) {
	r := reasonServer
	switch code {
	case protocol.CloseNormal:
		r = reasonNormal
	case protocol.CloseGoingAway:
		r = reasonGoingAway
	}
	s.closeWithText(code, r, reason, true)
}

var removeAuthTokenFrame = []byte(`{"event":"#removeAuthToken"}`)

func marshalData(data any) ([]byte, error) {
	switch d := data.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(d) {
			return nil, errors.New("frontend: data is not valid JSON")
		}
		return d, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encoding data: %w", err)
	}
	return b, nil
}

// send queues one packet; false when the socket is closed.
func (s *Socket) send(p []byte) bool {
	if !s.q.Enqueue(p) {
		return false
	}
	s.srv.stat.messagesOut.Add(1)
	s.srv.m.messagesOut.Inc()
	return true
}

func (s *Socket) setAuth(info *tokenInfo) {
	s.mu.Lock()
	s.auth = info
	s.mu.Unlock()
	if info != nil {
		s.authExp.Store(info.exp)
	} else {
		s.authExp.Store(0)
	}
	s.recheckChannels()
	s.srv.api.bindUser(s, userOf(info))
	s.srv.pres.refresh(s)
}

// dropChannel removes channel from the socket's list and gives back its
// subscription budget; false when it was not listed.
func (s *Socket) dropChannel(channel string) bool {
	s.mu.Lock()
	i := slices.Index(s.channels, channel)
	if i < 0 {
		s.mu.Unlock()
		return false
	}
	last := len(s.channels) - 1
	s.channels[i] = s.channels[last]
	s.channels[last] = ""
	s.channels = s.channels[:last]
	switch {
	case len(s.channels) == 0:
		s.channels = nil
	case cap(s.channels) >= 64 && len(s.channels) < cap(s.channels)/4:
		s.channels = slices.Clone(s.channels)
	}
	s.mu.Unlock()
	s.srv.releaseSubs(s, 1)
	return true
}

// checkExpiry deauthenticates (sending #removeAuthToken) when the token
// has expired. SocketCluster has no expiry timer either: it checks on
// inbound packets and pongs.
func (s *Socket) checkExpiry() {
	exp := s.authExp.Load()
	if exp == 0 || time.Now().Unix() < exp {
		return
	}
	s.mu.Lock()
	expired := s.auth != nil && s.auth.exp == exp
	if expired {
		s.auth = nil
	}
	s.mu.Unlock()
	s.authExp.CompareAndSwap(exp, 0)
	if expired {
		s.srv.api.bindUser(s, "")
		s.send(removeAuthTokenFrame)
		s.recheckChannels()
	}
}

// QueueOverflow implements wsconn.Owner: the client is not keeping up.
func (s *Socket) QueueOverflow(reason string) {
	s.srv.m.queueDrops.WithLabelValues(reason).Inc()
	s.closeWith(protocol.CloseSlowConsumer, reasonSlowConsumer, false)
}

// QueueWriteError implements wsconn.Owner.
func (s *Socket) QueueWriteError(err error) {
	if s.closing.CompareAndSwap(false, true) {
		s.setCloseReason(protocol.CloseAbnormal, reasonWriteError)
		s.srv.log.Debug("write failed", "conn", s.id, "err", err)
		if peerGone(err) {
			s.abandon()
			return
		}
	}
	s.closeNow()
	s.wake()
}

// abandon resets a connection whose peer is gone and leaves its close to
// the server's closer. A peer that ended its side without a close frame
// has left (WebSocket has no half-close), so nothing still to be sent
// could be read.
func (s *Socket) abandon() {
	s.closeDeferred.Store(true)
	s.nc.Abort()
	s.srv.closeLater(s)
}

func (s *Socket) setCloseReason(code int, reason string) {
	s.mu.Lock()
	s.closeCode, s.closeReason = code, reason
	s.mu.Unlock()
}

// closeWith starts closing the socket with code (once; later calls are
// ignored). With flush, packets already queued are written first. It never
// blocks and takes no table lock, so it is safe from fan-out.
func (s *Socket) closeWith(code int, reason string, flush bool) {
	s.closeWithText(code, reason, protocol.CloseReason(code), flush)
}

func (s *Socket) closeWithText(code int, reason, text string, flush bool) {
	if !s.closing.CompareAndSwap(false, true) {
		return
	}
	s.setCloseReason(code, reason)
	if len(text) > 123 {
		text = text[:123]
	}
	doClose := func() {
		// The close handshake waits for the client; a client that does not
		// answer is cut off.
		t := time.AfterFunc(s.srv.cfg.CloseTimeout, func() { s.nc.Close() })
		s.rmu.Lock()
		s.closeStarted = true
		s.nc.RestoreReadBuffer() // the handshake reads it
		s.rmu.Unlock()
		// A parked socket's reader joins the handshake's reads and tears
		// the socket down once it is over.
		s.wake()
		if ws := s.conn(reattachClose); ws != nil {
			ws.Close(websocket.StatusCode(code), text)
			s.doneConn(true)
		}
		t.Stop()
	}
	if flush {
		s.q.CloseAfterFlush(doClose)
		return
	}
	s.q.Close()
	s.srv.wg.Go(doClose)
}

// Reader states (Socket.rstate). One goroutine at a time runs serve: the
// one the upgrade starts, then, each time the socket parked, one started
// by wake.
const (
	readerRunning int32 = iota // serve runs
	readerRewake               // serve runs, and was woken meanwhile: look again before parking
	readerParked               // no goroutine: the poller or a close calls wake
	readerDone                 // torn down
)

// serve is the reader. It reads and handles messages until there is
// nothing left to read, then parks the socket in the server's poller and
// returns, so an idle socket holds no goroutine; wake starts it again.
// The last serve tears the socket down.
func (s *Socket) serve() {
	for {
		switch s.waitReadable() {
		case waitParked:
			return
		case waitRead:
			pongsOnly, by, err := s.readDetached()
			if err != nil {
				// The connection failed or broke a limit while detached:
				// no Conn is needed to learn that (a close handshake
				// builds its own).
				s.readFailed(err)
				break
			}
			if pongsOnly {
				continue // look again, and park
			}
			if ws := s.conn(by); ws != nil {
				ok, pong := s.readOne(ws)
				s.doneConn(!pong)
				if ok {
					s.waitRefusals() // a closed socket's next read fails
					continue
				}
			}
		}
		s.readFailed(net.ErrClosed)
		s.rstate.Store(readerDone)
		if p := s.srv.poller.Load(); p != nil {
			p.Release(&s.parked, s.nc.RawConn())
		}
		s.teardown()
		s.srv.wg.Done()
		return
	}
}

type waitResult int

const (
	waitRead   waitResult = iota // a message may be read
	waitParked                   // parked: return without touching the socket
	waitFailed                   // the connection ended
)

// waitReadable decides what the reader does next: read, when bytes are
// in user space or in the kernel (or the peer left); park, when there are
// none and the server has a poller; else block until the socket is
// readable. Once a close handshake has started it reads at once: the
// WebSocket reader then serializes with the handshake's own reads.
func (s *Socket) waitReadable() waitResult {
	for {
		s.rmu.Lock()
		s.nc.RestoreReadBuffer() // after a park
		ready := s.closeStarted || s.nc.Buffered()
		s.rmu.Unlock()
		if ready {
			return waitRead
		}
		p := s.srv.poller.Load()
		rc := s.nc.RawConn()
		if p == nil || rc == nil {
			if s.nc.WaitReadable() != nil {
				return waitFailed
			}
			return waitRead
		}
		if s.nc.Readable() {
			return waitRead
		}
		// A parked socket needs no read buffer; whoever reads next (this
		// reader once woken, or a close handshake) takes one back under
		// rmu first.
		s.rmu.Lock()
		shed := !s.closeStarted && s.nc.ReleaseReadBuffer()
		s.rmu.Unlock()
		if !shed {
			continue
		}
		if p.Arm(&s.parked, rc, (*socketWaker)(s)) != nil {
			// The poller is closed (shutdown) or the connection is:
			// block as without a poller.
			s.rmu.Lock()
			s.nc.RestoreReadBuffer()
			s.rmu.Unlock()
			if s.nc.WaitReadable() != nil {
				return waitFailed
			}
			return waitRead
		}
		s.srv.parkedN.Add(1) // before the state, so a wake never takes it below zero
		if s.rstate.CompareAndSwap(readerRunning, readerParked) {
			return waitParked
		}
		s.srv.parkedN.Add(-1)
		// Woken between the arm and now (the one-shot arm may have
		// fired too, or may still): look again.
		s.rstate.Store(readerRunning)
	}
}

// wake restarts a parked socket's reader: its descriptor is readable, or
// its connection is being closed (a closed descriptor leaves the poller
// without an event, so whoever closes the connection wakes the socket,
// whose reader then finds it closed and tears the socket down). A socket
// whose reader runs is told to look again before it parks.
func (s *Socket) wake() {
	for {
		switch st := s.rstate.Load(); st {
		case readerParked:
			if s.rstate.CompareAndSwap(st, readerRunning) {
				s.srv.parkedN.Add(-1)
				go s.serve() // counted in srv.wg by the socket itself
				return
			}
		case readerRunning:
			if s.rstate.CompareAndSwap(st, readerRewake) {
				return
			}
		default:
			return
		}
	}
}

// socketWaker is the poller's view of a Socket, so that Socket's API
// grows no Wake method.
type socketWaker Socket

func (w *socketWaker) Wake() { (*Socket)(w).wake() }

// readOne reads and handles one message through ws; ok is false when the
// connection ended, pong is true when the message was a pong.
func (s *Socket) readOne(ws *websocket.Conn) (ok, pong bool) {
	typ, r, err := ws.Reader(context.Background())
	if err != nil {
		s.readFailed(err)
		return false, false
	}
	if typ != websocket.MessageText {
		s.srv.m.messagesIn.WithLabelValues("binary").Inc()
		s.closeWith(protocol.CloseUnsupportedData, reasonUnsupportedData, false)
		// Drain it, so the reader stays usable for the close handshake.
		_, err := io.Copy(io.Discard, r)
		return err == nil, false
	}
	bp, msg, held, err := s.readMessage(getReadBuf(readBufSize), r)
	defer s.srv.readHeld.Add(-held)
	if err != nil {
		putReadBuf(bp, msg)
		s.readFailed(err)
		return false, false
	}
	if !s.closing.Load() {
		s.srv.m.bytesIn.Add(float64(len(msg)))
		if utf8.Valid(msg) {
			s.handleMessage(msg)
		} else {
			// RFC 6455 §8.1, and what SocketCluster's ws does. Passing it
			// on would put invalid UTF-8 into other clients' text frames,
			// which browsers treat as fatal.
			s.closeWith(protocol.CloseInvalidPayload, reasonInvalidPayload, false)
		}
	}
	pong = len(msg) <= 2 && isPong(msg)
	putReadBuf(bp, msg)
	return true, pong
}

// readMessage reads the rest of a message from r into *bp's buffer, like
// io.ReadAll into a reused buffer, and returns the holder of the buffer it
// ended in with the message. What a message holds beyond readFree bytes is
// charged to the server's ReadBudget as it arrives (and a buffer grown
// for it, before it is allocated), so sockets that hold partly
// received messages cannot together pin more than the budget, while small
// messages never touch it. held is what was charged, for the caller to
// give back once the message is handled.
//
// Buffers come from pools by size (see getReadBuf), and a buffer outgrown
// goes back at once: a stream of large messages (a flood of 900 KB
// batches) reuses the same few buffers instead of allocating about twice
// each message's size, which made the collector run several times a second
// and charged each grown buffer's assist to the goroutine that allocated
// it, holding up every other socket's reader on a busy CPU.
func (s *Socket) readMessage(bp *[]byte, r io.Reader) (_ *[]byte, _ []byte, held int64, err error) {
	charge := func(upto int) bool {
		need := int64(upto - readFree)
		if need <= held {
			return true
		}
		if !s.srv.takeRead(need - held) {
			return false
		}
		held = need
		return true
	}
	limit := int(s.srv.cfg.MaxPayload) + 1 // the WebSocket reader reads one byte past the limit
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			n := max(min(2*cap(b), limit), cap(b)+readBufSize)
			// Both buffers are live during the copy.
			if !charge(n + cap(b)) {
				return bp, b, held, errReadBudget
			}
			nbp := getReadBuf(n)
			nb := append((*nbp)[:0], b...)
			putReadBuf(bp, b)
			bp, b = nbp, nb
			if after := max(0, int64(cap(b)-readFree)); after < held {
				s.srv.readHeld.Add(after - held)
				held = after
			}
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if !charge(len(b)) {
			return bp, b, held, errReadBudget
		}
		if err == io.EOF {
			return bp, b, held, nil
		}
		if err != nil {
			return bp, b, held, err
		}
	}
}

const (
	readBufSize = 512
	// readBufClasses is how many pooled buffer sizes there are:
	// readBufSize << 0 … readBufSize << (readBufClasses-1), 512 B to 1 MiB
	// (the default SCC_MAX_PAYLOAD). Larger buffers are not pooled.
	readBufClasses = 12
	// readFree is how much of a message is read without charging the
	// read budget, so that small messages never depend on it.
	readFree = 4 << 10
)

// readBufPools hold read buffers by size class. A sync.Pool keeps what
// went unused for two collections at most. What one class holds is
// bounded by the buffers of its size that sockets held at once, which
// the read budget bounds for buffers above readFree (at most a budget's
// worth per class, and a message growing to a class leaves one buffer of
// each smaller class behind), and it is released once large messages
// stop.
var readBufPools [readBufClasses]sync.Pool

func init() {
	for k := range readBufPools {
		size := readBufSize << k
		readBufPools[k].New = func() any { b := make([]byte, 0, size); return &b }
	}
}

// readBufClass is the class of a buffer of capacity c, or -1 when c is
// not a pooled size.
func readBufClass(c int) int {
	if c < readBufSize || c > readBufSize<<(readBufClasses-1) || c&(c-1) != 0 {
		return -1
	}
	return bits.TrailingZeros(uint(c)) - bits.TrailingZeros(uint(readBufSize))
}

// getReadBuf returns an empty buffer of capacity n: pooled when n is a
// pooled size.
func getReadBuf(n int) *[]byte {
	if k := readBufClass(n); k >= 0 {
		return readBufPools[k].Get().(*[]byte)
	}
	b := make([]byte, 0, n)
	return &b
}

// putReadBuf gives b (held in *bp) back to its pool, if it has one.
func putReadBuf(bp *[]byte, b []byte) {
	k := readBufClass(cap(b))
	if k < 0 {
		return
	}
	*bp = b[:0]
	readBufPools[k].Put(bp)
}

// readFailed records why the connection ended when the server did not
// close it itself.
func (s *Socket) readFailed(err error) {
	var le *limitError
	if errors.As(err, &le) {
		s.readsCut.Store(true)
		text := le.text
		if text == "" {
			text = protocol.CloseReason(le.code)
		}
		s.closeWithText(le.code, le.reason, text, false)
		return
	}
	if !s.closing.CompareAndSwap(false, true) {
		return
	}
	code, reason := protocol.CloseAbnormal, reasonReadError
	switch st := websocket.CloseStatus(err); {
	case errors.Is(err, websocket.ErrMessageTooBig):
		code, reason = protocol.CloseMessageTooBig, reasonMessageTooBig
	case st == websocket.StatusNormalClosure:
		code, reason = int(st), reasonNormal
	case st == websocket.StatusGoingAway:
		code, reason = int(st), reasonGoingAway
	case st != -1:
		code, reason = int(st), reasonClientClose
	}
	s.setCloseReason(code, reason)
	s.q.Close()
	if code == protocol.CloseAbnormal && peerGone(err) {
		s.abandon()
		return
	}
	s.closeNow()
}

// peerGone reports whether a read or write error means the peer's end is
// closed or reset.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// teardown runs on the reader goroutine once the connection has ended.
func (s *Socket) teardown() {
	s.q.Close()
	srv := s.srv
	s.cmu.Lock()
	if s.ws == nil {
		srv.detachedN.Add(-1)
	}
	s.wsGone = true
	s.cmu.Unlock()
	srv.unregister(s)

	s.mu.Lock()
	chans := s.channels
	s.channels = nil
	calls := s.calls
	s.calls = nil
	code, reason := s.closeCode, s.closeReason
	apiUser := s.apiUser
	s.apiUser, s.apiGone = "", true
	s.mu.Unlock()
	if apiUser != "" {
		srv.api.ctl.unsubscribe(userChanPrefix+apiUser, s)
	}
	for _, ch := range chans {
		srv.subs.unsubscribe(ch, s)
	}
	srv.releaseSubs(s, len(chans))
	srv.chargeReleased(s.ip, len(chans))
	for _, c := range calls {
		c <- callResult{err: protocol.NewError(protocol.ErrNameBadConnection, "Socket connection closed", "type", "disconnect", "code", code)}
	}
	if reason == "" {
		reason = reasonReadError
	}
	srv.m.closes.WithLabelValues(reason).Inc()
	if limitCloseReasons[reason] && s.ip.IsValid() {
		srv.sources.limitClosed(s.ip)
	} else if shortConnectionReasons[reason] && s.ip.IsValid() && srv.cfg.ShortConnectionsPerIP > 0 &&
		srv.clock()-s.opened < int64(srv.cfg.ShortConnectionTime) && !srv.isDraining() {
		srv.sources.shortConnection(s.ip)
	}
	srv.log.Debug("socket closed", "conn", s.id, "reason", reason, "code", code)
	if s.handshook.Load() && srv.cfg.OnDisconnect != nil {
		srv.cfg.OnDisconnect(s, code)
	}
}

func (s *Socket) handleMessage(msg []byte) {
	now := s.srv.clock()
	s.lastSeen.Store(now)
	switch protocol.Classify(msg) {
	case protocol.KindEmpty, protocol.KindV1Pong:
		// Its frame paid for it.
		s.srv.m.inPong.Inc()
		if s.handshook.Load() {
			s.checkExpiry()
		}
		return
	case protocol.KindJSON:
		pkts, err := protocol.DecodePacketsMax(msg, s.srv.cfg.MaxBatchPackets)
		if errors.Is(err, protocol.ErrTooManyPackets) {
			s.readsCut.Store(true)
			s.closeWithText(errBatchTooLong.code, errBatchTooLong.reason, errBatchTooLong.text, false)
			return
		}
		if err == nil {
			s.srv.stat.messagesIn.Add(uint64(len(pkts)))
			// The frame paid for the first packet.
			if !s.allow(now, len(pkts)-1) {
				s.closeWith(protocol.CloseRateLimited, reasonRateLimited, false)
				return
			}
			for i := range pkts {
				if s.closing.Load() {
					return
				}
				s.handlePacket(&pkts[i])
			}
			return
		}
	}
	// A raw message (sc-formatter: not JSON-looking, or unparseable).
	s.srv.m.inRaw.Inc()
	s.srv.stat.messagesIn.Add(1)
	if !s.handshook.Load() {
		s.closeWith(protocol.CloseMessageBeforeHandshake, reasonBeforeHandshake, false)
	}
}

func (s *Socket) handlePacket(p *protocol.Packet) {
	kind := p.Kind()
	if !s.handshook.Load() {
		if kind == protocol.PacketOther {
			s.srv.m.inRaw.Inc()
		}
		if p.HasEvent && p.Event == protocol.EventHandshake {
			s.handshake(p)
			return
		}
		s.closeWith(protocol.CloseMessageBeforeHandshake, reasonBeforeHandshake, false)
		return
	}
	switch kind {
	case protocol.PacketResponse:
		s.srv.m.inResponse.Inc()
		s.handleResponse(p)
		return
	case protocol.PacketOther:
		s.srv.m.inRaw.Inc()
		return
	}
	switch p.Event {
	case protocol.EventHandshake:
		s.handshake(p)
		return
	case protocol.EventAuthenticate:
		s.authenticate(p)
		return
	case protocol.EventRemoveAuthToken:
		s.srv.m.inOther.Inc()
		s.setAuth(nil)
		s.ack(p)
		return
	}
	s.checkExpiry()
	switch p.Event {
	case protocol.EventPublish:
		s.srv.m.inPublish.Inc()
		s.publish(p)
	case protocol.EventSubscribe:
		s.srv.m.inSubscribe.Inc()
		s.subscribe(p)
	case protocol.EventUnsubscribe:
		s.srv.m.inOther.Inc()
		s.unsubscribe(p)
	case protocol.ProcPresence, protocol.ProcPresenceStats:
		s.presenceCall(p, p.Event == protocol.ProcPresenceStats)
	default:
		s.custom(p)
	}
}

// ack replies {rid} when the packet was an invoke.
func (s *Socket) ack(p *protocol.Packet) {
	if p.CID != nil {
		s.send(protocol.AppendResponse(nil, p.CID, nil))
	}
}

// fail replies {rid, error} when the packet was an invoke.
func (s *Socket) fail(p *protocol.Packet, e *protocol.Error) {
	if p.CID != nil {
		s.send(protocol.AppendErrorResponse(nil, p.CID, e))
	}
}

func (s *Socket) reply(p *protocol.Packet, data []byte) {
	if p.CID != nil {
		s.send(protocol.AppendResponse(nil, p.CID, data))
	}
}

func (s *Socket) handshake(p *protocol.Packet) {
	srv := s.srv
	if p.CID == nil {
		s.closeWith(protocol.CloseHandshakeRejected, reasonHandshakeRejected, false)
		return
	}
	if srv.cfg.ConnectHook != nil && !s.handshook.Load() {
		s.handshakeHook(p)
		return
	}
	resp := protocol.HandshakeResponse{ID: s.id, PingTimeout: srv.cfg.PingTimeout.Milliseconds()}
	var authErr *protocol.Error
	if raw, given := handshakeToken(p.Data); given {
		var info *tokenInfo
		info, authErr = srv.verify(raw)
		if authErr == nil {
			s.setAuth(info)
			resp.IsAuthenticated = true
		} else {
			s.setAuth(nil)
			resp.AuthError = authErr
		}
	}
	data, _ := json.Marshal(resp)
	first := s.handshook.CompareAndSwap(false, true)
	if first {
		srv.m.handshakes.Inc() // counted before the client can see the reply
	}
	s.send(protocol.AppendResponse(nil, p.CID, data))
	if authErr != nil && authErr.IsBadToken() {
		s.send(removeAuthTokenFrame)
	}
	if first {
		if srv.cfg.OnConnect != nil {
			srv.cfg.OnConnect(s)
		}
	}
}

// handshakeToken returns the raw authToken of a #handshake and whether one
// was given (a JSON null or a missing token is none).
func handshakeToken(data json.RawMessage) (json.RawMessage, bool) {
	if len(data) == 0 || data[0] != '{' {
		return nil, false
	}
	var req struct {
		AuthToken json.RawMessage `json:"authToken"`
	}
	if json.Unmarshal(data, &req) != nil || len(req.AuthToken) == 0 || string(req.AuthToken) == "null" {
		return nil, false
	}
	return req.AuthToken, true
}

func (s *Socket) authenticate(p *protocol.Packet) {
	s.srv.m.inOther.Inc()
	if p.CID == nil {
		s.closeWith(protocol.CloseHandshakeRejected, reasonHandshakeRejected, false)
		return
	}
	info, authErr := s.srv.verify(p.Data)
	switch {
	case authErr == nil:
		s.setAuth(info)
		s.reply(p, []byte(`{"isAuthenticated":true,"authError":null}`))
	case authErr.IsBadToken():
		s.setAuth(nil)
		s.fail(p, authErr)
		s.send(removeAuthTokenFrame)
	default:
		// A soft failure (not yet valid): data, not an error, and the
		// client keeps its token.
		s.setAuth(nil)
		data, _ := json.Marshal(protocol.AuthenticateResponse{AuthError: authErr})
		s.reply(p, data)
	}
}

// subscribe adds the socket to a channel. When the channel's broker
// subscription is not in force yet, the reply waits for the broker on
// another goroutine while this reader goes on reading: a client that
// subscribes many channels at once (a reconnect) still answers pings.
// Pending subscriptions count against SocketChannelLimit.
func (s *Socket) subscribe(p *protocol.Packet) {
	srv := s.srv
	req, err := protocol.DecodeSubscribe(p.Data)
	if err != nil || req.Channel == "" || len(req.Channel) > srv.cfg.MaxChannelLength {
		s.fail(p, protocol.NewError(protocol.ErrNameInvalidAction, "Subscribe channel name was malformatted"))
		return
	}
	if !s.paceSubscribe() {
		return
	}
	ch := req.Channel
	if req.WaitForAuth && !s.IsAuthenticated() {
		s.fail(p, protocol.NewError(protocol.ErrNameAuth, fmt.Sprintf("Cannot subscribe socket to the %s channel before it has authenticated", ch)))
		return
	}
	if base, ok := protocol.PresenceBase(ch); ok {
		// The read-only companion channel of base's join/leave events.
		if perr := s.checkCompanion(base); perr != nil {
			s.fail(p, perr)
			return
		}
	} else if perr := s.checkChannel(rules.OpSubscribe, ch, req.Data); perr != nil {
		if perr == errHookDecides {
			s.subscribeHook(p, ch, req.Data)
			return
		}
		s.fail(p, perr)
		return
	}
	refuse := func(reason, msg string) {
		srv.m.subscribeErrors.WithLabelValues(reason).Inc()
		s.fail(p, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %s", ch, msg)))
	}
	s.mu.Lock()
	if slices.Contains(s.channels, ch) {
		s.mu.Unlock()
		s.ack(p)
		return
	}
	if len(s.channels) >= srv.cfg.SocketChannelLimit {
		s.mu.Unlock()
		refuse(subRejectSocketLimit, fmt.Sprintf("InvalidActionError: Socket %s tried to exceed the channel subscription limit of %d", s.id, srv.cfg.SocketChannelLimit))
		return
	}
	s.mu.Unlock()
	if ok, reason := srv.reserveSub(s); !ok {
		refuse(reason, "the server is at its subscription limit")
		return
	}
	// Listed before joining, so that a failed broker subscription (which
	// may be answered at once, on another goroutine) finds it to drop.
	// Only this reader adds channels, so the checks above still hold.
	s.mu.Lock()
	s.channels = append(s.channels, ch)
	s.mu.Unlock()
	if s.historySubscribe(p, ch, req.Data) {
		return
	}

	st, err := srv.subs.join(ch, s, subWaiter{s: s, cid: cloneRaw(p.CID)}, srv.cfg.MaxPendingSubscribes)
	if err != nil {
		s.dropChannel(ch)
		refuse(subRejectPending, err.Error())
		return
	}
	if !s.hasChannel(ch) {
		// Kicked out (or torn down) meanwhile: leave the table again.
		srv.subs.unsubscribe(ch, s)
	}
	switch st {
	case joinReady:
		s.ack(p)
	case joinStart:
		complete := func() {
			ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.AckTimeout)
			defer cancel()
			srv.subs.complete(ctx, ch, srv.subscribed(ch))
		}
		if _, ok := srv.broker.(*LocalBroker); ok {
			complete()
			return
		}
		srv.wg.Go(complete)
	}
}

// subscribed returns the answer to the sockets waiting for channel's
// broker subscription.
func (s *Server) subscribed(ch string) func(subWaiter, error) {
	return func(w subWaiter, err error) {
		p := &protocol.Packet{CID: w.cid}
		if err != nil {
			// The table dropped the socket with the entry.
			w.s.dropChannel(ch)
			s.m.subscribeErrors.WithLabelValues(subRejectBroker).Inc()
			w.s.fail(p, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %v", ch, err)))
			return
		}
		w.s.ack(p)
	}
}

func (s *Socket) hasChannel(ch string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.channels, ch)
}

func (s *Socket) unsubscribe(p *protocol.Packet) {
	ch, ok := protocol.DecodeString(p.Data)
	if !ok {
		s.fail(p, protocol.NewError(protocol.ErrNameInvalidAction, "Unsubscribe channel name was malformatted"))
		return
	}
	if !s.paceUnsubscribe() {
		return
	}
	pending := s.cancelHookSubscribe(ch)
	if !s.dropChannel(ch) {
		if pending {
			s.ack(p)
			return
		}
		s.fail(p, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
			"Failed to unsubscribe socket from the %s channel - InvalidActionError: Socket %s tried to unsubscribe from a channel which it is not subscribed to",
			ch, s.id)))
		return
	}
	s.srv.subs.unsubscribe(ch, s)
	s.ack(p)
	s.kickCompanion(ch)
}

func (s *Socket) publish(p *protocol.Packet) {
	srv := s.srv
	// Every refusal is answered, then paced (paceRefusal).
	fail := func(e *protocol.Error) {
		s.fail(p, e)
		s.paceRefusal()
	}
	if !srv.cfg.AllowClientPublish {
		srv.m.publishErrors.WithLabelValues("disabled").Inc()
		fail(protocol.NewError(protocol.ErrNameInvalidAction, "Client publish feature is disabled"))
		return
	}
	pd, err := protocol.DecodePublish(p.Data)
	if err != nil || pd.Channel == "" || len(pd.Channel) > srv.cfg.MaxChannelLength {
		srv.m.publishErrors.WithLabelValues("malformed").Inc()
		fail(protocol.NewError(protocol.ErrNameInvalidAction, "Publish channel name was malformatted"))
		return
	}
	if len(pd.Data) > srv.cfg.MaxPublishBytes {
		srv.m.publishErrors.WithLabelValues("too_big").Inc()
		fail(protocol.NewError(protocol.ErrNameInvalidAction, fmt.Sprintf(
			"Publish data of %d bytes exceeds the limit of %d bytes", len(pd.Data), srv.cfg.MaxPublishBytes)))
		return
	}
	if perr := s.checkChannel(rules.OpPublish, pd.Channel, nil); perr != nil {
		if perr == errHookDecides {
			s.publishHook(p, pd.Channel, pd.Data)
			return
		}
		srv.m.publishErrors.WithLabelValues("forbidden").Inc()
		fail(perr)
		return
	}
	if perr := srv.allowChannelPublish(pd.Channel); perr != nil {
		fail(perr)
		return
	}
	if perr := srv.allowChannelDeliveries(pd.Channel, len(pd.Data)); perr != nil {
		fail(perr)
		return
	}
	if err := srv.publish(pd.Channel, pd.Data); err != nil {
		srv.m.publishErrors.WithLabelValues("broker").Inc()
		fail(brokerError(err))
		return
	}
	s.ack(p)
}

func brokerError(err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	return protocol.NewError(protocol.ErrNameBroker, err.Error())
}

func (s *Socket) custom(p *protocol.Packet) {
	srv := s.srv
	if p.CID == nil {
		srv.m.inEvent.Inc()
		if h := srv.eventHandler(p.Event); h != nil {
			h(s, cloneRaw(p.Data))
		}
		return
	}
	srv.m.inRPC.Inc()
	h := srv.rpcHandler(p.Event)
	if h == nil {
		s.fail(p, protocol.NewError(protocol.ErrNameNoMatchingProcedure,
			fmt.Sprintf("No handler for procedure %s", p.Event)))
		return
	}
	cid := cloneRaw(p.CID)
	data := cloneRaw(p.Data)
	// Handlers may block; the reader must keep reading (pongs), so each
	// call runs on a goroutine of its own, bounded by AckTimeout.
	srv.wg.Go(func() {
		ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.AckTimeout)
		defer cancel()
		res, err := h(ctx, s, data)
		pp := &protocol.Packet{CID: cid}
		if err != nil {
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				pe = &protocol.Error{Message: err.Error()}
			}
			s.fail(pp, pe)
			return
		}
		b, err := marshalData(res)
		if err != nil {
			s.fail(pp, &protocol.Error{Message: err.Error()})
			return
		}
		s.reply(pp, b)
	})
}

func cloneRaw(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

func (s *Socket) handleResponse(p *protocol.Packet) {
	rid, ok := protocol.ParseCallID(p.RID)
	if !ok {
		return
	}
	s.mu.Lock()
	ch := s.calls[rid]
	delete(s.calls, rid)
	s.mu.Unlock()
	if ch == nil {
		return
	}
	var r callResult
	if p.Error != nil {
		pe := &protocol.Error{}
		if err := pe.UnmarshalJSON(p.Error); err != nil {
			pe = &protocol.Error{Message: string(p.Error)}
		}
		r.err = pe
	} else {
		r.data = cloneRaw(p.Data)
	}
	ch <- r
}

// socketIDs makes SocketCluster-style ids: 20 base64 characters from 11
// random bytes and a 4-byte counter, with '/'→'_' and '+'→'-'.
// The first 6 bytes are the frontend's random prefix, so the first 8
// characters of an id name the frontend that holds the socket (the server
// API routes a disconnect by socket id with them); 5 random bytes follow.
type socketIDs struct {
	prefix  [6]byte
	counter atomic.Uint32
}

func (g *socketIDs) next() string {
	var b [15]byte
	copy(b[:6], g.prefix[:])
	randRead(b[6:11])
	n := g.counter.Add(1) - 1
	b[11], b[12], b[13], b[14] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return encodeID(b[:])
}

// encodeID encodes b (a multiple of 3 bytes) in URL-safe base64.
func encodeID(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	out := make([]byte, 0, len(b)/3*4)
	for i := 0; i+2 < len(b); i += 3 {
		v := uint(b[i])<<16 | uint(b[i+1])<<8 | uint(b[i+2])
		out = append(out, enc[v>>18&63], enc[v>>12&63], enc[v>>6&63], enc[v&63])
	}
	return string(out)
}

var _ = strconv.Itoa
