package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/internal/testwait"
)

// waitTimeout bounds every wait on a server's answer.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// scClient is a minimal SocketCluster client that sends literal frames. Its
// reader answers pings and unpacks batches into single packets.
type scClient struct {
	t       testing.TB
	ws      *websocket.Conn
	packets chan string
	done    chan struct{}

	mu  sync.Mutex
	err error
}

// dialSC connects to url and fails the test if the upgrade fails.
func dialSC(t testing.TB, url string) *scClient {
	t.Helper()
	c, err := tryDialSC(t, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// tryDialSC connects to url; the connection is closed at cleanup.
func tryDialSC(t testing.TB, url string) (*scClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(64 << 20)
	c := &scClient{t: t, ws: ws, packets: make(chan string, 1<<16), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		c.ws.CloseNow()
		<-c.done
	})
	return c, nil
}

func (c *scClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		switch {
		case len(b) == 0 || string(b) == "#1":
			pong := ""
			if len(b) > 0 {
				pong = "#2"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.ws.Write(ctx, websocket.MessageText, []byte(pong))
			cancel()
		case b[0] == '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(b, &arr); err != nil {
				c.packets <- string(b)
				continue
			}
			for _, p := range arr {
				c.packets <- string(p)
			}
		default:
			c.packets <- string(b)
		}
	}
}

// write sends one message and reports the error (the server may already
// have closed the connection on purpose).
func (c *scClient) write(typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, typ, b)
}

// send sends a text frame and fails the test if that is impossible.
func (c *scClient) send(frame string) {
	c.t.Helper()
	if err := c.write(websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("send %.80q: %v", frame, err)
	}
}

func (c *scClient) sendf(format string, args ...any) {
	c.t.Helper()
	c.send(fmt.Sprintf(format, args...))
}

// next returns the next packet, failing the test after d or if the
// connection ends first.
func (c *scClient) next(d time.Duration) string {
	c.t.Helper()
	select {
	case p := <-c.packets:
		return p
	case <-c.done:
		select {
		case p := <-c.packets:
			return p
		default:
		}
		c.t.Fatalf("connection ended while waiting for a packet: %v", c.readErr())
	case <-time.After(d):
		c.t.Fatalf("no packet within %v", d)
	}
	return ""
}

// reply returns the response to call id cid, skipping other packets.
func (c *scClient) reply(cid int) map[string]any {
	c.t.Helper()
	prefix := fmt.Sprintf(`{"rid":%d`, cid)
	deadline := time.Now().Add(waitTimeout)
	for {
		p := c.next(time.Until(deadline))
		if strings.HasPrefix(p, prefix+",") || p == prefix+"}" {
			return decodeObject(c.t, p)
		}
	}
}

// replyAndPacket waits for the successful response to cid and for a
// packet containing want, in either order (a client's own publish may be
// delivered to it before the publish is answered), and returns that
// packet. Other packets are skipped.
func (c *scClient) replyAndPacket(cid int, want string) string {
	c.t.Helper()
	prefix := fmt.Sprintf(`{"rid":%d`, cid)
	deadline := time.Now().Add(waitTimeout)
	replied, got := false, ""
	for !replied || got == "" {
		p := c.next(time.Until(deadline))
		switch {
		case strings.HasPrefix(p, prefix+",") || p == prefix+"}":
			if e, ok := decodeObject(c.t, p)["error"]; ok {
				c.t.Fatalf("call %d failed: %v", cid, e)
			}
			replied = true
		case got == "" && strings.Contains(p, want):
			got = p
		}
	}
	return got
}

// replyError returns the error of the response to cid, failing the test if
// the call succeeded.
func (c *scClient) replyError(cid int) map[string]any {
	c.t.Helper()
	r := c.reply(cid)
	e, ok := r["error"].(map[string]any)
	if !ok {
		c.t.Fatalf("call %d succeeded: %v", cid, r)
	}
	return e
}

// expectOK waits for a successful response to cid.
func (c *scClient) expectOK(cid int) map[string]any {
	c.t.Helper()
	r := c.reply(cid)
	if e, ok := r["error"]; ok {
		c.t.Fatalf("call %d failed: %v", cid, e)
	}
	return r
}

// handshake sends #handshake (token "" is null) and returns the reply data.
func (c *scClient) handshake(token string) map[string]any {
	c.t.Helper()
	tok := "null"
	if token != "" {
		tok = fmt.Sprintf("%q", token)
	}
	c.sendf(`{"event":"#handshake","data":{"authToken":%s},"cid":1}`, tok)
	r := c.expectOK(1)
	d, _ := r["data"].(map[string]any)
	if d == nil {
		c.t.Fatalf("handshake reply without data: %v", r)
	}
	return d
}

func (c *scClient) subscribe(channel string, cid int) {
	c.t.Helper()
	c.sendf(`{"event":"#subscribe","data":{"channel":%q},"cid":%d}`, channel, cid)
	c.expectOK(cid)
}

func (c *scClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// closeCode waits for the connection to end and returns the close code the
// server sent (-1 if it ended without a close frame).
func (c *scClient) closeCode() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitTimeout):
		c.t.Fatalf("connection still open after %v", waitTimeout)
	}
	return int(websocket.CloseStatus(c.readErr()))
}

// expectClose waits for the server to close with code.
func (c *scClient) expectClose(code int) {
	c.t.Helper()
	if got := c.closeCode(); got != code {
		c.t.Fatalf("closed with %d (%v), want %d", got, c.readErr(), code)
	}
}

// open reports whether the connection is still up.
func (c *scClient) open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func decodeObject(t testing.TB, p string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(p), &m); err != nil {
		t.Fatalf("packet %.200q is not a JSON object: %v", p, err)
	}
	return m
}

// metric returns the value of the counter or gauge name{labels} in reg (0
// when there is no such series).
func metric(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
