package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

func TestSubscribeErrors(t *testing.T) {
	cfg := testConfig()
	cfg.SocketChannelLimit = 2
	cfg.MaxChannelLength = 16
	srv := startServer(t, cfg)
	c := dial(t, srv)
	id := c.handshake("")["id"].(string)

	malformed := `{"rid":%d,"error":{"message":"Subscribe channel name was malformatted","name":"InvalidActionError"}}`
	for i, data := range []string{`{}`, `{"channel":5}`, `{"channel":""}`, `"room"`, `{"channel":"` + strings.Repeat("x", 17) + `"}`} {
		c.sendf(`{"event":"#subscribe","data":%s,"cid":%d}`, data, 10+i)
		c.expect(fmt.Sprintf(malformed, 10+i))
	}
	c.send(`{"event":"#subscribe","cid":20}`)
	c.expect(fmt.Sprintf(malformed, 20))

	c.send(`{"event":"#subscribe","data":{"channel":"private","waitForAuth":true},"cid":21}`)
	c.expectJSON(`{"rid":21,"error":{"message":"Cannot subscribe socket to the private channel before it has authenticated","name":"AuthError"}}`)

	c.subscribe("a", 22)
	c.subscribe("a", 23) // idempotent
	c.subscribe("b", 24)
	c.send(`{"event":"#subscribe","data":{"channel":"c"},"cid":25}`)
	c.expect(fmt.Sprintf(`{"rid":25,"error":{"message":"Failed to subscribe socket to the c channel - InvalidActionError: Socket %s tried to exceed the channel subscription limit of 2","name":"BrokerError"}}`, id))

	if st := srv.Stats(); st.Subscriptions != 2 || st.Channels != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Unsubscribe: bare string, no reply without cid.
	c.send(`{"event":"#unsubscribe","data":"a"}`)
	c.send(`{"event":"#unsubscribe","data":"zzz","cid":26}`)
	c.expect(fmt.Sprintf(`{"rid":26,"error":{"message":"Failed to unsubscribe socket from the zzz channel - InvalidActionError: Socket %s tried to unsubscribe from a channel which it is not subscribed to","name":"BrokerError"}}`, id))
	c.send(`{"event":"#unsubscribe","data":"b","cid":27}`)
	c.expect(`{"rid":27}`)
	waitFor(t, 2*time.Second, "subscriptions gone", func() bool {
		st := srv.Stats()
		return st.Subscriptions == 0 && st.Channels == 0
	})
	if g := counter(t, srv.Registry(), "scc_frontend_subscriptions"); g != 0 {
		t.Fatalf("subscriptions gauge %v", g)
	}
}

func TestPublishPaths(t *testing.T) {
	srv := startServer(t, testConfig())
	sub := dial(t, srv)
	pub := dial(t, srv)
	sub.handshake("")
	pub.handshake("")
	sub.subscribe("room1", 2)

	// transmitPublish: no ack; data bytes pass through untouched.
	raw := `{"b" : 1.0e2, "a":[1, 2,{"z":null}], "s":"\u00e9\n"}`
	pub.sendf(`{"event":"#publish","data":{"channel":"room1","data":%s}}`, raw)
	sub.expect(`{"event":"#publish","data":{"channel":"room1","data":` + raw + `}}`)
	// No data key: none delivered; null: kept.
	pub.send(`{"event":"#publish","data":{"channel":"room1"}}`)
	sub.expect(`{"event":"#publish","data":{"channel":"room1"}}`)
	pub.send(`{"event":"#publish","data":{"channel":"room1","data":null}}`)
	sub.expect(`{"event":"#publish","data":{"channel":"room1","data":null}}`)
	// Malformed channel.
	pub.send(`{"event":"#publish","data":{"channel":7,"data":1},"cid":5}`)
	pub.expect(`{"rid":5,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}`)

	// Server-side publish goes through the broker to local subscribers.
	if err := srv.Publish(context.Background(), "room1", json.RawMessage(`{"from":"server"}`)); err != nil {
		t.Fatal(err)
	}
	sub.expect(`{"event":"#publish","data":{"channel":"room1","data":{"from":"server"}}}`)
	if err := srv.Publish(context.Background(), "room1", json.RawMessage(`{bad`)); err == nil {
		t.Fatal("invalid JSON accepted")
	}

	// After unsubscribing, nothing more arrives.
	sub.send(`{"event":"#unsubscribe","data":"room1"}`)
	waitFor(t, 2*time.Second, "unsubscribed", func() bool { return srv.Stats().Subscriptions == 0 })
	pub.send(`{"event":"#publish","data":{"channel":"room1","data":"late"},"cid":6}`)
	pub.expect(`{"rid":6}`)
	sub.send(`{"event":"probe","cid":7}`)
	if p := sub.packet(); !strings.HasPrefix(p, `{"rid":7,`) {
		t.Fatalf("unsubscribed socket got %s", p)
	}
}

func TestClientPublishDisabled(t *testing.T) {
	cfg := testConfig()
	cfg.AllowClientPublish = false
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"#publish","data":{"channel":"x","data":1},"cid":4}`)
	c.expect(`{"rid":4,"error":{"message":"Client publish feature is disabled","name":"InvalidActionError"}}`)
	if counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "disabled") != 1 {
		t.Fatal("publish error not counted")
	}
}

func TestKickOut(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	id := c.handshake("")["id"].(string)
	c.subscribe("room", 2)
	if err := srv.KickOut(id, "room", "bye"); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"#kickOut","data":{"channel":"room","message":"bye"}}`)
	if err := srv.KickOut(id, "room", "again"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("second kick: %v", err)
	}
	if err := srv.KickOut("nope", "room", ""); !errors.Is(err, ErrNoSocket) {
		t.Fatalf("unknown socket: %v", err)
	}
	srv.Publish(context.Background(), "room", json.RawMessage(`1`))
	c.send(`{"event":"probe","cid":3}`)
	if p := c.packet(); !strings.HasPrefix(p, `{"rid":3,`) {
		t.Fatalf("kicked socket got %s", p)
	}
}

func TestServerToClientRPC(t *testing.T) {
	cfg := testConfig()
	cfg.AckTimeout = 200 * time.Millisecond
	conns := make(chan *Socket, 1)
	cfg.OnConnect = func(s *Socket) { conns <- s }
	srv := startServer(t, cfg)
	c := dial(t, srv)
	id := c.handshake("")["id"].(string)
	s := <-conns
	if s.ID() != id || srv.SocketByID(id) != s {
		t.Fatal("socket lookup")
	}

	type res struct {
		data json.RawMessage
		err  error
	}
	call := func(event string, data any) chan res {
		ch := make(chan res, 1)
		go func() {
			d, err := s.Invoke(context.Background(), event, data)
			ch <- res{d, err}
		}()
		return ch
	}
	r := call("clientProc", map[string]int{"q": 1})
	c.expect(`{"event":"clientProc","data":{"q":1},"cid":1}`)
	c.send(`{"rid":1,"data":{"clientSays":"ok"}}`)
	if got := <-r; got.err != nil || string(got.data) != `{"clientSays":"ok"}` {
		t.Fatalf("invoke: %s %v", got.data, got.err)
	}
	r = call("failing", nil)
	c.expect(`{"event":"failing","cid":2}`)
	c.send(`{"rid":2,"error":{"message":"no","name":"ClientError","x":1}}`)
	got := <-r
	var pe *protocol.Error
	if !errors.As(got.err, &pe) || pe.Name != "ClientError" || pe.Message != "no" {
		t.Fatalf("client error: %v", got.err)
	}
	r = call("silent", nil)
	c.expect(`{"event":"silent","cid":3}`)
	got = <-r
	if !errors.As(got.err, &pe) || pe.Name != protocol.ErrNameTimeout {
		t.Fatalf("timeout: %v", got.err)
	}
	c.send(`{"rid":3,"data":"too late"}`) // ignored

	if err := s.Transmit("serverEvent", map[string]string{"hello": "world"}); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"serverEvent","data":{"hello":"world"}}`)

	// A pending invoke fails when the socket goes away.
	r = call("never", nil)
	c.expect(`{"event":"never","cid":4}`)
	c.ws.CloseNow()
	got = <-r
	if got.err == nil {
		t.Fatal("invoke on a closed socket succeeded")
	}
	if _, err := s.Invoke(context.Background(), "x", nil); !errors.Is(err, ErrSocketClosed) {
		waitFor(t, 2*time.Second, "socket closed", func() bool {
			_, err := s.Invoke(context.Background(), "x", nil)
			return errors.Is(err, ErrSocketClosed)
		})
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	srv, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	<-srv.Ready()
	var clients []*rawClient
	for range 5 {
		c := dial(t, srv)
		c.handshake("")
		c.subscribe("s", 2)
		clients = append(clients, c)
	}
	if !srv.IsReady() {
		t.Fatal("not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.expectClose(protocol.CloseGoingAway)
	}
	if srv.IsReady() {
		t.Fatal("ready after shutdown")
	}
	if err := srv.Shutdown(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Connections != 0 || st.Subscriptions != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
}
