package hostile

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/protocol"
)

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startBinary runs bin/scc-frontend standalone with its defaults (only the
// port, bind address and client auth key set) and waits for /readyz. It
// skips when the binary is missing, unless CI is set.
func startBinary(t *testing.T, key string) (addr string, alive func() error) {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "scc-frontend"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing under CI (make test runs make build first)", bin)
		}
		t.Skipf("%s is missing; run make build", bin)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		port := freePort(t)
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin)
		cmd.Env = []string{"SOCKETCLUSTER_PORT=" + strconv.Itoa(port), "SCC_FRONTEND_HOST=127.0.0.1", "SCC_CLIENT_AUTH_KEY=" + key, "SCC_ADMIN_PORT=0"}
		if v, ok := os.LookupEnv("TMPDIR"); ok {
			cmd.Env = append(cmd.Env, "TMPDIR="+v)
		}
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		stop := func() {
			select {
			case <-exited:
				return
			default:
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		alive = func() error {
			select {
			case <-exited:
				return fmt.Errorf("scc-frontend exited: %v\n%s", waitErr, out.String())
			default:
				return nil
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && alive() == nil {
			if status(t, "http://"+addr+"/readyz") == http.StatusOK {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("scc-frontend output:\n%s", out.String())
					}
				})
				return addr, alive
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		lastErr = fmt.Errorf("not ready: %v\n%s", alive(), out.String())
	}
	t.Fatalf("scc-frontend did not start: %v", lastErr)
	return "", nil
}

func status(t testing.TB, url string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHostileClientBinary runs the attacks that the defaults decide
// (payload size, channel name length, subscription limit, inbound rate,
// framing and handshake rules, tokens) against the built scc-frontend.
func TestHostileClientBinary(t *testing.T) {
	const key = "hostile-binary-key-of-at-least-32-bytes"
	addr, alive := startBinary(t, key)
	url := "ws://" + addr + "/socketcluster/"
	h := startHealthy(t, url, "healthy")
	fresh := func() *scClient {
		c := dialSC(t, url)
		c.handshake("")
		return c
	}
	// scc-frontend's defaults are DefaultConfig's.
	def := frontend.DefaultConfig()
	defMaxPayload, defChannelLength, defChannelLimit := int(def.MaxPayload), def.MaxChannelLength, def.SocketChannelLimit

	// Oversized: 1009.
	c := fresh()
	_ = c.write(websocket.MessageText, []byte(`{"event":"x","data":"`+strings.Repeat("a", defMaxPayload)+`"}`))
	c.expectClose(protocol.CloseMessageTooBig)

	// Not UTF-8: 1007. Binary: 1003.
	c = fresh()
	c.send("{\"event\":\"\xff\",\"cid\":2}")
	c.expectClose(protocol.CloseInvalidPayload)
	c = fresh()
	_ = c.write(websocket.MessageBinary, []byte("x"))
	c.expectClose(protocol.CloseUnsupportedData)

	// Handshake rules: 4008, 4009.
	c = dialSC(t, url)
	c.send(`{"event":"#handshake","data":{}}`)
	c.expectClose(protocol.CloseHandshakeRejected)
	c = dialSC(t, url)
	c.send(`{"event":"#publish","data":{"channel":"healthy","data":"sneaky"}}`)
	c.expectClose(protocol.CloseMessageBeforeHandshake)
	h.progress()

	// Channel names and the subscription limit.
	c = fresh()
	c.sendf(`{"event":"#subscribe","data":{"channel":%q},"cid":3}`, strings.Repeat("c", defChannelLength+1))
	if e := c.replyError(3); e["name"] != "InvalidActionError" {
		t.Fatalf("long channel: %v", e)
	}
	c.subscribe(strings.Repeat("c", defChannelLength), 4)
	var b strings.Builder
	b.WriteString("[")
	for i := range defChannelLimit {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"f%d"},"cid":%d}`, i, 100+i)
	}
	b.WriteString("]")
	c.send(b.String())
	for i := range defChannelLimit - 1 {
		c.expectOK(100 + i)
	}
	if e := c.replyError(100 + defChannelLimit - 1); e["name"] != "BrokerError" {
		t.Fatalf("subscription %d: %v", defChannelLimit+1, e)
	}

	// Deep nesting: ignored.
	c.send(strings.Repeat("[", 200000))
	c.send(strings.Repeat(`{"a":`, 100000))
	keepsWorking(t, c, 5)
	h.progress()

	// A forged token.
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "mallory", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte("not-the-key"))
	if err != nil {
		t.Fatal(err)
	}
	c = dialSC(t, url)
	d := c.handshake(forged)
	if ae, _ := d["authError"].(map[string]any); ae["name"] != "AuthTokenInvalidError" || ae["isBadToken"] != true {
		t.Fatalf("forged token: %v", d)
	}
	if p := c.next(waitTimeout); p != `{"event":"#removeAuthToken"}` {
		t.Fatalf("after a forged token: %s", p)
	}

	// A publish flood beyond the burst, in batches that fit MaxPayload:
	// 4011. Each publish goes to a channel of its own, so that no
	// channel's rate refuses it (refused publishes are paced on the
	// reader instead: TestRefusedPublishesArePaced).
	c = fresh()
	const pkt = `{"event":"#publish","data":{"channel":"flood-%06d","data":1}}`
	perFrame := min(defMaxPayload/2/(len(pkt)+1), def.MaxBatchPackets)
	for sent := 0; sent < def.InboundBurst*2 && c.open(); sent += perFrame {
		var frame strings.Builder
		frame.WriteString("[")
		for i := range perFrame {
			if i > 0 {
				frame.WriteString(",")
			}
			fmt.Fprintf(&frame, pkt, sent+i)
		}
		frame.WriteString("]")
		if c.write(websocket.MessageText, []byte(frame.String())) != nil {
			break
		}
	}
	c.expectClose(protocol.CloseRateLimited)

	h.progress()
	h.check()
	if err := alive(); err != nil {
		t.Fatal(err)
	}
	if got := status(t, "http://"+addr+"/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz: %d", got)
	}
}
