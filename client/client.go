package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/sccgo/sccgo/protocol"
)

// State is the connection state of a Client.
type State int

// Client states.
const (
	// StateConnecting means no connection is open and the Client is
	// trying to (re)connect.
	StateConnecting State = iota
	// StateOpen means the handshake completed on the current connection.
	StateOpen
	// StateClosed means the Client stopped for good: Close was called, or
	// the server closed with a code that forbids reconnecting.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Client is a SocketCluster client connection that reconnects by itself.
// All methods are safe for concurrent use.
type Client struct {
	url  string
	opts Options
	log  *slog.Logger

	httpClient *http.Client
	transport  *http.Transport // nil when Options.HTTPClient is set
	ncMu       sync.Mutex
	lastNC     net.Conn // the TCP connection of the dial in progress

	ctx       context.Context // ends at Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup // the connection loop
	dead      chan struct{}  // closed when the Client stops for good

	cid atomic.Int64
	cur atomic.Pointer[conn] // the open connection, or nil

	mu        sync.RWMutex
	state     State
	connected chan struct{} // closed when a connection opens; replaced when it ends
	closed    bool          // Close was called
	termErr   error         // why the Client stopped, once it has
	id        string
	token     string
	authed    bool
	subs      map[string]*Subscription
}

// Dial connects to url (ws://host:port/socketcluster/ or wss://…) and
// completes the #handshake. It fails if that first attempt fails: refused
// or unreachable address, an HTTP error instead of the upgrade
// (*UpgradeError), a handshake error from the server (*Error), or no
// answer within ctx or Options.ConnectTimeout. After a successful Dial the
// Client reconnects by itself until Close.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	c := &Client{
		url:       url,
		opts:      opts,
		log:       opts.Logger,
		dead:      make(chan struct{}),
		connected: make(chan struct{}),
		token:     opts.AuthToken,
		subs:      make(map[string]*Subscription),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if opts.HTTPClient != nil {
		c.httpClient = opts.HTTPClient
	} else {
		d := &net.Dialer{Timeout: opts.ConnectTimeout}
		if opts.LocalAddr != nil {
			d.LocalAddr = opts.LocalAddr
		}
		c.transport = &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := d.DialContext(ctx, network, addr)
				if err == nil {
					c.ncMu.Lock()
					c.lastNC = nc
					c.ncMu.Unlock()
				}
				return nc, err
			},
			// Every upgrade gets its own TCP connection, so the one
			// captured above is the WebSocket's.
			DisableKeepAlives:   true,
			TLSHandshakeTimeout: opts.ConnectTimeout,
			TLSClientConfig:     opts.TLSConfig,
		}
		c.httpClient = &http.Client{Transport: c.transport}
	}
	cn, err := c.connect(ctx, false)
	if err != nil {
		c.cancel()
		c.closeTransport()
		return nil, err
	}
	c.wg.Go(func() { c.run(cn) })
	return c, nil
}

// Close closes the connection with code 1000, stops reconnecting, ends
// every Subscription with ErrClosed and waits for every goroutine the
// Client started. It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
	})
	c.wg.Wait()
	c.closeTransport()
	return nil
}

func (c *Client) closeTransport() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// ID returns the socket id from the last handshake.
func (c *Client) ID() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.id
}

// State returns the connection state.
func (c *Client) State() State {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state
}

// Done is closed when the Client has stopped for good (see StateClosed);
// Err then says why.
func (c *Client) Done() <-chan struct{} { return c.dead }

// Err returns why the Client stopped: ErrClosed after Close, a
// *CloseError when the server closed with 1000 or a code of 4500 and up
// (or any code with DisableReconnect), nil while it is running.
func (c *Client) Err() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.termErr
}

// AuthState returns whether the server considers the client authenticated.
func (c *Client) AuthState() AuthState {
	if c.IsAuthenticated() {
		return Authenticated
	}
	return Unauthenticated
}

// IsAuthenticated reports whether the server considers the client
// authenticated.
func (c *Client) IsAuthenticated() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.authed
}

// AuthToken returns the signed token the client holds ("" for none). It is
// sent in every #handshake.
func (c *Client) AuthToken() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.token
}

func (c *Client) takeNC() net.Conn {
	c.ncMu.Lock()
	defer c.ncMu.Unlock()
	nc := c.lastNC
	c.lastNC = nil
	return nc
}

// connect makes one connection attempt: dial, upgrade, #handshake. On
// success the connection is published as the current one and pending
// subscriptions are queued on it.
func (c *Client) connect(ctx context.Context, reconnect bool) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	ws, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient: c.httpClient,
		HTTPHeader: c.opts.Header,
	})
	nc := c.takeNC()
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			ue := &UpgradeError{StatusCode: resp.StatusCode, Err: err,
				RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				ue.Body = string(b)
			}
			return nil, ue
		}
		return nil, fmt.Errorf("client: dialing %s: %w", c.url, err)
	}
	ws.SetReadLimit(c.opts.MaxMessageBytes)
	cn := newConn(c, ws, nc)
	cn.wg.Go(cn.readLoop)

	type hsResult struct {
		info ConnectInfo
		err  error
	}
	done := make(chan hsResult, 1)
	c.mu.RLock()
	token := c.token
	c.mu.RUnlock()
	id := c.cid.Add(1)
	cn.register(id, func(r callResult) {
		// Runs on the reader, so the auth state it sets is ordered before
		// any #setAuthToken or #removeAuthToken that follows the reply.
		if r.err != nil {
			done <- hsResult{err: r.err}
			return
		}
		info, err := c.applyHandshake(r.data)
		info.Reconnect = reconnect
		done <- hsResult{info: info, err: err}
	})
	pkt := appendHandshake(nil, token, id)

	fail := func(code int, err error) (*conn, error) {
		cn.closeWith(code, protocol.CloseReason(code))
		cn.awaitEnd()
		return nil, err
	}
	if err := cn.write(pkt); err != nil {
		return fail(protocol.CloseAbnormal, fmt.Errorf("client: sending #handshake: %w", err))
	}
	var res hsResult
	select {
	case res = <-done:
	case <-ctx.Done():
		return fail(protocol.CloseConnectTimeout, fmt.Errorf("client: waiting for #handshake reply: %w", ctx.Err()))
	}
	if res.err != nil {
		code := protocol.CloseHandshakeFailed
		var pe *Error
		if errors.As(res.err, &pe) {
			if sc, ok := numberField(pe, "statusCode"); ok && sc >= 4000 && sc < 5000 {
				code = sc
			}
		}
		return fail(code, fmt.Errorf("client: handshake: %w", res.err))
	}
	cn.pingTimeout = res.info.PingTimeout

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fail(protocol.CloseNormal, ErrClosed)
	}
	c.cur.Store(cn)
	c.state = StateOpen
	close(c.connected)
	pkts := c.resubscribeLocked(cn)
	cn.enqueueCtl(pkts...)
	c.mu.Unlock()

	c.log.Debug("connected", "conn", res.info.ID, "reconnect", reconnect, "subscriptions", len(pkts))
	if f := c.opts.OnConnect; f != nil {
		f(res.info)
	}
	return cn, nil
}

// applyHandshake records the socket id and auth state of a handshake reply.
func (c *Client) applyHandshake(data json.RawMessage) (ConnectInfo, error) {
	var hr protocol.HandshakeResponse
	if err := json.Unmarshal(data, &hr); err != nil {
		return ConnectInfo{}, fmt.Errorf("%w: handshake: %w", ErrBadResponse, err)
	}
	info := ConnectInfo{
		ID:              hr.ID,
		PingTimeout:     time.Duration(hr.PingTimeout) * time.Millisecond,
		IsAuthenticated: hr.IsAuthenticated,
		AuthError:       hr.AuthError,
	}
	c.mu.Lock()
	c.id = hr.ID
	old, oldTok := c.authed, c.token
	c.authed = hr.IsAuthenticated
	if hr.AuthError != nil && hr.AuthError.IsBadToken() {
		c.token = ""
	}
	changed := old != c.authed || oldTok != c.token
	state, tok := c.authStateLocked()
	c.mu.Unlock()
	if changed {
		c.notifyAuth(state, tok)
	}
	return info, nil
}

func (c *Client) authStateLocked() (AuthState, string) {
	if c.authed {
		return Authenticated, c.token
	}
	return Unauthenticated, c.token
}

func (c *Client) notifyAuth(s AuthState, token string) {
	if f := c.opts.OnAuthStateChange; f != nil {
		f(s, token)
	}
}

// run owns the connection loop: it serves the current connection, and
// when it ends decides whether and when to reconnect.
func (c *Client) run(cn *conn) {
	for {
		code, reason := c.serve(cn)
		c.connLost(cn, code, reason)
		if c.ctx.Err() != nil {
			c.terminate(ErrClosed)
			return
		}
		if c.opts.DisableReconnect || permanentCode(code) {
			c.log.Info("connection closed for good", "reason", reason, "code", code)
			c.terminate(&CloseError{Code: code, Reason: reason})
			return
		}
		c.log.Info("connection lost, reconnecting", "reason", reason, "code", code)
		// SocketCluster reconnects at once after these codes; a small
		// jitter keeps a crowd dropped together from returning together.
		immediate := code == protocol.ClosePingTimeout || code == protocol.ClosePongTimeout || code == protocol.CloseNoStatus
		var retryAfter time.Duration // the server's last Retry-After
		for attempt := 0; ; attempt++ {
			d := c.delay(attempt, immediate)
			if retryAfter > 0 {
				// A server that sheds load says when to come back; the
				// jitter keeps a refused crowd from coming back together.
				d = max(d, retryAfter+rand.N(retryAfter))
			}
			if !c.sleep(d) {
				c.terminate(ErrClosed)
				return
			}
			immediate = false
			next, err := c.connect(c.ctx, true)
			if err == nil {
				cn = next
				break
			}
			if c.ctx.Err() != nil {
				c.terminate(ErrClosed)
				return
			}
			c.log.Debug("reconnect failed", "err", err, "attempt", attempt)
			retryAfter = 0
			if ue, ok := errors.AsType[*UpgradeError](err); ok {
				retryAfter = ue.RetryAfter
			}
			var pe *Error
			if errors.As(err, &pe) {
				if sc, ok := numberField(pe, "statusCode"); ok && sc >= protocol.ClosePermanentMin {
					c.terminate(fmt.Errorf("client: reconnecting: %w", err))
					return
				}
			}
		}
	}
}

// delay returns the wait before reconnect attempt n: full jitter over the
// backoff ceiling, or over DefaultImmediateJitter for an immediate retry.
func (c *Client) delay(attempt int, immediate bool) time.Duration {
	if immediate {
		return rand.N(DefaultImmediateJitter)
	}
	b := c.opts.Backoff
	ceil := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt))
	if ceil > float64(b.Max) || math.IsInf(ceil, 0) {
		ceil = float64(b.Max)
	}
	if ceil < 1 {
		return 0
	}
	return rand.N(time.Duration(ceil))
}

// sleep waits d, or returns false if the Client is closed first.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// serve writes queued packets and watches liveness until the connection
// ends, then returns its close status.
func (c *Client) serve(cn *conn) (int, string) {
	pt := cn.pingTimeout
	var pingC <-chan time.Time
	var t *time.Timer
	if pt > 0 {
		t = time.NewTimer(pt)
		defer t.Stop()
		pingC = t.C
	}
loop:
	for {
		select {
		case <-cn.wake:
			if err := cn.flush(); err != nil {
				cn.closeWith(protocol.CloseAbnormal, "")
				break loop
			}
		case <-cn.readerDone:
			break loop
		case <-c.ctx.Done():
			cn.closeWith(protocol.CloseNormal, "")
			break loop
		case <-pingC:
			since := time.Since(time.Unix(0, cn.lastPing.Load()))
			if since >= pt {
				c.log.Info("no ping from server, closing", "reason", "ping timeout", "conn", c.ID(), "since", since)
				cn.closeWith(protocol.ClosePingTimeout, protocol.CloseReason(protocol.ClosePingTimeout))
				break loop
			}
			t.Reset(pt - since)
		}
	}
	cn.awaitEnd()
	return cn.status()
}

// connLost forgets an ended connection: calls wait for the next one, and
// every subscription becomes pending.
func (c *Client) connLost(cn *conn, code int, reason string) {
	c.mu.Lock()
	wasOpen := c.cur.Load() == cn
	if wasOpen {
		c.cur.Store(nil)
		if c.state == StateOpen {
			c.state = StateConnecting
		}
		c.connected = make(chan struct{})
	}
	c.mu.Unlock()
	close(cn.lost)
	if wasOpen {
		if f := c.opts.OnDisconnect; f != nil {
			f(code, reason)
		}
	}
}

// terminate stops the Client for good with err.
func (c *Client) terminate(err error) {
	c.mu.Lock()
	c.state = StateClosed
	c.termErr = err
	subs := c.subs
	c.subs = make(map[string]*Subscription)
	c.mu.Unlock()
	for _, s := range subs {
		s.end(err)
	}
	close(c.dead)
}

// callCtx bounds ctx by AckTimeout when it has no deadline.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.opts.AckTimeout)
}

// waitConn returns the open connection, waiting for one until ctx ends.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		if cn := c.cur.Load(); cn != nil {
			return cn, nil
		}
		c.mu.RLock()
		ch, closed, term := c.connected, c.closed, c.termErr
		c.mu.RUnlock()
		switch {
		case closed:
			return nil, ErrClosed
		case term != nil:
			return nil, term
		}
		if cn := c.cur.Load(); cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-c.dead:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		}
	}
}

var pktPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// call sends a request built by build (given the cid) and waits for its
// reply. The packet is copied into the queue, so build may use a pooled
// buffer.
func (c *Client) call(ctx context.Context, what string, build func(dst []byte, cid int64) []byte) (json.RawMessage, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: %s: %w", what, err)
		}
		id := c.cid.Add(1)
		ch := make(chan callResult, 1)
		if !cn.register(id, func(r callResult) { ch <- r }) {
			// The connection just ended; nothing was sent. Wait for the
			// Client to notice, then try the next one.
			select {
			case <-cn.lost:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("client: %s: %w: %w", what, ErrNotConnected, ctx.Err())
			}
		}
		bp := pktPool.Get().(*[]byte)
		pkt := build((*bp)[:0], id)
		err = cn.enqueueWait(ctx, pkt)
		*bp = pkt
		pktPool.Put(bp)
		if err != nil {
			cn.take(id)
			if errors.Is(err, ErrNotConnected) {
				// The connection ended before the packet was queued:
				// nothing was sent, so the next connection may take it.
				select {
				case <-cn.lost:
					continue
				case <-ctx.Done():
					return nil, fmt.Errorf("client: %s: %w: %w", what, ErrNotConnected, ctx.Err())
				}
			}
			return nil, fmt.Errorf("client: %s: %w", what, err)
		}
		select {
		case r := <-ch:
			if r.err != nil {
				return nil, fmt.Errorf("client: %s: %w", what, r.err)
			}
			return r.data, nil
		case <-ctx.Done():
			cn.take(id)
			return nil, fmt.Errorf("client: %s: no reply: %w", what, ctx.Err())
		}
	}
}

// transmit queues a packet without waiting for a connection or a reply.
func (c *Client) transmit(what string, build func(dst []byte) []byte) error {
	cn := c.cur.Load()
	if cn == nil {
		c.mu.RLock()
		closed, term := c.closed, c.termErr
		c.mu.RUnlock()
		if closed {
			return ErrClosed
		}
		if term != nil {
			return term
		}
		return fmt.Errorf("client: %s: %w", what, ErrNotConnected)
	}
	bp := pktPool.Get().(*[]byte)
	pkt := build((*bp)[:0])
	err := cn.tryEnqueue(pkt)
	if errors.Is(err, ErrQueueFull) {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.AckTimeout)
		err = cn.enqueueWait(ctx, pkt)
		cancel()
	}
	*bp = pkt
	pktPool.Put(bp)
	if err != nil {
		return fmt.Errorf("client: %s: %w", what, err)
	}
	return nil
}

// Invoke calls the server procedure event with data and returns the reply
// data. A server error comes back as *Error (use errors.As). data is
// encoded as JSON, except json.RawMessage and []byte, which are sent as
// they are and must be valid JSON; nil sends no data.
func (c *Client) Invoke(ctx context.Context, event string, data any) (json.RawMessage, error) {
	raw, err := encodeData(data)
	if err != nil {
		return nil, err
	}
	return c.call(ctx, event, func(dst []byte, cid int64) []byte {
		return protocol.AppendEvent(dst, event, raw, cid)
	})
}

// Transmit sends the event to the server without waiting for anything. It
// returns ErrNotConnected at once when no connection is open. data is
// encoded as for Invoke.
func (c *Client) Transmit(event string, data any) error {
	raw, err := encodeData(data)
	if err != nil {
		return err
	}
	return c.transmit(event, func(dst []byte) []byte {
		return protocol.AppendEvent(dst, event, raw, 0)
	})
}

// Publish publishes data to channel (invokePublish) and waits for the
// server's acknowledgement. data is encoded as for Invoke: pass
// json.RawMessage or []byte to send pre-encoded JSON without re-encoding.
func (c *Client) Publish(ctx context.Context, channel string, data any) error {
	raw, err := encodeData(data)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "publishing to "+channel, func(dst []byte, cid int64) []byte {
		return appendPublish(dst, channel, raw, cid)
	})
	return err
}

// TransmitPublish publishes data to channel without waiting for an
// acknowledgement (transmitPublish). It returns ErrNotConnected at once
// when no connection is open.
func (c *Client) TransmitPublish(channel string, data any) error {
	raw, err := encodeData(data)
	if err != nil {
		return err
	}
	return c.transmit("publishing to "+channel, func(dst []byte) []byte {
		return appendPublish(dst, channel, raw, 0)
	})
}

// Authenticate sends token with #authenticate. On success the client is
// authenticated, keeps the token for later handshakes and sends its
// pending WaitForAuth subscriptions. A refused token comes back as *Error
// (for example AuthTokenInvalidError or AuthTokenExpiredError) and leaves
// the client unauthenticated.
func (c *Client) Authenticate(ctx context.Context, token string) error {
	data, err := c.call(ctx, protocol.EventAuthenticate, func(dst []byte, cid int64) []byte {
		return protocol.AppendEvent(dst, protocol.EventAuthenticate, protocol.AppendString(nil, token), cid)
	})
	if err != nil {
		if pe := (*Error)(nil); errors.As(err, &pe) {
			c.setAuth(false, "", nil)
		}
		return err
	}
	var ar protocol.AuthenticateResponse
	if err := json.Unmarshal(data, &ar); err != nil {
		return fmt.Errorf("%w: #authenticate: %w", ErrBadResponse, err)
	}
	if !ar.IsAuthenticated {
		c.setAuth(false, "", nil)
		if ar.AuthError != nil {
			return fmt.Errorf("client: #authenticate: %w", ar.AuthError)
		}
		return fmt.Errorf("client: #authenticate: %w", protocol.NewError(protocol.ErrNameAuth, "not authenticated"))
	}
	c.setAuth(true, token, nil)
	return nil
}

// Deauthenticate forgets the token and tells the server with
// #removeAuthToken. When no connection is open it only forgets the token:
// the next handshake carries none.
func (c *Client) Deauthenticate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.setAuth(false, "", nil)
	if cn := c.cur.Load(); cn != nil {
		cn.enqueueCtl(protocol.AppendEvent(nil, protocol.EventRemoveAuthToken, nil, 0))
	}
	return nil
}

// setAuth records the auth state and, when it becomes authenticated,
// sends the subscriptions that waited for it on the open connection (or
// on cn, the connection whose reader learnt it, if that is the current
// one).
func (c *Client) setAuth(authed bool, token string, cn *conn) {
	c.mu.Lock()
	changed := c.authed != authed || c.token != token
	c.authed, c.token = authed, token
	var pkts [][]byte
	cur := c.cur.Load()
	if authed && cur != nil && (cn == nil || cn == cur) {
		pkts = c.resubscribeLocked(cur)
	}
	if len(pkts) > 0 {
		cur.enqueueCtl(pkts...)
	}
	state, tok := c.authStateLocked()
	c.mu.Unlock()
	if changed {
		c.notifyAuth(state, tok)
	}
}

// handlePacket dispatches one inbound packet. It runs on cn's reader.
func (c *Client) handlePacket(cn *conn, p *protocol.Packet) {
	switch p.Kind() {
	case protocol.PacketResponse:
		id, ok := protocol.ParseCallID(p.RID)
		if !ok {
			return
		}
		fn := cn.take(id)
		if fn == nil {
			return // late or unknown: SocketCluster ignores it too
		}
		if p.Error != nil {
			pe := new(Error)
			if err := pe.UnmarshalJSON(p.Error); err != nil {
				fn(callResult{err: fmt.Errorf("%w: error object: %w", ErrBadResponse, err)})
				return
			}
			fn(callResult{err: pe})
			return
		}
		fn(callResult{data: p.Data})
	case protocol.PacketEvent, protocol.PacketRequest:
		c.handleEvent(cn, p)
	}
}

func (c *Client) handleEvent(cn *conn, p *protocol.Packet) {
	switch p.Event {
	case protocol.EventPublish:
		pd, err := protocol.DecodePublishValid(p.Data)
		if err != nil {
			return
		}
		c.mu.RLock()
		s := c.subs[pd.Channel]
		c.mu.RUnlock()
		if s != nil {
			m := Message{Channel: pd.Channel, Data: pd.Data}
			if pos, ok := protocol.DecodePublishPos(p.Data); ok {
				m.Offset, m.Epoch = pos.Offset, pos.Epoch
				s.notePos(pos)
			}
			s.deliver(m)
		}
		return
	case protocol.EventSetAuthToken:
		var d protocol.SetAuthTokenData
		if err := json.Unmarshal(p.Data, &d); err == nil && d.Token != "" {
			c.setAuth(true, d.Token, cn)
		}
		if p.CID != nil {
			cn.enqueueCtl(protocol.AppendResponse(nil, p.CID, nil))
		}
		return
	case protocol.EventRemoveAuthToken:
		c.setAuth(false, "", cn)
		if p.CID != nil {
			cn.enqueueCtl(protocol.AppendResponse(nil, p.CID, nil))
		}
		return
	case protocol.EventKickOut:
		var d protocol.KickOutData
		if err := json.Unmarshal(p.Data, &d); err != nil {
			return
		}
		c.mu.Lock()
		s := c.subs[d.Channel]
		if s != nil {
			delete(c.subs, d.Channel)
		}
		c.mu.Unlock()
		if s != nil {
			s.end(&KickOutError{Channel: d.Channel, Message: d.Message})
		}
		return
	}
	if p.CID == nil {
		if f := c.opts.OnEvent; f != nil {
			f(p.Event, p.Data)
		}
		return
	}
	rid := append(json.RawMessage(nil), p.CID...)
	if c.opts.OnRPC == nil {
		cn.enqueueCtl(protocol.AppendErrorResponse(nil, rid, protocol.NewError(
			protocol.ErrNameNoMatchingProcedure, "No handler for procedure "+p.Event)))
		return
	}
	event, data := p.Event, p.Data
	cn.wg.Go(func() {
		ctx, cancel := context.WithTimeout(cn.ctx, c.opts.AckTimeout)
		defer cancel()
		v, err := c.opts.OnRPC(ctx, event, data)
		var out []byte
		if err == nil {
			raw, eerr := encodeData(v)
			if eerr != nil {
				err = eerr
			} else {
				out = protocol.AppendResponse(nil, rid, raw)
			}
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				pe = &Error{Name: "Error", Message: err.Error()}
			}
			out = protocol.AppendErrorResponse(nil, rid, pe)
		}
		cn.enqueueCtl(out)
	})
}

// encodeData turns a call's data argument into raw JSON. nil means no
// data; json.RawMessage and []byte are taken as already-encoded JSON.
func encodeData(v any) ([]byte, error) {
	switch d := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return d, nil
	case []byte:
		return d, nil
	case string:
		return protocol.AppendString(nil, d), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("client: encoding data: %w", err)
	}
	return b, nil
}

// appendHandshake appends {"event":"#handshake","data":{"authToken":T},"cid":N}
// with a null token when there is none, as socketcluster-client does.
func appendHandshake(dst []byte, token string, cid int64) []byte {
	data := []byte(`{"authToken":null}`)
	if token != "" {
		data = append(protocol.AppendString([]byte(`{"authToken":`), token), '}')
	}
	return protocol.AppendEvent(dst, protocol.EventHandshake, data, cid)
}

// appendPublish appends {"event":"#publish","data":{"channel":C,"data":D}}
// plus the cid when cid > 0, without re-encoding data.
func appendPublish(dst []byte, channel string, data []byte, cid int64) []byte {
	dst = append(dst, `{"event":"#publish","data":{"channel":`...)
	dst = protocol.AppendString(dst, channel)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	dst = append(dst, '}')
	if cid > 0 {
		dst = append(dst, `,"cid":`...)
		dst = appendInt(dst, cid)
	}
	return append(dst, '}')
}

func appendInt(dst []byte, v int64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// numberField returns an integral numeric field of an error object.
func numberField(e *Error, key string) (int, bool) {
	switch v := e.Field(key).(type) {
	case json.Number:
		n, err := v.Int64()
		return int(n), err == nil
	case float64:
		return int(v), true
	}
	return 0, false
}
