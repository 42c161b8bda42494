package chaos_test

import (
	"time"

	"testing"

	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/localcluster"
)

const routeDrops = "scc_frontend_route_drops_total"

// TestScenario01ScaleOutIn: 2→3 brokers under load, then a graceful
// scale-in 3→2 (SIGTERM): 0 lost, 0 duplicated, 0 reordered.
func TestScenario01ScaleOutIn(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "01-scale-out-in", "^TestScenario01")
	c := chaos.StartCluster(t, chaos.Spec{Name: "01-scale-out-in", Brokers: 2, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(2, 0, 15*time.Second)
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))

	// Scale out.
	added := time.Now()
	name, err := c.AddBroker(ctxTimeout(t, 30*time.Second))
	if err != nil {
		rep.Fatalf("adding a broker: %v", err)
	}
	v2 := c.WaitRing(3, v, 20*time.Second)
	rep.Figure("scale_out_ms", ms(time.Since(added)))
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		rep.Fatalf("messages did not flow after the scale-out")
	}
	out := tr.Checkpoint(10 * time.Second)
	rep.Figure("lost_scale_out", out.Lost)
	requireClean(rep, "scale-out 2→3", out)

	// Graceful scale-in of an original broker.
	v3 := scaleIn(t, rep, c, tr, "broker-1", v2)
	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireClean(rep, "scale-out 2→3 and scale-in 3→2", r)
	rep.Figure("ring_versions", []uint64{v, v2, v3})
	rep.Figure("added", name)
	rep.Figure("route_drops", c.SumFrontends(routeDrops))
}

// scaleIn stops leaving with SIGTERM under traffic, waits for the ring of
// 2 brokers above v, for leaving to exit cleanly and for messages to flow
// again, and returns the new ring version.
func scaleIn(t *testing.T, rep *chaos.Report, c *chaos.Cluster, tr *clustertest.Traffic, leaving string, v uint64) uint64 {
	t.Helper()
	stopped := time.Now()
	if err := c.StopBroker(leaving, true); err != nil {
		rep.Fatalf("SIGTERM %s: %v", leaving, err)
	}
	v2 := c.WaitRing(2, v, 30*time.Second)
	if err := c.WaitExit(ctxTimeout(t, 30*time.Second), leaving); err != nil {
		rep.Failf("%s did not exit after its leave: %v", leaving, err)
	}
	rep.Figure("scale_in_ms", ms(time.Since(stopped)))
	if p, _ := c.Proc(leaving); p.Crashed {
		rep.Failf("%s exited badly after SIGTERM: %s", leaving, p.Exit)
	}
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		rep.Fatalf("messages did not flow after the scale-in")
	}
	return v2
}

// killRecovery kills victim (SIGKILL) under steady traffic and returns how
// long until every channel delivered again, failing the scenario beyond
// 2s. restart, if set, runs right after the kill (in its own goroutine).
func killRecovery(t *testing.T, rep *chaos.Report, c *chaos.Cluster, tr *clustertest.Traffic, victim string, restart func()) time.Duration {
	t.Helper()
	killed := time.Now()
	if err := c.StopBroker(victim, false); err != nil {
		rep.Fatalf("SIGKILL %s: %v", victim, err)
	}
	done := make(chan struct{})
	if restart != nil {
		go func() {
			defer close(done)
			restart()
		}()
	} else {
		close(done)
	}
	took, ok := tr.WaitFlowing(killed, 15*time.Second)
	<-done
	if !ok {
		rep.Fatalf("delivery did not resume on every channel within 15s of killing %s", victim)
	}
	rep.Recovery(took)
	t.Logf("delivery resumed on every channel %v after killing %s", took, victim)
	if took > 2*time.Second {
		rep.Failf("delivery resumed %v after the kill, want under 2s", took.Round(time.Millisecond))
	}
	return took
}

// lossCounted checks that a crash's loss is bounded and that the
// frontends counted drops when anything was lost.
func lossCounted(rep *chaos.Report, c *chaos.Cluster, r clusterResult, window time.Duration) {
	drops := c.SumFrontends(routeDrops)
	rep.Figure("route_drops", drops)
	rep.Figure("route_drops_by_reason", routeDropsByReason(c))
	if r.Lost > 0 && drops == 0 {
		rep.Failf("%d deliveries were lost but no frontend counted a drop", r.Lost)
	}
	// Bound: at most what the publishers sent in the recovery window,
	// times the subscribers (every publish reaches every subscriber).
	bound := int64(float64(r.Expected) / r.Seconds * window.Seconds())
	rep.Figure("loss_bound", bound)
	if r.Lost > bound {
		rep.Failf("lost %d deliveries, more than the %v of traffic bound (%d)", r.Lost, window, bound)
	}
}

type clusterResult struct {
	Expected, Lost int64
	Seconds        float64
}

func routeDropsByReason(c *chaos.Cluster) map[string]float64 {
	out := map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		s, err := c.Metrics(name)
		if err != nil {
			continue
		}
		for k, v := range s.ByLabel(routeDrops, "reason") {
			if v > 0 {
				out[k] += v
			}
		}
	}
	return out
}

// TestScenario02BrokerKill: kill -9 of a broker: delivery on every channel
// within 2s; the loss is bounded, reported and counted by the frontends.
func TestScenario02BrokerKill(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "02-broker-kill", "^TestScenario02")
	c := chaos.StartCluster(t, chaos.Spec{Name: "02-broker-kill", Brokers: 3, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	started := time.Now()
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))
	killRecovery(t, rep, c, tr, "broker-1", nil)
	v2 := c.WaitRing(2, v, 10*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the ring without the dead broker was committed")
	}
	r := tr.Stop(lossySettle)
	rep.Check(r)
	requireOrdered(rep, "broker kill", r)
	lossCounted(rep, c, clusterResult{r.Expected, r.Lost, time.Since(started).Seconds()}, 2*time.Second)
}

// TestScenario03BrokerRestart: a broker killed and restarted at the same
// address within 0.5s: delivery on every channel within 2s.
func TestScenario03BrokerRestart(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "03-broker-restart", "^TestScenario03")
	c := chaos.StartCluster(t, chaos.Spec{Name: "03-broker-restart", Brokers: 2, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(2, 0, 15*time.Second)
	started := time.Now()
	tr := startSteady(t, rep, steady(c.FrontendURLs(), nil))
	victim := "broker-1"
	oldPID := c.PID(victim)
	var restartGap, execAfter time.Duration
	killed := time.Now()
	killRecovery(t, rep, c, tr, victim, func() {
		at := time.Now()
		execAfter = at.Sub(killed)
		// RestartBroker SIGKILLs (already done, so a no-op), starts the
		// binary again on the same port with the same ID and waits for
		// /readyz.
		err := c.RestartBroker(ctxTimeout(t, 20*time.Second), victim)
		if err != nil {
			rep.Failf("restarting %s: %v", victim, err)
		}
		restartGap = time.Since(at)
	})
	newPID := c.PID(victim)
	if newPID == oldPID || newPID == 0 {
		rep.Failf("%s was not restarted (pid %d → %d)", victim, oldPID, newPID)
	}
	rep.Figure("restart_to_ready_ms", ms(restartGap))
	rep.Figure("restarted_after_kill_ms", ms(execAfter))
	if execAfter > 500*time.Millisecond {
		rep.Failf("the restart began %v after the kill, want within 0.5s", execAfter)
	}
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the restart")
	}
	st, err := c.Status()
	if err == nil {
		rep.Figure("ring_versions", []uint64{v, st.RingVersion()})
		rep.Figure("ring_brokers_after", len(st.RingBrokers()))
	}
	r := tr.Stop(lossySettle)
	rep.Check(r)
	requireOrdered(rep, "broker restart", r)
	lossCounted(rep, c, clusterResult{r.Expected, r.Lost, time.Since(started).Seconds()}, 2*time.Second)
}
