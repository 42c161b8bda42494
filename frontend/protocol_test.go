package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

func TestHandshakeReplyExact(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	// Any numeric cid is accepted: the real client does not reset it on
	// reconnect.
	c.send(`{"event":"#handshake","data":{"authToken":null},"cid":57}`)
	got := c.packet()
	re := regexp.MustCompile(`^\{"rid":57,"data":\{"id":"[A-Za-z0-9_-]{20}","pingTimeout":30000,"isAuthenticated":false\}\}$`)
	if !re.MatchString(got) {
		t.Fatalf("handshake reply %s", got)
	}
	if counter(t, srv.Registry(), "scc_frontend_handshakes_total") != 1 {
		t.Fatal("handshakes_total not counted")
	}
}

func TestSocketIDsUnique(t *testing.T) {
	var g socketIDs
	seen := map[string]bool{}
	for range 1000 {
		id := g.next()
		if len(id) != 20 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestCloseCodes(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 150 * time.Millisecond
	cfg.MaxPayload = 1024
	srv := startServer(t, cfg)

	cases := []struct {
		name   string
		code   int
		reason string
		do     func(c *rawClient)
	}{
		{"handshake without cid", protocol.CloseHandshakeRejected, reasonHandshakeRejected, func(c *rawClient) {
			c.send(`{"event":"#handshake","data":{"authToken":null}}`)
		}},
		{"handshake with string cid", protocol.CloseHandshakeRejected, reasonHandshakeRejected, func(c *rawClient) {
			c.send(`{"event":"#handshake","data":{},"cid":"1"}`)
		}},
		{"authenticate without cid", protocol.CloseHandshakeRejected, reasonHandshakeRejected, func(c *rawClient) {
			c.handshake("")
			c.send(`{"event":"#authenticate","data":"x.y.z"}`)
		}},
		{"event before handshake", protocol.CloseMessageBeforeHandshake, reasonBeforeHandshake, func(c *rawClient) {
			c.send(`{"event":"hello","data":1}`)
		}},
		{"raw string before handshake", protocol.CloseMessageBeforeHandshake, reasonBeforeHandshake, func(c *rawClient) {
			c.send(`hello`)
		}},
		{"handshake timeout", protocol.CloseHandshakeTimeout, reasonHandshakeTimeout, func(c *rawClient) {
			// Pongs before the handshake are fine; they do not count as one.
			c.send(``)
			c.send(`#2`)
		}},
		{"message too big", protocol.CloseMessageTooBig, reasonMessageTooBig, func(c *rawClient) {
			c.handshake("")
			c.send(`{"event":"x","data":"` + strings.Repeat("a", 2048) + `"}`)
		}},
		{"binary frame", protocol.CloseUnsupportedData, reasonUnsupportedData, func(c *rawClient) {
			c.handshake("")
			c.sendBinary([]byte{1, 2, 3})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", tc.reason)
			c := dialWith(t, wsURL(srv), dialOpts{})
			c.t = t
			tc.do(c)
			c.expectClose(tc.code)
			waitFor(t, 5*time.Second, "close counted", func() bool {
				return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", tc.reason) == before+1
			})
		})
	}
}

func TestPingPong(t *testing.T) {
	for _, v := range []protocol.Version{protocol.V1, protocol.V2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			cfg := testConfig()
			cfg.ProtocolVersion = v
			cfg.PingInterval = 40 * time.Millisecond
			cfg.PingTimeout = 300 * time.Millisecond
			srv := startServer(t, cfg)

			// A client that answers pings stays connected across many
			// timeouts.
			live := dial(t, srv)
			live.handshake("")
			for range 20 {
				select {
				case <-live.pongs:
				case <-time.After(2 * time.Second):
					t.Fatal("no ping")
				}
			}
			if hs := dial(t, srv).handshake(""); hs["pingTimeout"] != float64(300) {
				t.Fatalf("advertised pingTimeout %v", hs["pingTimeout"])
			}

			// A client that does not answer gets the ping frame, then 4001.
			mute := dialWith(t, wsURL(srv), dialOpts{noAutoPong: true})
			mute.send(`{"event":"#handshake","data":{},"cid":1}`)
			want := string(v.PingFrame())
			deadline := time.Now().Add(5 * time.Second)
			sawPing := false
			for !sawPing && time.Now().Before(deadline) {
				if f := mute.frame(2 * time.Second); f == want {
					sawPing = true
				}
			}
			if !sawPing {
				t.Fatalf("no %q ping", want)
			}
			mute.expectClose(protocol.ClosePongTimeout)
		})
	}
}

func TestAnyMessageCountsAsLiveness(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 40 * time.Millisecond
	cfg.PingTimeout = 200 * time.Millisecond
	srv := startServer(t, cfg)
	c := dialWith(t, wsURL(srv), dialOpts{noAutoPong: true})
	c.handshake("")
	for i := range 30 {
		c.sendf(`{"event":"tick","data":%d}`, i)
		time.Sleep(20 * time.Millisecond) // pacing the client, not synchronisation
	}
	c.sendf(`{"event":"nope","cid":99}`)
	for {
		p := c.packet2()
		if p == "" {
			continue // ping
		}
		if !strings.Contains(p, `"rid":99`) {
			t.Fatalf("unexpected %s", p)
		}
		break
	}
}

func TestRPCDispatch(t *testing.T) {
	srv := startServer(t, testConfig())
	srv.HandleRPC("echo", func(_ context.Context, _ *Socket, data json.RawMessage) (any, error) {
		return map[string]json.RawMessage{"youSent": data}, nil
	})
	srv.HandleRPC("fail", func(context.Context, *Socket, json.RawMessage) (any, error) {
		return nil, protocol.NewError("MyAppError", "Procedure failed on purpose", "extra", 42)
	})
	srv.HandleRPC("plainfail", func(context.Context, *Socket, json.RawMessage) (any, error) {
		return nil, errors.New("boom")
	})
	events := make(chan string, 10)
	srv.HandleEvent("hello", func(_ *Socket, data json.RawMessage) { events <- string(data) })

	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"echo","data":{"b":2},"cid":7}`)
	c.expect(`{"rid":7,"data":{"youSent":{"b":2}}}`)
	c.send(`{"event":"fail","data":null,"cid":8}`)
	c.expect(`{"rid":8,"error":{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}}`)
	c.send(`{"event":"plainfail","cid":9}`)
	c.expect(`{"rid":9,"error":{"message":"boom"}}`)
	c.send(`{"event":"hello","data":{"a":1}}`)
	if got := <-events; got != `{"a":1}` {
		t.Fatalf("event data %s", got)
	}
	// Unknown transmits, unknown rids, raw strings and non-packets are
	// ignored; an unknown invoke is answered, never left hanging.
	c.send(`{"event":"unknownEvent","data":1}`)
	c.send(`{"rid":12345,"data":"nobody asked"}`)
	c.send(`just a raw string`)
	c.send(`{"unparseable`)
	c.send(`[1,"two",null]`)
	c.send(`{"event":"missing","data":1,"cid":10}`)
	m := c.expectJSON(`{"rid":10,"error":{"message":"No handler for procedure missing","name":"NoMatchingProcedureError"}}`)
	_ = m
	c.send(`{"event":"#bogus","cid":11}`)
	if p := c.packet(); !strings.Contains(p, `"rid":11,"error":{`) || !strings.Contains(p, protocol.ErrNameNoMatchingProcedure) {
		t.Fatalf("reserved unknown procedure: %s", p)
	}
}

func TestBatchesBothWays(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	c.handshake("")
	// Inbound: one array of packets, processed in order.
	var b strings.Builder
	b.WriteString(`[{"event":"#subscribe","data":{"channel":"bb"},"cid":2}`)
	const n = 200
	for i := range n {
		fmt.Fprintf(&b, `,{"event":"#publish","data":{"channel":"bb","data":%d},"cid":%d}`, i, 3+i)
	}
	b.WriteString(`]`)
	framesBefore := srv.Stats().FramesOut
	c.send(b.String())
	c.expect(`{"rid":2}`)
	for i := range n {
		// Per publish: the echo (delivered first by the local broker)
		// and the ack.
		c.expect(fmt.Sprintf(`{"event":"#publish","data":{"channel":"bb","data":%d}}`, i))
		c.expect(fmt.Sprintf(`{"rid":%d}`, 3+i))
	}
	// Outbound: 401 packets went out in fewer frames, as arrays.
	frames := srv.Stats().FramesOut - framesBefore
	if frames >= 2*n+1 {
		t.Fatalf("%d packets in %d frames: no batching", 2*n+1, frames)
	}
	if !c.sawBatch {
		t.Fatal("no array frame received")
	}
}
