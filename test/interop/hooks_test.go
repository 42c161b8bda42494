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
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	defer backend.Close()
	defer close(release)

	s, port := startFrontend(t, key, "SCC_PROXY_RPC_URL="+backend.URL+"/rpc", "SCC_PROXY_RPC_TIMEOUT=500ms", "SCC_PROXY_KEY=interop-hook-key")
	runHookClient(t, node, port, "up", "rpc-hook-result", "rpc-hook-error-object", "rpc-hook-timeout")
	checkAlive(t, s)

	dead := fmt.Sprintf("http://127.0.0.1:%d/rpc", freePort(t))
	s, port = startFrontend(t, key, "SCC_PROXY_RPC_URL="+dead, "SCC_PROXY_RPC_TIMEOUT=500ms")
	runHookClient(t, node, port, "down", "rpc-hook-backend-down")
	checkAlive(t, s)
}

// runHookClient runs rpc-hook-client.mjs in mode against the frontend on
// port, reports each check as a subtest and requires the named ones.
func runHookClient(t *testing.T, node string, port int, mode string, required ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
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
