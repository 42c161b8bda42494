package clustertest_test

import (
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/rules"
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
