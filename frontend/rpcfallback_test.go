package frontend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sccgo/sccgo/protocol"
)

// TestRPCFallback: invokes no Go handler claims reach the fallback with
// their procedure's name; a registered handler wins; SocketCluster's own
// '#' names and transmits never reach it.
func TestRPCFallback(t *testing.T) {
	srv := startServer(t, testConfig())
	srv.HandleRPC("echo", func(_ context.Context, _ *Socket, data json.RawMessage) (any, error) {
		return map[string]json.RawMessage{"goHandler": data}, nil
	})
	seen := make(chan string, 10)
	srv.HandleRPCFallback(func(_ context.Context, s *Socket, procedure string, data json.RawMessage) (any, error) {
		seen <- procedure
		if procedure == "deny" {
			return nil, protocol.NewError("NotAllowedError", "no", "code", 7)
		}
		return map[string]any{"procedure": procedure, "data": data, "socketKnown": s.ID() != ""}, nil
	})
	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"echo","data":1,"cid":2}`)
	c.expect(`{"rid":2,"data":{"goHandler":1}}`)
	c.send(`{"event":"chat.history","data":{"room":"r1"},"cid":3}`)
	c.expectJSON(`{"rid":3,"data":{"procedure":"chat.history","data":{"room":"r1"},"socketKnown":true}}`)
	c.send(`{"event":"deny","cid":4}`)
	c.expect(`{"rid":4,"error":{"message":"no","name":"NotAllowedError","code":7}}`)
	c.send(`{"event":"typing","data":true}`) // a transmit: not an invoke
	c.send(`{"event":"#bogus","cid":5}`)
	if p := c.packet(); !strings.Contains(p, `"rid":5,"error":{`) || !strings.Contains(p, protocol.ErrNameNoMatchingProcedure) {
		t.Fatalf("reserved procedure: %s", p)
	}
	for _, want := range []string{"chat.history", "deny"} {
		if got := <-seen; got != want {
			t.Fatalf("fallback saw %q, want %q", got, want)
		}
	}
	select {
	case got := <-seen:
		t.Fatalf("fallback also saw %q", got)
	default:
	}
}
