package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

const testKey = "test-secret-key-of-at-least-32-bytes"

// testConfig is DefaultConfig with test-friendly timings.
func testConfig() Config {
	c := DefaultConfig()
	c.AuthKey = []byte(testKey)
	c.DrainDuration = 50 * time.Millisecond
	c.CloseTimeout = 500 * time.Millisecond
	// Tests break limits from one address and dial again.
	c.LimitClosesPerIP = 0
	// Tests provoke refusals in bulk; their pacing has its own test.
	c.PublishRefusalRate = 0
	c.IdleDetach = 1
	return c
}

// startServer serves cfg on 127.0.0.1:0 and shuts it down at cleanup.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	return startServerWith(t, cfg, nil)
}

// startServerWith is startServer with a hook on the server before it
// serves.
func startServerWith(t testing.TB, cfg Config, hook func(*Server)) *Server {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if hook != nil {
		hook(srv)
	}
	ln := listen(t)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	return srv
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func wsURL(srv *Server) string {
	return "ws://" + srv.Addr().String() + "/socketcluster/"
}

// rawClient is a minimal SocketCluster client for tests: it sends literal
// frames and receives frames and packets.
type rawClient struct {
	t        testing.TB
	ws       *websocket.Conn
	frames   chan string
	done     chan struct{}
	err      error
	autoPong bool
	pongs    chan struct{}
	pending  []json.RawMessage
	sawBatch bool
	mu       sync.Mutex
}

type dialOpts struct {
	noAutoPong bool
	header     http.Header
}

func dial(t testing.TB, srv *Server) *rawClient {
	t.Helper()
	return dialWith(t, wsURL(srv), dialOpts{})
}

func dialWith(t testing.TB, url string, o dialOpts) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: o.header})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(64 << 20)
	c := &rawClient{t: t, ws: ws, frames: make(chan string, 1<<16), done: make(chan struct{}), autoPong: !o.noAutoPong, pongs: make(chan struct{}, 1<<10)}
	go c.readLoop()
	t.Cleanup(func() {
		c.ws.CloseNow()
		<-c.done
	})
	return c
}

func (c *rawClient) readLoop() {
	defer close(c.done)
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if typ == websocket.MessageText && len(b) == 0 || string(b) == "#1" {
			if c.autoPong {
				pong := ""
				if string(b) == "#1" {
					pong = "#2"
				}
				c.ws.Write(context.Background(), websocket.MessageText, []byte(pong))
				select {
				case c.pongs <- struct{}{}:
				default:
				}
				continue
			}
		}
		c.frames <- string(b)
	}
}

func (c *rawClient) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("send %q: %v", frame, err)
	}
}

func (c *rawClient) sendBinary(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.t.Fatalf("send binary: %v", err)
	}
}

// packet2 is packet for clients that see pings: a ping comes back as "".
func (c *rawClient) packet2() string {
	c.t.Helper()
	if len(c.pending) == 0 {
		f := c.frame(5 * time.Second)
		if f == "" || f == "#1" {
			return ""
		}
		c.pending = append(c.pending, json.RawMessage(f))
		if strings.HasPrefix(f, "[") {
			c.pending = c.pending[:len(c.pending)-1]
			var arr []json.RawMessage
			json.Unmarshal([]byte(f), &arr)
			c.pending = append(c.pending, arr...)
		}
	}
	return c.packet()
}

func (c *rawClient) sendf(format string, args ...any) {
	c.t.Helper()
	c.send(fmt.Sprintf(format, args...))
}

// frame returns the next frame, failing the test after d.
func (c *rawClient) frame(d time.Duration) string {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection ended while waiting for a frame: %v", c.readErr())
	case <-time.After(d):
		c.t.Fatalf("no frame within %v", d)
	}
	return ""
}

func (c *rawClient) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// packet returns the next packet, unpacking batch arrays.
func (c *rawClient) packet() string {
	c.t.Helper()
	for len(c.pending) == 0 {
		f := c.frame(5 * time.Second)
		if strings.HasPrefix(f, "[") {
			c.sawBatch = true
			var arr []json.RawMessage
			if err := json.Unmarshal([]byte(f), &arr); err != nil {
				c.t.Fatalf("bad batch %q: %v", f, err)
			}
			c.pending = append(c.pending, arr...)
			continue
		}
		c.pending = append(c.pending, json.RawMessage(f))
	}
	p := c.pending[0]
	c.pending = c.pending[1:]
	return string(p)
}

// expect reads the next packet and compares it with want exactly.
func (c *rawClient) expect(want string) {
	c.t.Helper()
	if got := c.packet(); got != want {
		c.t.Fatalf("got packet\n  %s\nwant\n  %s", got, want)
	}
}

// expectJSON compares the next packet with want as JSON values.
func (c *rawClient) expectJSON(want string) map[string]any {
	c.t.Helper()
	got := c.packet()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		c.t.Fatalf("packet %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		c.t.Fatalf("want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		c.t.Fatalf("got packet\n  %s\nwant\n  %s", got, want)
	}
	m, _ := g.(map[string]any)
	return m
}

// expectClose waits for the server to close the connection with code.
func (c *rawClient) expectClose(code int) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("connection not closed (want %d)", code)
	}
	err := c.readErr()
	if got := int(websocket.CloseStatus(err)); got != code {
		c.t.Fatalf("closed with %d (%v), want %d", got, err, code)
	}
}

// handshake sends #handshake with cid 1 and returns the reply data.
func (c *rawClient) handshake(token string) map[string]any {
	c.t.Helper()
	tok := "null"
	if token != "" {
		tok = `"` + token + `"`
	}
	c.sendf(`{"event":"#handshake","data":{"authToken":%s},"cid":1}`, tok)
	var resp struct {
		RID  int            `json:"rid"`
		Data map[string]any `json:"data"`
	}
	p := c.packet()
	// A server with a short ping interval may ping before it answers
	// (an empty packet, or #1 in protocol v1): pings are not the reply.
	for pings := 0; (p == "" || p == "#1") && pings < 100; pings++ {
		p = c.packet()
	}
	if err := json.Unmarshal([]byte(p), &resp); err != nil || resp.RID != 1 {
		c.t.Fatalf("handshake reply %q", p)
	}
	return resp.Data
}

func (c *rawClient) subscribe(channel string, cid int) {
	c.t.Helper()
	c.sendf(`{"event":"#subscribe","data":{"channel":%q},"cid":%d}`, channel, cid)
	c.expect(fmt.Sprintf(`{"rid":%d}`, cid))
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// counter reads a counter or gauge from the server's registry.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

var errUnused = errors.New("unused")

var _ = protocol.V1
