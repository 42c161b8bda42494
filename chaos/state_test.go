package chaos_test

import (
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/localcluster"
)

// frontendRingVersions reads scc_frontend_ring_version from every running
// frontend.
func frontendRingVersions(c *chaos.Cluster) map[string]float64 {
	out := map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		if s, err := c.Metrics(name); err == nil {
			out[name] = s.Sum("scc_frontend_ring_version")
		}
	}
	return out
}

// waitFrontendsAt waits until every running frontend publishes by ring
// version v.
func waitFrontendsAt(c *chaos.Cluster, v uint64, timeout time.Duration) (map[string]float64, bool) {
	deadline := time.Now().Add(timeout)
	for {
		vs := frontendRingVersions(c)
		all := len(vs) > 0
		for _, x := range vs {
			all = all && x == float64(v)
		}
		if all || time.Now().After(deadline) {
			return vs, all
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScenario04StateDown: kill -9 of the state server for 30s
// (SCC_CHAOS_STATE_OUTAGE), then a restart: 0 lost throughout, and the
// restarted state server commits a higher ring version.
func TestScenario04StateDown(t *testing.T) {
	requireChaos(t)
	outage := envDuration(t, "SCC_CHAOS_STATE_OUTAGE", 30*time.Second)
	rep := chaos.NewReport(t, "04-state-down", "^TestScenario04")
	c := chaos.StartCluster(t, chaos.Spec{Name: "04-state-down", Brokers: 3, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))

	if err := c.KillState(); err != nil {
		rep.Fatalf("SIGKILL state: %v", err)
	}
	down := time.Now()
	rep.Figure("outage_s", outage.Seconds())
	// Every few seconds of the outage, every channel must still deliver.
	for time.Since(down) < outage {
		if _, ok := tr.WaitFlowing(time.Now(), 2*time.Second); !ok {
			rep.Failf("a channel stopped delivering %v into the state outage", time.Since(down).Round(time.Second))
			break
		}
		time.Sleep(min(3*time.Second, time.Until(down.Add(outage))))
	}
	during := tr.Checkpoint(10 * time.Second)
	requireClean(rep, "state down", during)
	rep.Figure("lost_during_outage", during.Lost)

	restarted := time.Now()
	if err := c.StartState(ctxTimeout(t, 30*time.Second)); err != nil {
		rep.Fatalf("restarting the state server: %v", err)
	}
	v2 := c.WaitRing(3, v, 30*time.Second)
	rep.Figure("commit_after_restart_ms", ms(time.Since(restarted)))
	rep.Figure("ring_versions", []uint64{v, v2})
	if vs, ok := waitFrontendsAt(c, v2, 10*time.Second); !ok {
		rep.Failf("frontends did not adopt ring version %d after the restart: %v", v2, vs)
	}
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the state restart")
	}
	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireClean(rep, "state down and restart", r)
	rep.Figure("route_drops", c.SumFrontends(routeDrops))
}

// TestScenario05StateDownBrokerKill: with the state server down, a broker
// killed is routed around within 2s (frontends derive the ring minus the
// broker memberlist declared dead).
func TestScenario05StateDownBrokerKill(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "05-state-down-broker-kill", "^TestScenario05")
	c := chaos.StartCluster(t, chaos.Spec{Name: "05-state-down-broker-kill", Brokers: 3, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	started := time.Now()
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))

	if err := c.KillState(); err != nil {
		rep.Fatalf("SIGKILL state: %v", err)
	}
	// Let the frontends notice the state link is gone.
	if _, ok := tr.WaitFlowing(time.Now().Add(time.Second), 5*time.Second); !ok {
		rep.Fatalf("traffic stalled when the state server died")
	}
	killRecovery(t, rep, c, tr, "broker-2", nil)
	rep.Figure("frontend_ring_versions_during", frontendRingVersions(c))
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages stopped flowing after routing around the dead broker")
	}
	during := tr.Checkpoint(lossySettle)
	requireOrdered(rep, "state down, broker killed", during)

	// The state server comes back and commits the ring without the dead
	// broker at a higher version.
	if err := c.StartState(ctxTimeout(t, 30*time.Second)); err != nil {
		rep.Fatalf("restarting the state server: %v", err)
	}
	v2 := c.WaitRing(2, v, 30*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the state server came back")
	}
	r := tr.Stop(lossySettle)
	rep.Check(r)
	requireOrdered(rep, "state down, broker killed, state back", r)
	lossCounted(rep, c, clusterResult{r.Expected, r.Lost, time.Since(started).Seconds()}, 2*time.Second)
}

// TestScenario06StateDownNewFrontend: with the state server down, a new
// frontend given gossip seeds learns the ring from gossip and serves
// cross-frontend traffic.
func TestScenario06StateDownNewFrontend(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "06-state-down-new-frontend", "^TestScenario06")
	c := chaos.StartCluster(t, chaos.Spec{Name: "06-state-down-new-frontend", Brokers: 2, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(2, 0, 15*time.Second)
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))

	if err := c.KillState(); err != nil {
		rep.Fatalf("SIGKILL state: %v", err)
	}
	// localcluster gives the new frontend SCC_GOSSIP_SEEDS: every other
	// node's gossip address (the dead state server's too).
	added := time.Now()
	name, err := c.AddFrontend(ctxTimeout(t, 30*time.Second))
	if err != nil {
		rep.Fatalf("starting a frontend while the state server is down: %v", err)
	}
	rep.Figure("ready_ms", ms(time.Since(added)))
	vs, ok := waitFrontendsAt(c, v, 10*time.Second)
	rep.Figure("frontend_ring_versions", vs)
	if !ok {
		rep.Fatalf("the new frontend did not learn ring version %d from gossip: %v", v, vs)
	}
	tr2 := clustertest.StartTraffic(t, clustertest.TrafficOptions{
		URLs:     []string{c.WSURL(name), c.WSURL("frontend-1")},
		Channels: 50, Subscribers: 2, Publishers: 2,
		Interval: 2 * time.Millisecond, Prefix: "new-",
	})
	took, ok := tr2.WaitFlowing(added, 15*time.Second)
	if !ok {
		tr2.Stop(time.Second)
		rep.Fatalf("the frontend started during the outage does not serve cross-frontend traffic")
	}
	rep.Figure("serving_after_start_ms", ms(took))
	// Keep both running a while, then check both.
	time.Sleep(3 * time.Second)
	r2 := tr2.Stop(10 * time.Second)
	rep.Check(r2)
	requireClean(rep, "traffic through the new frontend", r2)
	if err := c.StartState(ctxTimeout(t, 30*time.Second)); err != nil {
		rep.Failf("restarting the state server: %v", err)
	}
	v2 := c.WaitRing(2, v, 30*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireClean(rep, "steady traffic", r)
}
