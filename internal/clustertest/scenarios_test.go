package clustertest_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/internal/clustertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's and net/http's background goroutines stop
		// asynchronously after Shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).triggerFunc"),
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"), // a probe of a killed node waits out its timeout
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// steady is the traffic every scenario runs: 2 subscribers per frontend
// over 200 channels, 2 publishers.
func steady(c *clustertest.Cluster) clustertest.TrafficOptions {
	return clustertest.TrafficOptions{
		URLs:        c.FrontendURLs(),
		Channels:    200,
		Subscribers: 4,
		Publishers:  2,
		Interval:    2 * time.Millisecond,
	}
}

func report(t *testing.T, r bench.CheckResult) {
	t.Helper()
	t.Logf("expected=%d received=%d lost=%d duplicated=%d out_of_order=%d unexpected=%d",
		r.Expected, r.Received, r.Lost, r.Duplicated, r.OutOfOrder, r.Unexpected)
}

func requireClean(t *testing.T, r bench.CheckResult) {
	t.Helper()
	report(t, r)
	if r.Expected == 0 {
		t.Fatal("no message was expected: the traffic did not run")
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 || r.Malformed != 0 {
		t.Fatalf("want 0 lost, 0 duplicated, 0 out of order: %+v", r.Streams[:min(5, len(r.Streams))])
	}
}

// requireRecovered waits for every channel to deliver a message sent after
// the fault and holds it to DESIGN.md's failure bound: delivery restored
// within 2s. That bound is a promise of the design (measured 0.4-1.2s
// here), not a speed benchmark.
func requireRecovered(t *testing.T, tr *clustertest.Traffic, since time.Time, what string) {
	t.Helper()
	took, ok := tr.WaitFlowing(since, 10*time.Second)
	if !ok {
		t.Fatal(what)
	}
	t.Logf("delivery resumed on every channel %v after the fault", took)
	if took > 2*time.Second {
		t.Errorf("delivery resumed after %v, want under 2s", took)
	}
}

// requireCrashAccounted checks what a crash may cost: messages in flight
// may be lost, but counted, and nothing is duplicated or reordered.
// crashInFlight bounds the messages a kill -9 of a broker may take with
// it uncounted (see requireCrashAccounted).
const crashInFlight = 16

func requireCrashAccounted(t *testing.T, c *clustertest.Cluster, r bench.CheckResult) {
	t.Helper()
	report(t, r)
	if r.Duplicated != 0 || r.OutOfOrder != 0 {
		t.Errorf("a crash may lose in-flight messages but never duplicate or reorder them")
	}
	// Publishes the frontends wrote into the killed broker's socket just
	// before the kill are gone with its receive buffer: the writes
	// succeeded, so no frontend can count them. That window is a few
	// messages; a loss beyond it must have been counted as a drop.
	drops := c.RouteDrops()
	if r.Lost > crashInFlight && drops == 0 {
		t.Errorf("%d messages were lost but no drop was counted", r.Lost)
	}
	t.Logf("drops counted by frontends: %v", drops)
}

func TestCrossFrontendDelivery(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2})
	c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow on every channel")
	}
	requireClean(t, tr.Stop(5*time.Second))
}

func TestScaleOutLosesNothing(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2})
	v := c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the scale-out")
	}
	c.AddBroker()
	v2 := c.WaitRing(15*time.Second, 3, v)
	t.Logf("ring %d → %d", v, v2)
	// Keep publishing through the drain window.
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the scale-out")
	}
	requireClean(t, tr.Stop(5*time.Second))
}

func TestGracefulScaleInLosesNothing(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 3, Frontends: 2})
	v := c.WaitRing(10*time.Second, 3, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the scale-in")
	}
	if err := c.Brokers[1].Stop(15 * time.Second); err != nil {
		t.Fatalf("draining broker: %v", err)
	}
	v2 := c.WaitRing(15*time.Second, 2, v)
	t.Logf("ring %d → %d", v, v2)
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the scale-in")
	}
	requireClean(t, tr.Stop(5*time.Second))
}

func TestBrokerKillRecovers(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 3, Frontends: 2})
	v := c.WaitRing(10*time.Second, 3, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the kill")
	}
	killed := time.Now()
	c.Brokers[0].Kill()
	requireRecovered(t, tr, killed, "delivery did not resume on every channel after a broker was killed")
	c.WaitRing(10*time.Second, 2, v)
	requireCrashAccounted(t, c, tr.Stop(5*time.Second))
}

func TestBrokerRestartSameAddress(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2})
	c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the restart")
	}
	killed := time.Now()
	c.Brokers[0].Kill()
	c.Brokers[0].Restart()
	requireRecovered(t, tr, killed, "delivery did not resume after the broker restarted")
	requireCrashAccounted(t, c, tr.Stop(5*time.Second))
}

// stateOutage is how long the state server stays down; the figure
// is 30s, -short uses less.
func stateOutage() time.Duration {
	if testing.Short() {
		return 3 * time.Second
	}
	return 30 * time.Second
}

func TestStateDownLosesNothing(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 3, Frontends: 2})
	v := c.WaitRing(10*time.Second, 3, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the outage")
	}
	c.State.Kill()
	down := time.Now()

	// A frontend started during the outage learns the ring from gossip
	// and serves cross-frontend traffic.
	f3 := c.AddFrontend(c.GossipSeeds()...)
	deadline := time.Now().Add(15 * time.Second)
	for f3.Router().RingVersion() != v || !f3.Server().IsReady() {
		if time.Now().After(deadline) {
			t.Fatalf("the new frontend did not learn the ring from gossip in 15s: version %d (want %d, frontend 0 has %d), %d brokers, ready %v",
				f3.Router().RingVersion(), v, c.Frontends[0].Router().RingVersion(), f3.Router().RingBrokers(), f3.Server().IsReady())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tr2 := clustertest.StartTraffic(t, clustertest.TrafficOptions{
		URLs: []string{f3.URL(), c.Frontends[0].URL()}, Channels: 50, Subscribers: 2, Publishers: 1,
		Interval: 2 * time.Millisecond, Prefix: "new-",
	})
	if _, ok := tr2.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("the frontend started during the outage does not serve cross-frontend traffic")
	}

	for time.Since(down) < stateOutage() {
		time.Sleep(100 * time.Millisecond)
	}
	r := tr.Checkpoint(5 * time.Second)
	t.Logf("state down for %v:", time.Since(down).Round(time.Second))
	requireClean(t, r)
	requireClean(t, tr2.Checkpoint(5*time.Second))

	// A broker killed while the state is down is routed around.
	killed := time.Now()
	c.Brokers[2].Kill()
	requireRecovered(t, tr, killed, "delivery did not resume after a broker died while the state server was down")
	requireCrashAccounted(t, c, tr.Stop(5*time.Second))
	tr2.Stop(5 * time.Second)
}

func TestStateRestartNoDisruption(t *testing.T) {
	// A startup delay, as in production, lets the restarted state server
	// hear every node before it commits.
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2, StartupDelay: 500 * time.Millisecond})
	v := c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, steady(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow")
	}
	c.State.Kill()
	c.State.Restart()
	v2 := c.WaitRing(15*time.Second, 2, v)
	t.Logf("ring version %d before the restart, %d after", v, v2)
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the state restart")
	}
	requireClean(t, tr.Stop(5*time.Second))
}

func TestWrongAuthKeyRejected(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 1})
	v := c.WaitRing(10*time.Second, 1, 0)
	bad := c.AddBrokerWithKey("not-the-cluster-key")
	none := c.AddBrokerWithKey("-") // a key that no other node has
	// Give them time to try (and fail) to join, then check they never did.
	clustertest.WaitFor(t, 10*time.Second, "the state server to reject both brokers", func() bool {
		return c.StateRejects("auth") >= 2
	})
	if bad.Ready() || none.Ready() {
		t.Fatal("a broker with a wrong key joined the cluster")
	}
	st := c.State.Status()
	if st.Ring.Version != v || len(st.Ring.Brokers) != 1 {
		t.Fatalf("the ring changed after rejected joins: %+v", st.Ring)
	}
}

// A frontend that crashes and comes back at the same address: its clients
// reconnect (with jittered backoff), resubscribe and receive again; the
// other frontend's clients never notice.
func TestFrontendRestartClientsResubscribe(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 2})
	c.WaitRing(10*time.Second, 1, 0)
	f1, f2 := c.Frontends[0], c.Frontends[1]
	ctx := t.Context()
	sub, err := client.Dial(ctx, f1.URL(), client.Options{Backoff: client.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := sub.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctx, f2.URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	receive := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if err := pub.Publish(ctx, "room", want); err != nil {
				t.Fatalf("publish: %v", err)
			}
			rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			m, err := s.Next(rctx)
			cancel()
			if err == nil && string(m.Data) == `"`+want+`"` {
				return
			}
		}
		t.Fatalf("%q never arrived", want)
	}
	receive("before")
	f1.Kill()
	f1.Restart()
	receive("after")
}
