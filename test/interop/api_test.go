package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
)

const interopAPIKey = "interop-api-key"

// TestServerAPIWithSocketClusterClient drives the server API while real
// socketcluster-client sockets listen: standalone (the scc-frontend
// binary, configured by environment) and in a 2-broker, 2-frontend
// cluster. A publish reaches every subscriber once, a retry with the same
// idempotency key through the other frontend is not delivered again,
// unsubscribe and disconnect of a user reach the user's sockets on both
// frontends with the given close code, and a wrong or missing key is
// refused.
func TestServerAPIWithSocketClusterClient(t *testing.T) {
	node := needNode(t)
	t.Run("standalone", func(t *testing.T) {
		key := randomKey(t)
		port := freePort(t)
		cmd := exec.Command(frontendBinary(t))
		cmd.Env = append(serverEnv(port, key), "SCC_API_KEY="+interopAPIKey)
		s := startServer(t, cmd)
		if err := waitReady(t, s, port); err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		apiScenario(t, node, key, [2]string{addr, addr})
	})
	t.Run("cluster", func(t *testing.T) {
		key := randomKey(t)
		// The scenario checks a publish's order against a marker sent
		// through the other frontend, which holds on one ring; across a
		// reshard order is kept per publisher only. So no broker leaves
		// (a long scale-back delay keeps one that gossip wrongly calls
		// dead on a starved machine), and every node is on the same ring
		// before the clients connect.
		c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2, ScaleBackDelay: 30 * time.Second, Frontend: func(cfg *frontend.Config) {
			cfg.API.Key = interopAPIKey
			cfg.AuthKey = []byte(key)
		}})
		c.WaitBrokersAt(10*time.Second, c.WaitRing(10*time.Second, 2, 0))
		apiScenario(t, node, key, [2]string{c.Frontends[0].Addr(), c.Frontends[1].Addr()})
	})
}

type jsEvent struct {
	Name    string          `json:"name"`
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Code    int             `json:"code"`
	Reason  string          `json:"reason"`
	Message string          `json:"message"`
}

func apiScenario(t *testing.T, node, authKey string, addrs [2]string) {
	token := func(sub string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub}).SignedString([]byte(authKey))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	url := func(i int) string { return "ws://" + addrs[i] + "/socketcluster/" }
	clients := []map[string]any{
		{"name": "u42-a", "url": url(0), "token": token("42"), "channels": []string{"room", "team:7"}},
		{"name": "u42-b", "url": url(1), "token": token("42"), "channels": []string{"room", "team:7"}},
		{"name": "u43", "url": url(1), "token": token("43"), "channels": []string{"room", "team:7"}},
		{"name": "anon", "url": url(0), "channels": []string{"room"}},
	}
	spec, _ := json.Marshal(clients)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "api-clients.mjs", string(spec))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan jsEvent, 1024)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev jsEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-readDone
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("api-clients.mjs stderr:\n%s", tail(stderr.String(), 40))
		}
	})
	next := func(what string) jsEvent {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Event == "error" {
					if strings.Contains(ev.Message, "Socket connection closed with status code") {
						continue // the client's error event for a close it also reports as disconnect
					}
					t.Fatalf("client %s: %s", ev.Name, ev.Message)
				}
				return ev
			case <-time.After(15 * time.Second):
				t.Fatalf("no client event while waiting for %s", what)
			}
		}
	}
	for ready := 0; ready < len(clients); {
		if ev := next("ready"); ev.Event == "ready" {
			ready++
		} else {
			t.Fatalf("before ready: %+v", ev)
		}
	}

	call := func(i int, key, method, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addrs[i]+"/api/"+method, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "apikey "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if key == interopAPIKey && resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: HTTP %d %s", method, body, resp.StatusCode, b)
		}
		return resp.StatusCode
	}

	// Refused keys publish nothing.
	if st := call(0, "", "publish", `{"channel":"room","data":"forged"}`); st != http.StatusUnauthorized {
		t.Fatalf("missing key: HTTP %d", st)
	}
	if st := call(1, "wrong", "publish", `{"channel":"room","data":"forged"}`); st != http.StatusForbidden {
		t.Fatalf("wrong key: HTTP %d", st)
	}

	// A publish, its retry through the other frontend, then a marker.
	call(0, interopAPIKey, "publish", `{"channel":"room","data":{"n":1},"idempotency_key":"evt-1"}`)
	call(1, interopAPIKey, "publish", `{"channel":"room","data":{"n":1},"idempotency_key":"evt-1"}`)
	call(1, interopAPIKey, "broadcast", `{"channels":["room"],"data":"marker"}`)
	got := map[string][]string{}
	for n := 0; n < 2*len(clients); n++ {
		ev := next("publishes")
		if ev.Event != "message" || ev.Channel != "room" {
			t.Fatalf("want a room message, got %+v", ev)
		}
		got[ev.Name] = append(got[ev.Name], string(ev.Data))
	}
	for _, c := range clients {
		name := c["name"].(string)
		if fmt.Sprint(got[name]) != `[{"n":1} "marker"]` {
			t.Fatalf("%s received %v, want the publish once then the marker", name, got[name])
		}
	}

	// Unsubscribe user 42 from team:7: both of its sockets get kickOut,
	// user 43 still receives team:7.
	call(1, interopAPIKey, "unsubscribe", `{"user":"42","channel":"team:7"}`)
	kicked := map[string]bool{}
	for len(kicked) < 2 {
		ev := next("kickOut")
		if ev.Event != "kickOut" || ev.Channel != "team:7" || !strings.HasPrefix(ev.Name, "u42-") {
			t.Fatalf("want kickOut of u42 from team:7, got %+v", ev)
		}
		kicked[ev.Name] = true
	}
	call(0, interopAPIKey, "publish", `{"channel":"team:7","data":"team news"}`)
	if ev := next("team:7 message"); ev.Name != "u43" || ev.Event != "message" || string(ev.Data) != `"team news"` {
		t.Fatalf("want u43 to get team news, got %+v", ev)
	}

	// Disconnect user 42 everywhere with a code of the application's.
	call(0, interopAPIKey, "disconnect", `{"user":"42","code":4403,"reason":"banned"}`)
	closed := map[string]bool{}
	for len(closed) < 2 {
		ev := next("disconnects")
		if ev.Event != "disconnect" || !strings.HasPrefix(ev.Name, "u42-") || ev.Code != 4403 || ev.Reason != "banned" {
			t.Fatalf("want u42 disconnected with 4403 banned, got %+v", ev)
		}
		closed[ev.Name] = true
	}
	// The others stay connected and subscribed.
	call(1, interopAPIKey, "publish", `{"channel":"room","data":"still here"}`)
	for n := 0; n < 2; n++ {
		if ev := next("room after disconnect"); ev.Event != "message" || (ev.Name != "u43" && ev.Name != "anon") {
			t.Fatalf("after the disconnect: %+v", ev)
		}
	}
}
