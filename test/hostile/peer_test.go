package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
	"github.com/sccgo/sccgo/state"
)

var clusterKey = []byte("hostile-cluster-key")

// Link limits of the nodes under attack: small, so the oversized and
// silent peers are refused quickly.
const (
	peerMaxFrame         = 64 << 10
	peerHandshakeTimeout = 500 * time.Millisecond
)

func peerLinkConfig() nodelink.Config {
	c := nodelink.DefaultConfig()
	c.MaxFrameBytes = peerMaxFrame
	c.HandshakeTimeout = peerHandshakeTimeout
	return c
}

// peerTarget is a node whose /sccgo/link endpoint is under attack.
type peerTarget struct {
	name string
	role string
	addr string
	reg  *prometheus.Registry
}

func (p *peerTarget) rejects(t testing.TB, reason string) float64 {
	return metric(t, p.reg, "scc_"+p.role+"_link_rejects_total", "reason", reason)
}

func startBroker(t testing.TB) *peerTarget {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.NodeID = "broker-under-attack"
	cfg.AuthKey = clusterKey
	cfg.GossipPort = -1
	cfg.WarmUp = 0
	cfg.Link = peerLinkConfig()
	cfg.Registry = prometheus.NewRegistry()
	s, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("broker Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("broker Serve: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("broker not ready")
	}
	return &peerTarget{name: "broker", role: protocol.RoleBroker, addr: ln.Addr().String(), reg: cfg.Registry}
}

func startState(t testing.TB) (*peerTarget, *state.Server) {
	t.Helper()
	cfg := state.DefaultConfig()
	cfg.NodeID = "state-under-attack"
	cfg.AuthKey = clusterKey
	cfg.GossipPort = -1
	cfg.StartupDelay = 0
	cfg.Link = peerLinkConfig()
	cfg.Registry = prometheus.NewRegistry()
	s, err := state.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("state Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, state.ErrServerClosed) {
			t.Errorf("state Serve: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("state server not ready")
	}
	return &peerTarget{name: "state", role: protocol.RoleState, addr: ln.Addr().String(), reg: cfg.Registry}, s
}

// legitLink is a frontend's link that keeps working during the attacks.
type legitLink struct {
	t    testing.TB
	l    *nodelink.Link
	done chan struct{}

	mu       sync.Mutex
	delivers []string // "channel data"
	subAcks  []uint64
	pubAck   uint64
	closed   error
}

func dialLegit(t testing.TB, addr, id string) *legitLink {
	t.Helper()
	cfg := peerLinkConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = id, protocol.RoleFrontend, clusterKey
	l, err := nodelink.Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatalf("legitimate link to %s: %v", addr, err)
	}
	g := &legitLink{t: t, l: l, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		_ = l.Run(g)
	}()
	t.Cleanup(func() {
		l.Close("test")
		<-g.done
	})
	return g
}

func (g *legitLink) HandleMessages(_ *nodelink.Link, msgs []protocol.Message) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgDeliver:
			ch, data, err := protocol.ParseDeliver(m.Body)
			if err == nil {
				g.delivers = append(g.delivers, ch+" "+string(data))
			}
		case protocol.MsgSubAck:
			var a protocol.SubAck
			if m.Decode(&a) == nil {
				g.subAcks = append(g.subAcks, a.ID)
			}
		case protocol.MsgPubAck:
			if seq, err := protocol.ParsePubAck(m.Body); err == nil {
				g.pubAck = seq
			}
		}
	}
}

func (g *legitLink) Closed(_ *nodelink.Link, err error) {
	g.mu.Lock()
	g.closed = err
	g.mu.Unlock()
}

func (g *legitLink) alive() {
	g.t.Helper()
	select {
	case <-g.l.Done():
		g.t.Fatalf("legitimate link closed: %v", g.l.Err())
	default:
	}
}

func (g *legitLink) snapshot() (delivers []string, pubAck uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.delivers...), g.pubAck
}

// rawPeer is an attacker's connection to a /sccgo/link endpoint.
type rawPeer struct {
	t    testing.TB
	addr string
	ws   *websocket.Conn
	chal protocol.Challenge
}

// dialRaw connects and reads the Challenge.
func dialRaw(t testing.TB, addr string) *rawPeer {
	t.Helper()
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+nodelink.Path, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	p := &rawPeer{t: t, addr: addr, ws: ws}
	typ, b, err := ws.Read(ctx)
	if err != nil || typ != websocket.MessageBinary {
		t.Fatalf("reading the challenge: %v %v", typ, err)
	}
	msgs, err := protocol.SplitMessages(b)
	if err != nil || len(msgs) != 1 || msgs[0].Type != protocol.MsgChallenge || msgs[0].Decode(&p.chal) != nil {
		t.Fatalf("challenge frame % x: %v", b, err)
	}
	return p
}

// hello returns a Hello as a dialer with key would send for this
// connection's challenge.
func (p *rawPeer) hello(key []byte, id, role string) protocol.Hello {
	nonce := bytes.Repeat([]byte{0x42}, 16)
	return protocol.Hello{
		MinProto: protocol.NodeProtoMin, MaxProto: protocol.NodeProtoMax,
		NodeID: id, Role: role, Nonce: nonce,
		MAC: protocol.HelloMAC(key, p.chal.Nonce, role, id, nonce),
	}
}

func msg(t testing.TB, typ protocol.MsgType, body any) []byte {
	t.Helper()
	b, err := protocol.AppendMessage(nil, typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *rawPeer) send(typ websocket.MessageType, b []byte) {
	ctx, cancel := ctxTimeout(5 * time.Second)
	defer cancel()
	_ = p.ws.Write(ctx, typ, b) // the node may already have closed
}

// outcome reads until the connection ends and returns the Reject reason
// received ("" if none) and whether anything other than a Reject arrived.
func (p *rawPeer) outcome() (reason string, other []protocol.MsgType) {
	p.t.Helper()
	ctx, cancel := ctxTimeout(waitTimeout)
	defer cancel()
	for {
		_, b, err := p.ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.t.Fatalf("connection still open after %v", waitTimeout)
			}
			return reason, other
		}
		msgs, _ := protocol.SplitMessages(b)
		for _, m := range msgs {
			if m.Type == protocol.MsgReject {
				var rj protocol.Reject
				_ = m.Decode(&rj)
				reason = rj.Reason
				continue
			}
			other = append(other, m.Type)
		}
	}
}

// TestHostilePeer attacks the link endpoints of a broker and a state server
// with raw WebSocket connections. Each attacker must be refused before it
// can subscribe, publish or join, with the refusal counted under its reason,
// while a legitimate frontend link to each keeps working.
func TestHostilePeer(t *testing.T) {
	b := startBroker(t)
	st, stSrv := startState(t)

	// The legitimate frontend: subscribed at the broker, a member at the
	// state server.
	fe := dialLegit(t, b.addr, "frontend-legit")
	if err := fe.l.Send(protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"victim"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the legitimate SubAck", func() bool {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		return len(fe.subAcks) == 1
	})
	feState := dialLegit(t, st.addr, "frontend-legit")
	waitFor(t, waitTimeout, "the legitimate member at the state server", func() bool {
		return hasMember(t, stSrv, "frontend-legit")
	})
	seq := uint64(0)
	// roundTrip publishes on the legitimate link and waits for the broker
	// to deliver it back and acknowledge it.
	roundTrip := func() {
		t.Helper()
		seq++
		data := fmt.Sprintf(`{"n":%d}`, seq)
		if err := fe.l.Send(protocol.MsgPublish, protocol.Publish{Seq: seq, Channel: "victim", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, "the legitimate publish delivered", func() bool {
			d, ack := fe.snapshot()
			return ack == seq && len(d) > 0 && d[len(d)-1] == "victim "+data
		})
	}
	roundTrip()

	evil := protocol.Publish{Seq: 1, Channel: "victim", Data: []byte(`"evil"`)}
	evilSub := protocol.Subscribe{ID: 1, Channels: []string{"attacker-channel"}}
	wrongKey := []byte("not-the-cluster-key")

	type attack struct {
		name   string
		reason string
		run    func(t *testing.T, p *rawPeer)
	}
	attacks := []attack{
		{"no auth key", protocol.RejectAuth, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, p.hello(nil, "intruder", protocol.RoleFrontend)))
		}},
		{"wrong key", protocol.RejectAuth, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, p.hello(wrongKey, "intruder", protocol.RoleFrontend)))
		}},
		{"hello with an empty MAC", protocol.RejectAuth, func(t *testing.T, p *rawPeer) {
			h := p.hello(clusterKey, "intruder", protocol.RoleFrontend)
			h.MAC = nil
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, h))
		}},
		{"replayed hello", protocol.RejectAuth, func(t *testing.T, p *rawPeer) {
			// A Hello that was valid for another connection's challenge
			// (as captured on the wire) does not verify for this one.
			other := dialRaw(t, p.addr)
			captured := other.hello(clusterKey, "frontend-legit", protocol.RoleFrontend)
			other.ws.CloseNow()
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, captured))
		}},
		{"malformed msgpack", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, []byte{byte(protocol.MsgHello), 0xc1, 0xc1})
		}},
		{"hello of the wrong shape", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, append([]byte{byte(protocol.MsgHello)}, 0x93, 0xa1, 'x', 0xa1, 'y', 0xc0))
		}},
		{"truncated hello", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			b := msg(t, protocol.MsgHello, p.hello(clusterKey, "intruder", protocol.RoleFrontend))
			p.send(websocket.MessageBinary, b[:len(b)-5])
		}},
		{"unknown message type first", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, []byte{200, 0x91, 0x01})
		}},
		{"subscribe before hello", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, msg(t, protocol.MsgSubscribe, evilSub))
		}},
		{"publish before hello", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageBinary, msg(t, protocol.MsgPublish, evil))
		}},
		{"valid hello with a publish in the same frame", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			b := msg(t, protocol.MsgHello, p.hello(clusterKey, "intruder", protocol.RoleFrontend))
			p.send(websocket.MessageBinary, append(b, msg(t, protocol.MsgPublish, evil)...))
		}},
		{"text frame", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			p.send(websocket.MessageText, []byte(`{"event":"#handshake","cid":1}`))
		}},
		{"oversized frame", protocol.RejectMalformed, func(t *testing.T, p *rawPeer) {
			h := p.hello(clusterKey, "intruder", protocol.RoleFrontend)
			h.Addr = string(bytes.Repeat([]byte("a"), peerMaxFrame))
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, h))
		}},
		{"unsupported version", protocol.RejectVersion, func(t *testing.T, p *rawPeer) {
			h := p.hello(clusterKey, "intruder", protocol.RoleFrontend)
			h.MinProto, h.MaxProto = protocol.NodeProtoMax+1, protocol.NodeProtoMax+5
			p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, h))
		}},
		{"silent peer", nodelink.ReasonTimeout, func(t *testing.T, p *rawPeer) {}},
	}

	for _, target := range []*peerTarget{b, st} {
		for _, a := range attacks {
			t.Run(target.name+"/"+a.name, func(t *testing.T) {
				before := target.rejects(t, a.reason)
				subsBefore := metric(t, b.reg, "scc_broker_subscriptions")
				pubsBefore := metric(t, b.reg, "scc_broker_publishes_in_total")
				p := dialRaw(t, target.addr)
				a.run(t, p)
				reason, other := p.outcome()
				if len(other) > 0 {
					t.Fatalf("the attacker received %v", other)
				}
				// A Reject names the reason, except when the peer is
				// silent (nothing to answer) or its frame was too big
				// (the WebSocket layer has closed with 1009 already).
				switch a.name {
				case "silent peer", "oversized frame":
					if reason != "" {
						t.Fatalf("got Reject %q", reason)
					}
				default:
					if reason != a.reason {
						t.Fatalf("got Reject %q, want %q", reason, a.reason)
					}
				}
				waitFor(t, waitTimeout, "the reject counted as "+a.reason, func() bool {
					return target.rejects(t, a.reason) == before+1
				})
				if got := metric(t, b.reg, "scc_broker_subscriptions"); got != subsBefore {
					t.Fatalf("broker subscriptions %v, was %v", got, subsBefore)
				}
				if got := metric(t, b.reg, "scc_broker_publishes_in_total"); got != pubsBefore {
					t.Fatalf("broker publishes in %v, was %v", got, pubsBefore)
				}
				if hasMember(t, stSrv, "intruder") {
					t.Fatal("the intruder is a member of the state server")
				}
				roundTrip()
				fe.alive()
				feState.alive()
			})
		}
	}

	// A correctly keyed peer of a role a node does not take: brokers take
	// frontends and (for replication) brokers, never a state server.
	t.Run("broker/wrong role", func(t *testing.T) {
		before := b.rejects(t, protocol.RejectRole)
		p := dialRaw(t, b.addr)
		p.send(websocket.MessageBinary, msg(t, protocol.MsgHello, p.hello(clusterKey, "intruder", protocol.RoleState)))
		if reason, other := p.outcome(); reason != protocol.RejectRole || len(other) > 0 {
			t.Fatalf("got Reject %q and %v", reason, other)
		}
		waitFor(t, waitTimeout, "counted", func() bool { return b.rejects(t, protocol.RejectRole) == before+1 })
	})

	// Nothing the attackers sent was delivered, and the legitimate link
	// saw exactly its own publishes, in order.
	d, _ := fe.snapshot()
	if uint64(len(d)) != seq {
		t.Fatalf("legitimate link got %d delivers for %d publishes: %q", len(d), seq, d)
	}
	for i, s := range d {
		if want := fmt.Sprintf(`victim {"n":%d}`, i+1); s != want {
			t.Fatalf("deliver %d = %q, want %q", i, s, want)
		}
	}
	if got := metric(t, b.reg, "scc_broker_links"); got != 1 {
		t.Fatalf("broker links %v, want only the legitimate one", got)
	}
	t.Logf("%d attacks on each node refused; %d legitimate publishes delivered in order", len(attacks), seq)
}

// hasMember reports whether the state server's /status lists node id.
func hasMember(t testing.TB, s *state.Server, id string) bool {
	t.Helper()
	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var st state.Status
	if err := json.NewDecoder(rec.Body).Decode(&st); err != nil {
		t.Fatalf("decoding /status: %v", err)
	}
	for _, m := range st.Members {
		if m.ID == id {
			return true
		}
	}
	return false
}
