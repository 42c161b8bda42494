package interop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// hooksChecks are the checks hooks-client.mjs must report, all passing.
var hooksChecks = []string{
	"hooks-connect-reject", "hooks-connect-claims", "hooks-connect-channels",
	"hooks-subscribe-hook", "hooks-publish-hook", "hooks-publish-order",
	"hooks-token-expiry", "hooks-token-refresh",
}

// hooksBackend is the application backend of hooks-client.mjs: it decides
// the connect hook by the session cookie, team:7 by the auth token's sub,
// team:invite by the subscribe data, and stamps or refuses publishes.
func hooksBackend(t *testing.T) *httptest.Server {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-SCC-Hook-Key") != "interop-hook-key" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var req struct {
			Channel   string            `json:"channel"`
			Headers   map[string]string `json:"headers"`
			AuthToken string            `json:"authToken"`
			Claims    map[string]any    `json:"claims"`
			Data      json.RawMessage   `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var answer any
		switch r.URL.Path {
		case "/connect":
			answer = connectAnswer(req.Headers["Cookie"], req.AuthToken, req.Claims)
		case "/subscribe":
			var d struct{ Invite string }
			json.Unmarshal(req.Data, &d)
			switch {
			case req.Channel == "team:7" && req.Claims["sub"] == "42",
				req.Channel == "team:invite" && d.Invite == "x7k2":
				answer = map[string]any{"result": map[string]any{}}
			default:
				answer = map[string]any{"error": map[string]any{"name": "NotInTeamError", "message": "not in team 7", "team": 7}}
			}
		case "/publish":
			var d map[string]any
			switch {
			case string(req.Data) == `"spam"`:
				answer = map[string]any{"error": map[string]any{"name": "SpamError", "message": "no spam"}}
			case json.Unmarshal(req.Data, &d) == nil && d != nil:
				from := "anonymous"
				if sub, ok := req.Claims["sub"].(string); ok {
					from = sub
				}
				d["from"] = from
				answer = map[string]any{"result": map[string]any{"data": d}}
			default:
				answer = map[string]any{"result": map[string]any{}}
			}
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(b.Close)
	return b
}

func connectAnswer(cookie, token string, claims map[string]any) any {
	session := ""
	for _, kv := range strings.Split(cookie, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "session="); ok {
			session = v
		}
	}
	accept := func(r map[string]any) any { return map[string]any{"result": r} }
	switch session {
	case "revoked":
		return map[string]any{"error": map[string]any{"name": "SessionRevokedError", "message": "session revoked"}, "code": 4501}
	case "u42":
		return accept(map[string]any{"claims": map[string]any{"sub": "42", "name": "Ada"}, "channels": []string{"granted:42"}})
	case "short":
		return accept(map[string]any{"claims": map[string]any{"sub": "9", "exp": time.Now().Unix() + 2}})
	case "refresh":
		if token != "" && claims == nil {
			return accept(map[string]any{"claims": map[string]any{"sub": "7"}})
		}
	}
	return accept(map[string]any{})
}

func hooksEnv(t *testing.T, backend string) map[string]string {
	file, err := filepath.Abs("hooks-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"SCC_CHANNELS_FILE":       file,
		"SCC_PROXY_CONNECT_URL":   backend + "/connect",
		"SCC_PROXY_SUBSCRIBE_URL": backend + "/subscribe",
		"SCC_PROXY_PUBLISH_URL":   backend + "/publish",
		"SCC_PROXY_KEY":           "interop-hook-key",
	}
}

// TestFrontendHooks runs the connect, subscribe and publish hooks with the
// real client against scc-frontend and a backend in this test: a rejected
// handshake with the backend's code and error, claims the client then
// holds as its token, server-side subscriptions, hook denials as the stock
// client reports them, replaced publish data in order, a token that
// expires while the socket is idle, and a refreshed token.
func TestFrontendHooks(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	b := hooksBackend(t)
	var env []string
	for k, v := range hooksEnv(t, b.URL) {
		env = append(env, k+"="+v)
	}
	s, port := startFrontend(t, key, env...)
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "hooks-client.mjs", key, hooksChecks, "--url", url)
	checkAlive(t, s)
}

// TestClusterHooks runs the same checks against two frontends of a cluster
// of processes: the connect hook's claims and subscriptions on one
// frontend, the publishers on the other.
func TestClusterHooks(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	b := hooksBackend(t)
	env := hooksEnv(t, b.URL)
	env["SCC_CLIENT_AUTH_KEY"] = key
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 1, Frontends: 2, Output: out, Env: env})
	c.WaitRing(1, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	runScript(t, node, "hooks-client.mjs", key, hooksChecks, "--url", urls[0], "--url2", urls[1])
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}
