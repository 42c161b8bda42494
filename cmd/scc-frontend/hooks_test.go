package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/hooks"
)

func TestLoadHooks(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SCC_PROXY_RPC_URL":             "http://backend:3000/rpc",
		"SCC_PROXY_RPC_TIMEOUT":         "2500",
		"SCC_PROXY_SUBSCRIBE_URL":       "http://backend:3000/subscribe",
		"SCC_PROXY_SUBSCRIBE_FAIL_OPEN": "true",
		"SCC_PROXY_SUBSCRIBE_RETRIES":   "0",
		"SCC_PROXY_PUBLISH_CONCURRENCY": "8",
		"SCC_PROXY_CONNECT_HEADERS":     "Cookie, X-Forwarded-For",
		"SCC_PROXY_KEY":                 "k",
		"SCC_PROXY_KEY_HEADER":          "Authorization",
		"SCC_PROXY_MAX_RESPONSE_BYTES":  "4096",
		"SCC_PROXY_RETRY_BACKOFF":       "10ms",
		"SCC_PROXY_IDLE_TIMEOUT":        "1s",
		"SCC_PROXY_SOCKET_CONCURRENCY":  "4",
	}))
	if err != nil {
		t.Fatal(err)
	}
	h := st.hooks
	if h.RPC.URL != "http://backend:3000/rpc" || h.RPC.Timeout != 2500*time.Millisecond ||
		h.Subscribe.URL != "http://backend:3000/subscribe" || !h.Subscribe.FailOpen || h.Subscribe.Retries != 0 ||
		h.Publish.Concurrency != 8 || h.Connect.Retries != 2 || h.Connect.URL != "" ||
		strings.Join(h.ConnectHeaders, ",") != "Cookie,X-Forwarded-For" || h.Key != "k" || h.KeyHeader != "Authorization" ||
		h.MaxResponseBytes != 4096 || h.RetryBackoff != 10*time.Millisecond || h.IdleConnTimeout != time.Second {
		t.Fatalf("hooks config %+v", h)
	}
	if st.cfg.HookCallsPerSocket != 4 {
		t.Fatalf("HookCallsPerSocket %d, want 4", st.cfg.HookCallsPerSocket)
	}
	for _, bad := range []map[string]string{
		{"SCC_PROXY_RPC_URL": "ftp://x"},
		{"SCC_PROXY_SUBSCRIBE_TIMEOUT": "0"},
		{"SCC_PROXY_MAX_RESPONSE_BYTES": "1"},
		{"SCC_PROXY_CONNECT_FAIL_OPEN": "maybe"},
	} {
		if _, _, err := load(env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestRPCHookThroughFrontend runs the frontend binary's run with
// SCC_PROXY_RPC_URL and invokes procedures over a real socket: the
// backend's result and error object reach the client; a backend that
// hangs gives a TimeoutError, and one that is down a BackendError.
func TestRPCHookThroughFrontend(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req hooks.RPCRequest
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("X-SCC-Hook-Key") != "hook-secret":
			w.WriteHeader(http.StatusForbidden)
		case req.Procedure == "chat.history":
			fmt.Fprintf(w, `{"result":{"data":{"room":%s,"socket":%q,"messages":["hi"]}}}`, req.Data, req.SocketID)
		case req.Procedure == "slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			fmt.Fprintf(w, `{"error":{"name":"UnknownProcedureError","message":"no procedure %s"}}`, req.Procedure)
		}
	}))
	defer backend.Close()
	defer close(release)

	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{
			"SOCKETCLUSTER_PORT":    strconv.Itoa(port),
			"SCC_FRONTEND_HOST":     "127.0.0.1",
			"SCC_DRAIN_DURATION":    "10ms",
			"SCC_LOG_LEVEL":         "error",
			"SCC_PROXY_RPC_URL":     backend.URL + "/rpc",
			"SCC_PROXY_RPC_TIMEOUT": "300ms",
			"SCC_PROXY_KEY":         "hook-secret",
		}), &stderr)
	}()
	base := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("frontend never became ready: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := handshaked(t, "ws://"+base+"/socketcluster/")
	defer c.CloseNow()
	cid := 1
	invoke := func(procedure, data string) map[string]any {
		t.Helper()
		cid++
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		msg := fmt.Sprintf(`{"event":%q,"data":%s,"cid":%d}`, procedure, data, cid)
		if err := c.Write(rctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		for {
			_, b, err := c.Read(rctx)
			if err != nil {
				t.Fatalf("reading the reply to %s: %v", procedure, err)
			}
			if len(b) == 0 { // a ping
				c.Write(rctx, websocket.MessageText, nil)
				continue
			}
			if !bytes.Contains(b, []byte(fmt.Sprintf(`"rid":%d`, cid))) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("reply %s: %v", b, err)
			}
			return m
		}
	}
	errName := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		n, _ := e["name"].(string)
		return n
	}

	m := invoke("chat.history", `"r1"`)
	d, _ := m["data"].(map[string]any)
	if d["room"] != "r1" || d["socket"] == "" || fmt.Sprint(d["messages"]) != "[hi]" {
		t.Fatalf("result %v", m)
	}
	if m := invoke("typing", `true`); errName(m) != "UnknownProcedureError" {
		t.Fatalf("error object %v", m)
	}
	if m := invoke("slow", `null`); errName(m) != "TimeoutError" {
		t.Fatalf("hanging backend %v", m)
	}
	backend.CloseClientConnections()
	backend.Listener.Close() // the backend is down from here on
	if m := invoke("chat.history", `"r1"`); errName(m) != hooks.ErrNameBackend {
		t.Fatalf("backend down %v", m)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
