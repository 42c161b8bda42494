package frontend

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// upgradeStatus sends a WebSocket upgrade request and returns the status
// and body of the response.
func upgradeStatus(t *testing.T, srv *Server, path, origin string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+srv.Addr().String()+path, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestUpgradeRejections(t *testing.T) {
	cfg := testConfig()
	cfg.Origins = "example.com:443 *:8080"
	srv := startServer(t, cfg)
	reg := srv.Registry()

	if code, _ := upgradeStatus(t, srv, "/other/", ""); code != http.StatusBadRequest {
		t.Fatalf("bad path: %d", code)
	}
	if code, body := upgradeStatus(t, srv, "/socketcluster/", "https://evil.com"); code != http.StatusForbidden ||
		body != "Failed to authorize socket handshake - Invalid origin: https://evil.com" {
		t.Fatalf("bad origin: %d %q", code, body)
	}
	for _, ok := range []string{"https://example.com", "http://any.host:8080"} {
		if code, body := upgradeStatus(t, srv, "/socketcluster/", ok); code != http.StatusSwitchingProtocols {
			t.Fatalf("origin %s: %d %q", ok, code, body)
		}
	}
	// A query string is ignored.
	c := dialWith(t, wsURL(srv)+"?t=123&foo=bar", dialOpts{})
	c.handshake("")
	if counter(t, reg, "scc_frontend_rejected_connections_total", "reason", rejectOrigin) != 1 ||
		counter(t, reg, "scc_frontend_rejected_connections_total", "reason", rejectPath) != 1 {
		t.Fatal("rejections not counted")
	}
}

// The client port answers probes but keeps metrics to the admin handler
// unless ServeAdmin asks for the old layout.
func TestClientPortServesNoMetricsByDefault(t *testing.T) {
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	srv := startServer(t, testConfig())
	want := map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 400, "/status": 400}
	for path, code := range want {
		resp, err := http.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("client port %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code := get(srv.AdminHandler(), path); code != 200 {
			t.Errorf("admin handler %s: %d, want 200", path, code)
		}
	}
	cfg := testConfig()
	cfg.ServeAdmin = true
	old := startServer(t, cfg)
	if code := get(old.Handler(), "/metrics"); code != 200 {
		t.Errorf("with ServeAdmin, client port /metrics: %d, want 200", code)
	}
}

func TestOriginPatterns(t *testing.T) {
	for _, tc := range []struct {
		origins, origin string
		ok              bool
	}{
		{"*:*", "https://a.b", true},
		{"a.b:443", "https://a.b", true},
		{"a.b:443", "http://a.b", false},
		{"a.b:*", "http://a.b:9", true},
		{"*:9", "http://x.y:9", true},
		{"x.y:80, a.b:80", "http://a.b", true},
		{"a.b:80", "null", false},
	} {
		if got := originAllowed(tc.origins, tc.origin); got != tc.ok {
			t.Errorf("originAllowed(%q, %q) = %v", tc.origins, tc.origin, got)
		}
	}
}

func TestConnectionLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	srv := startServer(t, cfg)
	a := dial(t, srv)
	dial(t, srv)
	if code, _ := upgradeStatus(t, srv, "/socketcluster/", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("over max connections: %d", code)
	}
	a.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "a slot", func() bool {
		return srv.Stats().Connections == 1 && counter(t, srv.Registry(), "scc_frontend_tcp_connections") == 1
	})
	dial(t, srv).handshake("")
	// The listener's cap counts the TCP connection before any upgrade: at
	// the cap with no idle connection, it is let in for the admin paths
	// only.
	if counter(t, srv.Registry(), "scc_frontend_tcp_drops_total", "reason", "reserved") != 1 {
		t.Fatal("not counted")
	}

	cfg = testConfig()
	cfg.MaxHandshakesPerSecond = 0.001
	cfg.HandshakeBurst = 2
	cfg.HandshakeQueue = 0 // no pacing: the excess is accepted and refused
	srv = startServer(t, cfg)
	dial(t, srv)
	dial(t, srv)
	if code, _ := upgradeStatus(t, srv, "/socketcluster/", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("over handshake rate: %d", code)
	}
	if counter(t, srv.Registry(), "scc_frontend_rejected_connections_total", "reason", rejectHandshakeRate) != 1 {
		t.Fatal("not counted")
	}
}

func TestInboundRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 10
	cfg.InboundBurst = 5
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	for i := range 50 {
		if err := c.ws.Write(context.Background(), websocket.MessageText, fmt.Appendf(nil, `{"event":"x","data":%d}`, i)); err != nil {
			break
		}
	}
	c.expectClose(protocol.CloseRateLimited)
	waitFor(t, 2*time.Second, "counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonRateLimited) == 1
	})
}

func TestSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.QueueMaxBytes = 64 << 10
	cfg.QueueMaxMessages = 1000
	srv := startServer(t, cfg)

	// A client that subscribes and then never reads again.
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{},"cid":1}`))
	ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#subscribe","data":{"channel":"firehose"},"cid":2}`))
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"rid":2`) {
			break
		}
	}
	// A healthy subscriber on the same channel keeps receiving.
	fast := dial(t, srv)
	fast.handshake("")
	fast.subscribe("firehose", 2)

	payload := json.RawMessage(`"` + strings.Repeat("x", 4000) + `"`)
	sent := 0
	for srv.Stats().Connections == 2 && sent < 100000 {
		if err := srv.Publish(ctx, "firehose", payload); err != nil {
			t.Fatal(err)
		}
		sent++
		// The fast client keeps up: it has each message before the next.
		fast.packet()
		maxQueued(t, srv)
	}
	waitFor(t, 10*time.Second, "slow consumer closed", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonSlowConsumer) == 1
	})
	if srv.Stats().Connections != 1 {
		t.Fatalf("connections %d", srv.Stats().Connections)
	}
	if counter(t, srv.Registry(), "scc_frontend_queue_drops_total", "reason", "bytes") != 1 {
		t.Fatal("queue drop not counted")
	}
	t.Logf("slow consumer closed after %d publishes of 4 KB", sent)
	fast.subscribe("other", 9) // still served
}

// maxQueued checks no socket's queue is above its bounds.
func maxQueued(t *testing.T, srv *Server) {
	srv.eachSocket(func(s *Socket) {
		n, b := s.q.Len()
		if n > srv.cfg.QueueMaxMessages || b > srv.cfg.QueueMaxBytes {
			t.Errorf("queue of %s holds %d packets, %d bytes", s.id, n, b)
		}
	})
}

func TestHostileInput(t *testing.T) {
	cfg := testConfig()
	cfg.InboundRate = 0 // tested on its own; the floods here would trip it
	cfg.InboundByteRate = 0
	cfg.MaxBatchPackets = 1 << 20 // likewise; one input is a batch of 10001
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	garbage := make([]byte, 4096)
	rand.Read(garbage)
	// Printable ASCII: text that is not UTF-8 closes the socket with 1007
	// (test/hostile covers that).
	for i := range garbage {
		garbage[i] = 0x20 + garbage[i]%0x5f
	}
	inputs := []string{
		strings.Repeat("[", 200000),
		strings.Repeat(`{"a":`, 100000),
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
		`{"event":{"x":1},"cid":1}`,
		`{"event":"#subscribe","data":{"channel":{"nested":true}},"cid":`,
		`[{"event":"#publish"},{"event":"#publish","data":[]},{"event":"#subscribe","data":null},{"event":"#unsubscribe","data":{}},{"event":"#authenticate","data":5,"cid":3}]`,
		`{"rid":"x","data":1}`,
		`{"event":"#handshake","cid":1e400}`,
		"[" + strings.Repeat(`"x",`, 10000) + `"y"]`,
		string(garbage),
	}
	for _, in := range inputs {
		c.send(in)
	}
	// Drain whatever replies came, then show the socket still works.
	c.send(`{"event":"alive?","cid":777}`)
	for {
		if p := c.packet(); strings.HasPrefix(p, `{"rid":777,`) {
			break
		}
	}
	c.subscribe("still-fine", 778)

	// Floods: subscriptions up to the limit, then errors; publishes.
	var b strings.Builder
	b.WriteString("[")
	for i := range 1500 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"f%d"},"cid":%d}`, i, 1000+i)
	}
	b.WriteString("]")
	c.send(b.String())
	errorsSeen := 0
	for range 1500 {
		if strings.Contains(c.packet(), "BrokerError") {
			errorsSeen++
		}
	}
	if st := srv.Stats(); st.Subscriptions != 1000 || errorsSeen != 501 {
		t.Fatalf("after flood: %+v, %d errors", st, errorsSeen)
	}

	// Connections that never handshake are closed and freed.
	cfg = testConfig()
	cfg.HandshakeTimeout = 100 * time.Millisecond
	srv2 := startServer(t, cfg)
	for range 30 {
		dial(t, srv2)
	}
	waitFor(t, 5*time.Second, "idle connections closed", func() bool { return srv2.Stats().Connections == 0 })
}

// TestUpgradeCarryOver sends the upgrade request and the first WebSocket
// frame in one TCP write: the frame sits in net/http's read buffer when the
// connection is hijacked and must not be lost.
func TestUpgradeCarryOver(t *testing.T) {
	srv := startServer(t, testConfig())
	nc, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET /socketcluster/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	var buf []byte
	buf = append(buf, req...)
	buf = wsframe.AppendClient(buf, wsframe.OpText, true, []byte(`{"event":"#handshake","data":{"authToken":null},"cid":1}`))
	buf = wsframe.AppendClient(buf, wsframe.OpText, true, []byte(`{"event":"#subscribe","data":{"channel":"co"},"cid":2}`))
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var got []string
	for len(got) < 2 {
		f := readServerFrame(t, br)
		if len(f) == 0 {
			continue // ping
		}
		if f[0] == '[' {
			var arr []json.RawMessage
			json.Unmarshal(f, &arr)
			for _, p := range arr {
				got = append(got, string(p))
			}
			continue
		}
		got = append(got, string(f))
	}
	if !strings.HasPrefix(got[0], `{"rid":1,"data":{"id":`) || got[1] != `{"rid":2}` {
		t.Fatalf("got %q", got)
	}
}

func readServerFrame(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return p
}
