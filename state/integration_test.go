package state

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

// recorder is a node Handler that records the calls it gets.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Prepare(ctx context.Context, rg protocol.Ring) error {
	r.add("prepare " + ringString(rg))
	return nil
}

func (r *recorder) Commit(rg protocol.Ring) { r.add("commit " + ringString(rg)) }

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, "; ")
}

func (r *recorder) has(s string) bool { return strings.Contains(r.log(), s) }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

func fastGossip() *gossip.Config {
	g := gossip.DefaultConfig()
	g.PushPullInterval = 300 * time.Millisecond
	return &g
}

type stateServer struct {
	*Server
	reg   *prometheus.Registry
	addr  string
	admin string // base URL of AdminHandler
	done  chan error
}

// startState runs a state server on addr ("127.0.0.1:0" for any port).
func startState(t *testing.T, addr string, key string) *stateServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AuthKey = []byte(key)
	cfg.StartupDelay = 300 * time.Millisecond
	cfg.ScaleOutDelay = 300 * time.Millisecond
	cfg.ScaleBackDelay = 300 * time.Millisecond
	cfg.PrepareTimeout = 5 * time.Second
	cfg.DrainWindow = 300 * time.Millisecond
	cfg.GossipBind = "127.0.0.1"
	cfg.GossipPort = 0
	cfg.Gossip = fastGossip()
	cfg.Logger = discardLogger()
	cfg.Registry = prometheus.NewRegistry()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &stateServer{Server: srv, reg: cfg.Registry, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ln) }()
	<-srv.Ready()
	admin := httptest.NewServer(srv.AdminHandler())
	s.admin = admin.URL
	t.Cleanup(func() { s.stop(t); admin.Close() })
	return s
}

func (s *stateServer) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-s.done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	s.done <- ErrServerClosed // a second stop returns at once
}

func startAgent(t *testing.T, id, role, stateAddr, key string) (*membership.Agent, *recorder) {
	t.Helper()
	cfg := membership.DefaultConfig()
	cfg.NodeID = id
	cfg.Role = role
	if role == protocol.RoleBroker {
		cfg.Addr = id + ":8888"
	}
	cfg.StateAddr = stateAddr
	cfg.AuthKey = []byte(key)
	cfg.GossipBind = "127.0.0.1"
	cfg.GossipPort = 0
	cfg.Gossip = fastGossip()
	cfg.StatsInterval = 100 * time.Millisecond
	cfg.Stats = func() protocol.Stats { return protocol.Stats{Connections: 3} }
	cfg.Logger = discardLogger()
	rec := &recorder{}
	a, err := membership.New(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, rec
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationReshardAndLeave(t *testing.T) {
	st := startState(t, "127.0.0.1:0", "k")
	b1, _ := startAgent(t, "b1", protocol.RoleBroker, st.addr, "k")
	f1, frec := startAgent(t, "f1", protocol.RoleFrontend, st.addr, "k")
	waitFor(t, 10*time.Second, "first commit", func() bool { return frec.has("commit v1[b1]") })
	if r, ok := f1.Ring(); !ok || r.Version != 1 || !f1.StateConnected() {
		t.Fatalf("f1 ring %v %v", r, ok)
	}

	b2, b2rec := startAgent(t, "b2", protocol.RoleBroker, st.addr, "k")
	waitFor(t, 10*time.Second, "b2 joins", func() bool { return frec.has("commit v2[b1,b2]") })
	if got, want := frec.log(), "commit v1[b1]; prepare v2[b1,b2]; commit v2[b1,b2]"; got != want {
		t.Fatalf("frontend saw %q, want %q", got, want)
	}
	waitFor(t, 10*time.Second, "b2 commit", func() bool { return b2rec.has("commit v2[b1,b2]") })

	// Status, health and metrics.
	base := st.admin
	var sj Status
	waitFor(t, 5*time.Second, "stats reported", func() bool {
		getJSON(t, base+"/status", &sj)
		for _, m := range sj.Members {
			if m.ID == "f1" && m.Stats != nil && m.Stats.Connections == 3 {
				return true
			}
		}
		return false
	})
	if sj.Ring == nil || sj.Ring.Version != 2 || len(sj.Members) != 3 || sj.Reshard != nil && sj.Reshard.Phase == phasePrepare {
		t.Fatalf("status %+v", sj)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		if path == "/metrics" && !strings.Contains(string(body), "scc_state_ring_version 2") {
			t.Fatalf("metrics lack the ring version:\n%s", body)
		}
	}
	// The link port answers probes but serves no admin pages.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404, "/status": 404} {
		resp, err := http.Get("http://" + st.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("link port %s: %s, want %d", path, resp.Status, want)
		}
	}

	// b2 drains: resharded out, then released.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b2.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if !frec.has("prepare v3[b1]; commit v3[b1]") {
		t.Fatalf("released before the frontend committed: %s", frec.log())
	}
	_ = b1
}

func TestIntegrationWrongKeyRejected(t *testing.T) {
	st := startState(t, "127.0.0.1:0", "right")
	a, _ := startAgent(t, "f-bad", protocol.RoleFrontend, st.addr, "wrong")
	waitFor(t, 10*time.Second, "auth reject counted", func() bool {
		return counter(t, st.reg, "scc_state_link_rejects_total", map[string]string{"reason": protocol.RejectAuth}) > 0
	})
	if a.StateConnected() {
		t.Fatal("agent with the wrong key connected")
	}
	var sj Status
	getJSON(t, st.admin+"/status", &sj)
	if len(sj.Members) != 0 {
		t.Fatalf("members %+v", sj.Members)
	}
}

// With the state server down, a dead broker is left out by the frontend's
// own gossip view; when the state is back it commits a higher version.
func TestIntegrationGossipFallback(t *testing.T) {
	st := startState(t, "127.0.0.1:0", "k")
	startAgent(t, "b1", protocol.RoleBroker, st.addr, "k")
	b2, _ := startAgent(t, "b2", protocol.RoleBroker, st.addr, "k")
	f1, frec := startAgent(t, "f1", protocol.RoleFrontend, st.addr, "k")
	waitFor(t, 10*time.Second, "first commit", func() bool { return frec.has("commit v1[b1,b2]") })
	waitFor(t, 10*time.Second, "gossip joined", func() bool { return f1.Gossip().NumAlive() == 4 })

	st.stop(t)
	waitFor(t, 10*time.Second, "state link down", func() bool { return !f1.StateConnected() })
	b2.Close()
	waitFor(t, 10*time.Second, "fallback ring", func() bool { return frec.has("commit v1[b1]") })
	if r, _ := f1.Ring(); r.Version != 1 || len(r.Brokers) != 1 {
		t.Fatalf("fallback ring %+v", r)
	}

	// The state comes back at the same address: its ring wins.
	startState(t, st.addr, "k")
	waitFor(t, 15*time.Second, "state ring after restart", func() bool { return frec.has("commit v2[b1]") })
	// The frontend reported the committed ring (with b2), so the state
	// reshards from it to the brokers it sees, above version 1. Whether the
	// frontend takes part in that reshard (prepare, then commit) or gets
	// the result when it connects (commit only) depends on which of it and
	// b1 is back first. A frontend that connects after the state adopted
	// the reported ring and before its reshard begins is sent that ring
	// first (v1 with b2 again, for the moment until v2).
	got := frec.log()
	switch got {
	case "commit v1[b1,b2]; commit v1[b1]; prepare v2[b1]; commit v2[b1]",
		"commit v1[b1,b2]; commit v1[b1]; commit v2[b1]",
		"commit v1[b1,b2]; commit v1[b1]; commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]",
		"commit v1[b1,b2]; commit v1[b1]; commit v1[b1,b2]; commit v2[b1]":
	default:
		t.Fatalf("frontend saw %q", got)
	}
}

// A frontend that starts while the state server is down learns the ring
// from gossip.
func TestIntegrationRingFromGossip(t *testing.T) {
	st := startState(t, "127.0.0.1:0", "k")
	b1, _ := startAgent(t, "b1", protocol.RoleBroker, st.addr, "k")
	waitFor(t, 10*time.Second, "ring at b1", func() bool { _, ok := b1.Ring(); return ok })
	st.stop(t)

	cfg := membership.DefaultConfig()
	cfg.NodeID, cfg.Role = "f9", protocol.RoleFrontend
	cfg.StateAddr = st.addr
	cfg.AuthKey = []byte("k")
	cfg.GossipBind, cfg.GossipPort = "127.0.0.1", 0
	cfg.GossipSeeds = []string{b1.GossipAddr()}
	cfg.Gossip = fastGossip()
	rec := &recorder{}
	f, err := membership.New(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, 10*time.Second, "ring from gossip", func() bool { return rec.has("commit v1[b1]") })
}

func TestServerShutdownBeforeServe(t *testing.T) {
	srv, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("serve after shutdown: %v", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("zero config accepted")
	}
}

// Admin pages are on the link port only with ServeAdmin; probes always.
func TestLinkPortAdminPages(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.ServeAdmin = on
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv.Handle("GET /{$}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
		// Before Serve /status answers 503: what matters is whether the
		// path is served at all.
		for _, path := range []string{"/", "/status", "/metrics", "/healthz"} {
			served := on || path == "/healthz"
			rec := httptest.NewRecorder()
			srv.hs.Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if got := rec.Code != http.StatusNotFound; got != served {
				t.Errorf("ServeAdmin=%v: link port %s = %d, served %v", on, path, rec.Code, served)
			}
			rec = httptest.NewRecorder()
			srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code == http.StatusNotFound {
				t.Errorf("admin %s = %d", path, rec.Code)
			}
		}
	}
}
