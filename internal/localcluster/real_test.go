package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/demopage"
)

// realBinDir returns the directory with the real binaries (SCC_BIN_DIR, or
// the module's bin/ that make build fills). Without them the test is
// skipped, or fails when CI is set.
func realBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCC_BIN_DIR")
	if dir == "" {
		abs, err := filepath.Abs("../../bin")
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	if err := (Options{BinDir: dir}).Validate(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but the real binaries are missing: %v", err)
		}
		t.Skipf("real binaries not built (run make build): %v", err)
	}
	return dir
}

// TestRealCluster starts 1 state, 2 brokers and 2 frontends from bin/,
// waits until every node is ready, checks that /status shows both brokers
// in the ring, and that a message published on one frontend reaches a
// subscriber on the other.
func TestRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := realBinDir(t)
	out := &syncBuffer{}
	c, err := Start(context.Background(), Options{
		BinDir:    dir,
		Brokers:   2,
		Frontends: 2,
		AuthKey:   "localcluster-real-test-key-0123456789abcdef",
		ExtraEnv: map[string]string{
			"SCC_STATE_SERVER_STARTUP_DELAY":   "300ms",
			"SCC_STATE_SERVER_SCALE_OUT_DELAY": "300ms",
		},
		Stdout:       out,
		PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	procs := c.Procs()
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		for _, p := range procs {
			if !gone(p.PID) {
				t.Errorf("%s (pid %d) alive after Close", p.Name, p.PID)
			}
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", out)
		}
	}()

	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}

	// /status: both brokers in the committed ring.
	statusURL := strings.TrimSuffix(c.StatusURL(), "/") + "/status"
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, raw, err := ringBrokers(statusURL)
		last = raw
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring never had 2 brokers (err %v); last /status:\n%s", err, last)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The status and demo pages, where the servers mount them.
	for _, u := range []string{c.StatusURL(), c.DemoURL()} {
		resp, err := http.Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Logf("GET %s = %d %s (page not mounted yet?)", u, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}

	// Metrics on every admin port, on no client or link port.
	for _, p := range c.Procs() {
		for url, want := range map[string]int{
			c.AdminURL(p.Name, "/metrics"):                      200,
			c.httpURL(RoleFrontend, p.Port, "/metrics"):         http.StatusNotFound,
			strings.TrimSuffix(c.StatusURL(), "/") + "/metrics": 200,
		} {
			if p.Role == RoleFrontend && want == http.StatusNotFound {
				want = http.StatusBadRequest // SocketCluster's answer to an unknown path
			}
			resp, err := http.Get(url)
			if err != nil {
				t.Errorf("GET %s: %v", url, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: GET %s = %d, want %d", p.Name, url, resp.StatusCode, want)
			}
		}
	}

	// Pub/sub across frontends.
	urls := c.FrontendURLs()
	ctx := ctxT(t, 20*time.Second)
	sub := dialSC(ctx, t, urls[0])
	defer sub.Close(websocket.StatusNormalClosure, "")
	pub := dialSC(ctx, t, urls[1])
	defer pub.Close(websocket.StatusNormalClosure, "")
	sendJSON(ctx, t, sub, `{"event":"#subscribe","data":{"channel":"local-e2e"},"cid":2}`)
	waitFrame(ctx, t, sub, func(f string) bool { return strings.Contains(f, `"rid":2`) }, "subscribe ack")
	got := make(chan struct{})
	go func() {
		defer close(got)
		waitFrame(ctx, t, sub, func(f string) bool { return strings.Contains(f, `"text":"across"`) }, "delivery")
	}()
	sendJSON(ctx, t, pub, `{"event":"#publish","data":{"channel":"local-e2e","data":{"text":"across"}},"cid":2}`)
	<-got // the reader returns on a match or when ctx ends
	if ctx.Err() != nil {
		t.Fatal("publish on frontend-2 never reached the subscriber on frontend-1")
	}

	// The demo page: one tab on each frontend, a message crosses over.
	demoTabs(t, urls[0], urls[1])
}

// demoTabs runs the demo page's script in two simulated tabs (node with a
// real WebSocket) on two frontends.
func demoTabs(t *testing.T, urlA, urlB string) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI for the demo page check")
		}
		t.Log("node not installed; skipping the demo page check")
		return
	}
	rec := httptest.NewRecorder()
	demopage.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/demo/", nil))
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatal("no script in the demo page")
	}
	script := filepath.Join(t.TempDir(), "page.js")
	if err := os.WriteFile(script, []byte(m[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	out, err := exec.CommandContext(ctx, node, "--no-warnings", "--experimental-websocket",
		"../demopage/testdata/tabs.js", script, urlA, urlB).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("demo page tabs on two frontends: %v\n%s", err, out)
	}
}

// ringBrokers reads /status and returns how many brokers its ring has.
func ringBrokers(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st struct {
		Ring *struct {
			Brokers []json.RawMessage `json:"brokers"`
		} `json:"ring"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return 0, string(body), err
	}
	if st.Ring == nil {
		return 0, string(body), fmt.Errorf("no ring yet")
	}
	return len(st.Ring.Brokers), string(body), nil
}

// dialSC opens a SocketCluster connection and completes the handshake;
// a goroutine answers pings until the connection closes.
func dialSC(ctx context.Context, t *testing.T, url string) *websocket.Conn {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	sendJSON(ctx, t, conn, `{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	waitFrame(ctx, t, conn, func(f string) bool { return strings.Contains(f, `"rid":1`) }, "handshake")
	return conn
}

func sendJSON(ctx context.Context, t *testing.T, conn *websocket.Conn, frame string) {
	t.Helper()
	if err := conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitFrame reads frames, answering pings, until one satisfies match.
func waitFrame(ctx context.Context, t *testing.T, conn *websocket.Conn, match func(string) bool, what string) {
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			t.Errorf("waiting for %s: %v", what, err)
			return
		}
		switch {
		case len(b) == 0:
			_ = conn.Write(ctx, websocket.MessageText, nil)
		case bytes.Equal(b, []byte("#1")):
			_ = conn.Write(ctx, websocket.MessageText, []byte("#2"))
		case match(string(b)):
			return
		}
	}
}
