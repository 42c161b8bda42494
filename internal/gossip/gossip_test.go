package gossip

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testConfig(id, role string) Config {
	c := DefaultConfig()
	c.NodeName = id
	c.Role = role
	c.Addr = id + ":1"
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.PushPullInterval = 200 * time.Millisecond
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

func start(t *testing.T, cfg Config) *Gossip {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil {
		t.Fatal("empty NodeName accepted")
	}
	c.NodeName = "a"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ProbeTimeout = c.ProbeInterval
	if err := c.Validate(); err == nil {
		t.Fatal("ProbeTimeout >= ProbeInterval accepted")
	}
}

func TestRingPropagatesAndDeadDetected(t *testing.T) {
	rings := make(chan protocol.Ring, 16)
	members := make(chan Member, 64)
	a := start(t, testConfig("a", protocol.RoleState))
	cb := testConfig("b", protocol.RoleBroker)
	cb.Seeds = []string{a.Addr()}
	b := start(t, cb)
	cc := testConfig("c", protocol.RoleFrontend)
	cc.Seeds = []string{a.Addr()}
	cc.OnRing = func(r protocol.Ring) { rings <- r }
	cc.OnMember = func(m Member) {
		select {
		case members <- m:
		default:
		}
	}
	c := start(t, cc)

	for _, g := range []*Gossip{a, b, c} {
		waitFor(t, 5*time.Second, "3 alive members", func() bool { return g.NumAlive() == 3 })
	}
	ms := c.Members()
	if len(ms) != 3 || ms[1].ID != "b" || ms[1].Role != protocol.RoleBroker || ms[1].Addr != "b:1" || !ms[1].Alive {
		t.Fatalf("members = %+v", ms)
	}

	r := protocol.Ring{Version: 7, Brokers: []protocol.BrokerInfo{{ID: "b", Addr: "b:1"}}}
	a.SetRing(r)
	select {
	case got := <-rings:
		if got.Version != 7 || len(got.Brokers) != 1 || got.Brokers[0].ID != "b" {
			t.Fatalf("ring = %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ring did not reach c")
	}
	waitFor(t, 5*time.Second, "ring at b", func() bool { r, ok := b.Ring(); return ok && r.Version == 7 })
	// An older ring is ignored.
	a.SetRing(protocol.Ring{Version: 3})
	if r, _ := a.Ring(); r.Version != 7 {
		t.Fatalf("older ring replaced newer: %d", r.Version)
	}

	// b stops without Leave: declared dead.
	watch, stop := c.Watch()
	defer stop()
	stopped := time.Now()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b dead at c", func() bool { return c.IsDead("b") })
	t.Logf("b declared dead at c after %v", time.Since(stopped))
	select {
	case <-watch:
	default:
		t.Fatal("watch not notified of the death")
	}
	if !slices.Equal(c.DeadBrokers(), []string{"b"}) || c.IsAlive("b") || a.IsDead("c") {
		t.Fatalf("dead brokers %v", c.DeadBrokers())
	}
	waitFor(t, 5*time.Second, "b dead at a", func() bool { return a.IsDead("b") })
}

// A node that starts after the ring was set learns it by push/pull at join.
func TestLateJoinerLearnsRing(t *testing.T) {
	a := start(t, testConfig("a", protocol.RoleBroker))
	a.SetRing(protocol.Ring{Version: 4, Brokers: []protocol.BrokerInfo{{ID: "a", Addr: "a:1"}}})
	cb := testConfig("b", protocol.RoleFrontend)
	got := make(chan protocol.Ring, 4)
	cb.OnRing = func(r protocol.Ring) { got <- r }
	b := start(t, cb)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.Version != 4 {
			t.Fatalf("version %d", r.Version)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ring from join")
	}
}

func TestJoinFails(t *testing.T) {
	cfg := testConfig("x", protocol.RoleFrontend)
	cfg.TCPTimeout = 200 * time.Millisecond
	g := start(t, cfg)
	if _, err := g.Join([]string{"127.0.0.1:1"}); err == nil {
		t.Fatal("join to nothing succeeded")
	}
	if g.NumAlive() != 1 {
		t.Fatal(g.NumAlive())
	}
	// Leave with nobody else is immediate; Shutdown after is fine.
	if err := g.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(fmt.Errorf("second shutdown: %w", err))
	}
}

// A node without the cluster's key can neither join nor inject a ring.
func TestGossipNeedsKey(t *testing.T) {
	mk := func(name, key string) *Gossip {
		gc := DefaultConfig()
		gc.NodeName, gc.BindAddr, gc.BindPort, gc.AuthKey = name, "127.0.0.1", 0, []byte(key)
		gc.TCPTimeout = 300 * time.Millisecond
		g, err := New(gc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Shutdown() })
		return g
	}
	a := mk("a", "cluster-key")
	b := mk("b", "cluster-key")
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("a node with the key could not join: %v", err)
	}
	intruder := mk("intruder", "other-key")
	intruder.SetRing(protocol.Ring{Version: 99, Brokers: []protocol.BrokerInfo{{ID: "evil", Addr: "127.0.0.1:1"}}})
	if _, err := intruder.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node with another key joined the cluster")
	}
	if r, ok := a.Ring(); ok && r.Version == 99 {
		t.Fatal("a ring from a node without the key was adopted")
	}
}
