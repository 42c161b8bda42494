package clustertest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	ringpkg "github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// withHistory is a cluster whose every channel keeps history, so brokers
// replicate it to each channel's standby and frontends re-send and
// recover across broker failures.
func withHistory(t *testing.T, o clustertest.Options) clustertest.Options {
	t.Helper()
	set, err := rules.Parse([]byte(`rules:
  - {match: "*", subscribe: anyone, publish: anyone, history: {size: 2000, ttl: 10m}}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	o.Broker = func(c *broker.Config) { c.Rules = set }
	o.Frontend = func(c *frontend.Config) { c.Rules = set }
	return o
}

// historyTraffic is steady traffic on fewer channels: every subscribe
// of a channel with history also asks its owner for its position.
func historyTraffic(c *clustertest.Cluster) clustertest.TrafficOptions {
	o := steady(c)
	o.Channels = 60
	o.Publishers = 4
	o.Interval = time.Millisecond
	return o
}

// A broker killed under steady load on 2 frontends, with history on:
// its channels' standbys hold every publication it delivered or
// acknowledged, frontends re-send what it had not acknowledged and fetch
// what it had not delivered, so subscribers see every message once, in
// order.
func TestBrokerKillLosesNothingWithHistory(t *testing.T) {
	c := clustertest.Start(t, withHistory(t, clustertest.Options{Brokers: 3, Frontends: 2}))
	v := c.WaitRing(10*time.Second, 3, 0)
	tr := clustertest.StartTraffic(t, historyTraffic(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the kill")
	}
	t.Logf("epoch changes before the kill: %v", c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "epoch"))
	killed := time.Now()
	c.Brokers[0].Crash()
	requireRecovered(t, tr, killed, "delivery did not resume on every channel after a broker was killed")
	c.WaitRing(10*time.Second, 2, v)
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the failover")
	}
	requireClean(t, tr.Stop(5*time.Second))
	requireSameEpochs(t, c)
}

// requireSameEpochs checks that no channel's history was lost: the
// frontends never saw a channel continue under another epoch.
func requireSameEpochs(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	lost := c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "epoch")
	t.Logf("gaps filled from history: %v; channels that lost their history: %v; publishes re-sent: %v",
		c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "recovered"), lost,
		c.FrontendCounter("scc_frontend_resent_total", "", ""))
	if lost != 0 {
		t.Fatalf("%v times a channel continued under a new epoch: its history was lost", lost)
	}
}

// The same with the state server down: brokers and frontends route
// around the crashed broker by gossip alone, and the standbys still
// hold every channel's history.
func TestBrokerKillStateDownLosesNothingWithHistory(t *testing.T) {
	c := clustertest.Start(t, withHistory(t, clustertest.Options{Brokers: 3, Frontends: 2}))
	c.WaitRing(10*time.Second, 3, 0)
	tr := clustertest.StartTraffic(t, historyTraffic(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the outage")
	}
	c.State.Kill()
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow with the state server down")
	}
	killed := time.Now()
	c.Brokers[0].Crash()
	requireRecovered(t, tr, killed, "delivery did not resume after a broker crashed while the state server was down")
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the failover")
	}
	requireClean(t, tr.Stop(5*time.Second))
	requireSameEpochs(t, c)
}

// Owner and standby crashed together: the channels they both held lose
// their history. The loss stays on those channels, and every subscriber
// of each of them is told: its next publication comes under a new epoch.
func TestOwnerAndStandbyCrashTogether(t *testing.T) {
	c := clustertest.Start(t, withHistory(t, clustertest.Options{Brokers: 4, Frontends: 2}))
	c.WaitRing(10*time.Second, 4, 0)
	opts := historyTraffic(c)
	tr := clustertest.StartTraffic(t, opts)
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the crash")
	}
	// A watcher subscribed to every channel, to see what clients are told.
	w, err := client.Dial(t.Context(), c.FrontendURLs()[0], client.Options{SubscriptionBuffer: 1 << 17})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var ring []protocol.BrokerInfo
	for _, b := range c.Brokers {
		ring = append(ring, protocol.BrokerInfo{ID: b.ID()})
	}
	rg := ringpkg.New(1, ring)
	dead := map[string]bool{c.Brokers[0].ID(): true, c.Brokers[1].ID(): true}
	subs := map[string]*client.Subscription{}
	affected := map[string]bool{}
	for i := 0; i < opts.Channels; i++ {
		ch := fmt.Sprintf("ch-%d", i)
		s, err := w.Subscribe(t.Context(), ch, client.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subs[ch] = s
		owner := rg.OwnerID(ch)
		if dead[owner] && dead[rg.Broker(rg.StandbyIndex(ch, owner)).ID] {
			affected[ch] = true
		}
	}
	if len(affected) == 0 {
		t.Fatal("no channel has both its owner and its standby on the crashed brokers")
	}
	clustertest.WaitFor(t, 10*time.Second, "the watcher to see every channel's position", func() bool {
		for _, s := range subs {
			if _, e := s.Position(); e == "" {
				return false
			}
		}
		return true
	})
	before := map[string]string{}
	for ch, s := range subs {
		_, before[ch] = s.Position()
	}
	killed := time.Now()
	c.Brokers[0].Crash()
	c.Brokers[1].Crash()
	// Two brokers leave the ring at once: no 2s bound is promised here.
	took, ok := tr.WaitFlowing(killed, 30*time.Second)
	if !ok {
		t.Fatal("delivery did not resume after owner and standby crashed")
	}
	t.Logf("delivery resumed on every channel %v after the crash", took)
	r := tr.Stop(5 * time.Second)
	report(t, r)
	// Elsewhere nothing is duplicated or reordered; what waited for a
	// dead owner longer than the backlog's age while the state server
	// took the two brokers out is lost and counted by the frontends.
	var elsewhere int64
	for _, s := range r.Streams {
		if !affected[s.Channel] {
			if s.Duplicated != 0 || s.OutOfOrder != 0 || s.Unexpected != 0 {
				t.Errorf("channel %s lost its owner or its standby, not both, and had trouble: %+v", s.Channel, s)
			}
			elsewhere += s.Lost
		}
	}
	drops := c.RouteDrops()
	t.Logf("lost on channels that kept their history: %d; publishes dropped and counted by frontends: %v", elsewhere, drops)
	if elsewhere > 0 && drops == 0 {
		t.Errorf("%d messages were lost on channels with a surviving copy and no drop was counted", elsewhere)
	}
	for ch, s := range subs {
		_, now := s.Position()
		if affected[ch] && now == before[ch] {
			t.Errorf("channel %s lost its history but its subscriber still sees epoch %s", ch, now)
		}
		if !affected[ch] && now != before[ch] {
			t.Errorf("channel %s kept a copy of its history but changed epoch %s → %s", ch, before[ch], now)
		}
	}
	lost := c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "epoch")
	t.Logf("%d of %d channels lost their history; frontends counted %v epoch changes", len(affected), opts.Channels, lost)
	if lost < float64(len(affected)) {
		t.Errorf("frontends counted %v channels that lost their history, want at least %d", lost, len(affected))
	}
}

// Scale-out and scale-in with history: every channel keeps its epoch and
// its offsets continue, and subscribers see every message once, in order.
func TestScaleOutInKeepsHistory(t *testing.T) {
	c := clustertest.Start(t, withHistory(t, clustertest.Options{Brokers: 2, Frontends: 2}))
	v := c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, historyTraffic(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the scale-out")
	}
	c.AddBroker()
	v2 := c.WaitRing(15*time.Second, 3, v)
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the scale-out")
	}
	t.Logf("epoch changes after the scale-out: %v", c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "epoch"))
	if err := c.Brokers[0].Stop(15 * time.Second); err != nil {
		t.Fatalf("draining broker: %v", err)
	}
	v3 := c.WaitRing(15*time.Second, 2, v2)
	t.Logf("ring %d → %d → %d", v, v2, v3)
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		t.Fatal("messages did not flow after the scale-in")
	}
	requireClean(t, tr.Stop(5*time.Second))
	requireSameEpochs(t, c)
}

// A broker crashed and restarted at the same address, before the ring
// changes: it gets its channels' histories back from their standbys, so
// they keep their epochs, and nothing is lost, duplicated or reordered.
func TestBrokerRestartKeepsHistory(t *testing.T) {
	c := clustertest.Start(t, withHistory(t, clustertest.Options{Brokers: 2, Frontends: 2, ScaleBackDelay: 5 * time.Second}))
	c.WaitRing(10*time.Second, 2, 0)
	tr := clustertest.StartTraffic(t, historyTraffic(c))
	if _, ok := tr.WaitFlowing(time.Now(), 10*time.Second); !ok {
		t.Fatal("messages did not flow before the restart")
	}
	killed := time.Now()
	c.Brokers[0].Crash()
	c.Brokers[0].Restart()
	took, ok := tr.WaitFlowing(killed, 10*time.Second)
	if !ok {
		t.Fatal("delivery did not resume after the restart")
	}
	t.Logf("delivery resumed on every channel %v after the crash", took)
	requireClean(t, tr.Stop(5*time.Second))
	requireSameEpochs(t, c)
}
