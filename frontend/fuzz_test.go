package frontend_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/protocol"
)

// fuzzConn is one client connection of FuzzInbound; frames holds what the
// server sent, and done is closed when the connection ends.
type fuzzConn struct {
	ws     *websocket.Conn
	frames chan []byte
	done   chan struct{}
	err    error
}

func dialFuzz(url string) (*fuzzConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(16 << 20)
	c := &fuzzConn{ws: ws, frames: make(chan []byte, 1<<12), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			c.frames <- b
		}
	}()
	return c, nil
}

func (c *fuzzConn) close() {
	c.ws.CloseNow()
	<-c.done
}

// fuzzAllowedCloses are the codes a client's own input may earn it.
var fuzzAllowedCloses = map[int]bool{
	protocol.CloseInvalidPayload:         true,
	protocol.CloseMessageTooBig:          true,
	protocol.CloseHandshakeRejected:      true,
	protocol.CloseMessageBeforeHandshake: true,
}

// await reads frames until a packet answering cid arrives. Every frame the
// server sends must be a ping or valid UTF-8 JSON (a packet or a batch). It
// returns closed=true if the server closed the connection with one of
// fuzzAllowedCloses instead.
func (c *fuzzConn) await(t *testing.T, cid int) (closed bool) {
	t.Helper()
	prefix := fmt.Sprintf(`{"rid":%d,`, cid)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-c.frames:
			if len(b) == 0 {
				continue // ping
			}
			if !utf8.Valid(b) || !json.Valid(b) {
				t.Fatalf("server sent a frame that is not UTF-8 JSON: %q", b)
			}
			var pk []json.RawMessage
			if b[0] == '[' {
				if err := json.Unmarshal(b, &pk); err != nil {
					t.Fatalf("batch %q: %v", b, err)
				}
			} else {
				pk = []json.RawMessage{b}
			}
			for _, p := range pk {
				if strings.HasPrefix(string(p), prefix) {
					return false
				}
			}
		case <-c.done:
			code := int(websocket.CloseStatus(c.err))
			if !fuzzAllowedCloses[code] {
				t.Fatalf("connection ended with %d (%v)", code, c.err)
			}
			return true
		case <-timeout:
			t.Fatalf("no answer to call %d within 10s", cid)
		}
	}
}

// FuzzInbound sends arbitrary text frames to a running frontend, before or
// after the handshake. The server must not crash or hang: each frame is
// followed by an invoke that must be answered, unless the frame earned the
// client a SocketCluster close. Every frame the server sends back must be
// UTF-8 JSON, whatever the client sent (an echo procedure returns the
// client's data to it).
func FuzzInbound(f *testing.F) {
	for _, s := range []string{
		``, `#2`, `{}`, `[]`, `null`, `[null,1,"s",[]]`,
		`{"event":"#handshake","data":{"authToken":null},"cid":1}`,
		`{"event":"#handshake","data":{"authToken":"a.b.c"},"cid":1}`,
		`{"event":"#handshake","data":{}}`,
		`{"event":"#subscribe","data":{"channel":"room1"},"cid":2}`,
		`[{"event":"#subscribe","data":{"channel":"room1"},"cid":2},{"event":"#publish","data":{"channel":"room1","data":{"x":"\u00e9\ud83d\ude00"}}}]`,
		`{"event":"#publish","data":{"channel":"room1","data":"\ud800"},"cid":3}`,
		`{"event":"#unsubscribe","data":"room1"}`,
		`{"event":"#authenticate","data":"garbage.token.value","cid":4}`,
		`{"event":"#removeAuthToken"}`,
		`{"event":"echo","data":{"a":[1,2.5e300,-0,"\u0000"]},"cid":5}`,
		`{"event":"echo","cid":6}`,
		`{"rid":1,"data":1}`,
		"{\"event\":\"\xff\",\"cid\":7}",
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}

	cfg := frontend.DefaultConfig()
	cfg.InboundRate = 0      // a fuzzer is a flood by design
	cfg.InboundByteRate = 0  // likewise in bytes
	cfg.LimitClosesPerIP = 0 // and it breaks limits and dials again
	cfg.AuthKey = []byte("fuzz-key-of-at-least-thirty-two-bytes")
	cfg.DrainDuration = 10 * time.Millisecond
	cfg.CloseTimeout = 500 * time.Millisecond
	srv, err := frontend.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv.HandleRPC("echo", func(_ context.Context, _ *frontend.Socket, data json.RawMessage) (any, error) {
		if data == nil {
			return nil, nil
		}
		return data, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	<-srv.Ready()
	url := "ws://" + ln.Addr().String() + cfg.Path

	var conn *fuzzConn // handshaken, reused across inputs until closed
	f.Cleanup(func() {
		if conn != nil {
			conn.close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
			f.Errorf("Serve: %v", err)
		}
	})
	const sentinel = 1 << 40 // a cid no seed uses
	send := func(t *testing.T, c *fuzzConn, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.ws.Write(ctx, websocket.MessageText, b) // the server may have closed already
	}

	f.Fuzz(func(t *testing.T, msg []byte, beforeHandshake bool) {
		if beforeHandshake {
			c, err := dialFuzz(url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			send(t, c, msg)
			send(t, c, fmt.Appendf(nil, `{"event":"#handshake","data":{},"cid":%d}`, sentinel))
			c.await(t, sentinel)
			return
		}
		if conn == nil {
			c, err := dialFuzz(url)
			if err != nil {
				t.Fatal(err)
			}
			send(t, c, []byte(`{"event":"#handshake","data":{},"cid":1}`))
			if c.await(t, 1) {
				t.Fatal("handshake refused")
			}
			conn = c
		}
		send(t, conn, msg)
		send(t, conn, fmt.Appendf(nil, `{"event":"fuzz-sentinel","cid":%d}`, sentinel))
		if conn.await(t, sentinel) {
			conn.close()
			conn = nil
		}
	})
}
