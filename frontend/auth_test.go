package frontend

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/protocol"
)

func hsToken(t testing.TB, key string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// probe sends an unknown invoke and returns the next packet, which must be
// its reply when nothing else was sent meanwhile.
func probe(t *testing.T, c *rawClient, cid int) {
	t.Helper()
	c.sendf(`{"event":"probe","cid":%d}`, cid)
	if p := c.packet(); !strings.HasPrefix(p, fmt.Sprintf(`{"rid":%d,"error"`, cid)) {
		t.Fatalf("expected only the probe reply, got %s", p)
	}
}

func TestHandshakeTokens(t *testing.T) {
	srv := startServer(t, testConfig())
	now := time.Now().Unix()

	t.Run("valid", func(t *testing.T) {
		c := dial(t, srv)
		c.t = t
		hs := c.handshake(hsToken(t, testKey, jwt.MapClaims{"username": "alice", "iat": now, "exp": now + 3600}))
		if hs["isAuthenticated"] != true || hs["authError"] != nil {
			t.Fatalf("handshake %v", hs)
		}
		// No #setAuthToken follows a token handshake.
		probe(t, c, 5)
		c.send(`{"event":"#subscribe","data":{"channel":"private","waitForAuth":true},"cid":6}`)
		c.expect(`{"rid":6}`)
	})
	t.Run("expired", func(t *testing.T) {
		c := dial(t, srv)
		c.t = t
		exp := now - 10
		hs := c.handshake(hsToken(t, testKey, jwt.MapClaims{"username": "alice", "exp": exp}))
		want := fmt.Sprintf(`{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":%q,"isBadToken":true}`, isoTime(exp))
		if b, _ := json.Marshal(hs["authError"]); hs["isAuthenticated"] != false || !jsonEqual(string(b), want) {
			t.Fatalf("handshake %v", hs)
		}
		c.expect(`{"event":"#removeAuthToken"}`)
	})
	for _, tc := range []struct{ name, token, msg string }{
		{"wrong key", hsToken(t, "other-key", jwt.MapClaims{"u": 1}), "invalid signature"},
		{"alg none", noneToken(t), "invalid algorithm"},
		{"garbage", "garbage.token.value", "invalid token"},
		{"malformed", "abc", "jwt malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv)
			c.t = t
			hs := c.handshake(tc.token)
			want := fmt.Sprintf(`{"message":%q,"name":"AuthTokenInvalidError","isBadToken":true}`, tc.msg)
			if b, _ := json.Marshal(hs["authError"]); hs["isAuthenticated"] != false || !jsonEqual(string(b), want) {
				t.Fatalf("handshake %v, want authError %s", hs, want)
			}
			c.expect(`{"event":"#removeAuthToken"}`)
		})
	}
	if counter(t, srv.Registry(), "scc_frontend_auth_failures_total", "reason", "AuthTokenInvalidError") < 4 {
		t.Fatal("auth failures not counted")
	}
}

func noneToken(t testing.TB) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"username": "mallory"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestAuthenticateFrames(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	c.handshake("")
	now := time.Now().Unix()
	c.sendf(`{"event":"#authenticate","data":%q,"cid":16}`, hsToken(t, testKey, jwt.MapClaims{"username": "bob", "exp": now + 60}))
	c.expect(`{"rid":16,"data":{"isAuthenticated":true,"authError":null}}`)
	c.send(`{"event":"#subscribe","data":{"channel":"p","waitForAuth":true},"cid":17}`)
	c.expect(`{"rid":17}`)

	c.send(`{"event":"#authenticate","data":"garbage.token.value","cid":18}`)
	c.expect(`{"rid":18,"error":{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}}`)
	c.expect(`{"event":"#removeAuthToken"}`)

	// Not yet valid: a soft failure, as data, with no #removeAuthToken.
	nbf := now + 3600
	c.sendf(`{"event":"#authenticate","data":%q,"cid":19}`, hsToken(t, testKey, jwt.MapClaims{"nbf": nbf}))
	c.expectJSON(fmt.Sprintf(`{"rid":19,"data":{"isAuthenticated":false,"authError":{"message":"jwt not active","name":"AuthTokenNotBeforeError","date":%q}}}`, isoTime(nbf)))
	probe(t, c, 20)

	// The client's #removeAuthToken deauthenticates silently.
	c.sendf(`{"event":"#authenticate","data":%q,"cid":21}`, hsToken(t, testKey, jwt.MapClaims{"username": "bob"}))
	c.expect(`{"rid":21,"data":{"isAuthenticated":true,"authError":null}}`)
	c.send(`{"event":"#removeAuthToken"}`)
	probe(t, c, 22)
	c.send(`{"event":"#subscribe","data":{"channel":"q","waitForAuth":true},"cid":23}`)
	if p := c.packet(); !strings.Contains(p, `"name":"AuthError"`) {
		t.Fatalf("subscribe after deauth: %s", p)
	}
}

func TestServerSetsAndRemovesToken(t *testing.T) {
	srv := startServer(t, testConfig())
	var sock *Socket
	var mu sync.Mutex
	srv.HandleRPC("login", func(_ context.Context, s *Socket, data json.RawMessage) (any, error) {
		var u struct{ Username string }
		json.Unmarshal(data, &u)
		mu.Lock()
		sock = s
		mu.Unlock()
		return nil, s.SetAuthToken(map[string]any{"username": u.Username})
	})
	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"login","data":{"username":"alice"},"cid":2}`)
	var tok string
	for i := 0; i < 2; i++ {
		p := c.packet()
		if p == `{"rid":2}` {
			continue
		}
		var ev struct {
			Event string
			Data  struct{ Token string }
		}
		if json.Unmarshal([]byte(p), &ev); ev.Event != "#setAuthToken" {
			t.Fatalf("got %s", p)
		}
		tok = ev.Data.Token
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(testKey), nil }); err != nil {
		t.Fatalf("issued token: %v", err)
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if claims["username"] != "alice" || exp-iat != 86400 {
		t.Fatalf("claims %v", claims)
	}
	mu.Lock()
	s := sock
	mu.Unlock()
	if !s.IsAuthenticated() || s.AuthToken()["username"] != "alice" {
		t.Fatal("socket not authenticated")
	}
	s.Deauthenticate()
	c.expect(`{"event":"#removeAuthToken"}`)
	if s.IsAuthenticated() {
		t.Fatal("still authenticated")
	}
}

func TestTokenExpiresWhileConnected(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 50 * time.Millisecond
	cfg.PingTimeout = time.Second
	conns := make(chan *Socket, 1)
	cfg.OnConnect = func(s *Socket) { conns <- s }
	srv := startServer(t, cfg)
	c := dial(t, srv)
	hs := c.handshake(hsToken(t, testKey, jwt.MapClaims{"username": "eve", "exp": time.Now().Unix() + 1}))
	if hs["isAuthenticated"] != true {
		t.Fatalf("handshake %v", hs)
	}
	s := <-conns
	// Only pongs flow from here; the check on pong catches the expiry.
	c.expect(`{"event":"#removeAuthToken"}`)
	if s.IsAuthenticated() {
		t.Fatal("still authenticated after expiry")
	}
}

func TestRSAKeysAndAlgorithmConfusion(t *testing.T) {
	key := testRSAKey(t)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	cfg := testConfig()
	cfg.AuthKey = nil
	cfg.AuthPublicKey = &key.PublicKey
	cfg.AuthPrivateKey = key
	srv := startServer(t, cfg)

	good, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"username": "rsa"}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv)
	if hs := c.handshake(good); hs["isAuthenticated"] != true {
		t.Fatalf("RS256 handshake %v", hs)
	}

	// HS256 signed with the public key's PEM as the HMAC secret: the
	// classic confusion attack.
	forged := hsToken(t, string(pubPEM), jwt.MapClaims{"username": "mallory"})
	c2 := dial(t, srv)
	hs := c2.handshake(forged)
	if hs["isAuthenticated"] != false {
		t.Fatalf("forged token accepted: %v", hs)
	}
	if ae, _ := hs["authError"].(map[string]any); ae["message"] != "invalid algorithm" {
		t.Fatalf("authError %v", hs["authError"])
	}
	c2.expect(`{"event":"#removeAuthToken"}`)

	// The server signs with RS256.
	a := mustAuth(t, cfg)
	info, err := a.sign(map[string]any{"u": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, perr := a.verifyToken(info.signed); perr != nil {
		t.Fatalf("own token: %v", perr)
	}
	if !strings.HasPrefix(info.signed, "eyJhbGciOiJSUzI1NiI") {
		t.Fatalf("not RS256: %s", info.signed[:20])
	}

	// Public key only: verify works, signing fails.
	cfg.AuthPrivateKey = nil
	if _, err := mustAuth(t, cfg).sign(nil); err != ErrCannotSign {
		t.Fatalf("sign without private key: %v", err)
	}
}

func mustAuth(t *testing.T, cfg Config) *authenticator {
	t.Helper()
	a, err := newAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthAlgorithmConfig(t *testing.T) {
	key := testRSAKey(t)
	cfg := testConfig()
	cfg.AuthAlgorithm = "RS256"
	if err := cfg.Validate(); err == nil {
		t.Fatal("RS256 with an HMAC key accepted")
	}
	cfg.AuthAlgorithm = "HS512"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := mustAuth(t, cfg)
	info, _ := a.sign(map[string]any{"exp": float64(time.Now().Unix() + 5)})
	if _, perr := a.verifyToken(info.signed); perr != nil {
		t.Fatal(perr)
	}
	// Only HS512 is accepted now.
	if _, perr := a.verifyToken(hsToken(t, testKey, jwt.MapClaims{})); perr == nil || perr.Message != "invalid algorithm" {
		t.Fatalf("HS256 under HS512-only: %v", perr)
	}
	cfg.AuthAlgorithm = "none"
	if err := cfg.Validate(); err == nil {
		t.Fatal("alg none accepted in config")
	}
	cfg = testConfig()
	cfg.AuthPublicKey = &key.PublicKey
	cfg.AuthAlgorithm = "HS256"
	if err := cfg.Validate(); err == nil {
		t.Fatal("HS256 with an RSA key accepted")
	}
}

// TestAuthPolicy covers the token policy settings: each case is a token
// the defaults before them accepted.
func TestAuthPolicy(t *testing.T) {
	now := time.Now().Unix()
	critTok := func(t *testing.T) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "c", "exp": now + 60})
		tok.Header["crit"] = []string{"x-unknown"}
		tok.Header["x-unknown"] = true
		s, err := tok.SignedString([]byte(testKey))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reject := func(t *testing.T, a *authenticator, tok, name, msg string) {
		t.Helper()
		_, perr := a.verifyToken(tok)
		if perr == nil {
			t.Fatal("token accepted")
		}
		if perr.Name != name || perr.Message != msg {
			t.Fatalf("got %s %q, want %s %q", perr.Name, perr.Message, name, msg)
		}
	}
	accept := func(t *testing.T, a *authenticator, tok string) *tokenInfo {
		t.Helper()
		info, perr := a.verifyToken(tok)
		if perr != nil {
			t.Fatalf("rejected: %v", perr)
		}
		return info
	}

	t.Run("crit header", func(t *testing.T) {
		reject(t, mustAuth(t, testConfig()), critTok(t), protocol.ErrNameAuthTokenInvalid, "jwt crit header not supported")
	})
	t.Run("max bytes", func(t *testing.T) {
		a := mustAuth(t, testConfig())
		big := hsToken(t, testKey, jwt.MapClaims{"pad": strings.Repeat("a", 600<<10), "exp": now + 60})
		reject(t, a, big, protocol.ErrNameAuthTokenInvalid, "jwt too large")
		accept(t, a, hsToken(t, testKey, jwt.MapClaims{"pad": strings.Repeat("a", 4<<10), "exp": now + 60}))
	})
	t.Run("require exp", func(t *testing.T) {
		cfg := testConfig()
		cfg.AuthRequireExp = true
		a := mustAuth(t, cfg)
		reject(t, a, hsToken(t, testKey, jwt.MapClaims{"username": "forever"}), protocol.ErrNameAuthTokenInvalid, "jwt exp required")
		accept(t, a, hsToken(t, testKey, jwt.MapClaims{"username": "x", "exp": now + 60}))
	})
	t.Run("max age", func(t *testing.T) {
		cfg := testConfig()
		cfg.AuthMaxTokenAge = time.Hour
		a := mustAuth(t, cfg)
		old := now - 7200
		_, perr := a.verifyToken(hsToken(t, testKey, jwt.MapClaims{"iat": old, "exp": now + 86400}))
		if perr == nil || perr.Name != protocol.ErrNameAuthTokenExpired || perr.Message != "maxAge exceeded" {
			t.Fatalf("old token: %v", perr)
		}
		reject(t, a, hsToken(t, testKey, jwt.MapClaims{"exp": now + 60}), protocol.ErrNameAuthTokenInvalid, "jwt iat required")
		// A fresh token expires at the age limit even with a later exp.
		if info := accept(t, a, hsToken(t, testKey, jwt.MapClaims{"iat": now, "exp": now + 86400})); info.exp != now+3600 {
			t.Fatalf("exp %d, want %d", info.exp, now+3600)
		}
	})
	t.Run("audience and issuer", func(t *testing.T) {
		cfg := testConfig()
		cfg.AuthAudience, cfg.AuthIssuer = "chat", "https://auth.example"
		a := mustAuth(t, cfg)
		reject(t, a, hsToken(t, testKey, jwt.MapClaims{"iss": "https://auth.example"}), protocol.ErrNameAuthTokenInvalid, "jwt audience invalid. expected: chat")
		reject(t, a, hsToken(t, testKey, jwt.MapClaims{"aud": "other", "iss": "https://auth.example"}), protocol.ErrNameAuthTokenInvalid, "jwt audience invalid. expected: chat")
		reject(t, a, hsToken(t, testKey, jwt.MapClaims{"aud": "chat", "iss": "mallory"}), protocol.ErrNameAuthTokenInvalid, "jwt issuer invalid. expected: https://auth.example")
		accept(t, a, hsToken(t, testKey, jwt.MapClaims{"aud": []string{"x", "chat"}, "iss": "https://auth.example"}))
		// Tokens the server signs carry both, so they verify.
		info, err := a.sign(map[string]any{"username": "s"})
		if err != nil {
			t.Fatal(err)
		}
		accept(t, a, info.signed)
	})
	t.Run("min key length", func(t *testing.T) {
		cfg := testConfig()
		cfg.AuthKey = []byte("sixteen-byte-key")
		if err := cfg.Validate(); err == nil {
			t.Fatal("16-byte HMAC key accepted")
		}
		cfg.AuthMinKeyBytes = 0
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		cfg = testConfig()
		cfg.AuthKey = nil // a random key is generated, long enough
		if _, err := New(cfg); err != nil {
			t.Fatal(err)
		}
	})

	// Over the wire the rejections keep SocketCluster's shapes: authError
	// in the handshake reply, an error on #authenticate.
	cfg := testConfig()
	cfg.AuthRequireExp = true
	srv := startServer(t, cfg)
	c := dial(t, srv)
	hs := c.handshake(critTok(t))
	want := `{"message":"jwt crit header not supported","name":"AuthTokenInvalidError","isBadToken":true}`
	if b, _ := json.Marshal(hs["authError"]); hs["isAuthenticated"] != false || !jsonEqual(string(b), want) {
		t.Fatalf("handshake %v", hs)
	}
	c.expect(`{"event":"#removeAuthToken"}`)
	c.sendf(`{"event":"#authenticate","data":%q,"cid":2}`, hsToken(t, testKey, jwt.MapClaims{"username": "forever"}))
	c.expect(`{"rid":2,"error":{"message":"jwt exp required","name":"AuthTokenInvalidError","isBadToken":true}}`)
	c.expect(`{"event":"#removeAuthToken"}`)
	if counter(t, srv.Registry(), "scc_frontend_auth_failures_total", "reason", "AuthTokenInvalidError") < 2 {
		t.Fatal("policy rejections not counted")
	}
}
