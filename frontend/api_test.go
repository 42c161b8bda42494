package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

const testAPIKey = "api-secret"

func apiConfig() Config {
	c := testConfig()
	c.API.Key = testAPIKey
	c.ServeAdmin = true // no admin port here: the API shares the client port
	return c
}

// apiCall posts body to /api/method with key ("" sends none) and returns
// the status and decoded body.
func apiCall(t testing.TB, addr, key, method, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "apikey "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: response %q is not JSON: %v", method, b, err)
	}
	return resp.StatusCode, out
}

func apiOK(t testing.TB, addr, method, body string) map[string]any {
	t.Helper()
	st, out := apiCall(t, addr, testAPIKey, method, body)
	if st != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d %v", method, body, st, out)
	}
	res, _ := out["result"].(map[string]any)
	return res
}

func TestAPIPublishStandalone(t *testing.T) {
	cfg := apiConfig()
	cfg.AllowClientPublish = false // the API bypasses client publish permissions
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.subscribe("news", 2)
	addr := srv.Addr().String()

	apiOK(t, addr, "publish", `{"channel":"news","data":{"n":1}}`)
	c.expect(`{"event":"#publish","data":{"channel":"news","data":{"n":1}}}`)

	res := apiOK(t, addr, "broadcast", `{"channels":["other","news"],"data":"b"}`)
	if rs, _ := res["responses"].([]any); len(rs) != 2 {
		t.Fatalf("broadcast responses = %v", res)
	}
	c.expect(`{"event":"#publish","data":{"channel":"news","data":"b"}}`)

	// A retry with the same idempotency key is accepted and not delivered.
	for i := 0; i < 3; i++ {
		apiOK(t, addr, "publish", `{"channel":"news","data":"once","idempotency_key":"k1"}`)
	}
	// Same key on another channel is another publish.
	apiOK(t, addr, "publish", `{"channel":"other","data":"x","idempotency_key":"k1"}`)
	// The longest key allowed is accepted.
	apiOK(t, addr, "publish", `{"channel":"other","data":"x","idempotency_key":"`+strings.Repeat("k", MaxIdempotencyKeyBytes)+`"}`)
	apiOK(t, addr, "publish", `{"channel":"news","data":"marker"}`)
	c.expect(`{"event":"#publish","data":{"channel":"news","data":"once"}}`)
	c.expect(`{"event":"#publish","data":{"channel":"news","data":"marker"}}`)
}

func TestAPIRefusals(t *testing.T) {
	cfg := apiConfig()
	cfg.API.MaxBodyBytes = 1024
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	reg := srv.Registry()
	cases := []struct {
		name, key, method, body string
		status                  int
		reason                  string
	}{
		{"no key", "", "publish", `{"channel":"a","data":1}`, 401, apiRefuseNoKey},
		{"wrong key", "api-secreT", "publish", `{"channel":"a","data":1}`, 403, apiRefuseBadKey},
		{"longer key", testAPIKey + "x", "publish", `{"channel":"a","data":1}`, 403, apiRefuseBadKey},
		{"unknown method", testAPIKey, "nope", `{}`, 404, apiRefuseUnknown},
		{"malformed", testAPIKey, "publish", `{"channel":`, 400, apiRefuseMalformed},
		{"not an object", testAPIKey, "publish", `[1,2]`, 400, apiRefuseMalformed},
		{"trailing", testAPIKey, "publish", `{"channel":"a","data":1} {}`, 400, apiRefuseMalformed},
		{"trailing brace", testAPIKey, "publish", `{"channel":"a","data":1}}`, 400, apiRefuseMalformed},
		{"invalid UTF-8", testAPIKey, "publish", "{\"channel\":\"a\",\"data\":\"\xff\"}", 400, apiRefuseMalformed},
		{"unknown field", testAPIKey, "publish", `{"chanel":"a","data":1}`, 400, apiRefuseMalformed},
		{"huge", testAPIKey, "publish", `{"channel":"a","data":"` + strings.Repeat("x", 4096) + `"}`, 413, apiRefuseTooLarge},
		{"reserved channel", testAPIKey, "publish", `{"channel":"#scc:nodes","data":1}`, 400, apiRefuseInvalid},
		{"no data", testAPIKey, "publish", `{"channel":"a"}`, 400, apiRefuseInvalid},
		{"long idempotency key", testAPIKey, "publish", `{"channel":"a","data":1,"idempotency_key":"` + strings.Repeat("k", MaxIdempotencyKeyBytes+1) + `"}`, 400, apiRefuseInvalid},
		{"long broadcast idempotency key", testAPIKey, "broadcast", `{"channels":["a"],"data":1,"idempotency_key":"` + strings.Repeat("k", MaxIdempotencyKeyBytes+1) + `"}`, 400, apiRefuseInvalid},
		{"bad code", testAPIKey, "disconnect", `{"user":"1","code":1006}`, 400, apiRefuseInvalid},
		{"user and client", testAPIKey, "disconnect", `{"user":"1","client":"x"}`, 400, apiRefuseInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(t, reg, "scc_frontend_api_refusals_total", "reason", tc.reason)
			st, out := apiCall(t, addr, tc.key, tc.method, tc.body)
			if st != tc.status {
				t.Fatalf("HTTP %d %v, want %d", st, out, tc.status)
			}
			if e, _ := out["error"].(map[string]any); e == nil || e["message"] == "" {
				t.Fatalf("no error object: %v", out)
			}
			if got := counter(t, reg, "scc_frontend_api_refusals_total", "reason", tc.reason); got != before+1 {
				t.Fatalf("refusals{reason=%s} = %v, want %v", tc.reason, got, before+1)
			}
		})
	}
	resp, err := http.Get("http://" + addr + "/api/publish")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d", resp.StatusCode)
	}
}

func TestAPIOffWithoutKey(t *testing.T) {
	srv := startServer(t, testConfig())
	resp, err := http.Post("http://"+srv.Addr().String()+"/api/publish", "application/json", bytes.NewBufferString(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("HTTP %d, want 400 (no API)", resp.StatusCode)
	}
}

func TestAPIDisconnectAndUnsubscribeStandalone(t *testing.T) {
	srv := startServer(t, apiConfig())
	addr := srv.Addr().String()
	tok42 := hsToken(t, testKey, jwt.MapClaims{"sub": "42"})
	a := dial(t, srv)
	a.handshake(tok42)
	a.subscribe("room", 2)
	b := dial(t, srv)
	b.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "43"}))
	b.subscribe("room", 2)

	apiOK(t, addr, "unsubscribe", `{"user":"42","channel":"room"}`)
	a.expectJSON(`{"event":"#kickOut","data":{"channel":"room"}}`)
	apiOK(t, addr, "publish", `{"channel":"room","data":1}`)
	b.expect(`{"event":"#publish","data":{"channel":"room","data":1}}`)

	res := apiOK(t, addr, "channels", `{"pattern":"ro*"}`)
	chs, _ := res["channels"].(map[string]any)
	if fmt.Sprint(chs) != "map[room:map[num_clients:1]]" || res["partial"] != false {
		t.Fatalf("channels = %v", res)
	}
	info := apiOK(t, addr, "info", `{}`)
	if nodes, _ := info["nodes"].([]any); len(nodes) != 1 {
		t.Fatalf("info = %v", info)
	}

	apiOK(t, addr, "disconnect", `{"user":"42","code":4321,"reason":"bye"}`)
	a.expectClose(4321)

	c := dial(t, srv)
	resp := c.handshake("")
	apiOK(t, addr, "disconnect", fmt.Sprintf(`{"client":%q,"code":4400}`, resp["id"]))
	c.expectClose(4400)
	// b is untouched.
	apiOK(t, addr, "publish", `{"channel":"room","data":2}`)
	b.expect(`{"event":"#publish","data":{"channel":"room","data":2}}`)
}

func TestClientCannotUseReservedChannels(t *testing.T) {
	srv := startServer(t, apiConfig())
	c := dial(t, srv)
	c.handshake("")
	c.sendf(`{"event":"#subscribe","data":{"channel":"#scc:user:42"},"cid":2}`)
	if p := c.packet(); !strings.Contains(p, `"rid":2`) || !strings.Contains(p, "SubscribeBlockedError") {
		t.Fatalf("subscribe reserved: %s", p)
	}
	c.sendf(`{"event":"#publish","data":{"channel":"#scc:nodes","data":{"op":"query"}},"cid":3}`)
	if p := c.packet(); !strings.Contains(p, `"rid":3`) || !strings.Contains(p, "PublishBlockedError") {
		t.Fatalf("publish reserved: %s", p)
	}
}

// TestAPIOnAdminPortOnly: with a separate admin port (ServeAdmin false)
// the client port does not serve the API; the admin handler does.
func TestAPIOnAdminPortOnly(t *testing.T) {
	cfg := apiConfig()
	cfg.ServeAdmin = false
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h    http.Handler
		want int
	}{{srv.Handler(), http.StatusBadRequest}, {srv.AdminHandler(), http.StatusUnauthorized}} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(`{}`)))
		if rec.Code != tc.want {
			t.Errorf("HTTP %d, want %d", rec.Code, tc.want)
		}
	}
	srv.Shutdown(context.Background())
}

func TestAPIConfigValidate(t *testing.T) {
	for _, f := range []func(*APIConfig){
		func(c *APIConfig) { c.MaxBodyBytes = 10 },
		func(c *APIConfig) { c.MaxBroadcastChannels = 0 },
		func(c *APIConfig) { c.IdempotencyTTL = -1 },
		func(c *APIConfig) { c.QueryTimeout = 0 },
	} {
		c := testConfig()
		f(&c.API)
		if c.Validate() == nil {
			t.Errorf("accepted %+v", c.API)
		}
	}
}

// BenchmarkAPIPublish: server API publishes from one backend HTTP/1.1
// connection kept alive, one request at a time, to a channel with one
// subscriber.
func BenchmarkAPIPublish(b *testing.B) {
	srv := startServer(b, apiConfig())
	c := dial(b, srv)
	c.handshake("")
	c.subscribe("bench", 2)
	benchAPIPublish(b, srv.Addr().String())
}

func benchAPIPublish(b *testing.B, addr string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	url := "http://" + addr + "/api/publish"
	body := []byte(`{"channel":"bench","data":{"text":"hello world"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "apikey "+testAPIKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

// TestAPIDocsListEveryMethod keeps docs/api.md and the OpenAPI description
// in step with the methods served.
func TestAPIDocsListEveryMethod(t *testing.T) {
	spec, err := os.ReadFile("../docs/api.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	for m := range apiMethods {
		if !bytes.Contains(spec, []byte("/api/"+m+":")) {
			t.Errorf("api.openapi.yaml does not describe %s", m)
		}
		if !bytes.Contains(doc, []byte("### "+m+"\n")) {
			t.Errorf("api.md does not describe %s", m)
		}
	}
}
