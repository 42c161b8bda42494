package nodelink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

func TestHandshakeAndExchange(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	cfg.Addr, cfg.GossipAddr = "10.1.1.1:8000", "10.1.1.1:7946"
	cfg.RingVersion = func() uint64 { return 42 }
	cfg.Draining = func() bool { return true }
	cfg.RulesDigest = func() string { return "d1g3st" }
	l := dial(t, s.addr(), cfg)
	if p := l.Peer(); p.NodeID != "server-1" || p.Role != protocol.RoleBroker || p.Proto != protocol.NodeProtoMax ||
		len(p.Seeds) != 1 || p.Seeds[0] != "10.0.0.1:7946" || p.Addr != s.addr() {
		t.Fatalf("dialer's peer = %+v", p)
	}
	h := newRecorder()
	runLink(t, l, h)
	waitFor(t, "accepted link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	if p := sl.Peer(); p.NodeID != "fe-1" || p.Role != protocol.RoleFrontend || p.Addr != "10.1.1.1:8000" ||
		p.GossipAddr != "10.1.1.1:7946" || p.RingVersion != 42 || !p.Draining || p.RulesDigest != "d1g3st" {
		t.Fatalf("acceptor's peer = %+v", p)
	}

	if err := l.Send(protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "subscribe at server", func() bool { return len(s.h.got(sl)) == 1 })
	var sub protocol.Subscribe
	if err := (protocol.Message{Body: s.h.got(sl)[0].body}).Decode(&sub); err != nil || sub.ID != 1 || len(sub.Channels) != 2 {
		t.Fatalf("subscribe = %+v, %v", sub, err)
	}
	if err := sl.Send(protocol.MsgSubAck, protocol.SubAck{ID: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "suback at dialer", func() bool { return len(h.got(l)) == 1 && h.got(l)[0].t == protocol.MsgSubAck })

	// Closing one side closes the other, and Closed is called once each.
	l.Close("test")
	waitFor(t, "server side closed", func() bool { _, ok := s.h.closeErr(sl); return ok })
	waitFor(t, "dialer side closed", func() bool { _, ok := h.closeErr(l); return ok })
	err, _ := h.closeErr(l)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Reason != "test" || !errors.Is(err, ErrClosed) {
		t.Fatalf("close error = %v", err)
	}
	if err := l.Send(protocol.MsgPing, protocol.Ping{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after close = %v", err)
	}
	if l.SendRaw([]byte{byte(protocol.MsgPing), 0x91, 0}) {
		t.Fatal("SendRaw after close succeeded")
	}
}

func TestEmptyKeyBothSides(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", func(c *Config) { c.AuthKey = nil })
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	cfg.AuthKey = nil
	l := dial(t, s.addr(), cfg)
	l.Close("test")
}

// rawConn speaks the handshake by hand, to send what a real node never would.
type rawConn struct {
	t         *testing.T
	c         *websocket.Conn
	challenge protocol.Challenge
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	r := &rawConn{t: t, c: c}
	m := r.read()
	if m.Type != protocol.MsgChallenge {
		t.Fatalf("first message %v", m.Type)
	}
	if err := m.Decode(&r.challenge); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rawConn) read() protocol.Message {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := r.c.Read(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	msgs, err := protocol.SplitMessages(b)
	if err != nil || len(msgs) != 1 {
		r.t.Fatalf("frame: %v, %d messages", err, len(msgs))
	}
	return msgs[0]
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if err := r.c.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) hello(key []byte, mod func(*protocol.Hello)) protocol.Hello {
	nonce := bytes.Repeat([]byte{7}, nonceLen)
	h := protocol.Hello{
		MinProto: 1, MaxProto: 1, NodeID: "raw", Role: protocol.RoleFrontend, Nonce: nonce,
		MAC: protocol.HelloMAC(key, r.challenge.Nonce, protocol.RoleFrontend, "raw", nonce),
	}
	if mod != nil {
		mod(&h)
	}
	return h
}

func encode(t *testing.T, mt protocol.MsgType, body any) []byte {
	b, err := protocol.AppendMessage(nil, mt, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRejects(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	s.allow = func(p Peer) error {
		if p.Role != protocol.RoleFrontend {
			return errors.New("frontends only")
		}
		return nil
	}
	// A valid Hello captured from one connection, for the replay case.
	first := rawDial(t, s.addr())
	captured := encode(t, protocol.MsgHello, first.hello(testKey, nil))
	first.write(captured)
	if m := first.read(); m.Type != protocol.MsgWelcome {
		t.Fatalf("valid hello answered %v", m.Type)
	}
	first.c.CloseNow()

	cases := []struct {
		name   string
		reason string
		send   func(r *rawConn) []byte // nil: send nothing
	}{
		{"wrong key", protocol.RejectAuth, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello([]byte("wrong"), nil))
		}},
		{"missing key", protocol.RejectAuth, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(nil, nil))
		}},
		{"no mac", protocol.RejectAuth, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) { h.MAC = nil }))
		}},
		{"replayed hello", protocol.RejectAuth, func(r *rawConn) []byte { return captured }},
		{"identity changed after signing", protocol.RejectAuth, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) { h.Role = protocol.RoleState }))
		}},
		{"wrong version", protocol.RejectVersion, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) { h.MinProto, h.MaxProto = 90, 99 }))
		}},
		{"role not allowed", protocol.RejectRole, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) {
				h.Role = protocol.RoleBroker
				h.MAC = protocol.HelloMAC(testKey, r.challenge.Nonce, h.Role, h.NodeID, h.Nonce)
			}))
		}},
		{"short nonce", protocol.RejectMalformed, func(r *rawConn) []byte {
			return encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) { h.Nonce = []byte{1} }))
		}},
		{"garbage", protocol.RejectMalformed, func(r *rawConn) []byte { return []byte{2, 0xc1, 0xff, 0x00} }},
		{"truncated msgpack", protocol.RejectMalformed, func(r *rawConn) []byte {
			b := encode(t, protocol.MsgHello, r.hello(testKey, nil))
			return b[:len(b)-5]
		}},
		{"wrong body type", protocol.RejectMalformed, func(r *rawConn) []byte { return []byte{byte(protocol.MsgHello), 0x91, 0xa1, 'x'} }},
		{"subscribe first", protocol.RejectMalformed, func(r *rawConn) []byte {
			return encode(t, protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"x"}})
		}},
		{"hello plus subscribe in one frame", protocol.RejectMalformed, func(r *rawConn) []byte {
			b := encode(t, protocol.MsgHello, r.hello(testKey, nil))
			return append(b, encode(t, protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"x"}})...)
		}},
		{"empty frame", protocol.RejectMalformed, func(r *rawConn) []byte { return []byte{} }},
		{"nothing sent", ReasonTimeout, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.rejects(c.reason)
			r := rawDial(t, s.addr())
			if c.send != nil {
				r.write(c.send(r))
				if c.reason != ReasonTimeout {
					m := r.read()
					var rj protocol.Reject
					if m.Type != protocol.MsgReject || m.Decode(&rj) != nil || rj.Reason != c.reason {
						t.Fatalf("answer %v %+v, want reject %s", m.Type, rj, c.reason)
					}
				}
			}
			waitFor(t, "reject counted", func() bool { return s.rejects(c.reason) == before+1 })
			// The connection is closed: nothing more can be sent or read.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, _, err := r.c.Read(ctx); err == nil {
				t.Fatal("connection still open after reject")
			}
		})
	}
	if n := len(s.accepted()); n != 1 {
		t.Fatalf("%d links accepted, want only the first", n)
	}
	if got := s.h.all(); len(got) != 0 {
		t.Fatalf("handler saw %d messages from rejected peers", len(got))
	}
}

func TestDialerRejectedByServer(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	cfg.AuthKey = []byte("other")
	_, err := Dial(context.Background(), s.addr(), cfg)
	if !isReject(err, protocol.RejectAuth) {
		t.Fatalf("Dial with the wrong key = %v", err)
	}
}

// An impostor without the key cannot forge Welcome.
func TestDialerVerifiesWelcome(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		_ = c.Write(ctx, websocket.MessageBinary, encode(t, protocol.MsgChallenge, protocol.Challenge{
			Nonce: make([]byte, nonceLen), MinProto: 1, MaxProto: 1, NodeID: "impostor", Role: protocol.RoleBroker}))
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		msgs, _ := protocol.SplitMessages(b)
		var h protocol.Hello
		_ = msgs[0].Decode(&h)
		_ = c.Write(ctx, websocket.MessageBinary, encode(t, protocol.MsgWelcome, protocol.Welcome{
			Proto: 1, NodeID: "impostor", MAC: protocol.WelcomeMAC([]byte("guess"), h.Nonce, "impostor")}))
		_, _, _ = c.Read(ctx)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()

	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	_, err = Dial(context.Background(), ln.Addr().String(), cfg)
	if !isReject(err, protocol.RejectAuth) {
		t.Fatalf("Dial to impostor = %v", err)
	}
	if counterValue(cfg.Metrics.Rejects.WithLabelValues(protocol.RejectAuth)) != 1 {
		t.Fatal("dialer's reject not counted")
	}
}

func TestBatching(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	l := dial(t, s.addr(), testConfig("fe-1", protocol.RoleFrontend, nil))
	// Everything queued before the writer starts goes out in one frame.
	const n = 1000
	for i := 1; i <= n; i++ {
		if i%2 == 0 {
			if !l.SendRaw(protocol.AppendPublishMsg(nil, uint64(i), "ch", []byte(`"x"`))) {
				t.Fatal("SendRaw dropped")
			}
		} else if err := l.Send(protocol.MsgPublish, protocol.Publish{Seq: uint64(i), Channel: "ch", Data: []byte(`"x"`)}); err != nil {
			t.Fatal(err)
		}
	}
	runLink(t, l, newRecorder())
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	waitFor(t, "all publishes", func() bool { return len(s.h.got(sl)) == n })
	for i, m := range s.h.got(sl) {
		seq, _, _, err := protocol.ParsePublish(m.body)
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("message %d: seq %d, %v", i, seq, err)
		}
	}
	s.h.mu.Lock()
	frames := s.h.frames[sl]
	s.h.mu.Unlock()
	if frames != 1 {
		t.Fatalf("%d publishes came in %d frames, want 1", n, frames)
	}
}

func TestFrameSplitAtMaxFrameBytes(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", func(c *Config) { c.MaxFrameBytes = 4096 })
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	cfg.MaxFrameBytes = 4096
	l := dial(t, s.addr(), cfg)
	data := bytes.Repeat([]byte("a"), 1000)
	for i := 1; i <= 20; i++ {
		if err := l.Send(protocol.MsgPublish, protocol.Publish{Seq: uint64(i), Channel: "ch", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Send(protocol.MsgPublish, protocol.Publish{Seq: 99, Data: make([]byte, 5000)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Send = %v", err)
	}
	runLink(t, l, newRecorder())
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	waitFor(t, "all publishes", func() bool { return len(s.h.got(sl)) == 20 })
	s.h.mu.Lock()
	frames := s.h.frames[sl]
	s.h.mu.Unlock()
	if frames < 5 || frames > 10 {
		t.Fatalf("20 × 1KB publishes in %d frames of ≤4KB", frames)
	}
	if _, ok := s.h.closeErr(sl); ok {
		t.Fatal("server closed the link")
	}
}

func TestQueueBound(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	cfg.QueueMaxBytes = 4096
	l := dial(t, s.addr(), cfg)
	defer l.Close("test")
	msg := protocol.AppendPublishMsg(nil, 1, "ch", make([]byte, 1000))
	sent := 0
	for l.SendRaw(msg) {
		sent++
	}
	if sent != 4 || l.QueuedBytes() != 4*len(msg) {
		t.Fatalf("queued %d messages (%d bytes) in 4096 bytes", sent, l.QueuedBytes())
	}
	if err := l.Send(protocol.MsgPublish, protocol.Publish{Data: make([]byte, 1000)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Send on full queue = %v", err)
	}
	if n := counterValue(cfg.Metrics.Drops.WithLabelValues(ReasonQueueFull)); n != 2 {
		t.Fatalf("queue_full drops = %v", n)
	}
}

// One encoded message shared by many links reaches each of them intact.
func TestSendRawShared(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	shared := protocol.AppendDeliverMsg(nil, "ch", []byte(`{"n":1}`))
	const links = 3
	for i := 0; i < links; i++ {
		l := dial(t, s.addr(), testConfig(fmt.Sprint("fe-", i), protocol.RoleFrontend, nil))
		runLink(t, l, newRecorder())
	}
	waitFor(t, "links", func() bool { return len(s.accepted()) == links })
	for _, sl := range s.accepted() {
		for j := 0; j < 10; j++ {
			if !sl.SendRaw(shared) {
				t.Fatal("dropped")
			}
		}
	}
	_ = shared
	// The dialers' recorders are separate; count deliveries through the
	// server's metrics instead: 3 links × 10 messages written.
	want := float64(links * 10 * len(shared))
	waitFor(t, "bytes out", func() bool { return counterValue(s.cfg.Metrics.BytesOut) >= want })
}

func TestPingKeepsIdleLinkAlive(t *testing.T) {
	fast := func(c *Config) { c.PingInterval, c.PingTimeout = 20*time.Millisecond, 100*time.Millisecond }
	s := startServer(t, "127.0.0.1:0", fast)
	cfg := testConfig("fe-1", protocol.RoleFrontend, nil)
	fast(&cfg)
	l := dial(t, s.addr(), cfg)
	h := newRecorder()
	runLink(t, l, h)
	// 20 frames in means several PingTimeouts have passed with only pings.
	waitFor(t, "pings", func() bool { return counterValue(s.cfg.Metrics.FramesIn) >= 20 })
	waitFor(t, "pongs", func() bool { return counterValue(cfg.Metrics.FramesIn) >= 20 })
	if _, ok := h.closeErr(l); ok {
		t.Fatal("idle link closed")
	}
	if len(h.all()) != 0 || len(s.h.all()) != 0 {
		t.Fatal("pings reached a handler")
	}
}

func TestPingTimeoutClosesDeadPeer(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", func(c *Config) {
		c.PingInterval, c.PingTimeout = 20*time.Millisecond, 150*time.Millisecond
	})
	// A peer that completes the handshake and then goes silent.
	r := rawDial(t, s.addr())
	r.write(encode(t, protocol.MsgHello, r.hello(testKey, nil)))
	if m := r.read(); m.Type != protocol.MsgWelcome {
		t.Fatalf("got %v", m.Type)
	}
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	waitFor(t, "ping timeout", func() bool { _, ok := s.h.closeErr(sl); return ok })
	err, _ := s.h.closeErr(sl)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Reason != ReasonPingTimeout {
		t.Fatalf("closed with %v", err)
	}
	if counterValue(s.cfg.Metrics.Closes.WithLabelValues(ReasonPingTimeout)) != 1 {
		t.Fatal("ping timeout not counted")
	}
}

func TestMalformedFrameAfterHandshake(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	r := rawDial(t, s.addr())
	r.write(encode(t, protocol.MsgHello, r.hello(testKey, nil)))
	if m := r.read(); m.Type != protocol.MsgWelcome {
		t.Fatalf("got %v", m.Type)
	}
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	good := encode(t, protocol.MsgUnsubscribe, protocol.Unsubscribe{Channels: []string{"a"}})
	bad := protocol.AppendPublishMsg(nil, 1, "ch", []byte("12345"))
	r.write(append(good, bad[:len(bad)-2]...))
	waitFor(t, "close", func() bool { _, ok := s.h.closeErr(sl); return ok })
	err, _ := s.h.closeErr(sl)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Reason != ReasonProtocol {
		t.Fatalf("closed with %v", err)
	}
	if got := s.h.got(sl); len(got) != 1 || got[0].t != protocol.MsgUnsubscribe {
		t.Fatalf("handler got %+v, want the message before the truncation", got)
	}
}

func TestHelloAfterHandshakeCloses(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	r := rawDial(t, s.addr())
	hello := encode(t, protocol.MsgHello, r.hello(testKey, nil))
	r.write(hello)
	r.read()
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	r.write(hello)
	waitFor(t, "close", func() bool { _, ok := s.h.closeErr(sl); return ok })
}

func TestRejectAfterHandshake(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	l := dial(t, s.addr(), testConfig("fe-1", protocol.RoleFrontend, nil))
	h := newRecorder()
	runLink(t, l, h)
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	_ = s.accepted()[0].Send(protocol.MsgReject, protocol.Reject{Reason: protocol.RejectState, Message: "go away"})
	waitFor(t, "close", func() bool { _, ok := h.closeErr(l); return ok })
	err, _ := h.closeErr(l)
	if !isReject(err, protocol.RejectState) {
		t.Fatalf("closed with %v", err)
	}
}

func TestRedialerReconnects(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	addr := s.addr()
	ups := make(chan *Link, 10)
	h := newRecorder()
	rd := NewRedialer(addr, testConfig("fe-1", protocol.RoleFrontend, nil), 5*time.Millisecond, 20*time.Millisecond,
		func(ctx context.Context, l *Link) {
			ups <- l
			_ = l.Run(h)
		})
	rd.Start()
	defer rd.Close()
	first := <-ups
	if rd.Link() != first {
		t.Fatal("Link() is not the current link")
	}

	// The server goes away and comes back at the same address.
	s.stop()
	waitFor(t, "link down", func() bool { _, ok := h.closeErr(first); return ok })
	s.listen(t, addr)
	select {
	case l := <-ups:
		if l == first {
			t.Fatal("same link")
		}
		if err := l.Send(protocol.MsgSync, protocol.Sync{ID: 1}); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnect")
	}
	waitFor(t, "sync after reconnect", func() bool {
		for _, r := range s.h.all() {
			if r.t == protocol.MsgSync {
				return true
			}
		}
		return false
	})
}

func TestRedialerCloseWhileDialingNowhere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rd := NewRedialer(addr, testConfig("fe-1", protocol.RoleFrontend, nil), 0, 0, func(ctx context.Context, l *Link) { t.Error("connected to nothing") })
	rd.Start()
	rd.Close()
	rd.Close()
}

func TestConfigValidate(t *testing.T) {
	good := testConfig("n", protocol.RoleBroker, nil)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no id":        func(c *Config) { c.NodeID = "" },
		"bad role":     func(c *Config) { c.Role = "x" },
		"ping order":   func(c *Config) { c.PingTimeout = c.PingInterval },
		"tiny frame":   func(c *Config) { c.MaxFrameBytes = 10 },
		"tiny queue":   func(c *Config) { c.QueueMaxBytes = 10 },
		"zero timeout": func(c *Config) { c.WriteTimeout = 0 },
	} {
		c := good
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestNewMetricsTwice(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	m := NewMetrics(s.reg, protocol.RoleBroker)
	m.Drops.WithLabelValues("x").Inc()
	if counterValue(s.cfg.Metrics.Drops.WithLabelValues("x")) != 1 {
		t.Fatal("second NewMetrics is not backed by the same series")
	}
}

// AfterFlush fires once everything queued before it is written, in order
// with the writes, and fires on close for what never got written.
func TestAfterFlush(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	l := dial(t, s.addr(), testConfig("fe-1", protocol.RoleFrontend, nil))
	fired := make(chan int, 4)
	for i := 1; i <= 3; i++ {
		l.SendRaw(protocol.AppendPublishMsg(nil, uint64(i), "ch", []byte(`1`)))
	}
	l.AfterFlush(func() { fired <- 3 })
	l.AfterFlush(func() { fired <- 0 }) // a marker with nothing before it
	runLink(t, l, newRecorder())
	if got := <-fired; got != 3 {
		t.Fatalf("first marker %d", got)
	}
	if got := <-fired; got != 0 {
		t.Fatalf("second marker %d", got)
	}
	waitFor(t, "server link", func() bool { return len(s.accepted()) == 1 })
	sl := s.accepted()[0]
	waitFor(t, "the three publishes", func() bool { return len(s.h.got(sl)) == 3 })

	l.Close(ReasonShutdown)
	closed := make(chan struct{})
	l.AfterFlush(func() { close(closed) })
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFlush on a closed link never fired")
	}
}

// Messages still queued when a link closes are counted as dropped.
func TestUnsentCountedAtClose(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", nil)
	l := dial(t, s.addr(), testConfig("fe-1", protocol.RoleFrontend, nil))
	// Not running: nothing is written, so all five stay queued.
	for i := 1; i <= 3; i++ {
		l.SendRaw(protocol.AppendPublishMsg(nil, uint64(i), "ch", []byte(`1`)))
	}
	l.Send(protocol.MsgUnsubscribe, protocol.Unsubscribe{Channels: []string{"a"}})
	l.Send(protocol.MsgUnsubscribe, protocol.Unsubscribe{Channels: []string{"b"}})
	l.Close(ReasonShutdown)
	if got := counterValue(l.m.Drops.WithLabelValues(ReasonUnsent)); got != 5 {
		t.Fatalf("unsent drops = %v, want 5", got)
	}
}
