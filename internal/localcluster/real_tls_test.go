package localcluster

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestRealClusterTLS runs the real binaries with TLS on every link and
// wss:// to clients, from certificates generated for the run: every node
// becomes ready (probed over HTTPS) and a publish crosses frontends.
func TestRealClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := realBinDir(t)
	out := &syncBuffer{}
	c, err := Start(context.Background(), Options{
		BinDir:    dir,
		Brokers:   2,
		Frontends: 2,
		AuthKey:   "test-key-0123456789abcdef0123456789abcdef",
		TLS:       true,
		ClientTLS: true,
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
	ca := c.CAFile()
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(ca); !os.IsNotExist(err) {
			t.Errorf("certificates left behind after Close: %v", err)
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", out)
		}
	}()
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	urls := c.FrontendURLs()
	// The status page is on the state server's admin port, plain HTTP
	// like every admin port.
	if !strings.HasPrefix(urls[0], "wss://") || !strings.HasPrefix(c.StatusURL(), "http://") {
		t.Fatalf("URLs %v and %s are not as expected (wss clients, http admin)", urls, c.StatusURL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.ClientTLSConfig()}}
	ctx := ctxT(t, 20*time.Second)
	dial := func(url string) *websocket.Conn {
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		sendJSON(ctx, t, conn, `{"event":"#handshake","data":{"authToken":null},"cid":1}`)
		waitFrame(ctx, t, conn, func(f string) bool { return strings.Contains(f, `"rid":1`) }, "handshake")
		return conn
	}
	sub := dial(urls[0])
	defer sub.Close(websocket.StatusNormalClosure, "")
	pub := dial(urls[1])
	defer pub.Close(websocket.StatusNormalClosure, "")
	sendJSON(ctx, t, sub, `{"event":"#subscribe","data":{"channel":"tls-e2e"},"cid":2}`)
	waitFrame(ctx, t, sub, func(f string) bool { return strings.Contains(f, `"rid":2`) }, "subscribe ack")
	got := make(chan struct{})
	go func() {
		defer close(got)
		waitFrame(ctx, t, sub, func(f string) bool { return strings.Contains(f, `"text":"over tls"`) }, "delivery")
	}()
	sendJSON(ctx, t, pub, `{"event":"#publish","data":{"channel":"tls-e2e","data":{"text":"over tls"}},"cid":2}`)
	<-got
	if ctx.Err() != nil {
		t.Fatal("publish on frontend-2 never reached the subscriber on frontend-1")
	}
}
