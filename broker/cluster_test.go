package broker

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/state"
)

// startState runs a state server with no startup or scale-out delay.
func startState(t *testing.T) *state.Server {
	t.Helper()
	cfg := state.DefaultConfig()
	cfg.AuthKey = testKey
	cfg.StartupDelay, cfg.ScaleOutDelay, cfg.DrainWindow = 0, 0, 50*time.Millisecond
	cfg.GossipBind, cfg.GossipPort = "127.0.0.1", 0
	s, err := state.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	<-s.Ready()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, state.ErrServerClosed) {
			t.Errorf("state Serve: %v", err)
		}
	})
	return s
}

// A broker with a state server is ready once it joined, gets into the ring,
// and on Leave is resharded out and released while it keeps serving.
func TestJoinAndLeaveCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a state server and gossip")
	}
	st := startState(t)
	b := startBroker(t, func(c *Config) {
		c.StateAddr = st.Addr().String()
		c.GossipBind, c.GossipPort, c.GossipAdvertise = "127.0.0.1", 0, "127.0.0.1"
		ac := membership.DefaultConfig()
		ac.StatsInterval = 50 * time.Millisecond
		c.Agent = &ac
	})
	select {
	case <-b.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("broker never became ready")
	}
	waitFor(t, "broker in the ring", func() bool {
		s, err := st.Status(context.Background())
		return err == nil && s.Ring != nil && len(s.Ring.Brokers) == 1 && s.Ring.Brokers[0].ID == "broker-1" &&
			s.Ring.Brokers[0].Addr == b.listenAddr
	})
	if a := b.GossipAddr(); a == "" || a == "127.0.0.1:0" {
		t.Fatalf("GossipAddr = %q", a)
	}
	waitFor(t, "ring version seen", func() bool { return b.metric("scc_broker_ring_version") >= 1 })

	fe := dialFE(t, b.listenAddr, "fe-1")
	fe.subscribeWait("x")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	// Still serving after the release, until Shutdown.
	fe.publish("x", "after-release")
	waitFor(t, "delivery after release", func() bool { return len(fe.gotOn("x")) == 1 })
}

func TestLeaveStandaloneReturnsAtOnce(t *testing.T) {
	b := startBroker(t, nil)
	if err := b.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
}
