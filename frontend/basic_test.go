package frontend

import (
	"strings"
	"testing"
)

func TestHandshakeSubscribePublish(t *testing.T) {
	srv := startServer(t, testConfig())
	a := dial(t, srv)
	b := dial(t, srv)
	hs := a.handshake("")
	if id, _ := hs["id"].(string); len(id) != 20 || strings.ContainsAny(id, "+/=") {
		t.Fatalf("socket id %q", hs["id"])
	}
	if hs["pingTimeout"] != float64(30000) || hs["isAuthenticated"] != false {
		t.Fatalf("handshake %v", hs)
	}
	b.handshake("")
	a.subscribe("room1", 2)
	b.subscribe("room1", 2)

	b.send(`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi"}},"cid":3}`)
	want := `{"event":"#publish","data":{"channel":"room1","data":{"text":"hi"}}}`
	a.expect(want)
	// The publisher gets both its ack and its own message, in either order.
	got := []string{b.packet(), b.packet()}
	if !(got[0] == want && got[1] == `{"rid":3}` || got[1] == want && got[0] == `{"rid":3}`) {
		t.Fatalf("publisher got %q", got)
	}
}
