package cluster

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

// The reshard, failover and routing behaviour of this package runs against
// real brokers and a real state server in internal/clustertest; these are
// the cases that need no cluster.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds, and fails the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}

type sink struct{}

func (sink) Deliver(string, []byte) {}

func TestPublishWithoutRingIsCountedError(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Registry = reg
	b := New(cfg)
	if err := b.Start(context.Background(), sink{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Ready() {
		t.Fatal("ready without a ring")
	}
	if err := b.Publish(context.Background(), "ch", []byte(`1`)); !errors.Is(err, ErrNoRing) {
		t.Fatalf("Publish = %v, want ErrNoRing", err)
	}
	var m dto.Metric
	if err := b.m.drops.WithLabelValues("no_ring").Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
		t.Fatalf("no_ring drops = %v", m.GetCounter().GetValue())
	}
	// Interest recorded before the ring is known waits for it; Subscribe
	// does not block without brokers.
	if err := b.Subscribe(context.Background(), "ch"); err != nil {
		t.Fatal(err)
	}
	b.Unsubscribe("ch")
	b.Unsubscribe("never-subscribed")
}

func TestCloseIsIdempotentAndStopsLinks(t *testing.T) {
	b := New(DefaultConfig())
	if err := b.Start(context.Background(), sink{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background(), sink{}); err == nil {
		t.Fatal("a second Start succeeded")
	}
	// A ring naming a broker nobody runs: Prepare cannot get the broker's
	// acknowledgement for the local channel, and the link keeps redialing
	// until Close, which must stop it (goleak checks).
	if err := b.Subscribe(context.Background(), "room"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Prepare(ctx, protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "b1", Addr: "127.0.0.1:1"}}})
	if err == nil {
		t.Fatal("Prepare against an unreachable broker with a cancelled context succeeded")
	}
	b.Close()
	b.Close()
	if err := b.Subscribe(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
}

func TestShrunk(t *testing.T) {
	set := map[string]struct{}{}
	peak := 0
	for i := range 1000 {
		set[strconv.Itoa(i)] = struct{}{}
		peak = max(peak, len(set))
	}
	for i := range 800 {
		delete(set, strconv.Itoa(i))
		set = shrunk(set, &peak)
	}
	// Rebuilt when it fell below 250, and kept small after.
	if peak != 249 || len(set) != 200 {
		t.Fatalf("peak %d, %d left; want the set rebuilt at 249, 200 left", peak, len(set))
	}
}
