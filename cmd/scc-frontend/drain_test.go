package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// handshaked opens a socket and completes the SocketCluster handshake.
func handshaked(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading handshake reply: %v", err)
		}
		if bytes.HasPrefix(b, []byte(`{"rid":1`)) {
			return c
		}
	}
}

// TestSIGTERMDrainsPaced covers what SIGTERM does to a frontend: it turns
// not-ready and stops accepting at once, closes every client with 1001
// spread over SCC_DRAIN_DURATION (so the other frontends are not stormed),
// and exits.
func TestSIGTERMDrainsPaced(t *testing.T) {
	port := freePort(t)
	base := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{
			"SOCKETCLUSTER_PORT":   strconv.Itoa(port),
			"SCC_FRONTEND_HOST":    "127.0.0.1",
			"SCC_DRAIN_DURATION":   "1200ms",
			"SCC_SHUTDOWN_TIMEOUT": "10s",
			"SCC_LOG_LEVEL":        "error",
			"SCC_ADMIN_PORT":       "0",
		}), &stderr)
	}()
	ready := func() int {
		resp, err := http.Get("http://" + base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for ready() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("frontend never became ready: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	const n = 24
	type closed struct {
		at   time.Time
		code websocket.StatusCode
	}
	results := make(chan closed, n)
	for i := 0; i < n; i++ {
		c := handshaked(t, "ws://"+base+"/socketcluster/")
		go func() {
			rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer rcancel()
			for {
				_, b, err := c.Read(rctx)
				if err != nil {
					results <- closed{time.Now(), websocket.CloseStatus(err)}
					return
				}
				if len(b) == 0 { // answer pings
					c.Write(rctx, websocket.MessageText, nil)
				}
			}
		}()
	}

	sigterm := time.Now()
	cancel() // what main does on SIGTERM

	// Not ready and not accepting at once.
	deadline = time.Now().Add(300 * time.Millisecond)
	for ready() == http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("still ready after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	if c, _, err := websocket.Dial(dctx, "ws://"+base+"/socketcluster/", nil); err == nil {
		c.CloseNow()
		t.Error("a new connection was accepted while draining")
	}
	dcancel()

	var times []time.Duration
	for i := 0; i < n; i++ {
		select {
		case r := <-results:
			if r.code != protocol.CloseGoingAway {
				t.Errorf("client closed with %d, want %d", r.code, protocol.CloseGoingAway)
			}
			times = append(times, r.at.Sub(sigterm))
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d clients were closed", i, n)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	spread := times[len(times)-1] - times[0]
	t.Logf("closes from %v to %v after SIGTERM", times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	// Paced: not one burst, and within the window (plus scheduling slack).
	if spread < 600*time.Millisecond {
		t.Errorf("closes spread over %v, want them paced over the 1.2s drain window", spread)
	}
	if times[len(times)-1] > 3*time.Second {
		t.Errorf("last close %v after SIGTERM, want within the drain window", times[len(times)-1])
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("run returned %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("frontend did not exit after draining")
	}
}
