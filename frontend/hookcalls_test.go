package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/internal/hooks"
	"github.com/sccgo/sccgo/protocol"
)

// fakeHooks implements the three hooks with functions, as the backend
// would decide.
type fakeHooks struct {
	connect   func(ctx context.Context, req *ConnectRequest) (*ConnectResult, error)
	subscribe func(ctx context.Context, req *SubscribeRequest) error
	publish   func(ctx context.Context, req *PublishRequest) (*PublishResult, error)
}

func (f *fakeHooks) Connect(ctx context.Context, req *ConnectRequest) (*ConnectResult, error) {
	return f.connect(ctx, req)
}

func (f *fakeHooks) Subscribe(ctx context.Context, req *SubscribeRequest) error {
	return f.subscribe(ctx, req)
}

func (f *fakeHooks) Publish(ctx context.Context, req *PublishRequest) (*PublishResult, error) {
	return f.publish(ctx, req)
}

const hookRules = `
rules:
  - match: "user:{sub}"
    subscribe: nobody
    publish: nobody
  - match: "hooked:*"
    subscribe: hook
    publish: hook
default: {subscribe: anyone, publish: anyone}
`

func reject(name, msg string, code int) error {
	return &HookRejection{Err: protocol.NewError(name, msg), Code: code}
}

// tokenClaims decodes the claims of a signed token without checking it,
// as the stock client does.
func tokenClaims(t *testing.T, signed string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(signed, c); err != nil {
		t.Fatalf("token %q: %v", signed, err)
	}
	return c
}

// A rejected connect answers the #handshake with the backend's error and
// the close code as statusCode (the stock client closes with it), then
// closes with that code. The hook gets the client's IP, the upgrade
// headers and the token it sent.
func TestConnectHookRejects(t *testing.T) {
	cfg := testConfig()
	var got *ConnectRequest
	cfg.ConnectHook = &fakeHooks{connect: func(_ context.Context, req *ConnectRequest) (*ConnectResult, error) {
		got = req
		return nil, reject("LoginRequired", "log in first", 4501)
	}}
	srv := startServer(t, cfg)
	c := dialWith(t, wsURL(srv), dialOpts{header: http.Header{"Cookie": {"session=abc"}}})
	c.send(`{"event":"#handshake","data":{"authToken":"not.a.token"},"cid":1}`)
	c.expectJSON(`{"rid":1,"error":{"name":"LoginRequired","message":"log in first","statusCode":4501}}`)
	c.expectClose(4501)
	if got.RemoteAddress != "127.0.0.1" || got.Header.Get("Cookie") != "session=abc" || got.AuthToken != "not.a.token" || got.Claims != nil {
		t.Errorf("connect request %+v", got)
	}
	if n := counter(t, srv.Registry(), "scc_frontend_hook_refusals_total", "hook", "connect", "reason", "denied"); n != 1 {
		t.Errorf("refusals = %v, want 1", n)
	}
}

// A connect hook that fails (fail-closed) rejects with 4008 and a
// generic error naming no internals.
func TestConnectHookFailsClosed(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectHook = &fakeHooks{connect: func(context.Context, *ConnectRequest) (*ConnectResult, error) {
		return nil, fmt.Errorf("connect hook: %w", hooks.ErrUnavailable)
	}}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	c.expectJSON(`{"rid":1,"error":{"name":"BackendError","message":"The application backend is unavailable","statusCode":4008}}`)
	c.expectClose(4008)
}

// Accepted with claims and channels: the socket is authenticated with a
// token the frontend signed and sent with #setAuthToken after the
// answer, it is subscribed to the channels (named in the answer) even
// where the rules would refuse the client, and stays in them after it
// logs out; a #subscribe of such a channel is acknowledged.
func TestConnectHookClaimsAndChannels(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	cfg.ConnectHook = &fakeHooks{connect: func(_ context.Context, req *ConnectRequest) (*ConnectResult, error) {
		return &ConnectResult{Claims: map[string]any{"sub": "42", "role": "admin"}, Channels: []string{"user:42", "", "user:42"}}, nil
	}}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	data := c.handshake("")
	if data["isAuthenticated"] != true || fmt.Sprint(data["channels"]) != "[user:42]" {
		t.Fatalf("handshake answer %v", data)
	}
	token := c.expectIssuedToken()
	claims := tokenClaims(t, token)
	if claims["sub"] != "42" || claims["role"] != "admin" || claims["exp"] == nil {
		t.Fatalf("token claims %v", claims)
	}
	if _, perr := srv.auth.verifyToken(token); perr != nil {
		t.Fatalf("the token does not verify: %v", perr)
	}
	if err := srv.Publish(context.Background(), "user:42", []byte(`"private"`)); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"#publish","data":{"channel":"user:42","data":"private"}}`)
	c.subscribe("user:42", 2)
	c.send(`{"event":"#removeAuthToken"}`)
	probe(t, c, 3) // no #kickOut came before the probe's answer
	if err := srv.Publish(context.Background(), "user:42", []byte(`"still"`)); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"#publish","data":{"channel":"user:42","data":"still"}}`)
	// Another socket gets nothing of the sort.
	o := dial(t, srv)
	o.send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	o.packet()
	o.packet()
	o.send(`{"event":"#subscribe","data":{"channel":"user:43"},"cid":2}`)
	if p := o.packet(); !strings.Contains(p, "SubscribeBlockedError") {
		t.Fatalf("user:43 for another socket: %s", p)
	}
}

// A connect hook can refresh an expired token: it sees the token the
// client sent, returns a new one, and the socket is authenticated with
// it. A token from the hook that does not verify rejects the handshake.
func TestConnectHookRefreshesToken(t *testing.T) {
	now := time.Now().Unix()
	expired := hsToken(t, testKey, jwt.MapClaims{"sub": "7", "exp": now - 10})
	fresh := hsToken(t, testKey, jwt.MapClaims{"sub": "7", "exp": now + 600})
	cfg := testConfig()
	cfg.ConnectHook = &fakeHooks{connect: func(_ context.Context, req *ConnectRequest) (*ConnectResult, error) {
		switch req.AuthToken {
		case expired:
			if req.Claims != nil {
				return nil, fmt.Errorf("claims of an expired token: %v", req.Claims)
			}
			return &ConnectResult{Token: fresh}, nil
		case "forged":
			return &ConnectResult{Token: hsToken(t, "another key", jwt.MapClaims{"sub": "7"})}, nil
		}
		return &ConnectResult{}, nil
	}}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	data := c.handshake(expired)
	if data["isAuthenticated"] != true || data["authError"] != nil {
		t.Fatalf("handshake answer %v", data)
	}
	if tok := c.expectIssuedToken(); tok != fresh {
		t.Fatalf("token %s, want %s", tok, fresh)
	}
	probe(t, c, 2)

	b := dial(t, srv)
	b.send(`{"event":"#handshake","data":{"authToken":"forged"},"cid":1}`)
	b.expectJSON(`{"rid":1,"error":{"name":"BackendError","message":"The application backend is unavailable","statusCode":4008}}`)
	b.expectClose(4008)

	// Accepted with nothing: the client's own valid token stands, as
	// without a hook.
	d := dial(t, srv)
	if data := d.handshake(fresh); data["isAuthenticated"] != true {
		t.Fatalf("handshake answer %v", data)
	}
	probe(t, d, 2)
}

// blockingHooks hold every call until release is closed (or the call's
// ctx ends) and count the calls that started.
type blockingHooks struct {
	release chan struct{}
	mu      sync.Mutex
	started int
}

func (b *blockingHooks) wait(ctx context.Context) error {
	b.mu.Lock()
	b.started++
	b.mu.Unlock()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hook: %w", hooks.ErrTimeout)
	}
}

func (b *blockingHooks) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

func (b *blockingHooks) Connect(ctx context.Context, _ *ConnectRequest) (*ConnectResult, error) {
	return &ConnectResult{}, b.wait(ctx)
}

func (b *blockingHooks) Subscribe(ctx context.Context, _ *SubscribeRequest) error {
	return b.wait(ctx)
}

func (b *blockingHooks) Publish(ctx context.Context, _ *PublishRequest) (*PublishResult, error) {
	return &PublishResult{}, b.wait(ctx)
}

// A connect hook that does not answer holds the handshake but not the
// socket's reader: pongs are read (the socket outlives many ping
// timeouts), and the handshake is answered once the hook decides.
func TestConnectHookOffTheReader(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PingTimeout = 200 * time.Millisecond
	bh := &blockingHooks{release: make(chan struct{})}
	cfg.ConnectHook = bh
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	waitFor(t, 5*time.Second, "the hook call", func() bool { return bh.calls() == 1 })
	for i := 0; i < 30; i++ { // 30 pings: 3 ping timeouts
		select {
		case <-c.pongs:
		case <-c.done:
			t.Fatalf("closed while the hook ran: %v", c.readErr())
		case <-time.After(5 * time.Second):
			t.Fatal("no ping while the hook ran")
		}
	}
	close(bh.release)
	m := c.expectJSON(fmt.Sprintf(`{"rid":1,"data":{"id":%q,"pingTimeout":200,"isAuthenticated":false}}`, firstSocketID(t, srv)))
	_ = m
	probe(t, c, 2)
}

func firstSocketID(t *testing.T, srv *Server) string {
	t.Helper()
	var id string
	srv.eachSocket(func(s *Socket) { id = s.id })
	return id
}

// A packet other than a pong while the connect hook decides closes the
// socket with 4009, as SocketCluster does while its handshake middleware
// runs.
func TestConnectHookPacketBeforeAnswer(t *testing.T) {
	cfg := testConfig()
	bh := &blockingHooks{release: make(chan struct{})}
	defer close(bh.release)
	cfg.ConnectHook = bh
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	waitFor(t, 5*time.Second, "the hook call", func() bool { return bh.calls() == 1 })
	c.send(`{"event":"#subscribe","data":{"channel":"a"},"cid":2}`)
	c.expectClose(protocol.CloseMessageBeforeHandshake)
}

// The subscribe hook decides channels whose rule says hook: the stock
// client gets the backend's error object in the #subscribe ack, or the
// ack; the hook gets the channel, the claims and the #subscribe data.
func TestSubscribeHook(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	reqs := make(chan *SubscribeRequest, 4)
	cfg.SubscribeHook = &fakeHooks{subscribe: func(_ context.Context, req *SubscribeRequest) error {
		reqs <- req
		if req.Channel == "hooked:no" {
			return &HookRejection{Err: protocol.NewError("NotInTeamError", "not your team", "team", 7)}
		}
		if req.Channel == "hooked:down" {
			return fmt.Errorf("subscribe hook: %w", hooks.ErrTimeout)
		}
		return nil
	}}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "1", "exp": time.Now().Unix() + 600}))
	c.send(`{"event":"#subscribe","data":{"channel":"hooked:no","data":{"k":1}},"cid":2}`)
	c.expectJSON(`{"rid":2,"error":{"name":"NotInTeamError","message":"not your team","team":7}}`)
	if r := <-reqs; r.Channel != "hooked:no" || string(r.Data) != `{"k":1}` || r.Claims["sub"] != "1" || r.SocketID == "" {
		t.Errorf("subscribe request %+v", r)
	}
	c.send(`{"event":"#subscribe","data":{"channel":"hooked:down"},"cid":3}`)
	c.expectJSON(`{"rid":3,"error":{"name":"TimeoutError","message":"The application backend did not answer in time"}}`)
	<-reqs
	c.subscribe("hooked:yes", 4)
	<-reqs
	if err := srv.Publish(context.Background(), "hooked:yes", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"#publish","data":{"channel":"hooked:yes","data":1}}`)
	if got := c.Channels(srv); got != "[hooked:yes]" {
		t.Errorf("channels %s", got)
	}
	c.subscribe("free", 5) // not a hook channel: no call
	select {
	case r := <-reqs:
		t.Errorf("hook called for %s", r.Channel)
	default:
	}
}

// Channels returns the server side's list of the client's channels.
func (c *rawClient) Channels(srv *Server) string {
	var out []string
	srv.eachSocket(func(s *Socket) {
		if len(out) == 0 {
			out = s.Channels()
		}
	})
	return fmt.Sprint(out)
}

// The publish hook denies with the backend's error object, replaces the
// data, or lets it through; a socket's publishes to one channel keep their
// order even when the hook answers them out of order.
func TestPublishHook(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	cfg.PublishHook = &fakeHooks{publish: func(_ context.Context, req *PublishRequest) (*PublishResult, error) {
		var n int
		switch string(req.Data) {
		case `"spam"`:
			return nil, &HookRejection{Err: protocol.NewError("SpamError", "no spam")}
		case `"rewrite"`:
			return &PublishResult{Data: json.RawMessage(`{"clean":true}`)}, nil
		}
		if json.Unmarshal(req.Data, &n) == nil && n%2 == 0 {
			// The even ones take longer, so answers come out of order.
			time.Sleep(20 * time.Millisecond)
		}
		return &PublishResult{}, nil
	}}
	srv := startServer(t, cfg)
	sub := dial(t, srv)
	sub.handshake("")
	sub.subscribe("room", 1) // the default rule
	pub := dial(t, srv)
	pub.handshake("")
	// Subscribing to hooked:1 needs the subscribe hook, which this server
	// lacks; the socket listens through the server API instead.
	var subSock *Socket
	srv.eachSocket(func(s *Socket) {
		if len(s.Channels()) == 1 {
			subSock = s
		}
	})
	if perr := subSock.subscribeGranted(context.Background(), "hooked:1"); perr != nil {
		t.Fatal(perr)
	}

	pub.send(`{"event":"#publish","data":{"channel":"hooked:1","data":"spam"},"cid":2}`)
	pub.expectJSON(`{"rid":2,"error":{"name":"SpamError","message":"no spam"}}`)
	pub.send(`{"event":"#publish","data":{"channel":"hooked:1","data":"rewrite"},"cid":3}`)
	pub.expect(`{"rid":3}`)
	sub.expect(`{"event":"#publish","data":{"channel":"hooked:1","data":{"clean":true}}}`)

	const n = 12
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event":"#publish","data":{"channel":"hooked:1","data":%d},"cid":%d}`, i, 10+i)
	}
	b.WriteString("]")
	pub.send(b.String())
	for i := 0; i < n; i++ {
		pub.expect(fmt.Sprintf(`{"rid":%d}`, 10+i))
	}
	for i := 0; i < n; i++ {
		sub.expect(fmt.Sprintf(`{"event":"#publish","data":{"channel":"hooked:1","data":%d}}`, i))
	}
	if got := counter(t, srv.Registry(), "scc_frontend_hook_refusals_total", "hook", "publish", "reason", "denied"); got != 1 {
		t.Errorf("publish refusals = %v, want 1", got)
	}
}

// A socket may have HookCallsPerSocket hook calls in flight; the next is
// refused at once, without reaching the backend.
func TestHookCallsPerSocket(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	cfg.HookCallsPerSocket = 2
	bh := &blockingHooks{release: make(chan struct{})}
	cfg.SubscribeHook, cfg.PublishHook = bh, bh
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"#subscribe","data":{"channel":"hooked:1"},"cid":2}`)
	c.send(`{"event":"#publish","data":{"channel":"hooked:2","data":1},"cid":3}`)
	waitFor(t, 5*time.Second, "two hook calls", func() bool { return bh.calls() == 2 })
	c.send(`{"event":"#publish","data":{"channel":"hooked:2","data":2},"cid":4}`)
	c.expectJSON(`{"rid":4,"error":{"name":"BackendError","message":"Too many publish hook calls in flight for this socket (limit 2)"}}`)
	close(bh.release)
	got := map[string]bool{c.packet(): true, c.packet(): true}
	if !got[`{"rid":2}`] || !got[`{"rid":3}`] {
		t.Fatalf("acks %v", got)
	}
	if bh.calls() != 2 {
		t.Errorf("hook calls %d, want 2", bh.calls())
	}
}

// Hook backends that hang on subscribe and publish hold neither the
// socket's reader (its pongs are read, its other packets answered) nor
// anyone's deliveries.
func TestHangingHooksStallNothing(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	cfg.PingInterval = 20 * time.Millisecond
	cfg.PingTimeout = 200 * time.Millisecond
	bh := &blockingHooks{release: make(chan struct{})}
	cfg.SubscribeHook, cfg.PublishHook = bh, bh
	srv := startServer(t, cfg)
	a := dial(t, srv)
	a.handshake("")
	a.send(`{"event":"#subscribe","data":{"channel":"hooked:1"},"cid":2}`)
	a.send(`{"event":"#publish","data":{"channel":"hooked:1","data":1},"cid":3}`)
	waitFor(t, 5*time.Second, "the hook calls", func() bool { return bh.calls() == 2 })
	a.subscribe("free", 4)
	b := dial(t, srv)
	b.handshake("")
	b.subscribe("free", 1)
	for i := 0; i < 30; i++ { // 3 ping timeouts
		a.sendf(`{"event":"#publish","data":{"channel":"free","data":%d},"cid":%d}`, i, 100+i)
		// Its ack and its own delivery, in either order.
		got := map[string]bool{a.packet(): true, a.packet(): true}
		if !got[fmt.Sprintf(`{"rid":%d}`, 100+i)] || !got[fmt.Sprintf(`{"event":"#publish","data":{"channel":"free","data":%d}}`, i)] {
			t.Fatalf("got %v", got)
		}
		b.expect(fmt.Sprintf(`{"event":"#publish","data":{"channel":"free","data":%d}}`, i))
		select {
		case <-a.pongs:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping")
		}
	}
	close(bh.release)
	// Both acks; the publish may also reach a itself, once subscribed.
	got := map[string]bool{}
	for i := 0; i < 3 && !(got[`{"rid":2}`] && got[`{"rid":3}`]); i++ {
		got[a.packet()] = true
	}
	if !got[`{"rid":2}`] || !got[`{"rid":3}`] {
		t.Fatalf("acks %v", got)
	}
}

// An expired auth token is noticed on time by the sweeper, with no packet
// from the client: #removeAuthToken, and the channels the token admitted
// the socket to are left.
func TestTokenExpiryWithoutTraffic(t *testing.T) {
	cfg := rulesConfig(t, userRules)
	cfg.PingInterval = time.Minute // no pings, so no pongs either
	cfg.PingTimeout = 2 * time.Minute
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "42", "exp": time.Now().Unix() + 1}))
	c.subscribe("user:42", 2)
	c.expect(`{"event":"#removeAuthToken"}`)
	c.expectJSON(`{"event":"#kickOut","data":{"channel":"user:42","message":"the user:42 channel needs an authenticated socket"}}`)
	if srv.SocketByID(firstSocketID(t, srv)).IsAuthenticated() {
		t.Fatal("still authenticated")
	}
}

// expectIssuedToken reads the connect hook's token as the frontend
// delivers it: a #setAuthToken invoke, acknowledged, then the same token
// as a transmit. It returns the token.
func (c *rawClient) expectIssuedToken() string {
	c.t.Helper()
	var inv struct {
		Event string
		Data  struct{ Token string }
		CID   int
	}
	if p := c.packet(); json.Unmarshal([]byte(p), &inv) != nil || inv.Event != "#setAuthToken" || inv.CID == 0 || inv.Data.Token == "" {
		c.t.Fatalf("want a #setAuthToken invoke, got %s", p)
	}
	c.sendf(`{"rid":%d}`, inv.CID)
	c.expect(fmt.Sprintf(`{"event":"#setAuthToken","data":{"token":%q}}`, inv.Data.Token))
	return inv.Data.Token
}

// The stock client sends #unsubscribe while its #subscribe is pending (it
// cancels the subscribe's callback): the unsubscribe is acknowledged, and
// when the hook then allows, the socket is not left in the channel.
func TestSubscribeHookUnsubscribedWhilePending(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	bh := &blockingHooks{release: make(chan struct{})}
	cfg.SubscribeHook = bh
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"#subscribe","data":{"channel":"hooked:1"},"cid":2}`)
	waitFor(t, 5*time.Second, "the hook call", func() bool { return bh.calls() == 1 })
	c.send(`{"event":"#unsubscribe","data":"hooked:1","cid":3}`)
	c.expect(`{"rid":3}`)
	close(bh.release)
	if p := c.packet(); !strings.HasPrefix(p, `{"rid":2,"error"`) {
		t.Fatalf("subscribe answer %s", p)
	}
	if got := c.Channels(srv); got != "[]" {
		t.Fatalf("channels %s", got)
	}
	if err := srv.Publish(context.Background(), "hooked:1", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	probe(t, c, 4) // and no #publish before its answer
}

// TestPublishHookKeepsChannelRate: a channel whose publishes the hook
// decides still has its publish rate: what the hook allows beyond it is
// refused with ResourceLimitError, and counted.
func TestPublishHookKeepsChannelRate(t *testing.T) {
	cfg := rulesConfig(t, hookRules)
	cfg.ChannelPublishRate, cfg.ChannelPublishBurst = 0.001, 2
	cfg.PublishHook = &fakeHooks{publish: func(context.Context, *PublishRequest) (*PublishResult, error) {
		return &PublishResult{}, nil
	}}
	srv := startServer(t, cfg)
	pub := dial(t, srv)
	pub.handshake("")
	for i := range 2 {
		pub.sendf(`{"event":"#publish","data":{"channel":"hooked:1","data":%d},"cid":%d}`, i, 10+i)
		pub.expect(fmt.Sprintf(`{"rid":%d}`, 10+i))
	}
	pub.send(`{"event":"#publish","data":{"channel":"hooked:1","data":3},"cid":20}`)
	pub.expectJSON(`{"rid":20,"error":{"name":"ResourceLimitError","message":"Publish rate limit of the hooked:1 channel exceeded"}}`)
	if got := counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_rate"); got != 1 {
		t.Fatalf("channel_rate refusals = %v, want 1", got)
	}
}
