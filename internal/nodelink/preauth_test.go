package nodelink

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

// Handshakes that have not proved the key are capped per source IP and in
// total: one more is refused with HTTP 503 and counted; a slot is free
// again once a pending handshake ends.
func TestPendingHandshakeCaps(t *testing.T) {
	for _, tc := range []struct {
		name           string
		total, perSrc  int
		reason         string
		admittedBefore int
	}{
		{"per source", 10, 2, ReasonPendingSource, 2},
		{"total", 3, 10, ReasonPendingTotal, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "127.0.0.1:0", func(c *Config) {
				c.MaxPendingHandshakes, c.MaxPendingHandshakesPerSource = tc.total, tc.perSrc
				c.Pending = NewPending()
				c.HandshakeTimeout = time.Minute // the pending ones stay until closed
			})
			var pending []*rawConn
			for range tc.admittedBefore {
				pending = append(pending, rawDial(t, s.addr())) // Challenge received, no Hello sent
			}
			waitFor(t, "handshakes pending", func() bool { return s.cfg.Pending.Len() == tc.admittedBefore })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+s.addr()+Path, nil)
			if err == nil {
				c.CloseNow()
				t.Fatal("a handshake over the cap was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("over the cap: %v (response %v), want HTTP 503", err, resp)
			}
			if got := s.rejects(tc.reason); got != 1 {
				t.Fatalf("rejects{%s} = %v, want 1", tc.reason, got)
			}
			// A pending handshake that ends frees its slot.
			pending[0].c.CloseNow()
			waitFor(t, "the slot freed", func() bool { return s.cfg.Pending.Len() == tc.admittedBefore-1 })
			l := dial(t, s.addr(), testConfig("frontend-1", protocol.RoleFrontend, nil))
			runLink(t, l, newRecorder())
			waitFor(t, "the verified handshake's slot freed", func() bool { return s.cfg.Pending.Len() == tc.admittedBefore-1 })
		})
	}
}

// Before its Hello verifies, a connection may send no frame larger than
// HelloMaxBytes; once verified, frames up to MaxFrameBytes pass.
func TestHelloReadLimit(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", func(c *Config) { c.HelloMaxBytes = 1024 })
	// A well-signed Hello, padded past the limit, is refused unread.
	r := rawDial(t, s.addr())
	padded := encode(t, protocol.MsgHello, r.hello(testKey, func(h *protocol.Hello) { h.Addr = strings.Repeat("a", 2048) }))
	if err := r.c.Write(context.Background(), websocket.MessageBinary, padded); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, b, err := r.c.Read(ctx); err == nil {
		m, _ := oneMessage(b)
		t.Fatalf("a %d-byte hello over HelloMaxBytes was answered %v", len(padded), m.Type)
	}
	waitFor(t, "the oversized hello refused", func() bool { return s.rejects(protocol.RejectMalformed) == 1 })

	l := dial(t, s.addr(), testConfig("frontend-1", protocol.RoleFrontend, nil))
	runLink(t, l, newRecorder())
	big := strings.Repeat("x", 64<<10)
	if err := l.Send(protocol.MsgPublish, protocol.Publish{Seq: 1, Channel: "c", Data: []byte(`"` + big + `"`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the large frame after the handshake", func() bool {
		for _, r := range s.h.all() {
			if r.t == protocol.MsgPublish && len(r.body) > 64<<10 {
				return true
			}
		}
		return false
	})
}
