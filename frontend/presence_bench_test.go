package frontend

import (
	"context"
	"fmt"
	"testing"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

// BenchmarkSubscribePresence is one subscribe and one unsubscribe round
// trip of a socket, standalone, on a channel another socket holds:
// without presence, with presence, and with presence and join/leave
// events. The difference is the added cost of presence on subscribe and
// unsubscribe (rule lookup, the local member table, the owner's table
// and the event coalescer).
func BenchmarkSubscribePresence(b *testing.B) {
	for _, c := range []struct{ name, ch string }{
		{"off", "plain:1"}, {"presence", "counted:1"}, {"join_leave", "room:1"},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := rulesConfig(b, presenceRulesDoc)
			cfg.InboundRate = 0
			srv := startServer(b, cfg)
			other := dial(b, srv)
			other.handshake("")
			other.subscribe(c.ch, 2)
			ctx := context.Background()
			ws, _, err := websocket.Dial(ctx, wsURL(srv), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ws.CloseNow()
			rt := func(msg string) {
				if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					b.Fatal(err)
				}
				for {
					_, p, err := ws.Read(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if len(p) > 0 {
						return
					}
					_ = ws.Write(ctx, websocket.MessageText, nil) // pong
				}
			}
			rt(`{"event":"#handshake","data":{},"cid":1}`)
			sub := fmt.Sprintf(`{"event":"#subscribe","data":{"channel":%q},"cid":2}`, c.ch)
			unsub := fmt.Sprintf(`{"event":"#unsubscribe","data":%q,"cid":3}`, c.ch)
			b.ReportAllocs()
			for b.Loop() {
				rt(sub)
				rt(unsub)
			}
		})
	}
}

// BenchmarkSubTablePresence is the frontend's own cost of one socket
// joining and leaving a channel's local subscription table (another
// socket holds the channel), without and with presence: in process, no
// network, so the difference is what presence adds.
func BenchmarkSubTablePresence(b *testing.B) {
	for _, c := range []struct{ name, ch string }{
		{"no_presence_code", "plain:1"}, {"off", "plain:1"}, {"presence", "counted:1"}, {"join_leave", "room:1"},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv, err := New(rulesConfig(b, presenceRulesDoc))
			if err != nil {
				b.Fatal(err)
			}
			if c.name == "no_presence_code" {
				srv.subs.pres = nil // the table as it is without presence
			}
			other := &Socket{srv: srv, id: "other"}
			if err := srv.subs.subscribeWait(context.Background(), c.ch, other, func(subWaiter, error) {}); err != nil {
				b.Fatal(err)
			}
			s := &Socket{srv: srv, id: "bench-socket"}
			b.ReportAllocs()
			for b.Loop() {
				if st, err := srv.subs.join(c.ch, s, subWaiter{s: s}, 1<<30); err != nil || st != joinReady {
					b.Fatal(st, err)
				}
				srv.subs.unsubscribe(c.ch, s)
			}
			if lb, ok := srv.broker.(*LocalBroker); ok && lb.pres != nil {
				lb.pres.Close()
			}
		})
	}
}

// BenchmarkPresenceStatsWire100k is a client's #presenceStats of a
// channel of 100k members, standalone: one round trip over loopback
// WebSocket per op, the whole client path (decode, the subscription
// check, the owner's O(1) count, the reply).
func BenchmarkPresenceStatsWire100k(b *testing.B) {
	cfg := rulesConfig(b, presenceRulesDoc)
	cfg.InboundRate = 0
	srv := startServer(b, cfg)
	hub := srv.broker.(*LocalBroker).pres
	const n = 100_000
	ms := make([]protocol.PresenceMember, n)
	for i := range ms {
		ms[i] = protocol.PresenceMember{Client: fmt.Sprintf("c%d", i), User: fmt.Sprintf("u%d", i%50_000)}
	}
	hub.Join(1, "counted:big", ms, true)
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, wsURL(srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.CloseNow()
	rt := func(msg string) []byte {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			b.Fatal(err)
		}
		for {
			_, p, err := ws.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(p) > 0 {
				return p
			}
			_ = ws.Write(ctx, websocket.MessageText, nil) // pong
		}
	}
	rt(`{"event":"#handshake","data":{},"cid":1}`)
	rt(`{"event":"#subscribe","data":{"channel":"counted:big"},"cid":2}`)
	want := fmt.Sprintf(`{"rid":3,"data":{"clients":%d,"users":%d}}`, n+1, 50_000) // the benchmark socket has no user
	if got := string(rt(`{"event":"#presenceStats","data":{"channel":"counted:big"},"cid":3}`)); got != want {
		b.Fatalf("stats %s, want %s", got, want)
	}
	req := `{"event":"#presenceStats","data":{"channel":"counted:big"},"cid":3}`
	b.ReportAllocs()
	for b.Loop() {
		rt(req)
	}
}
