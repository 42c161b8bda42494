package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

// fakeConfig shapes a fakeServer.
type fakeConfig struct {
	Addr         string         // "" for 127.0.0.1:0
	PingInterval time.Duration  // 0: no pings
	PingTimeout  time.Duration  // advertised; default 30s
	V1           bool           // ping "#1", expect "#2"
	NoHandshake  bool           // never answer #handshake
	NoPings      bool           // advertise PingTimeout but never ping
	HTTPStatus   int            // refuse the upgrade with this status
	Refusals     int            // with HTTPStatus: refuse only the first n upgrades (0: all)
	RetryAfter   string         // Retry-After header on refusals
	Upgrades     chan time.Time // receives each upgrade request's arrival, if non-nil
	HandshakeErr *protocol.Error
	CloseAfterHS int         // close with this code right after the handshake reply
	Tokens       chan string // receives each handshake's token, if non-nil
	RemoteAddrs  chan string // receives each client address, if non-nil
}

// fakeServer is a small in-test SocketCluster server: handshake, pings,
// subscribe, publish echo to every subscriber, invoke, auth and kick-out.
// Tokens are "good-*" (valid), "expired-*" and anything else (invalid).
type fakeServer struct {
	t    *testing.T
	cfg  fakeConfig
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	conns  map[*fakeConn]struct{}
	nextID int

	frames      atomic.Int64 // JSON frames received
	packets     atomic.Int64 // packets received
	subscribes  atomic.Int64
	maxBatch    atomic.Int64
	pongs       atomic.Int64
	handshakes  atomic.Int64
	subBatchMax atomic.Int64 // most #subscribe packets seen in one frame
	refused     atomic.Int64
}

type fakeConn struct {
	s      *fakeServer
	ws     *websocket.Conn
	id     string
	mu     sync.Mutex
	subs   map[string]bool
	authed bool
	cid    atomic.Int64
	calls  sync.Map // cid → chan protocol.Packet
}

func startFake(t *testing.T, cfg fakeConfig) *fakeServer {
	t.Helper()
	if cfg.PingTimeout == 0 {
		cfg.PingTimeout = 30 * time.Second
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// A restarted server takes the same port; the old socket may linger
	// briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &fakeServer{t: t, cfg: cfg, ln: ln, conns: map[*fakeConn]struct{}{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/socketcluster/", s.handle)
	s.srv = &http.Server{Handler: mux}
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
	t.Cleanup(s.Close)
	return s
}

func (s *fakeServer) URL() string { return "ws://" + s.ln.Addr().String() + "/socketcluster/" }

// Close stops the server and drops every connection without a close frame.
func (s *fakeServer) Close() {
	s.stop()
	_ = s.srv.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.ws.CloseNow()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// CloseAll closes every connection with code.
func (s *fakeServer) CloseAll(code int, reason string) {
	for _, c := range s.Conns() {
		_ = c.ws.Close(websocket.StatusCode(code), reason)
	}
}

func (s *fakeServer) Conns() []*fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*fakeConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *fakeServer) handle(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Upgrades != nil {
		s.cfg.Upgrades <- time.Now()
	}
	if s.cfg.HTTPStatus != 0 && (s.cfg.Refusals == 0 || s.refused.Add(1) <= int64(s.cfg.Refusals)) {
		if s.cfg.RetryAfter != "" {
			w.Header().Set("Retry-After", s.cfg.RetryAfter)
		}
		http.Error(w, "refused by test", s.cfg.HTTPStatus)
		return
	}
	if s.cfg.RemoteAddrs != nil {
		s.cfg.RemoteAddrs <- r.RemoteAddr
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 24)
	s.mu.Lock()
	s.nextID++
	c := &fakeConn{s: s, ws: ws, id: fmt.Sprintf("fake-%d", s.nextID), subs: map[string]bool{}}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = ws.CloseNow()
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	if s.cfg.PingInterval > 0 && !s.cfg.NoPings {
		var pw sync.WaitGroup
		defer pw.Wait()
		defer cancel()
		pw.Go(func() {
			t := time.NewTicker(s.cfg.PingInterval)
			defer t.Stop()
			ping := protocol.V2.PingFrame()
			if s.cfg.V1 {
				ping = protocol.V1.PingFrame()
			}
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if ws.Write(ctx, websocket.MessageText, ping) != nil {
						return
					}
				}
			}
		})
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			return
		}
		switch protocol.Classify(msg) {
		case protocol.KindEmpty, protocol.KindV1Pong:
			s.pongs.Add(1)
			continue
		case protocol.KindJSON:
		default:
			continue
		}
		pkts, err := protocol.DecodePackets(msg)
		if err != nil {
			continue
		}
		s.frames.Add(1)
		s.packets.Add(int64(len(pkts)))
		setMax(&s.maxBatch, int64(len(pkts)))
		nsub := int64(0)
		for _, p := range pkts {
			if p.Event == protocol.EventSubscribe {
				nsub++
			}
		}
		setMax(&s.subBatchMax, nsub)
		for i := range pkts {
			if !c.handle(ctx, &pkts[i]) {
				return
			}
		}
	}
}

func setMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (c *fakeConn) send(b []byte) {
	_ = c.ws.Write(context.Background(), websocket.MessageText, b)
}

func (c *fakeConn) reply(p *protocol.Packet, data []byte) {
	if p.CID != nil {
		c.send(protocol.AppendResponse(nil, p.CID, data))
	}
}

func (c *fakeConn) replyErr(p *protocol.Packet, e *protocol.Error) {
	if p.CID != nil {
		c.send(protocol.AppendErrorResponse(nil, p.CID, e))
	}
}

func tokenError(tok string) *protocol.Error {
	if strings.HasPrefix(tok, "expired-") {
		return protocol.NewError(protocol.ErrNameAuthTokenExpired, "jwt expired", "expiry", "2026-01-01T00:00:00.000Z", "isBadToken", true)
	}
	return protocol.NewError(protocol.ErrNameAuthTokenInvalid, "invalid signature", "isBadToken", true)
}

// handle processes one packet; false closes the connection.
func (c *fakeConn) handle(ctx context.Context, p *protocol.Packet) bool {
	s := c.s
	if p.Kind() == protocol.PacketResponse {
		id, _ := protocol.ParseCallID(p.RID)
		if ch, ok := c.calls.LoadAndDelete(id); ok {
			ch.(chan protocol.Packet) <- *p
		}
		return true
	}
	switch p.Event {
	case protocol.EventHandshake:
		s.handshakes.Add(1)
		if s.cfg.NoHandshake {
			return true
		}
		if s.cfg.HandshakeErr != nil {
			c.replyErr(p, s.cfg.HandshakeErr)
			code := protocol.CloseHandshakeRejected
			if sc, ok := s.cfg.HandshakeErr.Field("statusCode").(int); ok {
				code = sc
			}
			_ = c.ws.Close(websocket.StatusCode(code), "")
			return false
		}
		var hr protocol.HandshakeRequest
		_ = json.Unmarshal(p.Data, &hr)
		tok := ""
		if hr.AuthToken != nil {
			tok = *hr.AuthToken
		}
		if s.cfg.Tokens != nil {
			s.cfg.Tokens <- tok
		}
		resp := protocol.HandshakeResponse{ID: c.id, PingTimeout: s.cfg.PingTimeout.Milliseconds()}
		var bad bool
		if tok != "" {
			if strings.HasPrefix(tok, "good-") {
				resp.IsAuthenticated = true
				c.authed = true
			} else {
				resp.AuthError = tokenError(tok)
				bad = true
			}
		}
		b, _ := json.Marshal(resp)
		c.reply(p, b)
		if bad {
			c.send([]byte(`{"event":"#removeAuthToken"}`))
		}
		if s.cfg.CloseAfterHS != 0 {
			_ = c.ws.Close(websocket.StatusCode(s.cfg.CloseAfterHS), "test close")
			return false
		}
	case protocol.EventSubscribe:
		s.subscribes.Add(1)
		sr, err := protocol.DecodeSubscribe(p.Data)
		if err != nil {
			c.replyErr(p, protocol.NewError(protocol.ErrNameInvalidAction, "Subscribe channel name was malformatted"))
			return true
		}
		if strings.HasPrefix(sr.Channel, "blocked") {
			c.replyErr(p, protocol.NewError(protocol.ErrNameSubscribeBlocked, "Not allowed to subscribe"))
			return true
		}
		if strings.HasPrefix(sr.Channel, "private") && !c.authed {
			c.replyErr(p, protocol.NewError(protocol.ErrNameSubscribeBlocked, "Not authenticated"))
			return true
		}
		c.mu.Lock()
		c.subs[sr.Channel] = true
		c.mu.Unlock()
		c.reply(p, nil)
	case protocol.EventUnsubscribe:
		ch, _ := protocol.DecodeString(p.Data)
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	case protocol.EventPublish:
		pd, err := protocol.DecodePublish(p.Data)
		if err != nil {
			c.replyErr(p, protocol.NewError(protocol.ErrNameInvalidAction, "bad publish"))
			return true
		}
		frame := protocol.AppendPublish(nil, pd.Channel, pd.Data)
		for _, o := range s.Conns() {
			o.mu.Lock()
			ok := o.subs[pd.Channel]
			o.mu.Unlock()
			if ok {
				o.send(frame)
			}
		}
		c.reply(p, nil)
	case protocol.EventAuthenticate:
		tok, _ := protocol.DecodeString(p.Data)
		if strings.HasPrefix(tok, "good-") {
			c.authed = true
			c.reply(p, []byte(`{"isAuthenticated":true,"authError":null}`))
		} else {
			c.authed = false
			c.replyErr(p, tokenError(tok))
			c.send([]byte(`{"event":"#removeAuthToken"}`))
		}
	case protocol.EventRemoveAuthToken:
		c.authed = false
	case "echo":
		c.reply(p, p.Data)
	case "fail":
		c.replyErr(p, protocol.NewError("MyAppError", "Procedure failed on purpose", "extra", 42))
	case "login": // the server signs a token for the client
		c.authed = true
		c.send([]byte(`{"event":"#setAuthToken","data":{"token":"good-from-server"}}`))
		c.reply(p, nil)
	case "logout":
		c.authed = false
		c.send([]byte(`{"event":"#removeAuthToken"}`))
		c.reply(p, nil)
	case "kick":
		ch, _ := protocol.DecodeString(p.Data)
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
		c.send([]byte(`{"event":"#kickOut","data":{"channel":` + string(protocol.AppendString(nil, ch)) + `,"message":"bye"}}`))
		c.reply(p, nil)
	case "emit": // the server transmits an event back
		c.send(protocol.AppendEvent(nil, "serverEvent", p.Data, 0))
		c.reply(p, nil)
	default:
		c.replyErr(p, protocol.NewError(protocol.ErrNameNoMatchingProcedure, "no procedure "+p.Event))
	}
	return true
}

// Invoke calls a procedure on the client and returns its reply packet.
func (c *fakeConn) Invoke(ctx context.Context, event string, data []byte) (protocol.Packet, error) {
	id := c.cid.Add(1)
	ch := make(chan protocol.Packet, 1)
	c.calls.Store(id, ch)
	c.send(protocol.AppendEvent(nil, event, data, id))
	select {
	case p := <-ch:
		return p, nil
	case <-ctx.Done():
		return protocol.Packet{}, errors.Join(errors.New("fake: no reply"), ctx.Err())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}
