package interop

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The frame conversations below send literal client frames and expect the
// exact bytes socketcluster-server 20 answers with (see
// protocol/testdata/frames). Each runs against the reference server, which
// proves the expectations, and against scc-frontend.

// rawConn is a WebSocket client that speaks frames, not the client library.
type rawConn struct {
	t    *testing.T
	c    *websocket.Conn
	ctx  context.Context
	id   string // the socket id from the handshake, replaced by <ID>
	name string

	queue []string // packets of a batch not returned yet
}

const frameTimeout = 5 * time.Second

func dialRaw(t *testing.T, ctx context.Context, port int, name string) *rawConn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+strconv.Itoa(port)+"/socketcluster/", nil)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	r := &rawConn{t: t, c: c, ctx: ctx, name: name}
	t.Cleanup(func() { c.CloseNow() })
	return r
}

func (r *rawConn) send(frame string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, frameTimeout)
	defer cancel()
	if err := r.c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		r.t.Fatalf("%s: send %s: %v", r.name, frame, err)
	}
}

// recv returns the next packet, answering pings on the way. A server may
// send any packets as a batch (a JSON array): recv returns its elements one
// by one, as the exact bytes they had in the array.
func (r *rawConn) recv() string {
	r.t.Helper()
	if len(r.queue) > 0 {
		p := r.queue[0]
		r.queue = r.queue[1:]
		return p
	}
	for {
		ctx, cancel := context.WithTimeout(r.ctx, frameTimeout)
		typ, b, err := r.c.Read(ctx)
		cancel()
		if err != nil {
			r.t.Fatalf("%s: waiting for a frame: %v", r.name, err)
		}
		if typ != websocket.MessageText {
			r.t.Fatalf("%s: got a binary frame % x", r.name, b)
		}
		if len(b) == 0 {
			r.send("")
			continue
		}
		msg := string(b)
		if r.id != "" {
			msg = strings.ReplaceAll(msg, r.id, "<ID>")
		}
		if !strings.HasPrefix(msg, "[") {
			return msg
		}
		var elems []json.RawMessage
		if err := json.Unmarshal([]byte(msg), &elems); err != nil || len(elems) == 0 {
			r.t.Fatalf("%s: bad batch %s: %v", r.name, msg, err)
		}
		for _, e := range elems[1:] {
			r.queue = append(r.queue, string(e))
		}
		return string(elems[0])
	}
}

// expect receives one frame and compares its exact bytes.
func (r *rawConn) expect(want string) {
	r.t.Helper()
	if got := r.recv(); got != want {
		r.t.Errorf("%s: got  %s\nwant %s", r.name, got, want)
	}
}

// expectAny receives len(want) frames that must be want in any order.
func (r *rawConn) expectAny(want ...string) {
	r.t.Helper()
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	for range want {
		got := r.recv()
		if left[got] == 0 {
			r.t.Errorf("%s: got %s\nwant one of %q", r.name, got, want)
			continue
		}
		left[got]--
	}
}

var handshakeRE = regexp.MustCompile(`^\{"rid":(\d+),"data":\{"id":"([^"]+)","pingTimeout":(\d+),"isAuthenticated":false\}\}$`)

// handshake sends a #handshake with no token and checks the reply's shape.
func (r *rawConn) handshake(cid string) {
	r.t.Helper()
	r.send(`{"event":"#handshake","data":{"authToken":null},"cid":` + cid + `}`)
	got := r.recv()
	m := handshakeRE.FindStringSubmatch(got)
	if m == nil || m[1] != cid || m[3] != pingTimeout {
		r.t.Fatalf("%s: handshake reply %s, want {\"rid\":%s,\"data\":{\"id\":…,\"pingTimeout\":%s,\"isAuthenticated\":false}}", r.name, got, cid, pingTimeout)
	}
	r.id = m[2]
}

// frameConversations run over raw connections against the server on port.
func frameConversations(t *testing.T, port int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("pubsub", func(t *testing.T) {
		a := dialRaw(t, ctx, port, "a")
		a.handshake("1")
		a.send(`{"event":"#subscribe","data":{"channel":"room1"},"cid":2}`)
		a.expect(`{"rid":2}`)
		a.send(`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via transmitPublish"}}}`)
		a.expect(`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via transmitPublish"}}}`)
		a.send(`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via invokePublish"}},"cid":3}`)
		a.expectAny(`{"rid":3}`, `{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via invokePublish"}}}`)
		// Data comes back byte for byte. (socketcluster-server re-encodes
		// it with JSON.stringify, so this data is spelled the way
		// JSON.stringify spells it: no big integers, no \u escapes of
		// printable characters, no whitespace.)
		odd := `{"channel":"room1","data":{"s":"é \"q\" \\ \n \u0001 ` + "\u2028" + ` </script>","n":[1,2.5,-3e-7,null,true,9007199254740991]}}`
		a.send(`{"event":"#publish","data":` + odd + `,"cid":4}`)
		a.expectAny(`{"rid":4}`, `{"event":"#publish","data":`+odd+`}`)
		a.send(`{"event":"#publish","data":{"channel":"room1"},"cid":5}`)
		a.expectAny(`{"rid":5}`, `{"event":"#publish","data":{"channel":"room1"}}`)
		a.send(`{"event":"#publish","data":{"channel":"room1","data":null}}`)
		a.expect(`{"event":"#publish","data":{"channel":"room1","data":null}}`)
		// A batch from the client.
		a.send(`[{"event":"e1","data":1},{"event":"#publish","data":{"channel":"room1","data":"p"}}]`)
		a.expect(`{"event":"#publish","data":{"channel":"room1","data":"p"}}`)
		// Unsubscribe is a transmit; the next invoke is answered after it.
		a.send(`{"event":"#unsubscribe","data":"room1"}`)
		a.send(`{"event":"#publish","data":{"channel":"room1","data":"after"},"cid":6}`)
		a.expect(`{"rid":6}`)
	})

	t.Run("errors", func(t *testing.T) {
		a := dialRaw(t, ctx, port, "a")
		// Call ids need not restart at 1 on a new connection.
		a.handshake("57")
		a.send(`{"event":"#subscribe","data":{"channel":5},"cid":58}`)
		a.expect(`{"rid":58,"error":{"message":"Subscribe channel name was malformatted","name":"InvalidActionError"}}`)
		a.send(`{"event":"#publish","data":{"channel":{"not":"a string"},"data":1},"cid":59}`)
		a.expect(`{"rid":59,"error":{"message":"Publish channel name was malformatted","name":"InvalidActionError"}}`)
		a.send(`{"event":"#unsubscribe","data":"zzz","cid":60}`)
		a.expect(`{"rid":60,"error":{"message":"Failed to unsubscribe socket from the zzz channel - InvalidActionError: Socket <ID> tried to unsubscribe from a channel which it is not subscribed to","name":"BrokerError"}}`)
		a.send(`{"event":"#authenticate","data":"garbage.token.value","cid":61}`)
		a.expect(`{"rid":61,"error":{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}}`)
		a.expect(`{"event":"#removeAuthToken"}`)
		// Raw strings, unknown rids and custom transmits are ignored.
		a.send(`not json`)
		a.send(`{"rid":999,"data":1}`)
		a.send(`{"event":"hello","data":{"a":1}}`)
		a.send(`{"event":"#removeAuthToken"}`)
		a.send(`{"event":"#subscribe","data":{"channel":"still-open"},"cid":62}`)
		a.expect(`{"rid":62}`)
	})

	t.Run("fanout", func(t *testing.T) {
		a := dialRaw(t, ctx, port, "a")
		b := dialRaw(t, ctx, port, "b")
		a.handshake("1")
		b.handshake("1")
		a.send(`{"event":"#subscribe","data":{"channel":"room2","data":{"token":"x"}},"cid":2}`)
		a.expect(`{"rid":2}`)
		// b publishes without being subscribed, and gets only the ack.
		b.send(`{"event":"#publish","data":{"channel":"room2","data":{"from":"b"}},"cid":2}`)
		b.expect(`{"rid":2}`)
		a.expect(`{"event":"#publish","data":{"channel":"room2","data":{"from":"b"}}}`)
		b.send(`{"event":"#subscribe","data":{"channel":"room2"},"cid":3}`)
		b.expect(`{"rid":3}`)
		a.send(`{"event":"#publish","data":{"channel":"room2","data":"to both"}}`)
		a.expect(`{"event":"#publish","data":{"channel":"room2","data":"to both"}}`)
		b.expect(`{"event":"#publish","data":{"channel":"room2","data":"to both"}}`)
	})
}

func TestFramesReferenceServer(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	_, port := startReference(t, node, randomKey(t))
	frameConversations(t, port)
}

func TestFramesFrontend(t *testing.T) {
	t.Parallel()
	_, port := startFrontend(t, randomKey(t))
	frameConversations(t, port)
}

// TestFramesFrontendOnly covers where scc-frontend deliberately differs from
// socketcluster-server: it tolerates a pong before the handshake (the real
// client answers pings as soon as the socket opens), and it passes publish
// data through as the exact bytes it received instead of re-encoding them.
func TestFramesFrontendOnly(t *testing.T) {
	t.Parallel()
	_, port := startFrontend(t, randomKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a := dialRaw(t, ctx, port, "a")
	a.send("")
	a.handshake("1")
	a.send(`{"event":"#subscribe","data":{"channel":"raw"},"cid":2}`)
	a.expect(`{"rid":2}`)
	data := `{ "big" : 12345678901234567890, "esc" : "\u0041\/", "f" : 1.0e+2 }`
	a.send(`{"event":"#publish","data":{"channel":"raw","data":` + data + `}}`)
	a.expect(`{"event":"#publish","data":{"channel":"raw","data":` + data + `}}`)
}
