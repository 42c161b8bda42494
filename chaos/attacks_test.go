package chaos_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// TestScenario11Attacks: the client-port attacks of the hardening review
// (4–9), each from a separate attacker process on CPU 0 with hundreds of
// connections for a bounded time, against a real frontend that the
// measuring clients share (the servers and the measuring clients on CPU
// 1). For each attack the legitimate clients lose nothing and their
// delivery p99 during the attack stays within 2× the larger of the
// baselines measured before and after it.
//
// One subtest per attack (-run 'TestScenario11Attacks/partial' runs one);
// each writes chaos/results/11-attack-<name>.json. SCC_CHAOS_ATTACK_FOR
// sets each attack's duration (default 10s).
func TestScenario11Attacks(t *testing.T) {
	requireChaos(t)
	attackFor := envDuration(t, "SCC_CHAOS_ATTACK_FOR", 10*time.Second)
	// SCC_CHAOS_ATTACK_ENV adds settings to every node ("K=V K=V"), to
	// try a limit against the attacks.
	env := map[string]string{}
	for _, kv := range strings.Fields(os.Getenv("SCC_CHAOS_ATTACK_ENV")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	c := chaos.StartCluster(t, chaos.Spec{Name: "11-attacks", Brokers: 1, Frontends: 1, Env: env})
	c.WaitRing(1, 0, 15*time.Second)
	f1 := c.WSURL("frontend-1")
	var srcs []string
	for i := 2; i <= 21; i++ {
		srcs = append(srcs, fmt.Sprintf("127.0.0.%d", i))
	}
	for _, at := range []struct {
		name  string
		kind  string
		conns int
	}{
		{"4-publish-burst", chaos.AttackBurst, 201},
		{"5-packet-floods", chaos.AttackPackets, 220},
		{"6-idle-connections", chaos.AttackIdle, 800},
		{"7-partial-messages", chaos.AttackPartial, 300},
		{"8-subscription-storm", chaos.AttackSubscribe, 500},
		{"9-fanout-flood", chaos.AttackFanout, 201},
	} {
		t.Run(at.name, func(t *testing.T) {
			rep := chaos.NewReport(t, "11-attack-"+at.name, "^TestScenario11Attacks$/^"+at.name+"$")
			rep.Attach(c)
			pinForLatency(t, rep, c)

			lat := chaos.NewLatency()
			tr := startSteady(t, rep, steady([]string{f1}, lat))
			base := baseline(lat, 2*time.Second, 5*time.Second)
			counters0 := c.Counters()
			link0 := linkSubscriptions(c)

			a := chaos.StartAttacker(t, chaos.AttackConfig{
				Kind: at.kind, Addr: hostPort(t, f1), Conns: at.conns, For: attackFor,
				SourceIPs: srcs, MaxPublish: 64 << 10, CPUs: "0",
			})
			fpid, bpid := c.PID("frontend-1"), c.PID("broker-1")
			fcpu0, bcpu0, t0 := cpuSeconds(fpid), cpuSeconds(bpid), time.Now()
			stopPerf := perfRecord(t, at.name)
			st := a.Wait(attackFor + 30*time.Second)
			stopPerf()
			phase := lat.Cut()
			rep.Detail("attack_p99_ms_by_second", lat.PerSecond())
			el := time.Since(t0).Seconds()
			rep.Figure("frontend_cpu_pct", int((cpuSeconds(fpid)-fcpu0)/el*100))
			rep.Figure("broker_cpu_pct", int((cpuSeconds(bpid)-bcpu0)/el*100))
			post := after(lat, time.Second, 5*time.Second)
			rep.Figure("attack_conns", at.conns)
			rep.Figure("attack_dials", st.Dials)
			rep.Figure("attack_dial_errors", st.DialErrors)
			rep.Figure("attack_mib_sent", mib(st.BytesSent))
			rep.Detail("attack_close_codes", st.Closed)
			rep.Detail("counters_during_attack", counterDelta(counters0, c.Counters()))
			if at.kind == chaos.AttackSubscribe {
				// What the storm cost the broker link: channels sent in
				// batches, and those cancelled before they were sent.
				rep.Detail("link_subscription_changes", counterDelta(link0, linkSubscriptions(c)))
			}
			if !st.Done {
				rep.Failf("the attacker did not finish: %+v", st)
			}
			if st.Dials == 0 {
				rep.Failf("the attacker opened no connection: %+v", st)
			}
			if at.kind == chaos.AttackBurst || at.kind == chaos.AttackFanout {
				// The attack's own subscribers read at a normal pace:
				// another client's traffic must not cut them off.
				rep.Figure("attack_subscriber_closes", st.SubscriberCloses)
				rep.Figure("attack_deliveries", st.Deliveries)
				if st.SubscriberCloses > 0 {
					rep.Failf("%d reading subscribers were closed (codes %v)", st.SubscriberCloses, st.Closed)
				}
			}
			rep.Figure("ratio", ratio(phase.P99, max(base.P99, post.P99)))
			checkP99(rep, "attack", base, phase, post)

			r := tr.Stop(10 * time.Second)
			rep.Check(r)
			requireClean(rep, "the legitimate clients", r)
		})
	}
}

// linkSubscriptions is frontend-1's subscription traffic toward its
// brokers: batches sent and channel changes by result.
func linkSubscriptions(c *chaos.Cluster) map[string]float64 {
	out := map[string]float64{}
	s, err := c.Metrics("frontend-1")
	if err != nil {
		return out
	}
	out["batches"] = s.Sum("scc_frontend_broker_subscription_batches_total")
	for r, v := range s.ByLabel("scc_frontend_broker_subscription_changes_total", "result") {
		out[r] = v
	}
	return out
}

// perfRecord samples the whole machine with perf into
// $SCC_CHAOS_PERF_DIR/<name>.perf until the returned function is called
// (perf report --sort comm,symbol tells the processes apart); without
// SCC_CHAOS_PERF_DIR it does nothing.
func perfRecord(t *testing.T, name string) func() {
	dir := os.Getenv("SCC_CHAOS_PERF_DIR")
	if dir == "" {
		return func() {}
	}
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-a", "-o", filepath.Join(dir, name+".perf"))
	if err := cmd.Start(); err != nil {
		t.Logf("perf: %v", err)
		return func() {}
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

// cpuSeconds is the CPU time process pid used so far (user and system,
// from /proc/<pid>/stat at 100 ticks a second), or 0.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesized command name; utime and stime are
	// the 14th and 15th fields of the line.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return float64(int(a/b*100)) / 100
}

// counterDelta returns the counters that grew from a to b, and by how much.
func counterDelta(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range b {
		if d := v - a[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
