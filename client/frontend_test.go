package client_test

// Tests against the real frontend (package frontend), in process on
// loopback. client itself never imports server code; only this external
// test package does.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/protocol"
)

const frontendKey = "client-test-key-of-at-least-32-bytes"

type testFrontend struct {
	srv  *frontend.Server
	ln   net.Listener
	errc chan error
	once sync.Once
}

// startFrontend serves a standalone frontend on addr ("" for a free port).
func startFrontend(t testing.TB, addr string, mutate func(*frontend.Config)) *testFrontend {
	t.Helper()
	cfg := frontend.DefaultConfig()
	cfg.AuthKey = []byte(frontendKey)
	cfg.DrainDuration = 10 * time.Millisecond
	cfg.CloseTimeout = 200 * time.Millisecond
	cfg.InboundRate = 0
	cfg.ChannelPublishRate = 0
	cfg.ChannelDeliveryRate = 0
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := frontend.New(cfg)
	if err != nil {
		t.Fatalf("frontend.New: %v", err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
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
	f := &testFrontend{srv: srv, ln: ln, errc: make(chan error, 1)}
	go func() { f.errc <- srv.Serve(ln) }()
	t.Cleanup(func() { f.Stop(t) })
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("frontend not ready")
	}
	return f
}

func (f *testFrontend) URL() string { return "ws://" + f.ln.Addr().String() + "/socketcluster/" }

// Stop shuts the frontend down (clients get 1001) and waits for Serve.
func (f *testFrontend) Stop(t testing.TB) {
	f.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-f.errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func signToken(t testing.TB, key string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFrontendPubSubAndInvoke(t *testing.T) {
	f := startFrontend(t, "", nil)
	f.srv.HandleRPC("echo", func(_ context.Context, _ *frontend.Socket, data json.RawMessage) (any, error) {
		return data, nil
	})
	c := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 5*time.Second)
	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "room", json.RawMessage(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `{"a":1}` {
		t.Fatalf("got %s", m.Data)
	}
	if err := c.TransmitPublish("room", "t"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `"t"` {
		t.Fatalf("got %s", m.Data)
	}
	// Server-side publishing reaches the client too.
	if err := f.srv.Publish(ctx, "room", json.RawMessage(`42`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `42` {
		t.Fatalf("got %s", m.Data)
	}
	got, err := c.Invoke(ctx, "echo", []int{1, 2})
	if err != nil || string(got) != `[1,2]` {
		t.Fatalf("echo: %s %v", got, err)
	}
	_, err = c.Invoke(ctx, "missing", nil)
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Name == "" {
		t.Fatalf("missing procedure: %v", err)
	}
	if err := f.srv.KickOut(c.ID(), "room", "bye"); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, client.ErrKickedOut) {
		t.Fatalf("after kick: %v", err)
	}
}

func TestFrontendRestartRestoresSubscriptions(t *testing.T) {
	f := startFrontend(t, "", nil)
	addr := f.ln.Addr().String()
	token := signToken(t, frontendKey, jwt.MapClaims{"username": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	var connects atomic.Int64
	codes := make(chan int, 4)
	c := dial(t, f.URL(), client.Options{
		AuthToken:    token,
		Backoff:      client.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		OnConnect:    func(client.ConnectInfo) { connects.Add(1) },
		OnDisconnect: func(code int, _ string) { codes <- code },
	})
	if !c.IsAuthenticated() {
		t.Fatal("handshake token not accepted")
	}
	ctx := ctxT(t, 10*time.Second)
	var subs []*client.Subscription
	for i := range 5 {
		s, err := c.Subscribe(ctx, fmt.Sprintf("ch-%d", i), client.SubscribeOptions{WaitForAuth: i == 4})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	oldID := c.ID()
	f.Stop(t)
	if code := <-codes; code != protocol.CloseGoingAway {
		t.Fatalf("close code on shutdown %d", code)
	}
	f2 := startFrontend(t, addr, nil)
	waitFor(t, "reconnect", 5*time.Second, func() bool { return connects.Load() == 2 && c.State() == client.StateOpen })
	if c.ID() == oldID || !c.IsAuthenticated() {
		t.Fatalf("id %q (was %q), authenticated %v", c.ID(), oldID, c.IsAuthenticated())
	}
	waitFor(t, "resubscribed", 5*time.Second, func() bool { return len(f2.srv.LocalChannels()) == 5 })
	for i, s := range subs {
		if err := c.Publish(ctx, s.Channel(), i); err != nil {
			t.Fatal(err)
		}
		if m := next(t, s); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("%s: %s", s.Channel(), m.Data)
		}
	}
}

func TestFrontendCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code      int
		reconnect bool
	}{
		{protocol.ClosePongTimeout, true},
		{protocol.CloseNormal, false},
		{4500, false},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			f := startFrontend(t, "", nil)
			var connects atomic.Int64
			c := dial(t, f.URL(), client.Options{OnConnect: func(client.ConnectInfo) { connects.Add(1) }})
			sock := f.srv.SocketByID(c.ID())
			if sock == nil {
				t.Fatal("socket not found")
			}
			sock.Close(tc.code, "test")
			if tc.reconnect {
				waitFor(t, "reconnect", 5*time.Second, func() bool { return connects.Load() == 2 })
				return
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("client kept running")
			}
			var ce *client.CloseError
			if !errors.As(c.Err(), &ce) || ce.Code != tc.code {
				t.Fatalf("Err %v", c.Err())
			}
		})
	}
}

func TestFrontendAuth(t *testing.T) {
	f := startFrontend(t, "", nil)
	f.srv.HandleRPC("login", func(_ context.Context, s *frontend.Socket, _ json.RawMessage) (any, error) {
		return nil, s.SetAuthToken(map[string]any{"username": "bob"})
	})
	ctx := ctxT(t, 5*time.Second)

	forged := signToken(t, "another-key", jwt.MapClaims{"username": "mallory"})
	expired := signToken(t, frontendKey, jwt.MapClaims{"username": "old", "exp": time.Now().Add(-time.Hour).Unix()})
	for _, tc := range []struct{ token, name string }{
		{forged, protocol.ErrNameAuthTokenInvalid},
		{expired, protocol.ErrNameAuthTokenExpired},
	} {
		var info client.ConnectInfo
		c := dial(t, f.URL(), client.Options{AuthToken: tc.token, OnConnect: func(i client.ConnectInfo) { info = i }})
		if info.AuthError == nil || info.AuthError.Name != tc.name || c.IsAuthenticated() {
			t.Fatalf("handshake with bad token: %v", info.AuthError)
		}
		waitFor(t, "token dropped", 2*time.Second, func() bool { return c.AuthToken() == "" })

		err := c.Authenticate(ctx, tc.token)
		var pe *client.Error
		if !errors.As(err, &pe) || pe.Name != tc.name {
			t.Fatalf("Authenticate: %v", err)
		}
	}

	c := dial(t, f.URL(), client.Options{})
	if err := c.Authenticate(ctx, signToken(t, frontendKey, jwt.MapClaims{"username": "carol"})); err != nil {
		t.Fatal(err)
	}
	if !c.IsAuthenticated() {
		t.Fatal("not authenticated")
	}
	if err := c.Deauthenticate(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server sees deauthentication", 2*time.Second, func() bool {
		s := f.srv.SocketByID(c.ID())
		return s != nil && !s.IsAuthenticated()
	})
	if _, err := c.Invoke(ctx, "login", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "#setAuthToken", 2*time.Second, func() bool { return c.IsAuthenticated() && c.AuthToken() != "" })
	f.srv.SocketByID(c.ID()).Deauthenticate()
	waitFor(t, "#removeAuthToken", 2*time.Second, func() bool { return !c.IsAuthenticated() && c.AuthToken() == "" })
}

func TestFrontendConcurrentPublishers(t *testing.T) {
	f := startFrontend(t, "", nil)
	const workers, each = 16, 250
	pub := dial(t, f.URL(), client.Options{})
	recv := dial(t, f.URL(), client.Options{SubscriptionBuffer: workers * each})
	ctx := ctxT(t, 30*time.Second)
	sub, err := recv.Subscribe(ctx, "load", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := pub.Publish(ctx, "load", json.RawMessage(fmt.Sprintf(`[%d,%d]`, w, i))); err != nil {
					t.Error(err)
					failed.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	last := make([]int, workers)
	for i := range last {
		last[i] = -1
	}
	for range workers * each {
		var wi [2]int
		if err := json.Unmarshal(next(t, sub).Data, &wi); err != nil {
			t.Fatal(err)
		}
		if wi[1] != last[wi[0]]+1 {
			t.Fatalf("publisher %d: %d after %d", wi[0], wi[1], last[wi[0]])
		}
		last[wi[0]] = wi[1]
	}
}

func TestFrontendNoHandshakeOnWrongPath(t *testing.T) {
	f := startFrontend(t, "", nil)
	_, err := client.Dial(ctxT(t, 5*time.Second), "ws://"+f.ln.Addr().String()+"/nope/", client.Options{})
	var ue *client.UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != 400 {
		t.Fatalf("got %v", err)
	}
}

// BenchmarkFrontendPublish measures acknowledged publishes from many
// goroutines sharing one client, against the in-process frontend.
func BenchmarkFrontendPublish(b *testing.B) {
	f := startFrontend(b, "", nil)
	c, err := client.Dial(context.Background(), f.URL(), client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	payload := json.RawMessage(`{"seq":1,"body":"0123456789abcdef0123456789abcdef"}`)
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Publish(ctx, "bench", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFrontendTransmitPublish measures fire-and-forget publishes
// delivered to a subscriber on a second client.
func BenchmarkFrontendTransmitPublish(b *testing.B) {
	f := startFrontend(b, "", func(c *frontend.Config) { c.QueueMaxMessages = 1 << 20; c.QueueMaxBytes = 1 << 30 })
	pub, err := client.Dial(context.Background(), f.URL(), client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	recv, err := client.Dial(context.Background(), f.URL(), client.Options{SubscriptionBuffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	sub, err := recv.Subscribe(context.Background(), "bench", client.SubscribeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"seq":1,"body":"0123456789abcdef0123456789abcdef"}`)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			if err := pub.TransmitPublish("bench", payload); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for got := 0; got+int(sub.Dropped()) < b.N; got++ {
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if d := sub.Dropped(); d > 0 {
		b.Logf("dropped %d of %d", d, b.N)
	}
}

func TestSubscriptionHandler(t *testing.T) {
	f := startFrontend(t, "", nil)
	// A one-slot buffer would drop most of a burst; a Handler has none.
	c := dial(t, f.URL(), client.Options{SubscriptionBuffer: 1})
	pub := dial(t, f.URL(), client.Options{})
	ctx := ctxT(t, 10*time.Second)

	const n = 2000
	got := make(chan int, n)
	sub, err := c.Subscribe(ctx, "handled", client.SubscribeOptions{Handler: func(m client.Message) {
		var v int
		if m.Channel != "handled" || json.Unmarshal(m.Data, &v) != nil {
			v = -1
		}
		got <- v
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := pub.TransmitPublish("handled", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case v := <-got:
			if v != i {
				t.Fatalf("message %d arrived as %d", i, v)
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d messages reached the handler", i, n)
		}
	}
	if d := sub.Dropped(); d != 0 {
		t.Fatalf("dropped %d", d)
	}
	select {
	case m := <-sub.C():
		t.Fatalf("C delivered %+v although a Handler is set", m)
	default:
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-sub.C():
		if ok {
			t.Fatal("C delivered after Unsubscribe")
		}
	case <-ctx.Done():
		t.Fatal("C not closed after Unsubscribe")
	}
}
