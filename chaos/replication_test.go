package chaos_test

import (
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// TestScenario20BrokerKillHistory: kill -9 of a broker with history on
// every channel (replicated to each channel's standby): delivery on every
// channel within 2s and 0 lost, 0 duplicated, 0 reordered per publisher
// and channel. Frontends re-send what the dead broker had not
// acknowledged and fetch from the standby what it had not delivered.
func TestScenario20BrokerKillHistory(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "20-broker-kill-history", "^TestScenario20")
	env := chaos.DefaultEnv()
	env["SCC_HISTORY_SIZE"] = "2000"
	env["SCC_HISTORY_TTL"] = "5m"
	c := chaos.StartCluster(t, chaos.Spec{Name: "20-broker-kill-history", Brokers: 3, Frontends: 2, Env: env})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	tr := startSteady(t, rep, o)
	killRecovery(t, rep, c, tr, "broker-1", nil)
	v2 := c.WaitRing(2, v, 10*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the ring without the dead broker was committed")
	}
	r := tr.Stop(5 * time.Second)
	rep.Check(r)
	requireClean(rep, "broker kill -9 with history", r)
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
	rep.Figure("gaps_recovered", c.SumFrontends("scc_frontend_history_recoveries_total", "result", "recovered"))
	lostHistory := c.SumFrontends("scc_frontend_history_recoveries_total", "result", "epoch")
	rep.Figure("channels_that_lost_history", lostHistory)
	if lostHistory != 0 {
		rep.Failf("%v times a channel continued under a new epoch: its history was lost", lostHistory)
	}
	rep.Figure("route_drops_by_reason", routeDropsByReason(c))
}

// historyEnv is every node's environment with history on every channel,
// replicated to each channel's standby.
func historyEnv() map[string]string {
	env := chaos.DefaultEnv()
	env["SCC_HISTORY_SIZE"] = "2000"
	env["SCC_HISTORY_TTL"] = "5m"
	return env
}

// epochChanges is how many times the frontends saw a channel continue
// under a new epoch: its history was lost.
func epochChanges(c *chaos.Cluster) float64 {
	return c.SumFrontends("scc_frontend_history_recoveries_total", "result", "epoch")
}

// requireSameEpochs fails the scenario if any channel changed epoch.
func requireSameEpochs(rep *chaos.Report, c *chaos.Cluster, what string) {
	lost := epochChanges(c)
	rep.Figure("channels_that_lost_history", lost)
	if lost != 0 {
		rep.Failf("%s: %v times a channel continued under a new epoch: its history was lost", what, lost)
	}
}

// TestScenario21StateDownBrokerKillHistory: with history on, kill -9 of
// the state server, then kill -9 of a broker while it is down: nodes
// route around the broker by gossip alone, its channels' standbys hold
// their histories, and delivery resumes on every channel within 2s with
// 0 lost, 0 duplicated, 0 reordered and no channel changing epoch.
func TestScenario21StateDownBrokerKillHistory(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "21-state-down-broker-kill-history", "^TestScenario21")
	c := chaos.StartCluster(t, chaos.Spec{Name: "21-state-down-broker-kill-history", Brokers: 3, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	tr := startSteady(t, rep, o)

	if err := c.KillState(); err != nil {
		rep.Fatalf("SIGKILL state: %v", err)
	}
	// Let the frontends notice the state link is gone.
	if _, ok := tr.WaitFlowing(time.Now().Add(time.Second), 5*time.Second); !ok {
		rep.Fatalf("traffic stalled when the state server died")
	}
	killRecovery(t, rep, c, tr, "broker-2", nil)
	rep.Figure("ring_version", v)
	rep.Figure("frontend_ring_versions_during", frontendRingVersions(c))
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages stopped flowing after routing around the dead broker")
	}
	r := tr.Stop(5 * time.Second)
	rep.Check(r)
	requireClean(rep, "state down, broker kill -9 with history", r)
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
	rep.Figure("gaps_recovered", c.SumFrontends("scc_frontend_history_recoveries_total", "result", "recovered"))
	rep.Figure("fallback_ring_changes", c.SumFrontends("scc_frontend_ring_changes_total", "source", "fallback"))
	requireSameEpochs(rep, c, "state down, broker kill -9")
	rep.Figure("route_drops_by_reason", routeDropsByReason(c))
}
