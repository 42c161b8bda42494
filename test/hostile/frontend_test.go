package hostile

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/protocol"
)

// Limits of the in-process frontend under attack. They are small so each
// attack reaches them quickly; the healthy pair stays far below them.
const (
	testMaxPayload       = 64 << 10
	testMaxChannelLength = 64
	testChannelLimit     = 20
	testInboundRate      = 200
	testInboundBurst     = 200
	testHandshakeTimeout = 300 * time.Millisecond
)

type testFrontend struct {
	srv *frontend.Server
	url string

	mu     sync.Mutex
	closes map[string]int // socket id → close code (OnDisconnect)
}

// startFrontend runs a frontend on 127.0.0.1:0 with small limits; mod may
// change the config first. It is shut down when the test ends.
func startFrontend(t testing.TB, mod func(*frontend.Config)) *testFrontend {
	t.Helper()
	tf := &testFrontend{closes: map[string]int{}}
	cfg := frontend.DefaultConfig()
	cfg.MaxPayload = testMaxPayload
	cfg.MaxChannelLength = testMaxChannelLength
	cfg.SocketChannelLimit = testChannelLimit
	cfg.InboundRate = testInboundRate
	cfg.InboundBurst = testInboundBurst
	cfg.HandshakeTimeout = testHandshakeTimeout
	cfg.QueueMaxBytes = 256 << 10
	cfg.QueueMaxMessages = 1024
	cfg.CloseTimeout = 500 * time.Millisecond
	cfg.DrainDuration = 50 * time.Millisecond
	cfg.AuthKey = []byte("hostile-test-key-of-at-least-32-bytes")
	// The attacks here break limits from the healthy clients' address
	// and dial again; the per-address charge is tested on its own
	// (sources_test.go).
	cfg.LimitClosesPerIP = 0
	cfg.OnDisconnect = func(s *frontend.Socket, code int) {
		tf.mu.Lock()
		tf.closes[s.ID()] = code
		tf.mu.Unlock()
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := frontend.New(cfg)
	if err != nil {
		t.Fatalf("frontend.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
		t.Fatal("frontend not ready")
	}
	tf.srv = srv
	tf.url = "ws://" + srv.Addr().String() + cfg.Path
	return tf
}

func (f *testFrontend) closeCode(id string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.closes[id]
	return c, ok
}

func (f *testFrontend) closesTotal(t testing.TB, reason string) float64 {
	return metric(t, f.srv.Registry(), "scc_frontend_closes_total", "reason", reason)
}

// TestHostileClient attacks one frontend with every kind of bad client
// input in turn while a healthy subscriber and publisher keep running; each
// attack must get its defined answer, and the pair must see every message.
func TestHostileClient(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := startFrontend(t, func(c *frontend.Config) {
		c.AuthKey = nil
		c.AuthPublicKey = &priv.PublicKey
		c.AuthPrivateKey = priv
	})
	h := startHealthy(t, f.url, "healthy")

	// fresh returns a handshaken connection.
	fresh := func(t *testing.T) *scClient {
		c := dialSC(t, f.url)
		c.handshake("")
		return c
	}

	t.Run("oversized frame closes 1009", func(t *testing.T) {
		c := fresh(t)
		before := f.closesTotal(t, "message_too_big")
		big := `{"event":"x","data":"` + strings.Repeat("a", testMaxPayload) + `"}`
		_ = c.write(websocket.MessageText, []byte(big)) // the server may cut us off mid-write
		c.expectClose(protocol.CloseMessageTooBig)
		waitFor(t, waitTimeout, "the close counted", func() bool { return f.closesTotal(t, "message_too_big") == before+1 })
		// Exactly at the limit is still accepted.
		c = fresh(t)
		pad := testMaxPayload - len(`{"event":"x","data":"","cid":5}`)
		c.send(`{"event":"x","data":"` + strings.Repeat("a", pad) + `","cid":5}`)
		if e := c.replyError(5); e["name"] != "NoMatchingProcedureError" {
			t.Fatalf("payload at the limit: %v", e)
		}
		h.progress()
	})

	t.Run("invalid UTF-8 closes 1007", func(t *testing.T) {
		// RFC 6455 §8.1: a text frame that is not UTF-8 fails the
		// connection with 1007, which is what SocketCluster's ws does.
		// Passing it on would put invalid UTF-8 in other clients' text
		// frames, and browsers drop a connection that receives that.
		for i, frame := range []string{
			"{\"event\":\"\xff\xfe\",\"cid\":2}",
			"{\"event\":\"#publish\",\"data\":{\"channel\":\"healthy\",\"data\":\"\xc3\x28\"}}",
			"{\"event\":\"#subscribe\",\"data\":{\"channel\":\"\xed\xa0\x80\"},\"cid\":3}", // an encoded surrogate
			"not json \x80",
		} {
			c := fresh(t)
			c.send(frame)
			if code := c.closeCode(); code != protocol.CloseInvalidPayload {
				t.Fatalf("frame %d: closed with %d (%v), want %d", i, code, c.readErr(), protocol.CloseInvalidPayload)
			}
		}
		// Before the handshake too.
		c := dialSC(t, f.url)
		c.send("\xff")
		c.expectClose(protocol.CloseInvalidPayload)
		// Escaped lone surrogates are valid UTF-8 text and pass through
		// as JSON (JSON.parse accepts them).
		c = fresh(t)
		c.send(`{"event":"\ud800","cid":4}`)
		if e := c.replyError(4); e["name"] != "NoMatchingProcedureError" {
			t.Fatalf("escaped surrogate: %v", e)
		}
		h.progress()
	})

	t.Run("deep nesting is ignored", func(t *testing.T) {
		c := fresh(t)
		for _, frame := range []string{
			strings.Repeat("[", testMaxPayload-1),
			strings.Repeat(`{"a":`, (testMaxPayload-1)/5),
			strings.Repeat("[", 30000) + strings.Repeat("]", 30000),
			strings.Repeat(`{"a":`, 6000) + "1" + strings.Repeat("}", 6000),
		} {
			c.send(frame)
		}
		keepsWorking(t, c, 7)
		// Nesting inside an invoke's data up to encoding/json's depth
		// limit (10000) is answered.
		c.send(`{"event":"deep","data":` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + `,"cid":8}`)
		if e := c.replyError(8); e["name"] != "NoMatchingProcedureError" {
			t.Fatalf("deep data: %v", e)
		}
		// Deeper, the whole message does not parse: like any unparseable
		// text after the handshake it is a raw message and ignored, so
		// that invoke gets no reply (the client's ackTimeout answers it)
		// and the next one is answered first.
		c.send(`{"event":"deeper","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `,"cid":9}`)
		c.send(`{"event":"after","cid":10}`)
		if p := c.next(waitTimeout); !strings.HasPrefix(p, `{"rid":10,"error":{`) {
			t.Fatalf("after a too-deep invoke got %.100s, want the reply to the next one", p)
		}
		h.progress()
	})

	t.Run("bad channel names get InvalidActionError", func(t *testing.T) {
		c := fresh(t)
		long := strings.Repeat("c", testMaxChannelLength+1)
		ok := strings.Repeat("c", testMaxChannelLength)
		cases := []struct {
			frame, msg string
		}{
			{`{"event":"#subscribe","data":{"channel":"` + long + `"},"cid":%d}`, "Subscribe channel name was malformatted"},
			{`{"event":"#subscribe","data":{"channel":""},"cid":%d}`, "Subscribe channel name was malformatted"},
			{`{"event":"#subscribe","data":{"channel":5},"cid":%d}`, "Subscribe channel name was malformatted"},
			{`{"event":"#subscribe","data":{},"cid":%d}`, "Subscribe channel name was malformatted"},
			{`{"event":"#subscribe","cid":%d}`, "Subscribe channel name was malformatted"},
			{`{"event":"#publish","data":{"channel":"` + long + `","data":1},"cid":%d}`, "Publish channel name was malformatted"},
			{`{"event":"#publish","data":{"channel":"","data":1},"cid":%d}`, "Publish channel name was malformatted"},
			{`{"event":"#publish","data":"healthy","cid":%d}`, "Publish channel name was malformatted"},
			{`{"event":"#unsubscribe","data":{"channel":"x"},"cid":%d}`, "Unsubscribe channel name was malformatted"},
		}
		for i, tc := range cases {
			cid := 100 + i
			c.sendf(tc.frame, cid)
			e := c.replyError(cid)
			if e["name"] != "InvalidActionError" || e["message"] != tc.msg {
				t.Errorf("case %d: %v, want InvalidActionError %q", i, e, tc.msg)
			}
		}
		// A publish to a huge name must not reach the healthy channel's
		// subscribers under a truncated name: the pair's check covers it.
		c.subscribe(ok, 200)
		c.sendf(`{"event":"#publish","data":{"channel":%q,"data":"fits"},"cid":201}`, ok)
		c.expectOK(201)
		h.progress()
	})

	t.Run("subscribe flood hits the channel limit", func(t *testing.T) {
		c := fresh(t)
		var b strings.Builder
		b.WriteString("[")
		const n = testChannelLimit + 15
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"flood-%d"},"cid":%d}`, i, 1000+i)
		}
		b.WriteString("]")
		c.send(b.String())
		for i := range n {
			r := c.reply(1000 + i)
			e, failed := r["error"].(map[string]any)
			if i < testChannelLimit {
				if failed {
					t.Fatalf("subscribe %d under the limit failed: %v", i, e)
				}
				continue
			}
			want := fmt.Sprintf("tried to exceed the channel subscription limit of %d", testChannelLimit)
			if !failed || e["name"] != "BrokerError" || !strings.Contains(fmt.Sprint(e["message"]), want) {
				t.Fatalf("subscribe %d over the limit: %v", i, r)
			}
		}
		keepsWorking(t, c, 9)
		h.progress()
	})

	t.Run("publish flood closes 4011", func(t *testing.T) {
		c := fresh(t)
		before := f.closesTotal(t, "rate_limited")
		// One frame of more packets than the burst, then single ones.
		var b strings.Builder
		b.WriteString("[")
		for i := range testInboundBurst + 50 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#publish","data":{"channel":"flood","data":%d}}`, i)
		}
		b.WriteString("]")
		_ = c.write(websocket.MessageText, []byte(b.String()))
		c.expectClose(protocol.CloseRateLimited)
		// Many small frames.
		c = fresh(t)
		for i := range 5 * testInboundBurst {
			if c.write(websocket.MessageText, fmt.Appendf(nil, `{"event":"#publish","data":{"channel":"flood","data":%d}}`, i)) != nil {
				break
			}
		}
		c.expectClose(protocol.CloseRateLimited)
		// Pongs count too: an empty-frame flood is a flood.
		c = fresh(t)
		for range 5 * testInboundBurst {
			if c.write(websocket.MessageText, nil) != nil {
				break
			}
		}
		c.expectClose(protocol.CloseRateLimited)
		waitFor(t, waitTimeout, "the closes counted", func() bool { return f.closesTotal(t, "rate_limited") == before+3 })
		h.progress()
	})

	t.Run("binary frame closes 1003", func(t *testing.T) {
		c := fresh(t)
		if err := c.write(websocket.MessageBinary, []byte(`{"event":"#publish","data":{"channel":"healthy","data":0}}`)); err != nil {
			t.Fatal(err)
		}
		c.expectClose(protocol.CloseUnsupportedData)
		// Before the handshake too.
		c = dialSC(t, f.url)
		_ = c.write(websocket.MessageBinary, []byte{0x81, 0xa1, 0x65})
		c.expectClose(protocol.CloseUnsupportedData)
		h.progress()
	})

	t.Run("handshake rules", func(t *testing.T) {
		before := f.closesTotal(t, "handshake_timeout")
		// Never handshaking: 4005 after HandshakeTimeout.
		idle := make([]*scClient, 5)
		for i := range idle {
			idle[i] = dialSC(t, f.url)
		}
		for _, c := range idle {
			c.expectClose(protocol.CloseHandshakeTimeout)
		}
		waitFor(t, waitTimeout, "the closes counted", func() bool { return f.closesTotal(t, "handshake_timeout") >= before+5 })

		// #handshake without a numeric cid: 4008.
		for _, frame := range []string{
			`{"event":"#handshake","data":{"authToken":null}}`,
			`{"event":"#handshake","data":{},"cid":"1"}`,
			`{"event":"#handshake","data":{},"cid":null}`,
		} {
			c := dialSC(t, f.url)
			c.send(frame)
			c.expectClose(protocol.CloseHandshakeRejected)
		}
		// #authenticate without cid after the handshake: 4008 as well.
		c := fresh(t)
		c.send(`{"event":"#authenticate","data":"a.b.c"}`)
		c.expectClose(protocol.CloseHandshakeRejected)

		// Anything else first: 4009.
		for _, frame := range []string{
			`{"event":"#subscribe","data":{"channel":"healthy"},"cid":1}`,
			`{"event":"#publish","data":{"channel":"healthy","data":"sneaky"}}`,
			`{"event":"custom","data":1}`,
			`{"rid":1,"data":{}}`,
			`[{"event":"#publish","data":{"channel":"healthy","data":"sneaky"}},{"event":"#handshake","data":{},"cid":1}]`,
			`not json`,
			`{"no":"event"}`,
		} {
			c := dialSC(t, f.url)
			c.send(frame)
			c.expectClose(protocol.CloseMessageBeforeHandshake)
		}
		// A pong before the handshake is not a reason to close (the real
		// client answers pings as soon as the socket opens).
		c = dialSC(t, f.url)
		c.send("")
		c.handshake("")
		keepsWorking(t, c, 5)
		h.progress()
	})

	t.Run("bad tokens", func(t *testing.T) {
		now := time.Now()
		claims := func(exp time.Time) jwt.MapClaims {
			return jwt.MapClaims{"username": "mallory", "iat": now.Unix(), "exp": exp.Unix()}
		}
		sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(m, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		b64 := base64.RawURLEncoding.EncodeToString
		later := now.Add(time.Hour)
		payload := b64(mustJSON(t, claims(later)))
		cases := []struct {
			name, token, errName, msg string
		}{
			{"forged signature", sign(jwt.SigningMethodRS256, other, claims(later)), "AuthTokenInvalidError", "invalid signature"},
			{"expired", sign(jwt.SigningMethodRS256, priv, claims(now.Add(-time.Hour))), "AuthTokenExpiredError", "jwt expired"},
			{"alg none", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + ".", "AuthTokenInvalidError", "invalid algorithm"},
			{"alg none, no dot", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload, "AuthTokenInvalidError", "jwt malformed"},
			{"HS256 with the public key PEM", sign(jwt.SigningMethodHS256, pubPEM, claims(later)), "AuthTokenInvalidError", "invalid algorithm"},
			{"HS256 with the public key DER", sign(jwt.SigningMethodHS256, pubDER, claims(later)), "AuthTokenInvalidError", "invalid algorithm"},
			{"tampered payload", tamper(t, sign(jwt.SigningMethodRS256, priv, claims(later))), "AuthTokenInvalidError", "invalid signature"},
			{"garbage", "garbage.token.value", "AuthTokenInvalidError", "invalid token"},
		}
		for _, tc := range cases {
			// At the handshake: authError with isBadToken, then
			// #removeAuthToken.
			c := dialSC(t, f.url)
			d := c.handshake(tc.token)
			ae, _ := d["authError"].(map[string]any)
			if d["isAuthenticated"] != false || ae["name"] != tc.errName || ae["message"] != tc.msg || ae["isBadToken"] != true {
				t.Errorf("%s: handshake reply %v, want %s %q", tc.name, d, tc.errName, tc.msg)
			}
			if p := c.next(waitTimeout); p != `{"event":"#removeAuthToken"}` {
				t.Errorf("%s: after the handshake got %s, want #removeAuthToken", tc.name, p)
			}
			// With #authenticate: an error reply, then #removeAuthToken.
			c.sendf(`{"event":"#authenticate","data":%q,"cid":2}`, tc.token)
			e := c.replyError(2)
			if e["name"] != tc.errName || e["isBadToken"] != true {
				t.Errorf("%s: #authenticate reply %v", tc.name, e)
			}
			if p := c.next(waitTimeout); p != `{"event":"#removeAuthToken"}` {
				t.Errorf("%s: after #authenticate got %s, want #removeAuthToken", tc.name, p)
			}
			// Still unauthenticated: a waitForAuth subscribe is refused.
			c.send(`{"event":"#subscribe","data":{"channel":"private","waitForAuth":true},"cid":3}`)
			if e := c.replyError(3); e["name"] != "AuthError" {
				t.Errorf("%s: waitForAuth subscribe: %v", tc.name, e)
			}
		}
		// The control: a token signed with the right key authenticates.
		c := dialSC(t, f.url)
		if d := c.handshake(sign(jwt.SigningMethodRS256, priv, claims(later))); d["isAuthenticated"] != true {
			t.Fatalf("valid token: %v", d)
		}
		if got := metric(t, f.srv.Registry(), "scc_frontend_auth_failures_total", "reason", "AuthTokenInvalidError"); got < 2*7 {
			t.Errorf("auth failures counted: %v", got)
		}
		h.progress()
	})

	t.Run("odd but well-formed packets", func(t *testing.T) {
		c := fresh(t)
		for _, frame := range []string{
			`{"event":{"x":1},"cid":1}`,
			`{"rid":"x","data":1}`,
			`{"rid":999999,"data":1}`,
			`{"event":"#handshake","cid":1e400}`,
			`[]`, `{}`, `null`, `[null,1,"s",[]]`,
			`{"event":"#unsubscribe","data":"never-subscribed"}`,
			`{"event":"#removeAuthToken"}`,
			`{"event":"#publish","data":{"channel":"elsewhere"}}`, // no data: a publish without data
		} {
			c.send(frame)
		}
		keepsWorking(t, c, 11)
	})

	h.check()
	if n := f.srv.Stats().Connections; n > 3 {
		// The pair and the last control connection; every attacker is gone.
		waitFor(t, waitTimeout, "attackers' sockets freed", func() bool { return f.srv.Stats().Connections <= 3 })
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper changes the payload of a signed token, keeping its signature.
func tamper(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	p = []byte(strings.Replace(string(p), "mallory", "admin12", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

// TestHandshakeFlood opens connections faster than MaxHandshakesPerSecond
// with accept pacing off: the excess gets HTTP 503 and is counted;
// connections already open are untouched. (With pacing, the excess waits in
// the listen queue instead: frontend's TestAcceptPacing.)
func TestHandshakeFlood(t *testing.T) {
	const burst = 6
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxHandshakesPerSecond = 1
		c.HandshakeBurst = burst
		c.HandshakeQueue = 0
	})
	h := startHealthy(t, f.url, "healthy") // takes two of the burst
	refused := 0
	for range 30 {
		c, err := tryDialSC(t, f.url)
		if err != nil {
			var status int
			if _, err2 := fmt.Sscanf(statusOf(err), "%d", &status); err2 != nil || status != http.StatusServiceUnavailable {
				t.Fatalf("refused upgrade: %v, want HTTP 503", err)
			}
			refused++
			continue
		}
		c.ws.CloseNow()
	}
	// The bucket held burst-2 tokens and refills at 1/s; the loop is over
	// long before many refills.
	if refused < 30-(burst-2)-5 {
		t.Fatalf("only %d of 30 upgrades refused", refused)
	}
	if got := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "handshake_rate"); int(got) != refused {
		t.Fatalf("counted %v handshake_rate rejections, refused %d", got, refused)
	}
	h.progress()
	h.check()
}

// TestHandshakeFloodPaced floods a frontend that paces its accepts (the
// default once a handshake rate is set): the excess is neither refused nor
// served early, it waits in the listen queue and is admitted at the rate;
// the healthy pair keeps receiving throughout.
func TestHandshakeFloodPaced(t *testing.T) {
	const (
		rate  = 20
		burst = 6
		flood = 60
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxHandshakesPerSecond = rate
		c.HandshakeBurst = burst
	})
	h := startHealthy(t, f.url, "healthy")
	start := time.Now()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, flood)
	for range flood {
		wg.Go(func() {
			c, err := tryDialSC(t, f.url)
			if err != nil {
				errs <- err
				return
			}
			admitted.Add(1)
			c.ws.CloseNow()
		})
	}
	// While the flood waits, the healthy pair still gets its messages.
	h.progress()
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		// A dial that outwaits its own 5s timeout in the queue is the
		// client giving up; nothing is refused by the server.
		if strings.Contains(statusOf(err), "503") {
			t.Fatalf("a paced upgrade was refused: %v", err)
		}
	}
	if admitted.Load() < flood/2 {
		t.Fatalf("only %d of %d waiting upgrades admitted", admitted.Load(), flood)
	}
	if most := int64(burst + 1 + rate*elapsed.Seconds()); admitted.Load() > most {
		t.Fatalf("%d upgrades admitted in %v, more than the rate allows (%d)", admitted.Load(), elapsed, most)
	}
	if got := metric(t, f.srv.Registry(), "scc_frontend_accepts_paced_total"); got == 0 {
		t.Fatal("no accept counted as paced")
	}
	if got := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "handshake_rate"); got != 0 {
		t.Fatalf("%v handshake_rate refusals with pacing on", got)
	}
	h.progress()
	h.check()
}

// statusOf extracts the HTTP status coder/websocket reports for a failed
// upgrade ("expected handshake response status code 101 but got 503").
func statusOf(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "but got "); i >= 0 {
		return s[i+len("but got "):]
	}
	return s
}
