package membership

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = "secret"

// fakeState accepts agent links and records what they send.
type fakeState struct {
	t     *testing.T
	ln    net.Listener
	srv   *http.Server
	links chan *nodelink.Link
	msgs  chan got
	wg    sync.WaitGroup
}

type got struct {
	t    protocol.MsgType
	ring protocol.Ring
	v    uint64
}

func newFakeState(t *testing.T) *fakeState {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeState{t: t, ln: ln, links: make(chan *nodelink.Link, 16), msgs: make(chan got, 256)}
	cfg := nodelink.DefaultConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = "state", protocol.RoleState, []byte(key)
	fs.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.wg.Add(1)
		defer fs.wg.Done()
		l, err := nodelink.Accept(w, r, cfg, nil, nil)
		if err != nil {
			return
		}
		fs.links <- l
		l.Run(fs)
	})}
	go fs.srv.Serve(ln)
	t.Cleanup(func() {
		fs.srv.Close()
		for {
			select {
			case l := <-fs.links:
				l.Close("test")
				continue
			default:
			}
			break
		}
		fs.wg.Wait()
	})
	return fs
}

func (fs *fakeState) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	for _, m := range msgs {
		g := got{t: m.Type}
		switch m.Type {
		case protocol.MsgRing:
			m.Decode(&g.ring)
		case protocol.MsgPrepared:
			var p protocol.Prepared
			m.Decode(&p)
			g.v = p.Version
		case protocol.MsgStats:
			var s protocol.Stats
			m.Decode(&s)
			g.v = s.RingVersion
		}
		fs.msgs <- g
	}
}

func (fs *fakeState) Closed(*nodelink.Link, error) {}

func (fs *fakeState) link() *nodelink.Link {
	fs.t.Helper()
	select {
	case l := <-fs.links:
		return l
	case <-time.After(10 * time.Second):
		fs.t.Fatal("agent did not connect")
		return nil
	}
}

// next returns the next message of type t, skipping others.
func (fs *fakeState) next(t protocol.MsgType) got {
	fs.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case g := <-fs.msgs:
			if g.t == t {
				return g
			}
		case <-deadline:
			fs.t.Fatalf("no %v from the agent", t)
		}
	}
}

// recorder is a Handler that records calls and checks they never overlap.
type recorder struct {
	mu      sync.Mutex
	events  []string
	active  atomic.Int32
	overlap atomic.Bool
	block   chan struct{} // Prepare waits for it (or ctx) when set
}

func (r *recorder) enter() func() {
	if r.active.Add(1) > 1 {
		r.overlap.Store(true)
	}
	return func() { r.active.Add(-1) }
}

func (r *recorder) Prepare(ctx context.Context, rg protocol.Ring) error {
	defer r.enter()()
	r.add(fmt.Sprintf("prepare v%d", rg.Version))
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			r.add("prepare cancelled")
			return ctx.Err()
		}
	}
	return nil
}

func (r *recorder) Commit(rg protocol.Ring) {
	defer r.enter()()
	var ids []string
	for _, b := range rg.Brokers {
		ids = append(ids, b.ID)
	}
	r.add(fmt.Sprintf("commit v%d[%s]", rg.Version, strings.Join(ids, ",")))
}

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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}

func waitLog(t *testing.T, r *recorder, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.log() != want {
		if time.Now().After(deadline) {
			t.Fatalf("handler saw %q, want %q", r.log(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func agentConfig(id, role, stateAddr string) Config {
	c := DefaultConfig()
	c.NodeID, c.Role = id, role
	c.StateAddr = stateAddr
	c.AuthKey = []byte(key)
	c.GossipBind, c.GossipPort = "127.0.0.1", 0
	c.StatsInterval = 50 * time.Millisecond
	return c
}

func startAgent(t *testing.T, cfg Config, h Handler) *Agent {
	t.Helper()
	a, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func rg(v uint64, ids ...string) protocol.Ring {
	r := protocol.Ring{Version: v}
	for _, id := range ids {
		r.Brokers = append(r.Brokers, protocol.BrokerInfo{ID: id, Addr: id + ":1"})
	}
	return r
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	if c.Validate() == nil {
		t.Fatal("empty config accepted")
	}
	c.NodeID, c.Role = "x", protocol.RoleState
	if c.Validate() == nil {
		t.Fatal("role state accepted")
	}
	c.Role = protocol.RoleFrontend
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c, nil); err == nil {
		t.Fatal("nil handler accepted")
	}
}

func TestRingPrepareCommitAndReport(t *testing.T) {
	fs := newFakeState(t)
	rec := &recorder{}
	a := startAgent(t, agentConfig("f1", protocol.RoleFrontend, fs.ln.Addr().String()), rec)
	l := fs.link()
	waitFor(t, "connected", a.StateConnected)
	if p := l.Peer(); p.NodeID != "f1" || p.Role != protocol.RoleFrontend || p.RingVersion != 0 || p.GossipAddr != a.GossipAddr() {
		t.Fatalf("hello %+v", p)
	}
	l.Send(protocol.MsgRing, &protocol.Ring{Version: 3, Brokers: rg(3, "b1").Brokers})
	waitLog(t, rec, "commit v3[b1]")
	if r, ok := a.Ring(); !ok || r.Version != 3 {
		t.Fatalf("Ring() = %v %v", r, ok)
	}
	// Stats carry the ring version.
	waitFor(t, "stats", func() bool { return fs.next(protocol.MsgStats).v == 3 })

	// An older ring is ignored; a prepare is answered after Prepare.
	l.Send(protocol.MsgRing, &protocol.Ring{Version: 2, Brokers: rg(2, "b9").Brokers})
	l.Send(protocol.MsgPrepare, &protocol.Prepare{Ring: rg(4, "b1", "b2")})
	if g := fs.next(protocol.MsgPrepared); g.v != 4 {
		t.Fatalf("prepared %d", g.v)
	}
	l.Send(protocol.MsgCommit, &protocol.Commit{Ring: rg(4, "b1", "b2")})
	waitLog(t, rec, "commit v3[b1]; prepare v4; commit v4[b1,b2]")

	// After a reconnect the agent says which version it holds and reports
	// its ring.
	l.Close("test")
	l2 := fs.link()
	if v := l2.Peer().RingVersion; v != 4 {
		t.Fatalf("hello ring version %d", v)
	}
	if g := fs.next(protocol.MsgRing); g.ring.Version != 4 || len(g.ring.Brokers) != 2 {
		t.Fatalf("reported ring %+v", g.ring)
	}
	if rec.overlap.Load() {
		t.Fatal("handler calls overlapped")
	}
}

func TestCommitCancelsPrepare(t *testing.T) {
	fs := newFakeState(t)
	rec := &recorder{block: make(chan struct{})}
	startAgent(t, agentConfig("f1", protocol.RoleFrontend, fs.ln.Addr().String()), rec)
	l := fs.link()
	l.Send(protocol.MsgPrepare, &protocol.Prepare{Ring: rg(2, "b1")})
	waitLog(t, rec, "prepare v2")
	l.Send(protocol.MsgCommit, &protocol.Commit{Ring: rg(2, "b1")})
	waitLog(t, rec, "prepare v2; prepare cancelled; commit v2[b1]")
	if rec.overlap.Load() {
		t.Fatal("handler calls overlapped")
	}
	// No Prepared for a cancelled prepare.
	select {
	case g := <-fs.msgs:
		if g.t == protocol.MsgPrepared {
			t.Fatal("prepared sent for a cancelled prepare")
		}
	default:
	}
}

func TestLeaveResentAfterReconnectUntilReleased(t *testing.T) {
	fs := newFakeState(t)
	cfg := agentConfig("b1", protocol.RoleBroker, fs.ln.Addr().String())
	cfg.Addr = "127.0.0.1:8888"
	a := startAgent(t, cfg, &recorder{})
	l := fs.link()
	if l.Peer().Addr != "127.0.0.1:8888" || l.Peer().Draining {
		t.Fatalf("hello %+v", l.Peer())
	}
	left := make(chan error, 1)
	go func() { left <- a.Leave(t.Context()) }()
	fs.next(protocol.MsgLeave)
	l.Close("test")
	l2 := fs.link()
	if !l2.Peer().Draining {
		t.Fatal("reconnect while leaving does not say Draining")
	}
	fs.next(protocol.MsgLeave)
	select {
	case err := <-left:
		t.Fatalf("Leave returned early: %v", err)
	default:
	}
	l2.Send(protocol.MsgReleased, &protocol.Released{Version: 1})
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Leave did not return after Released")
	}
}

func TestLeaveWithoutState(t *testing.T) {
	a := startAgent(t, agentConfig("b1", protocol.RoleBroker, ""), &recorder{})
	if err := a.Leave(t.Context()); !errors.Is(err, ErrNoState) {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	fs := newFakeState(t)
	b := startAgent(t, agentConfig("b2", protocol.RoleBroker, fs.ln.Addr().String()), &recorder{})
	if err := b.Leave(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// Gossip alone (no state): a ring set at a peer reaches the agent, and a
// broker of it that dies is left out at the same version.
func TestGossipRingAndDeadBrokerFallback(t *testing.T) {
	gc := gossip.DefaultConfig()
	gc.NodeName, gc.Role, gc.BindAddr, gc.BindPort = "b1", protocol.RoleBroker, "127.0.0.1", 0
	gc.PushPullInterval = 200 * time.Millisecond
	gc.AuthKey = []byte(key) // gossip is encrypted with the cluster key
	b1, err := gossip.New(gc)
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Shutdown()
	gc.NodeName = "b2"
	b2, err := gossip.New(gc)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Shutdown()
	if _, err := b2.Join([]string{b1.Addr()}); err != nil {
		t.Fatal(err)
	}
	b1.SetRing(rg(6, "b1", "b2"))

	rec := &recorder{}
	cfg := agentConfig("f1", protocol.RoleFrontend, "")
	cfg.GossipSeeds = []string{b1.Addr()}
	cfg.Gossip = &gc
	a := startAgent(t, cfg, rec)
	waitLog(t, rec, "commit v6[b1,b2]")
	b2.Shutdown()
	waitLog(t, rec, "commit v6[b1,b2]; commit v6[b1]")
	if r, _ := a.Ring(); r.Version != 6 || len(r.Brokers) != 1 {
		t.Fatalf("ring %+v", r)
	}
	// The last broker dying leaves the ring as it is: an empty ring routes
	// nothing.
	b1.Shutdown()
	waitFor(t, "b1 dead", func() bool { return a.Gossip().IsDead("b1") })
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := rec.log(); got != "commit v6[b1,b2]; commit v6[b1]" {
			t.Fatalf("handler saw %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	// A gauge another package owns under a name the agent must not clash
	// with.
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "scc_frontend_ring_version", Help: "x"}))
	cfg := agentConfig("f1", protocol.RoleFrontend, "")
	cfg.Registry = reg
	startAgent(t, cfg, &recorder{})
	cfg.NodeID = "f2"
	startAgent(t, cfg, &recorder{}) // same registry: no panic
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "scc_frontend_state_connected") || !slices.Contains(names, "scc_frontend_membership_ring_version") {
		t.Fatalf("metrics %v", names)
	}
}

// A ring whose version jumps past MaxRingVersionStep, or 2^64-1, is
// refused and counted, wherever it comes from; the node keeps following
// the state server's next legitimate ring instead of being wedged at the
// top version.
func TestRingVersionJumpRefused(t *testing.T) {
	fs := newFakeState(t)
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	cfg := agentConfig("f1", protocol.RoleFrontend, fs.ln.Addr().String())
	cfg.Registry = reg
	a := startAgent(t, cfg, rec)
	l := fs.link()
	l.Send(protocol.MsgRing, &protocol.Ring{Version: 3, Brokers: rg(3, "b1").Brokers})
	waitLog(t, rec, "commit v3[b1]")

	l.Send(protocol.MsgCommit, &protocol.Commit{Ring: rg(math.MaxUint64, "evil")})
	l.Send(protocol.MsgRing, &protocol.Ring{Version: 3 + ring.DefaultMaxVersionStep + 1, Brokers: rg(0, "evil").Brokers})
	a.enqueue(func() { a.gossipRing(rg(1<<40, "evil")) }) // as gossip would deliver it
	waitFor(t, "the three rings refused", func() bool {
		return metricValue(t, reg, "scc_frontend_ring_rejects_total", "version_ceiling") == 1 &&
			metricValue(t, reg, "scc_frontend_ring_rejects_total", "version_jump") == 2
	})
	l.Send(protocol.MsgCommit, &protocol.Commit{Ring: rg(4, "b2")})
	waitLog(t, rec, "commit v3[b1]; commit v4[b2]")
	if r, _ := a.Ring(); r.Version != 4 {
		t.Fatalf("ring version %d, want 4", r.Version)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
