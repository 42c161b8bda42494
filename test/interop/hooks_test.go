package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// TestRPCHookWithSocketClusterClient runs scc-frontend with SCC_PROXY_RPC_URL
// pointing at a backend in this test, and the real client invokes
// procedures no Go handler claims: the backend's result and error object
// reach it as the stock client reports them; a backend that does not answer
// gives TimeoutError from the hook's timeout; a backend that is down gives
// BackendError (fail-closed).
func TestRPCHookWithSocketClusterClient(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	release := make(chan struct{})
	backend := rpcBackend(release)
	defer backend.Close()
	defer close(release)

	s, port := startFrontend(t, key, "SCC_PROXY_RPC_URL="+backend.URL+"/rpc", "SCC_PROXY_RPC_TIMEOUT=500ms", "SCC_PROXY_KEY=interop-hook-key")
	runHookClient(t, node, wsURL(port), "up", "rpc-hook-result", "rpc-hook-error-object", "rpc-hook-timeout")
	checkAlive(t, s)

	dead := fmt.Sprintf("http://127.0.0.1:%d/rpc", freePort(t))
	s, port = startFrontend(t, key, "SCC_PROXY_RPC_URL="+dead, "SCC_PROXY_RPC_TIMEOUT=500ms")
	runHookClient(t, node, wsURL(port), "down", "rpc-hook-backend-down")
	checkAlive(t, s)
}

// TestClusterRPCHook runs the same checks against both frontends of a
// cluster of processes (a state server, a broker, two frontends, all with
// SCC_PROXY_RPC_URL at the test's backend), then stops the backend and
// checks that each frontend fails closed with BackendError.
func TestClusterRPCHook(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	release := make(chan struct{})
	backend := rpcBackend(release)
	defer backend.Close()
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 1, Frontends: 2, Output: out, Env: map[string]string{
		"SCC_CLIENT_AUTH_KEY":   key,
		"SCC_PROXY_RPC_URL":     backend.URL + "/rpc",
		"SCC_PROXY_RPC_TIMEOUT": "500ms",
		"SCC_PROXY_KEY":         "interop-hook-key",
	}})
	c.WaitRing(1, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	for i, url := range urls {
		t.Run(fmt.Sprintf("frontend%d", i+1), func(t *testing.T) {
			runHookClient(t, node, url, "up", "rpc-hook-result", "rpc-hook-error-object", "rpc-hook-timeout")
		})
	}
	close(release)
	backend.Close()
	for i, url := range urls {
		t.Run(fmt.Sprintf("frontend%d-backend-stopped", i+1), func(t *testing.T) {
			runHookClient(t, node, url, "down", "rpc-hook-backend-down")
		})
	}
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}

// rpcBackend is the backend of rpc-hook-client.mjs: chat.history answers
// with a result, deny with an error object, and slow not before release
// is closed.
func rpcBackend(release <-chan struct{}) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Procedure string          `json:"procedure"`
			Data      json.RawMessage `json:"data"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if r.Header.Get("X-SCC-Hook-Key") != "interop-hook-key" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch req.Procedure {
		case "chat.history":
			var d struct{ Room string }
			json.Unmarshal(req.Data, &d)
			fmt.Fprintf(w, `{"result":{"data":{"room":%q,"messages":["hi"]}}}`, d.Room)
		case "deny":
			w.Write([]byte(`{"error":{"name":"NotAllowedError","message":"Not in this room","room":"r1"}}`))
		case "slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			w.Write([]byte(`{"error":{"name":"NoMatchingProcedureError","message":"no"}}`))
		}
	}))
}

func wsURL(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port) }

// runHookClient runs rpc-hook-client.mjs in mode against the frontend at
// url, reports each check as a subtest and requires the named ones.
func runHookClient(t *testing.T, node, url, mode string, required ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "rpc-hook-client.mjs", "--url", url, "--mode", mode)
	cmd.Env = os.Environ()
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	seen := map[string]bool{}
	summary := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l checkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("rpc-hook-client.mjs printed a line that is not JSON: %q", sc.Text())
			continue
		}
		if l.Summary {
			summary = l.Failed == 0
			continue
		}
		seen[l.Check] = true
		t.Run(mode+"/"+l.Check, func(t *testing.T) {
			if !l.OK {
				t.Errorf("%s: %s", l.ErrorName, l.Error)
			} else if len(l.Detail) > 0 {
				t.Logf("%s", l.Detail)
			}
		})
	}
	for _, name := range required {
		if !seen[name] {
			t.Errorf("check %q was not reported", name)
		}
	}
	if runErr != nil || !summary {
		t.Errorf("rpc-hook-client.mjs: %v, summary ok %v\n%s", runErr, summary, tail(stderr.String(), 20))
	}
}
