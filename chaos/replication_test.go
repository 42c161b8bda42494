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
