package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/hooks"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// The backend hooks' types (docs/hooks.md), named here so a program that
// embeds the frontend can implement or wrap the hooks.
type (
	// ConnectHook decides a socket's #handshake.
	ConnectHook = hooks.ConnectHook
	// SubscribeHook decides a #subscribe to a channel whose rule says hook.
	SubscribeHook = hooks.SubscribeHook
	// PublishHook decides, and may rewrite, a #publish to a channel whose
	// rule says hook.
	PublishHook = hooks.PublishHook
	// ConnectRequest is what the connect hook receives.
	ConnectRequest = hooks.ConnectRequest
	// ConnectResult is an accepted connect.
	ConnectResult = hooks.ConnectResult
	// SubscribeRequest is what the subscribe hook receives.
	SubscribeRequest = hooks.SubscribeRequest
	// PublishRequest is what the publish hook receives.
	PublishRequest = hooks.PublishRequest
	// PublishResult is an allowed publish.
	PublishResult = hooks.PublishResult
	// HookRejection is a hook's denial: the error object the client gets
	// and, for connect, the close code.
	HookRejection = hooks.Rejection
)

// Hook refusal reasons: the bounded reason label of
// scc_frontend_hook_refusals_total.
const (
	hookDenied     = "denied"       // the backend said no
	hookFailed     = "failed"       // the call failed and the hook fails closed
	hookSocketBusy = "socket_limit" // HookCallsPerSocket calls already in flight
	hookBadToken   = "bad_token"    // the connect hook's token does not verify
	hookSubFailed  = "subscribe"    // a connect hook's channel could not be subscribed
)

// reasonConnectHook closes a socket whose connect hook rejected it or
// failed closed.
const reasonConnectHook = "connect_hook"

// errHookDecides is what checkChannel returns when the channel's rule
// defers to a hook that the server has: the caller runs the hook.
var errHookDecides = &protocol.Error{Name: "hook"}

// hookState is a socket's share of the hooks, allocated at the upgrade
// only when a hook is configured.
type hookState struct {
	header     http.Header // the upgrade request's, until the handshake
	ip         string
	connecting atomic.Bool // the connect hook was called
	inFlight   atomic.Int32

	mu      sync.Mutex
	pubTail map[string]chan struct{} // per channel: done of the last publish in flight
	granted []string                 // channels the connect hook subscribed the socket to
	// pendingSub holds, per channel, the sequence number of the latest
	// #subscribe waiting for its hook; #unsubscribe deletes it, which
	// cancels the subscription.
	pendingSub map[string]uint64
	subSeq     uint64
}

func (s *Server) hooksOn() bool {
	c := &s.cfg
	return c.ConnectHook != nil || c.SubscribeHook != nil || c.PublishHook != nil
}

func (s *Server) initHookMetrics() {
	s.rules.hookRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scc", Subsystem: "frontend", Name: "hook_refusals_total",
		Help: "Handshakes, subscribes and publishes that a backend hook refused, by hook and reason.",
	}, []string{"hook", "reason"})
	s.reg.MustRegister(s.rules.hookRefused)
}

func (s *Server) hookRefused(k hooks.Kind, reason string) {
	s.rules.hookRefused.WithLabelValues(k.String(), reason).Inc()
}

// initHooks keeps what the connect hook needs from the upgrade request.
func (s *Socket) initHooks(r *http.Request) {
	if !s.srv.hooksOn() {
		return
	}
	hk := &hookState{}
	if s.srv.cfg.ConnectHook != nil {
		hk.header = r.Header.Clone()
		hk.ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			hk.ip = host
		}
	}
	s.hk = hk
}

// hookFor reports whether the server has the hook that decides op.
func (s *Server) hookFor(op rules.Op) bool {
	if op == rules.OpPublish {
		return s.cfg.PublishHook != nil
	}
	return s.cfg.SubscribeHook != nil
}

// isGranted reports whether the connect hook subscribed the socket to
// channel: the backend's grant stands for the connection's life, whatever
// the rules say of the auth token it has later.
func (s *Socket) isGranted(channel string) bool {
	if s.hk == nil {
		return false
	}
	s.hk.mu.Lock()
	defer s.hk.mu.Unlock()
	return slices.Contains(s.hk.granted, channel)
}

// hookSlot takes one of the socket's HookCallsPerSocket places; false
// (and the packet refused) when they are all taken.
func (s *Socket) hookSlot(k hooks.Kind, p *protocol.Packet) bool {
	if s.hk.inFlight.Add(1) <= int32(s.srv.cfg.HookCallsPerSocket) {
		return true
	}
	s.hk.inFlight.Add(-1)
	s.srv.hookRefused(k, hookSocketBusy)
	s.fail(p, protocol.NewError(hooks.ErrNameBackend, fmt.Sprintf(
		"Too many %s hook calls in flight for this socket (limit %d)", k, s.srv.cfg.HookCallsPerSocket)))
	return false
}

// handshakeHook answers a first #handshake once the connect hook has
// decided. The hook runs on a goroutine of its own, so the reader keeps
// reading pongs; the socket is not open until the answer (a packet other
// than a pong meanwhile closes it with 4009, as SocketCluster does while
// its handshake middleware runs).
func (s *Socket) handshakeHook(p *protocol.Packet) {
	srv := s.srv
	if s.hk.connecting.Swap(true) {
		s.closeWith(protocol.CloseMessageBeforeHandshake, reasonBeforeHandshake, false)
		return
	}
	req := &hooks.ConnectRequest{SocketID: s.id, RemoteAddress: s.hk.ip, Header: s.hk.header}
	s.hk.header = nil
	var (
		info    *tokenInfo
		authErr *protocol.Error
	)
	if raw, given := handshakeToken(p.Data); given {
		if tok, ok := protocol.DecodeString(raw); ok {
			req.AuthToken = tok
		}
		info, authErr = srv.verify(raw)
		if info != nil {
			req.Claims = info.claims
		}
	}
	cid := cloneRaw(p.CID)
	srv.wg.Go(func() {
		ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.HandshakeTimeout)
		defer cancel()
		res, err := srv.cfg.ConnectHook.Connect(ctx, req)
		if s.closing.Load() {
			return
		}
		pp := &protocol.Packet{CID: cid}
		if err != nil {
			reason := hookFailed
			if errors.Is(err, hooks.ErrRejected) {
				reason = hookDenied
			}
			srv.hookRefused(hooks.Connect, reason)
			s.rejectHandshake(pp, hooks.ClientError(err), hooks.CloseCode(err))
			return
		}
		s.acceptHandshake(ctx, pp, res, info, authErr)
	})
}

// rejectHandshake answers the #handshake with e, carrying statusCode as
// SocketCluster's handshake middleware does (the stock client closes with
// it), and closes the socket with code.
func (s *Socket) rejectHandshake(p *protocol.Packet, e *protocol.Error, code int) {
	out := &protocol.Error{Name: e.Name, Message: e.Message}
	for _, f := range e.Fields {
		if f.Key != "statusCode" {
			out.Fields = append(out.Fields, f)
		}
	}
	out.Fields = append(out.Fields, protocol.Field{Key: "statusCode", Value: code})
	s.fail(p, out)
	s.closeWithText(code, reasonConnectHook, e.Message, true)
}

// hookHandshakeResponse is the #handshake answer with the channels the
// connect hook subscribed the socket to, which the stock client passes
// to its connect event.
type hookHandshakeResponse struct {
	protocol.HandshakeResponse
	Channels []string `json:"channels,omitempty"`
	// Positions are the offset and epoch at which each of those channels
	// that keeps a history started for the socket: a client that
	// reconnects recovers from there (docs/recovery.md).
	Positions map[string]protocol.StreamPosition `json:"positions,omitempty"`
}

func (s *Socket) acceptHandshake(ctx context.Context, p *protocol.Packet, res *hooks.ConnectResult, info *tokenInfo, authErr *protocol.Error) {
	srv := s.srv
	var issued *tokenInfo
	switch {
	case res.Token != "":
		tok, perr := srv.auth.verifyToken(res.Token)
		if perr != nil {
			srv.hookRefused(hooks.Connect, hookBadToken)
			srv.log.Warn("connect hook returned a token that does not verify", "conn", s.id, "err", perr.Message)
			s.rejectHandshake(p, protocol.NewError(hooks.ErrNameBackend, "The application backend is unavailable"), hooks.DefaultRejectCode)
			return
		}
		issued = tok
	case res.Claims != nil:
		tok, err := srv.auth.sign(res.Claims)
		if err != nil {
			srv.log.Warn("signing the connect hook's claims", "conn", s.id, "err", err)
			s.closeWith(protocol.CloseAuthSignFailed, reasonAuthSignFailed, true)
			return
		}
		issued = tok
	}
	if issued != nil {
		info, authErr = issued, nil
	}
	s.setAuth(info)
	var granted []string
	var positions map[string]protocol.StreamPosition
	for _, ch := range res.Channels {
		if ch == "" || len(ch) > srv.cfg.MaxChannelLength || slices.Contains(granted, ch) {
			continue
		}
		if srv.hasHistory(ch) {
			pos, perr := s.grantHistory(ctx, ch)
			if perr != nil {
				srv.hookRefused(hooks.Connect, hookSubFailed)
				srv.log.Warn("subscribing a connect hook's channel", "conn", s.id, "channel", ch, "err", perr.Message)
				continue
			}
			granted = append(granted, ch)
			if pos.Epoch != "" {
				if positions == nil {
					positions = make(map[string]protocol.StreamPosition)
				}
				positions[ch] = protocol.StreamPosition{Offset: pos.Offset, Epoch: pos.Epoch}
			}
			continue
		}
		if perr := s.subscribeGranted(ctx, ch); perr != nil {
			srv.hookRefused(hooks.Connect, hookSubFailed)
			srv.log.Warn("subscribing a connect hook's channel", "conn", s.id, "channel", ch, "err", perr.Message)
			continue
		}
		granted = append(granted, ch)
	}
	s.hk.mu.Lock()
	s.hk.granted = granted
	s.hk.mu.Unlock()

	resp := hookHandshakeResponse{
		HandshakeResponse: protocol.HandshakeResponse{ID: s.id, PingTimeout: srv.cfg.PingTimeout.Milliseconds(),
			AuthError: authErr, IsAuthenticated: info != nil},
		Channels:  granted,
		Positions: positions,
	}
	data, _ := json.Marshal(resp)
	s.handshook.Store(true)
	s.send(protocol.AppendResponse(nil, p.CID, data))
	if authErr != nil && authErr.IsBadToken() {
		s.send(removeAuthTokenFrame)
	}
	srv.m.handshakes.Inc()
	if issued != nil {
		srv.wg.Go(func() { s.deliverIssuedToken(srv.ctx, issued) })
	}
	if srv.cfg.OnConnect != nil {
		srv.cfg.OnConnect(s)
	}
}

// deliverIssuedToken sends the connect hook's token to the client. The
// stock client sets its auth state from the handshake answer only once
// the answer's promise has settled, after every packet that arrived with
// it, and it then takes the token it sent itself (none, or the expired
// one). A #setAuthToken in the same read would be overwritten. So the
// token goes first as an invoke (SocketCluster's rejectOnFailedDelivery
// form, which the client acknowledges), and once acknowledged, which is a
// round trip after the answer was handled, again as a transmit, which the
// client keeps.
func (s *Socket) deliverIssuedToken(ctx context.Context, issued *tokenInfo) {
	data := protocol.SetAuthTokenData{Token: issued.signed}
	if _, err := s.Invoke(ctx, protocol.EventSetAuthToken, data); err != nil {
		s.srv.log.Debug("client did not acknowledge the connect hook's token", "conn", s.id, "err", err)
		return
	}
	tok, _ := json.Marshal(data)
	s.send(protocol.AppendEvent(nil, protocol.EventSetAuthToken, tok, 0))
}

// subscribeGranted subscribes the socket to channel off its reader
// goroutine, once a hook allowed it: the channel limit applies, and a
// socket that closed meanwhile is not left in the table.
func (s *Socket) subscribeGranted(ctx context.Context, ch string) *protocol.Error {
	srv := s.srv
	s.mu.Lock()
	already := slices.Contains(s.channels, ch)
	n := len(s.channels)
	s.mu.Unlock()
	if already {
		return nil
	}
	if n >= srv.cfg.SocketChannelLimit {
		return protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
			"Failed to subscribe socket to the %s channel - InvalidActionError: Socket %s tried to exceed the channel subscription limit of %d",
			ch, s.id, srv.cfg.SocketChannelLimit))
	}
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.AckTimeout)
	err := srv.subs.subscribeWait(ctx, ch, s, srv.subscribed(ch))
	cancel()
	if err != nil {
		return protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %v", ch, err))
	}
	s.mu.Lock()
	// teardown takes s.channels under s.mu after closing is set: a socket
	// seen open here is cleaned up by teardown, one seen closing by us.
	if s.closing.Load() {
		s.mu.Unlock()
		srv.subs.unsubscribe(ch, s)
		return protocol.NewError(protocol.ErrNameBadConnection, "Socket connection closed")
	}
	if !slices.Contains(s.channels, ch) {
		s.channels = append(s.channels, ch)
	}
	s.mu.Unlock()
	return nil
}

// listChannel lists ch among the socket's channels for a subscribe a
// hook granted (already: it was listed), or says why not: the socket's
// channel limit, or the socket is closing.
func (s *Socket) listChannel(ch string) (already bool, perr *protocol.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing.Load():
		return false, protocol.NewError(protocol.ErrNameBadConnection, "Socket connection closed")
	case slices.Contains(s.channels, ch):
		return true, nil
	case len(s.channels) >= s.srv.cfg.SocketChannelLimit:
		return false, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
			"Failed to subscribe socket to the %s channel - InvalidActionError: Socket %s tried to exceed the channel subscription limit of %d",
			ch, s.id, s.srv.cfg.SocketChannelLimit))
	}
	s.channels = append(s.channels, ch)
	return false, nil
}

// subscribeHook asks the subscribe hook and answers the #subscribe when
// it has decided, off the reader goroutine.
func (s *Socket) subscribeHook(p *protocol.Packet, ch string, data json.RawMessage) {
	srv := s.srv
	if !s.hookSlot(hooks.Subscribe, p) {
		return
	}
	req := &hooks.SubscribeRequest{SocketID: s.id, Channel: ch, Claims: s.AuthToken(), Data: cloneRaw(data)}
	pp := &protocol.Packet{CID: cloneRaw(p.CID)}
	hk := s.hk
	hk.mu.Lock()
	hk.subSeq++
	seq := hk.subSeq
	if hk.pendingSub == nil {
		hk.pendingSub = make(map[string]uint64)
	}
	hk.pendingSub[ch] = seq
	hk.mu.Unlock()
	srv.wg.Go(func() {
		defer hk.inFlight.Add(-1)
		err := srv.cfg.SubscribeHook.Subscribe(srv.ctx, req)
		if err != nil {
			s.subscribeSettled(ch, seq)
			reason := hookFailed
			if errors.Is(err, hooks.ErrRejected) {
				reason = hookDenied
			}
			srv.hookRefused(hooks.Subscribe, reason)
			s.fail(pp, hooks.ClientError(err))
			return
		}
		if srv.hasHistory(ch) {
			// Answered as a client's own #subscribe of the channel is:
			// with the channel's position, and what the client asked
			// to recover.
			if canceled, _ := s.subscribeSettled(ch, seq); canceled {
				s.fail(pp, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
					"Failed to subscribe socket to the %s channel - it unsubscribed before the subscribe hook answered", ch)))
				return
			}
			if ok, reason := srv.reserveSub(s); !ok {
				srv.m.subscribeErrors.WithLabelValues(reason).Inc()
				s.fail(pp, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
					"Failed to subscribe socket to the %s channel - the server is at its subscription limit", ch)))
				return
			}
			already, perr := s.listChannel(ch)
			if perr != nil || already {
				srv.releaseSubs(s, 1)
			}
			switch {
			case perr != nil:
				s.fail(pp, perr)
			case already:
				s.ack(pp)
			default:
				// Listed with its budget: a failure gives both back.
				s.historySubscribe(pp, ch, req.Data)
			}
			return
		}
		perr := s.subscribeGranted(srv.ctx, ch)
		if canceled, superseded := s.subscribeSettled(ch, seq); canceled {
			// The client unsubscribed while the hook ran. Subscribing
			// first and undoing here leaves no window in which an
			// #unsubscribe finds neither the pending call nor the channel.
			if perr == nil && !superseded && s.dropChannel(ch) {
				srv.subs.unsubscribe(ch, s)
			}
			s.fail(pp, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf(
				"Failed to subscribe socket to the %s channel - it unsubscribed before the subscribe hook answered", ch)))
			return
		}
		if perr != nil {
			s.fail(pp, perr)
			return
		}
		s.ack(pp)
	})
}

// subscribeSettled ends the pending hook subscribe seq to ch. canceled:
// an #unsubscribe (or a later #subscribe, then superseded) came meanwhile.
func (s *Socket) subscribeSettled(ch string, seq uint64) (canceled, superseded bool) {
	s.hk.mu.Lock()
	defer s.hk.mu.Unlock()
	cur, ok := s.hk.pendingSub[ch]
	if ok && cur == seq {
		delete(s.hk.pendingSub, ch)
		return false, false
	}
	return true, ok
}

// cancelHookSubscribe cancels a #subscribe to ch still waiting for its
// hook; false when there is none.
func (s *Socket) cancelHookSubscribe(ch string) bool {
	if s.hk == nil {
		return false
	}
	s.hk.mu.Lock()
	defer s.hk.mu.Unlock()
	if _, ok := s.hk.pendingSub[ch]; !ok {
		return false
	}
	delete(s.hk.pendingSub, ch)
	return true
}

// publishHook asks the publish hook and publishes (the hook's data if it
// replaced it) when it allowed, off the reader goroutine. Hook calls of
// one socket run side by side, but its publishes to one channel reach the
// broker, and are acknowledged, in the order they came.
func (s *Socket) publishHook(p *protocol.Packet, ch string, data json.RawMessage) {
	srv := s.srv
	if !s.hookSlot(hooks.Publish, p) {
		s.paceRefusal() // on the reader, like publish's own refusals
		return
	}
	data = cloneRaw(data)
	req := &hooks.PublishRequest{SocketID: s.id, Channel: ch, Claims: s.AuthToken(), Data: data}
	pp := &protocol.Packet{CID: cloneRaw(p.CID)}
	done := make(chan struct{})
	hk := s.hk
	hk.mu.Lock()
	prev := hk.pubTail[ch]
	if hk.pubTail == nil {
		hk.pubTail = make(map[string]chan struct{})
	}
	hk.pubTail[ch] = done
	hk.mu.Unlock()
	srv.wg.Go(func() {
		defer func() {
			close(done)
			hk.mu.Lock()
			if hk.pubTail[ch] == done {
				delete(hk.pubTail, ch)
			}
			hk.mu.Unlock()
			hk.inFlight.Add(-1)
		}()
		res, err := srv.cfg.PublishHook.Publish(srv.ctx, req)
		if prev != nil {
			<-prev
		}
		if err != nil {
			reason := hookFailed
			if errors.Is(err, hooks.ErrRejected) {
				reason = hookDenied
			}
			srv.hookRefused(hooks.Publish, reason)
			srv.m.publishErrors.WithLabelValues("hook").Inc()
			s.fail(pp, hooks.ClientError(err))
			return
		}
		if res != nil && res.Data != nil {
			data = res.Data
		}
		// The channel's rates apply to what the hook allowed, as to any
		// other publish (refusals here are off the reader: not paced).
		if perr := srv.allowChannelPublish(ch); perr != nil {
			s.fail(pp, perr)
			return
		}
		if perr := srv.allowChannelDeliveries(ch, len(data)); perr != nil {
			s.fail(pp, perr)
			return
		}
		if err := srv.publish(ch, data); err != nil {
			srv.m.publishErrors.WithLabelValues("broker").Inc()
			s.fail(pp, brokerError(err))
			return
		}
		s.ack(pp)
	})
}
