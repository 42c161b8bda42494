package hostile

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/hooks"
	"github.com/sccgo/sccgo/internal/rules"
)

// TestHangingChannelHooks points the connect, subscribe and publish hooks
// at a backend that stops answering, while a healthy pair runs: 100
// sockets waiting for their handshake, and a connected socket waiting for
// its subscribe and publish, keep having their pongs read (none is closed
// for a missed pong over many ping timeouts), the waiting socket's other
// packets are answered, the pair sees every message, and every waiting
// request ends with the hook's timeout.
func TestHangingChannelHooks(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"result":{}}`))
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() { close(release) })

	const hookWait = 5 * time.Second
	hcfg := hooks.DefaultConfig()
	for _, k := range []hooks.Kind{hooks.Connect, hooks.Subscribe, hooks.Publish} {
		h := hcfg.Hook(k)
		h.URL = backend.URL + "/" + k.String()
		h.Timeout = hookWait
		h.Concurrency = 256
	}
	hcfg.Registry = prometheus.NewRegistry()
	hc, err := hooks.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	set, err := rules.Parse([]byte(`
rules:
  - match: "hooked:*"
    subscribe: hook
    publish: hook
default: {subscribe: anyone, publish: anyone}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	tf := startFrontend(t, func(c *frontend.Config) {
		c.Rules = set
		c.ConnectHook, c.SubscribeHook, c.PublishHook = hc, hc, hc
		c.PingInterval = 100 * time.Millisecond
		c.PingTimeout = time.Second
		c.HandshakeTimeout = 10 * time.Second
	})
	pair := startHealthy(t, tf.url, "healthy-channel-hooks")
	a := dialSC(t, tf.url)
	a.handshake("")

	hang.Store(true)
	start := time.Now()
	const waiting = 100
	socks := make([]*scClient, waiting)
	for i := range socks {
		socks[i] = dialSC(t, tf.url)
		socks[i].send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	}
	if !a.open() {
		t.Fatalf("a closed: %d %v", a.closeCode(), a.readErr())
	}
	a.send(`{"event":"#subscribe","data":{"channel":"hooked:1"},"cid":2}`)
	a.send(`{"event":"#publish","data":{"channel":"hooked:1","data":1},"cid":3}`)
	// Over the hook's wait (several ping timeouts), a's other packets are
	// answered and nobody is closed.
	deadline := start.Add(hookWait / 2)
	var early []string
	for cid := 10; time.Now().Before(deadline); cid++ {
		a.sendf(`{"event":"still-there?","cid":%d}`, cid)
		for {
			p := a.next(waitTimeout)
			r := decodeObject(t, p)
			if e, _ := r["error"].(map[string]any); r["rid"] == float64(cid) && e["name"] == "NoMatchingProcedureError" {
				break
			}
			early = append(early, p)
		}
		time.Sleep(50 * time.Millisecond) // pacing, not synchronisation
	}
	if len(early) > 0 {
		t.Fatalf("answered before the hook's timeout: %v", early)
	}
	for i, s := range socks {
		if !s.open() {
			t.Fatalf("waiting socket %d closed while its connect hook ran: %v", i, s.readErr())
		}
	}
	// The hook's timeout ends every wait with SocketCluster's answers.
	// Both hooks time out at about the same moment: their answers come
	// in either order.
	got := map[float64]any{}
	for len(got) < 2 {
		r := decodeObject(t, a.next(waitTimeout))
		if rid, _ := r["rid"].(float64); rid == 2 || rid == 3 {
			got[rid] = r["error"]
		}
	}
	for rid, e := range got {
		if em, _ := e.(map[string]any); em["name"] != "TimeoutError" {
			t.Errorf("cid %v: %v", rid, e)
		}
	}
	for i, s := range socks {
		if e := s.replyError(1); e["name"] != "TimeoutError" || e["statusCode"] != float64(4008) {
			t.Errorf("socket %d handshake: %v", i, e)
		}
		s.expectClose(4008)
	}
	pair.check()
}
