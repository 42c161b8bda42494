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
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, url string, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.Dial(ctxT(t, 5*time.Second), url, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func next(t *testing.T, s *client.Subscription) client.Message {
	t.Helper()
	m, err := s.Next(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Next on %s: %v", s.Channel(), err)
	}
	return m
}

func TestDialSubscribePublish(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	if c.State() != client.StateOpen || !strings.HasPrefix(c.ID(), "fake-") {
		t.Fatalf("state %v id %q", c.State(), c.ID())
	}
	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, "room", client.SubscribeOptions{}); !errors.Is(err, client.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe: %v", err)
	}
	if err := c.Publish(ctx, "room", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); m.Channel != "room" || string(m.Data) != `{"x":1}` {
		t.Fatalf("got %s %s", m.Channel, m.Data)
	}
	// Pre-encoded JSON goes out as is.
	if err := c.Publish(ctx, "room", json.RawMessage(`{"pre": "encoded"}`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `{"pre": "encoded"}` {
		t.Fatalf("got %s", m.Data)
	}
	if err := c.TransmitPublish("room", []byte(`[1,2]`)); err != nil {
		t.Fatal(err)
	}
	if m := <-sub.C(); string(m.Data) != `[1,2]` {
		t.Fatalf("got %s", m.Data)
	}
	if err := c.Publish(ctx, "room", nil); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); m.Data != nil {
		t.Fatalf("publish without data delivered %q", m.Data)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, client.ErrUnsubscribed) {
		t.Fatalf("Next after Unsubscribe: %v", err)
	}
	if err := c.Unsubscribe("room"); !errors.Is(err, client.ErrNotSubscribed) {
		t.Fatalf("Unsubscribe twice: %v", err)
	}
	waitFor(t, "server-side unsubscribe", 2*time.Second, func() bool {
		cs := f.Conns()
		if len(cs) != 1 {
			return false
		}
		cs[0].mu.Lock()
		defer cs[0].mu.Unlock()
		return !cs[0].subs["room"]
	})
}

func TestSubscribeRefused(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{})
	_, err := c.Subscribe(ctxT(t, 5*time.Second), "blocked-1", client.SubscribeOptions{Data: map[string]string{"k": "v"}})
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Name != protocol.ErrNameSubscribeBlocked {
		t.Fatalf("got %v", err)
	}
	// The refused channel is forgotten: subscribing again is allowed.
	if _, err := c.Subscribe(ctxT(t, 5*time.Second), "blocked-1", client.SubscribeOptions{}); !errors.As(err, &pe) {
		t.Fatalf("second try: %v", err)
	}
}

func TestInvoke(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	got, err := c.Invoke(ctx, "echo", map[string]any{"b": 2})
	if err != nil || string(got) != `{"b":2}` {
		t.Fatalf("echo: %s %v", got, err)
	}
	_, err = c.Invoke(ctx, "fail", nil)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Name != "MyAppError" || ce.Message != "Procedure failed on purpose" {
		t.Fatalf("fail: %v", err)
	}
	if n, _ := ce.Field("extra").(json.Number); n.String() != "42" {
		t.Fatalf("extra field: %#v", ce.Field("extra"))
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatal("errors.As *protocol.Error failed")
	}
	_, err = c.Invoke(ctx, "nothing-here", "x")
	if !errors.As(err, &ce) || ce.Name != protocol.ErrNameNoMatchingProcedure {
		t.Fatalf("unknown: %v", err)
	}
}

func TestEventsAndServerRPC(t *testing.T) {
	f := startFake(t, fakeConfig{})
	events := make(chan string, 4)
	c := dial(t, f.URL(), client.Options{
		OnEvent: func(ev string, data json.RawMessage) { events <- ev + " " + string(data) },
		OnRPC: func(ctx context.Context, ev string, data json.RawMessage) (any, error) {
			if ev == "bad" {
				return nil, protocol.NewError("ClientError", "no", "code", 7)
			}
			if ev == "plain" {
				return nil, errors.New("plain failure")
			}
			return map[string]string{"clientSays": string(data)}, nil
		},
	})
	ctx := ctxT(t, 5*time.Second)
	if err := c.Transmit("hello", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctx, "emit", map[string]string{"hello": "world"}); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev != `serverEvent {"hello":"world"}` {
		t.Fatalf("event %q", ev)
	}
	fc := f.Conns()[0]
	p, err := fc.Invoke(ctx, "clientProc", []byte(`"q"`))
	if err != nil || string(p.Data) != `{"clientSays":"\"q\""}` {
		t.Fatalf("client RPC: %s %v", p.Data, err)
	}
	p, err = fc.Invoke(ctx, "bad", nil)
	if err != nil || string(p.Error) != `{"message":"no","name":"ClientError","code":7}` {
		t.Fatalf("client RPC error: %s %v", p.Error, err)
	}
	p, err = fc.Invoke(ctx, "plain", nil)
	if err != nil || string(p.Error) != `{"message":"plain failure","name":"Error"}` {
		t.Fatalf("client RPC plain error: %s %v", p.Error, err)
	}
}

func TestServerRPCWithoutHandler(t *testing.T) {
	f := startFake(t, fakeConfig{})
	dial(t, f.URL(), client.Options{})
	p, err := f.Conns()[0].Invoke(ctxT(t, 5*time.Second), "x", nil)
	var pe protocol.Error
	if err != nil || pe.UnmarshalJSON(p.Error) != nil || pe.Name != protocol.ErrNameNoMatchingProcedure {
		t.Fatalf("got %s %v", p.Error, err)
	}
}

func TestAuthHandshake(t *testing.T) {
	f := startFake(t, fakeConfig{})
	var info client.ConnectInfo
	c := dial(t, f.URL(), client.Options{AuthToken: "good-alice", OnConnect: func(i client.ConnectInfo) { info = i }})
	if !c.IsAuthenticated() || c.AuthToken() != "good-alice" || !info.IsAuthenticated || c.AuthState() != client.Authenticated {
		t.Fatalf("authed %v token %q info %+v", c.IsAuthenticated(), c.AuthToken(), info)
	}

	for _, tc := range []struct{ token, name string }{
		{"forged", protocol.ErrNameAuthTokenInvalid},
		{"expired-bob", protocol.ErrNameAuthTokenExpired},
	} {
		var info client.ConnectInfo
		c := dial(t, f.URL(), client.Options{AuthToken: tc.token, OnConnect: func(i client.ConnectInfo) { info = i }})
		if info.AuthError == nil || info.AuthError.Name != tc.name || !info.AuthError.IsBadToken() {
			t.Fatalf("%s: auth error %v", tc.token, info.AuthError)
		}
		if c.IsAuthenticated() {
			t.Fatalf("%s: authenticated", tc.token)
		}
		// A bad token is dropped: by the handshake reply and by the
		// server's #removeAuthToken.
		if c.AuthToken() != "" {
			t.Fatalf("%s: token kept", tc.token)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	f := startFake(t, fakeConfig{})
	var changes atomic.Int64
	c := dial(t, f.URL(), client.Options{OnAuthStateChange: func(client.AuthState, string) { changes.Add(1) }})
	ctx := ctxT(t, 5*time.Second)

	err := c.Authenticate(ctx, "garbage.token.value")
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Name != protocol.ErrNameAuthTokenInvalid || !pe.IsBadToken() {
		t.Fatalf("bad token: %v", err)
	}
	if c.IsAuthenticated() {
		t.Fatal("authenticated after a bad token")
	}
	if err := c.Authenticate(ctx, "good-carol"); err != nil {
		t.Fatal(err)
	}
	if !c.IsAuthenticated() || c.AuthToken() != "good-carol" {
		t.Fatal("not authenticated")
	}
	if err := c.Deauthenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if c.IsAuthenticated() || c.AuthToken() != "" {
		t.Fatal("still authenticated")
	}
	// The server sets and removes tokens itself.
	if _, err := c.Invoke(ctx, "login", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "#setAuthToken", 2*time.Second, func() bool { return c.AuthToken() == "good-from-server" && c.IsAuthenticated() })
	if _, err := c.Invoke(ctx, "logout", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "#removeAuthToken", 2*time.Second, func() bool { return c.AuthToken() == "" && !c.IsAuthenticated() })
	if changes.Load() < 4 {
		t.Fatalf("OnAuthStateChange called %d times", changes.Load())
	}
}

func TestWaitForAuth(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	type res struct {
		s   *client.Subscription
		err error
	}
	done := make(chan res, 1)
	go func() {
		s, err := c.Subscribe(ctx, "private-1", client.SubscribeOptions{WaitForAuth: true})
		done <- res{s, err}
	}()
	// Nothing is sent until the client is authenticated.
	waitFor(t, "subscription registered", 2*time.Second, func() bool { return len(c.Subscriptions()) == 1 })
	if n := f.subscribes.Load(); n != 0 {
		t.Fatalf("%d #subscribe sent before auth", n)
	}
	if err := c.Authenticate(ctx, "good-dave"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Subscribe: %v", r.err)
	}
	if err := c.Publish(ctx, "private-1", 5); err != nil {
		t.Fatal(err)
	}
	if m := next(t, r.s); string(m.Data) != "5" {
		t.Fatalf("got %s", m.Data)
	}
}

func TestKickOut(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Invoke(ctx, "kick", "room"); err != nil {
		t.Fatal(err)
	}
	_, err = sub.Next(ctx)
	var ke *client.KickOutError
	if !errors.Is(err, client.ErrKickedOut) || !errors.As(err, &ke) || ke.Channel != "room" || ke.Message != "bye" {
		t.Fatalf("got %v", err)
	}
	// The subscription is gone locally, with no #unsubscribe sent.
	if err := c.Unsubscribe("room"); !errors.Is(err, client.ErrNotSubscribed) {
		t.Fatalf("Unsubscribe after kick: %v", err)
	}
}

func TestReconnectRestoresSubscriptions(t *testing.T) {
	f := startFake(t, fakeConfig{})
	addr := f.ln.Addr().String()
	var connects, disconnects atomic.Int64
	c := dial(t, f.URL(), client.Options{
		AuthToken:    "good-erin",
		Backoff:      client.Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond},
		OnConnect:    func(client.ConnectInfo) { connects.Add(1) },
		OnDisconnect: func(int, string) { disconnects.Add(1) },
	})
	ctx := ctxT(t, 10*time.Second)
	var subs []*client.Subscription
	for i := range 3 {
		s, err := c.Subscribe(ctx, fmt.Sprintf("ch-%d", i), client.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	ws, err := c.Subscribe(ctx, "private-x", client.SubscribeOptions{WaitForAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	subs = append(subs, ws)

	f.Close() // drops every connection without a close frame (1006)
	waitFor(t, "disconnect", 5*time.Second, func() bool { return disconnects.Load() == 1 })
	if err := c.TransmitPublish("ch-0", 1); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("TransmitPublish while disconnected: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Publish(short, "ch-0", 1)
	cancel()
	if !errors.Is(err, client.ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while disconnected: %v", err)
	}

	tokens := make(chan string, 1)
	f2 := startFake(t, fakeConfig{Addr: addr, Tokens: tokens})
	if tok := <-tokens; tok != "good-erin" {
		t.Fatalf("handshake token after reconnect %q", tok)
	}
	waitFor(t, "reconnect", 5*time.Second, func() bool { return connects.Load() == 2 && c.State() == client.StateOpen })
	waitFor(t, "resubscribe", 5*time.Second, func() bool { return f2.subscribes.Load() == 4 })
	if n := f2.subBatchMax.Load(); n != 4 {
		t.Fatalf("resubscribe used %d #subscribe per frame at most, want all 4 in one", n)
	}
	for i, s := range subs {
		if err := c.Publish(ctx, s.Channel(), i); err != nil {
			t.Fatal(err)
		}
		if m := next(t, s); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("%s got %s", s.Channel(), m.Data)
		}
	}
}

func TestTokenRaceOnHandshake(t *testing.T) {
	// The handshake reply and a #removeAuthToken right behind it are
	// applied in order.
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{AuthToken: "forged"})
	if c.AuthToken() != "" || c.IsAuthenticated() {
		t.Fatal("bad token kept")
	}
}

func TestServerCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code      int
		reconnect bool
	}{
		{protocol.ClosePongTimeout, true},
		{protocol.CloseGoingAway, true},
		{4010, true},
		{protocol.CloseNormal, false},
		{protocol.ClosePermanentMin, false},
		{4999, false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			f := startFake(t, fakeConfig{})
			codes := make(chan int, 4)
			c := dial(t, f.URL(), client.Options{
				Backoff:      client.Backoff{Initial: 10 * time.Millisecond},
				OnDisconnect: func(code int, _ string) { codes <- code },
			})
			sub, err := c.Subscribe(ctxT(t, 5*time.Second), "room", client.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f.CloseAll(tc.code, "test")
			if got := <-codes; got != tc.code {
				t.Fatalf("OnDisconnect code %d", got)
			}
			if tc.reconnect {
				waitFor(t, "reconnect", 5*time.Second, func() bool { return f.handshakes.Load() == 2 && c.State() == client.StateOpen })
				if c.Err() != nil {
					t.Fatal(c.Err())
				}
				return
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("client did not stop")
			}
			var ce *client.CloseError
			if !errors.As(c.Err(), &ce) || ce.Code != tc.code || !ce.Permanent() || c.State() != client.StateClosed {
				t.Fatalf("Err %v state %v", c.Err(), c.State())
			}
			if _, err := sub.Next(ctxT(t, time.Second)); !errors.As(err, &ce) {
				t.Fatalf("subscription ended with %v", err)
			}
			if err := c.Publish(ctxT(t, time.Second), "room", 1); !errors.As(err, &ce) {
				t.Fatalf("Publish after permanent close: %v", err)
			}
			if f.handshakes.Load() != 1 {
				t.Fatalf("%d handshakes", f.handshakes.Load())
			}
		})
	}
}

func TestDisableReconnect(t *testing.T) {
	f := startFake(t, fakeConfig{})
	c := dial(t, f.URL(), client.Options{DisableReconnect: true})
	f.CloseAll(protocol.ClosePongTimeout, "")
	<-c.Done()
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != protocol.ClosePongTimeout {
		t.Fatalf("Err %v", c.Err())
	}
}

func TestStaleConnection(t *testing.T) {
	// The server advertises a short ping timeout and never pings: the
	// client closes with 4000 and reconnects.
	f := startFake(t, fakeConfig{PingTimeout: 150 * time.Millisecond, PingInterval: time.Hour, NoPings: true})
	codes := make(chan int, 8)
	dial(t, f.URL(), client.Options{OnDisconnect: func(code int, _ string) { codes <- code }})
	select {
	case code := <-codes:
		if code != protocol.ClosePingTimeout {
			t.Fatalf("code %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stale connection not detected")
	}
	waitFor(t, "reconnect", 5*time.Second, func() bool { return f.handshakes.Load() >= 2 })
}

func TestPings(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprint("v1=", v1), func(t *testing.T) {
			// The ping timeout is generous: a loaded machine may stall both
			// ends; the test is about the pong frames.
			f := startFake(t, fakeConfig{V1: v1, PingInterval: 10 * time.Millisecond, PingTimeout: 3 * time.Second})
			opts := client.Options{}
			if v1 {
				opts.ProtocolVersion = protocol.V1
			}
			var disconnects atomic.Int64
			opts.OnDisconnect = func(int, string) { disconnects.Add(1) }
			c := dial(t, f.URL(), opts)
			waitFor(t, "pongs", 5*time.Second, func() bool { return f.pongs.Load() >= 40 })
			if disconnects.Load() != 0 || c.State() != client.StateOpen {
				t.Fatal("connection dropped although pings arrived")
			}
		})
	}
}

func TestDialHandshakeTimeout(t *testing.T) {
	f := startFake(t, fakeConfig{NoHandshake: true})
	start := time.Now()
	_, err := client.Dial(ctxT(t, 10*time.Second), f.URL(), client.Options{ConnectTimeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if f.handshakes.Load() != 1 {
		t.Fatalf("handshakes %d", f.handshakes.Load())
	}
	t.Logf("failed after %v: %v", time.Since(start), err)
	// The caller's ctx bounds it too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := client.Dial(ctx, f.URL(), client.Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx-bounded: %v", err)
	}
}

func TestDialUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, err = client.Dial(ctxT(t, 10*time.Second), "ws://"+addr+"/socketcluster/", client.Options{})
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("got %v", err)
	}
	if _, err := client.Dial(ctxT(t, time.Second), "not a url", client.Options{}); err == nil {
		t.Fatal("bad URL accepted")
	}
}

func TestDialRefusedUpgrade(t *testing.T) {
	f := startFake(t, fakeConfig{HTTPStatus: 403})
	_, err := client.Dial(ctxT(t, 5*time.Second), f.URL(), client.Options{})
	var ue *client.UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != 403 || !strings.Contains(ue.Body, "refused by test") {
		t.Fatalf("got %v", err)
	}
	f2 := startFake(t, fakeConfig{})
	_, err = client.Dial(ctxT(t, 5*time.Second), "ws://"+f2.ln.Addr().String()+"/wrong/", client.Options{})
	if !errors.As(err, &ue) || ue.StatusCode != 404 {
		t.Fatalf("wrong path: %v", err)
	}
}

// TestReconnectHonoursRetryAfter: a reconnect refused with 503 and
// Retry-After waits at least that long before the next attempt, though its
// own backoff is far shorter.
func TestReconnectHonoursRetryAfter(t *testing.T) {
	f := startFake(t, fakeConfig{})
	addr := f.ln.Addr().String()
	var connects, disconnects atomic.Int64
	dial(t, f.URL(), client.Options{
		Backoff:      client.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond},
		OnConnect:    func(client.ConnectInfo) { connects.Add(1) },
		OnDisconnect: func(int, string) { disconnects.Add(1) },
	})
	f.Close()
	waitFor(t, "disconnect", 5*time.Second, func() bool { return disconnects.Load() == 1 })
	upgrades := make(chan time.Time, 8)
	startFake(t, fakeConfig{Addr: addr, HTTPStatus: http.StatusServiceUnavailable, Refusals: 1, RetryAfter: "1", Upgrades: upgrades})
	refusedAt := <-upgrades
	select {
	case next := <-upgrades:
		if gap := next.Sub(refusedAt); gap < time.Second {
			t.Fatalf("retried %v after a Retry-After: 1 refusal", gap)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retry after the refusal")
	}
	waitFor(t, "reconnect", 5*time.Second, func() bool { return connects.Load() == 2 })
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{"99999999", client.MaxRetryAfter},
		{"99999999999999999999999", client.MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := client.ParseRetryAfter(c.v, now); got != c.want {
			t.Errorf("Retry-After %q: %v, want %v", c.v, got, c.want)
		}
	}
}

func TestDialHandshakeRejected(t *testing.T) {
	f := startFake(t, fakeConfig{HandshakeErr: protocol.NewError("ScBlocked", "sc handshake blocked", "statusCode", 4008)})
	_, err := client.Dial(ctxT(t, 5*time.Second), f.URL(), client.Options{})
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Name != "ScBlocked" {
		t.Fatalf("got %v", err)
	}
}

func TestLocalAddr(t *testing.T) {
	addrs := make(chan string, 1)
	f := startFake(t, fakeConfig{RemoteAddrs: addrs})
	dial(t, f.URL(), client.Options{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}})
	if a := <-addrs; !strings.HasPrefix(a, "127.0.0.2:") {
		t.Fatalf("connected from %s", a)
	}
}

func TestConcurrentPublishers(t *testing.T) {
	f := startFake(t, fakeConfig{})
	const workers, each = 16, 200
	c := dial(t, f.URL(), client.Options{SubscriptionBuffer: workers * each})
	ctx := ctxT(t, 20*time.Second)
	sub, err := c.Subscribe(ctx, "load", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%2 == 0 {
					err = c.Publish(ctx, "load", json.RawMessage(fmt.Sprintf(`[%d,%d]`, w, i)))
				} else {
					err = c.TransmitPublish("load", []int{w, i})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Per publisher, messages arrive in order.
	last := make([]int, workers)
	for i := range last {
		last[i] = -1
	}
	for range workers * each {
		m := next(t, sub)
		var wi [2]int
		if err := json.Unmarshal(m.Data, &wi); err != nil {
			t.Fatal(err)
		}
		if wi[1] != last[wi[0]]+1 {
			t.Fatalf("publisher %d: %d after %d", wi[0], wi[1], last[wi[0]])
		}
		last[wi[0]] = wi[1]
	}
	if sub.Dropped() != 0 {
		t.Fatalf("dropped %d", sub.Dropped())
	}
	t.Logf("%d packets in %d frames, largest batch %d", f.packets.Load(), f.frames.Load(), f.maxBatch.Load())
}

func TestOverflowPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy client.OverflowPolicy
		first  int
	}{
		{client.DropNewest, 0},
		{client.DropOldest, 6},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			f := startFake(t, fakeConfig{})
			c := dial(t, f.URL(), client.Options{SubscriptionBuffer: 4, OverflowPolicy: tc.policy})
			ctx := ctxT(t, 5*time.Second)
			sub, err := c.Subscribe(ctx, "fast", client.SubscribeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if err := c.Publish(ctx, "fast", i); err != nil {
					t.Fatal(err)
				}
			}
			// The fake echoes before it acks, so every message has been
			// delivered or dropped by now.
			if d := sub.Dropped(); d != 6 {
				t.Fatalf("dropped %d, want 6", d)
			}
			for i := range 4 {
				if m := next(t, sub); string(m.Data) != fmt.Sprint(tc.first+i) {
					t.Fatalf("message %d: %s", i, m.Data)
				}
			}
		})
	}
}

func TestSubscribeWhileDisconnected(t *testing.T) {
	f := startFake(t, fakeConfig{})
	addr := f.ln.Addr().String()
	c := dial(t, f.URL(), client.Options{Backoff: client.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	f.Close()
	waitFor(t, "disconnect", 5*time.Second, func() bool { return c.State() == client.StateConnecting })

	// A Subscribe that runs out of time leaves nothing behind.
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	_, err := c.Subscribe(short, "late", client.SubscribeOptions{})
	cancel()
	if !errors.Is(err, client.ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short Subscribe: %v", err)
	}

	ctx := ctxT(t, 10*time.Second)
	done := make(chan error, 1)
	var sub *client.Subscription
	go func() {
		var err error
		sub, err = c.Subscribe(ctx, "pending", client.SubscribeOptions{})
		done <- err
	}()
	waitFor(t, "pending subscription", 2*time.Second, func() bool { return len(c.Subscriptions()) == 1 })
	f2 := startFake(t, fakeConfig{Addr: addr})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := f2.subscribes.Load(); n != 1 {
		t.Fatalf("%d #subscribe on the new server", n)
	}
	if err := c.Publish(ctx, "pending", "hi"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `"hi"` {
		t.Fatalf("got %s", m.Data)
	}
}

func TestClose(t *testing.T) {
	f := startFake(t, fakeConfig{PingInterval: 10 * time.Millisecond})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if c.State() != client.StateClosed {
		t.Fatalf("state %v", c.State())
	}
	if _, err := sub.Next(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Next: %v", err)
	}
	if err := c.Publish(ctx, "room", 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Publish: %v", err)
	}
	if err := c.Transmit("x", 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Transmit: %v", err)
	}
	if _, err := c.Subscribe(ctx, "x", client.SubscribeOptions{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Subscribe: %v", err)
	}
	waitFor(t, "server sees the close", 2*time.Second, func() bool { return len(f.Conns()) == 0 })
}

func BenchmarkPublish(b *testing.B) {
	f := startFake(&testing.T{}, fakeConfig{})
	defer f.Close()
	c, err := client.Dial(context.Background(), f.URL(), client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	payload := json.RawMessage(`{"seq":1,"body":"0123456789abcdef0123456789abcdef"}`)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Publish(ctx, "bench", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
