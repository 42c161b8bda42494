package frontend

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// wsRaw is a WebSocket client written by hand, to send frames no library
// sends: unsolicited pongs, empty fragments, unfinished messages.
type wsRaw struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, srv *Server) *wsRaw {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /socketcluster/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &wsRaw{t: t, nc: nc, br: br}
}

// write sends bytes, ignoring errors: the server may cut the client off
// mid-write, which is what the tests provoke.
func (c *wsRaw) write(b []byte) { _, _ = c.nc.Write(b) }

func (c *wsRaw) handshake() {
	c.write(wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#handshake","data":{},"cid":1}`)))
	for {
		op, p := c.frame()
		if op == 1 && strings.HasPrefix(string(p), `{"rid":1,`) {
			return
		}
		if op < 0 || op == 8 {
			c.t.Fatalf("no handshake reply (op %d)", op)
		}
	}
}

// frame reads one server frame; op -1 when the connection ended, -2 when
// the read deadline passed.
func (c *wsRaw) frame() (int, []byte) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return -2, nil
		}
		return -1, nil
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return -1, nil
	}
	return int(h[0] & 0x0f), p
}

// closeCode reads until the server's close frame and returns its code,
// -1 when the connection ended without one, or -2 when it is still open
// at the read deadline.
func (c *wsRaw) closeCode() int {
	for {
		op, p := c.frame()
		switch {
		case op < 0:
			return op
		case op == 8 && len(p) >= 2:
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// expectLimitClose waits for the server to close c with code. The server
// stops reading a socket it closes for a limit and drops the connection
// right after its close frame, so a client still writing may get a reset
// that discards the frame (-1): the callers check the close counters too.
func expectLimitClose(t testing.TB, c *wsRaw, code int) {
	t.Helper()
	if got := c.closeCode(); got != code && got != -1 {
		t.Fatalf("closed with %d, want %d", got, code)
	}
}

func closes(t testing.TB, srv *Server, reason string) float64 {
	return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reason)
}

func TestPublishSizeIsItsOwnLimit(t *testing.T) {
	cfg := testConfig()
	srv := startServer(t, cfg)
	if got := srv.cfg.MaxPublishBytes; got != 64<<10 {
		t.Fatalf("derived max publish bytes %d, want 64 KiB", got)
	}
	sub := dial(t, srv)
	sub.handshake("")
	sub.subscribe("big", 2)
	pub := dial(t, srv)
	pub.handshake("")
	big := strings.Repeat("a", 100<<10)
	pub.sendf(`{"event":"#publish","data":{"channel":"big","data":%q},"cid":2}`, big)
	e := pub.expectJSON(`{"rid":2,"error":{"name":"InvalidActionError","message":"Publish data of 102402 bytes exceeds the limit of 65536 bytes"}}`)
	_ = e
	pub.sendf(`{"event":"#publish","data":{"channel":"big","data":"small"},"cid":3}`)
	pub.expect(`{"rid":3}`)
	sub.expect(`{"event":"#publish","data":{"channel":"big","data":"small"}}`)
	if n := counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "too_big"); n != 1 {
		t.Fatalf("too_big publishes counted %v, want 1", n)
	}
}

func TestConfigRelations(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"publish above a queue's eighth", func(c *Config) { c.MaxPublishBytes = c.QueueMaxBytes/8 + 1 }, false},
		{"publish at a queue's eighth", func(c *Config) { c.MaxPublishBytes = c.QueueMaxBytes / 8 }, true},
		{"publish above max payload", func(c *Config) { c.MaxPayload = 4096; c.MaxPublishBytes = 8192 }, false},
		{"small queue derives a small publish", func(c *Config) { c.QueueMaxBytes = 16 << 10 }, true},
		{"queue below 8 derived publishes", func(c *Config) { c.QueueMaxBytes = 8; c.MaxPayload = 1 << 20 }, false},
		{"byte burst below max payload", func(c *Config) { c.InboundByteBurst = int(c.MaxPayload) - 1 }, false},
		{"read budget below twice max payload", func(c *Config) { c.ReadBudget = 2*c.MaxPayload - 1 }, false},
		{"no batch", func(c *Config) { c.MaxBatchPackets = 0 }, false},
		{"no fragments", func(c *Config) { c.MaxMessageFragments = 0 }, false},
		{"no subscriptions", func(c *Config) { c.MaxSubscriptions = 0 }, false},
		{"no pending", func(c *Config) { c.MaxPendingSubscribes = 0 }, false},
		{"negative per-address", func(c *Config) { c.MaxConnectionsPerIP = -1 }, false},
	} {
		c := testConfig()
		tc.mod(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestControlFramesPayTheRate: pongs nobody asked for, and empty
// fragments, cost the inbound rate like any message.
func TestControlFramesPayTheRate(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 50
	cfg.InboundBurst = 50
	srv := startServer(t, cfg)
	for _, tc := range []struct {
		name  string
		frame []byte
		first []byte
	}{
		{"pongs", wsframe.AppendClient(nil, 0xa, true, nil), nil},
		{"pings", wsframe.AppendClient(nil, 0x9, true, nil), nil},
		{"empty continuations", wsframe.AppendClient(nil, 0, false, nil), wsframe.AppendClient(nil, 1, false, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := closes(t, srv, reasonRateLimited)
			c := dialRaw(t, srv)
			c.handshake()
			buf := append([]byte(nil), tc.first...)
			for range 200 {
				buf = append(buf, tc.frame...)
			}
			go c.write(buf)
			expectLimitClose(t, c, protocol.CloseRateLimited)
			waitFor(t, 5*time.Second, "the close counted", func() bool { return closes(t, srv, reasonRateLimited) == before+1 })
		})
	}
}

func TestFragmentsPerMessage(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.MaxMessageFragments = 10
	srv := startServer(t, cfg)
	ok := dialRaw(t, srv)
	ok.handshake()
	// Ten fragments pass.
	var buf []byte
	buf = wsframe.AppendClient(buf, 1, false, []byte(`{"event":"x",`))
	for range 8 {
		buf = wsframe.AppendClient(buf, 0, false, []byte(` `))
	}
	buf = wsframe.AppendClient(buf, 0, true, []byte(`"cid":5}`))
	ok.write(buf)
	for {
		op, p := ok.frame()
		if op < 0 || op == 8 {
			t.Fatalf("ten fragments closed the socket")
		}
		if strings.HasPrefix(string(p), `{"rid":5,`) {
			break
		}
	}
	c := dialRaw(t, srv)
	c.handshake()
	buf = wsframe.AppendClient(nil, 1, false, nil)
	for range 10 {
		buf = wsframe.AppendClient(buf, 0, false, nil)
	}
	go c.write(buf)
	expectLimitClose(t, c, protocol.CloseMessageTooBig)
	waitFor(t, 5*time.Second, "the close counted", func() bool { return closes(t, srv, reasonTooManyFragments) == 1 })
}

func TestBatchPacketCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchPackets = 50
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	batch := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat(`{"event":"x"},`, n), ",") + "]"
	}
	c.send(batch(50))
	c.send(`{"event":"alive","cid":7}`)
	if p := c.packet(); !strings.HasPrefix(p, `{"rid":7,`) {
		t.Fatalf("after a full batch got %s", p)
	}
	c.send(batch(300000 / 14))
	c.expectClose(protocol.CloseMessageTooBig)
	waitFor(t, 5*time.Second, "the close counted", func() bool { return closes(t, srv, reasonBatchTooLarge) == 1 })
}

func TestInboundByteRate(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.MaxPayload = 4096
	cfg.InboundByteRate = 1000
	cfg.InboundByteBurst = 8192
	srv := startServer(t, cfg)
	c := dialRaw(t, srv)
	c.handshake()
	msg := wsframe.AppendClient(nil, 1, true, []byte(`{"event":"x","data":"`+strings.Repeat("a", 2000)+`"}`))
	var buf []byte
	for range 20 {
		buf = append(buf, msg...)
	}
	go c.write(buf)
	expectLimitClose(t, c, protocol.CloseRateLimited)
	waitFor(t, 5*time.Second, "the close counted", func() bool { return closes(t, srv, reasonByteRateLimited) == 1 })
}

// TestReadBudget: sockets that leave messages unfinished hold no more
// than the read budget together; the one that would exceed it is closed
// with 4012, and the budget comes back when they go.
func TestReadBudget(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.ReadBudget = 4 << 20
	srv := startServer(t, cfg)
	part := wsframe.AppendClient(nil, 1, false, []byte(`{"event":"x","data":"`+strings.Repeat("a", 600<<10)))
	const n = 20
	conns := make([]*wsRaw, n)
	for i := range conns {
		conns[i] = dialRaw(t, srv)
		conns[i].handshake()
		conns[i].write(part)
	}
	waitFor(t, 10*time.Second, "sockets over the budget closed", func() bool {
		return closes(t, srv, reasonReadBudget) >= n-(4<<20)/(600<<10)
	})
	if held := srv.readHeld.Load(); held > cfg.ReadBudget {
		t.Fatalf("%d bytes held, budget %d", held, cfg.ReadBudget)
	}
	closed := 0
	for _, c := range conns {
		c.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if op, p := c.frame(); op == 8 {
			if code := int(binary.BigEndian.Uint16(p)); code != protocol.CloseServerOverloaded {
				t.Fatalf("closed with %d, want %d", code, protocol.CloseServerOverloaded)
			}
			closed++
		}
		c.nc.Close()
	}
	if closed == 0 {
		t.Fatal("no client saw a 4012 close")
	}
	waitFor(t, 10*time.Second, "the budget given back", func() bool { return srv.readHeld.Load() == 0 })
}

func TestMaxConnectionsPerIP(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 3
	srv := startServer(t, cfg)
	var cs []*rawClient
	for range 3 {
		c := dial(t, srv)
		c.handshake("")
		cs = append(cs, c)
	}
	if code, _ := upgradeStatus(t, srv, "/socketcluster/", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("fourth upgrade got %d, want 503", code)
	}
	if n := counter(t, srv.Registry(), "scc_frontend_rejected_connections_total", "reason", rejectMaxConnsPerIP); n != 1 {
		t.Fatalf("rejects counted %v, want 1", n)
	}
	cs[0].ws.CloseNow()
	waitFor(t, 5*time.Second, "a place freed", func() bool {
		code, _ := upgradeStatus(t, srv, "/socketcluster/", "")
		return code == http.StatusSwitchingProtocols
	})
}

func TestSubscriptionBudgets(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSubscriptions = 10
	cfg.MaxSubscriptionsPerIP = 8
	srv := startServer(t, cfg)
	subscribeAll := func(c *rawClient, prefix string, n int) (ok int) {
		for i := range n {
			c.sendf(`{"event":"#subscribe","data":{"channel":"%s%d"},"cid":%d}`, prefix, i, 10+i)
			if p := c.packet(); p == fmt.Sprintf(`{"rid":%d}`, 10+i) {
				ok++
			} else if !strings.Contains(p, "BrokerError") {
				t.Fatalf("subscribe: %s", p)
			}
		}
		return ok
	}
	a := dial(t, srv)
	a.handshake("")
	b := dial(t, srv)
	b.handshake("")
	if got := subscribeAll(a, "a", 6) + subscribeAll(b, "b", 6); got != 8 {
		t.Fatalf("%d subscriptions from one address, want 8", got)
	}
	if n := counter(t, srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", subRejectMaxPerIP); n != 4 {
		t.Fatalf("per-address rejects %v, want 4", n)
	}
	a.ws.CloseNow()
	waitFor(t, 5*time.Second, "a's subscriptions given back", func() bool { return srv.subTotal.Load() == 2 })
	if got := subscribeAll(b, "c", 8); got != 6 {
		t.Fatalf("%d more subscriptions, want 6", got)
	}

	cfg.MaxSubscriptionsPerIP = 0
	srv = startServer(t, cfg)
	a = dial(t, srv)
	a.handshake("")
	b = dial(t, srv)
	b.handshake("")
	if got := subscribeAll(a, "a", 6) + subscribeAll(b, "b", 6); got != 10 {
		t.Fatalf("%d subscriptions, want the frontend's 10", got)
	}
	if n := counter(t, srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", subRejectMax); n != 2 {
		t.Fatalf("frontend-wide rejects %v, want 2", n)
	}
}

// slowBroker answers every subscribe after a delay, like brokers that are
// busy or far away.
type slowBroker struct {
	*LocalBroker
	delay time.Duration
}

func (b slowBroker) Subscribe(ctx context.Context, ch string) error {
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSubscribeKeepsReading: a client that subscribes a thousand channels
// at once (a reconnect) while the broker is slow keeps answering pings and
// gets every ack; the reader never waits for the broker.
func TestSubscribeKeepsReading(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 200 * time.Millisecond
	cfg.PingTimeout = 2 * time.Second
	// Old behaviour, one subscribe at a time on the reader, would go
	// quiet for 1000 times the delay.
	cfg.Broker = slowBroker{LocalBroker: NewLocalBroker(), delay: 4 * time.Second}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	const n = 1000
	for i := 0; i < n; i += 100 {
		var b strings.Builder
		b.WriteString("[")
		for j := i; j < i+100; j++ {
			if j > i {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"re%d"},"cid":%d}`, j, 10+j)
		}
		b.WriteString("]")
		c.send(b.String())
	}
	seen := map[string]bool{}
	for len(seen) < n {
		p := c.packet()
		if !strings.HasPrefix(p, `{"rid":`) || strings.Contains(p, "error") {
			t.Fatalf("got %s", p)
		}
		seen[p] = true
	}
	if srv.Stats().Subscriptions != n {
		t.Fatalf("%d subscriptions, want %d", srv.Stats().Subscriptions, n)
	}
	if got := closes(t, srv, reasonPongTimeout); got != 0 {
		t.Fatalf("%v pong timeouts", got)
	}
	// Pending subscriptions were unsubscribed and the socket left cleanly.
	c.send(`{"event":"#unsubscribe","data":"re0","cid":5000}`)
	c.expect(`{"rid":5000}`)
}

// TestSubscribePendingUnsubscribe: unsubscribing a channel whose broker
// subscription is still pending leaves nothing behind.
func TestSubscribePendingUnsubscribe(t *testing.T) {
	cfg := testConfig()
	cfg.Broker = slowBroker{LocalBroker: NewLocalBroker(), delay: 300 * time.Millisecond}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.send(`[{"event":"#subscribe","data":{"channel":"p"},"cid":2},{"event":"#unsubscribe","data":"p","cid":3}]`)
	c.expect(`{"rid":3}`)
	c.expect(`{"rid":2}`)
	waitFor(t, 5*time.Second, "the table empty", func() bool {
		st := srv.Stats()
		return st.Subscriptions == 0 && st.Channels == 0 && srv.subTotal.Load() == 0 && srv.subs.pending.Load() == 0
	})
}

// TestSubTableShrinks: after a storm of channels leaves, the table's maps
// are rebuilt small.
func TestSubTableShrinks(t *testing.T) {
	tab := newSubTable(NewLocalBroker())
	socks := []*Socket{{}, {}, {}}
	const n = subShards * shardShrinkFloor * 8
	for i := range n {
		ch := fmt.Sprintf("c%d", i)
		for _, s := range socks {
			st, err := tab.join(ch, s, subWaiter{s: s}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if st == joinStart {
				tab.complete(context.Background(), ch, func(subWaiter, error) {})
			}
		}
	}
	// One channel with many sockets.
	many := make([]*Socket, 4*shrinkFloor)
	for i := range many {
		many[i] = &Socket{}
		if st, _ := tab.join("hot", many[i], subWaiter{}, 1); st == joinStart {
			tab.complete(context.Background(), "hot", func(subWaiter, error) {})
		}
	}
	for i := range n {
		for _, s := range socks {
			tab.unsubscribe(fmt.Sprintf("c%d", i), s)
		}
	}
	for _, s := range many[1:] {
		tab.unsubscribe("hot", s)
	}
	for i := range tab.shards {
		if sh := &tab.shards[i]; sh.peak >= shardShrinkFloor {
			t.Fatalf("shard %d: peak %d after the channels left (len %d)", i, sh.peak, len(sh.m))
		}
	}
	if tab.channels.Load() != 1 || tab.subs.Load() != 1 {
		t.Fatalf("%d channels, %d subscriptions left, want 1 and 1", tab.channels.Load(), tab.subs.Load())
	}
	// The hot channel's many map was given up once one socket was left.
	sh := tab.shard("hot")
	if e := sh.m["hot"]; e.many != nil || e.one != many[0] {
		t.Fatalf("hot channel keeps its map")
	}
}

func TestMaxPendingSubscribes(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPendingSubscribes = 5
	cfg.Broker = slowBroker{LocalBroker: NewLocalBroker(), delay: 500 * time.Millisecond}
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	var b strings.Builder
	b.WriteString("[")
	for i := range 10 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"pend%d"},"cid":%d}`, i, 10+i)
	}
	b.WriteString("]")
	c.send(b.String())
	ok, refused := 0, 0
	for range 10 {
		switch p := c.packet(); {
		case strings.Contains(p, "BrokerError") && strings.Contains(p, "pending"):
			refused++
		case strings.HasPrefix(p, `{"rid":`) && !strings.Contains(p, "error"):
			ok++
		default:
			t.Fatalf("got %s", p)
		}
	}
	if ok != 5 || refused != 5 {
		t.Fatalf("%d subscribed, %d refused; want 5 and 5", ok, refused)
	}
	if n := counter(t, srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", subRejectPending); n != 5 {
		t.Fatalf("max_pending refusals counted %v, want 5", n)
	}
	if got := len(c.channelsOf(srv)); got != 5 {
		t.Fatalf("socket lists %d channels, want 5", got)
	}
}

// channelsOf returns the channels of the only socket on srv.
func (c *rawClient) channelsOf(srv *Server) []string {
	var chans []string
	srv.eachSocket(func(s *Socket) { chans = s.Channels() })
	return chans
}
