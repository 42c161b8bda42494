package hostile

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/hooks"
)

// Bounds of the rpc hook under attack.
const (
	hookTimeout     = time.Second
	hookConcurrency = 16
)

// hostileBackend answers the rpc hook by procedure name, each in its own
// bad way, and records how many calls it held at once.
type hostileBackend struct {
	*httptest.Server
	release chan struct{}
	held    atomic.Int64
	maxHeld atomic.Int64
}

func startHostileBackend(t *testing.T) *hostileBackend {
	t.Helper()
	b := &hostileBackend{release: make(chan struct{})}
	chunk := []byte(strings.Repeat("x", 64<<10))
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req hooks.RPCRequest
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Procedure {
		case "ok":
			w.Write([]byte(`{"result":{"data":"fine"}}`))
		case "hang":
			n := b.held.Add(1)
			defer b.held.Add(-1)
			for {
				m := b.maxHeld.Load()
				if n <= m || b.maxHeld.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-b.release:
			case <-r.Context().Done():
			}
		case "drip": // starts an answer and never finishes it
			w.Write([]byte(`{"result":`))
			rc := http.NewResponseController(w)
			for {
				rc.Flush()
				select {
				case <-b.release:
					return
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := w.Write([]byte(" ")); err != nil {
					return
				}
			}
		case "garbage":
			w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
		case "wrong-type":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`{"result":{"data":"fine"}}`))
		case "huge": // 100 MiB inside a JSON string
			w.Write([]byte(`{"result":{"data":"`))
			for i := 0; i < 1600; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			w.Write([]byte(`"}}`))
		case "crash":
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		case "5xx":
			http.Error(w, "internal error", http.StatusInternalServerError)
		default:
			w.Write([]byte(`{"error":{"name":"UnknownProcedureError","message":"no such procedure"}}`))
		}
	}))
	t.Cleanup(b.Close)
	t.Cleanup(func() { close(b.release) }) // runs first: frees held handlers
	return b
}

// TestHostileHookBackends points the rpc hook at a backend that hangs,
// drips, answers garbage, the wrong type, 100 MiB, a crash or a 5xx, and
// invokes it from many sockets while a healthy pair runs: every invoke
// gets a defined error (TimeoutError or BackendError) within the hook's
// bounds, the backend never holds more than the concurrency bound, a 100
// MiB answer costs no 100 MiB, and the pair sees every message.
func TestHostileHookBackends(t *testing.T) {
	backend := startHostileBackend(t)
	hreg := prometheus.NewRegistry()
	hcfg := hooks.DefaultConfig()
	hcfg.RPC.URL = backend.URL + "/rpc"
	hcfg.RPC.Timeout = hookTimeout
	hcfg.RPC.Concurrency = hookConcurrency
	hcfg.Registry = hreg
	hc, err := hooks.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Close)
	tf := startFrontend(t, nil)
	tf.srv.HandleRPCFallback(func(ctx context.Context, s *frontend.Socket, procedure string, data json.RawMessage) (any, error) {
		res, err := hc.RPC(ctx, &hooks.RPCRequest{SocketID: s.ID(), Procedure: procedure, Claims: s.AuthToken(), Data: data})
		if err != nil {
			return nil, hooks.ClientError(err)
		}
		return res, nil
	})
	pair := startHealthy(t, tf.url, "healthy-hooks")

	c := dialSC(t, tf.url)
	c.handshake("")
	cid := 1
	invoke := func(c *scClient, procedure string) map[string]any {
		cid++
		c.sendf(`{"event":%q,"data":null,"cid":%d}`, procedure, cid)
		return c.reply(cid)
	}
	if r := invoke(c, "ok"); r["data"] != "fine" {
		t.Fatalf("ok: %v", r)
	}
	for _, tc := range []struct{ procedure, name string }{
		{"hang", "TimeoutError"},
		{"drip", "TimeoutError"},
		{"garbage", hooks.ErrNameBackend},
		{"wrong-type", hooks.ErrNameBackend},
		{"huge", hooks.ErrNameBackend},
		{"crash", hooks.ErrNameBackend},
		{"5xx", hooks.ErrNameBackend},
		{"unknown", "UnknownProcedureError"},
	} {
		r := invoke(c, tc.procedure)
		e, _ := r["error"].(map[string]any)
		if e["name"] != tc.name {
			t.Errorf("%s: got %v, want %s", tc.procedure, r, tc.name)
		}
		if msg, _ := e["message"].(string); strings.Contains(msg, "127.0.0.1") {
			t.Errorf("%s: error names the backend: %v", tc.procedure, e)
		}
	}

	// A 100 MiB answer is read up to the 64 KiB bound.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 3 {
		if e, _ := invoke(c, "huge")["error"].(map[string]any); e["name"] != hooks.ErrNameBackend {
			t.Fatalf("huge: %v", e)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("three 100 MiB answers allocated %d MiB", grew>>20)
	}

	// A flood of hanging calls from many sockets: each is answered, the
	// backend never holds more than the bound, and the rest are refused at
	// once as overloaded.
	const sockets, perSocket = 10, 20
	flood := make([]*scClient, sockets)
	for i := range flood {
		flood[i] = dialSC(t, tf.url)
		flood[i].handshake("")
	}
	for _, s := range flood {
		for j := range perSocket {
			s.sendf(`{"event":"hang","data":%d,"cid":%d}`, j, 2+j)
		}
	}
	var timeouts, busy int
	for i, s := range flood {
		// Overloaded calls are answered before the ones that time out:
		// collect the replies in any order.
		replies := map[float64]map[string]any{}
		for len(replies) < perSocket {
			r := decodeObject(t, s.next(waitTimeout))
			if rid, ok := r["rid"].(float64); ok {
				replies[rid] = r
			}
		}
		for j := range perSocket {
			r := replies[float64(2+j)]
			e, _ := r["error"].(map[string]any)
			switch {
			case e["name"] == "TimeoutError":
				timeouts++
			case e["name"] == hooks.ErrNameBackend && e["message"] == "The application backend is busy":
				busy++
			default:
				t.Errorf("socket %d call %d: %v", i, j, r)
			}
		}
	}
	// The frontend frees a slot when a call times out; the backend's
	// handler for it may notice the closed connection a moment later,
	// while the next call is already there. Without the bound it would
	// hold all 200.
	if got := backend.maxHeld.Load(); got > 2*hookConcurrency {
		t.Errorf("backend held %d calls at once, bound %d", got, hookConcurrency)
	}
	if busy == 0 || timeouts == 0 {
		t.Errorf("flood of %d: %d timeouts, %d overloaded", sockets*perSocket, timeouts, busy)
	}
	if got := metric(t, hreg, "scc_frontend_hook_calls_total", "hook", "rpc", "outcome", "overloaded"); got != float64(busy) {
		t.Errorf("overloaded counted %v, clients saw %d", got, busy)
	}
	for _, o := range []string{"timeout", "bad_response", "bad_status", "error", "deny", "allow"} {
		if metric(t, hreg, "scc_frontend_hook_calls_total", "hook", "rpc", "outcome", o) == 0 {
			t.Errorf("outcome %s not counted", o)
		}
	}
	keepsWorkingHook(t, c, invoke)
	pair.check()
}

// keepsWorkingHook checks that the socket still gets the backend's answers.
func keepsWorkingHook(t *testing.T, c *scClient, invoke func(*scClient, string) map[string]any) {
	t.Helper()
	if r := invoke(c, "ok"); r["data"] != "fine" {
		t.Fatalf("after the attacks: %v", r)
	}
}
