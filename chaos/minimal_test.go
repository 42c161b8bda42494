package chaos_test

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// The test binary doubles as the minimal server (chaos.StartMinimalServer
// sets chaos.MinimalServerEnv): the dispatch runs before TestMain, so the
// server process starts no test machinery.
func init() {
	if os.Getenv(chaos.MinimalServerEnv) == "" {
		return
	}
	if err := chaos.RunMinimalServer(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestScenario11Reference is the yardstick for
// TestScenario11Attacks/8-subscription-storm. It runs the same legitimate
// traffic, pinned the same way, under two attacks of 500 connections from
// 127.0.0.2–21 that open, hold a second, leave and do it again:
// the subscription storm itself (100 subscribes per connection and
// round) and connection churn alone (the handshake, no subscribes). Each
// runs against chaos.MinimalServer, a plain goroutine-per-connection Go
// server, and the churn also against the sccgo cluster of
// TestScenario11Attacks. A third "attack" opens no connection at all: the
// attacker process only spins on its CPU (chaos.AttackBurn), which shows
// what any work on that CPU costs the measurement on the other. It shows what p99 ratio this machine allows a
// server that must accept 500 connections a second, so the frontend's
// ratio under the storm can be read against it. Ratios are recorded, not
// asserted: the legitimate clients must still lose, duplicate and reorder
// nothing. SCC_CHAOS_ATTACK_FOR sets each attack's duration (default
// 10s); the results are chaos/results/11-reference-<name>.json.
func TestScenario11Reference(t *testing.T) {
	requireChaos(t)
	for _, tc := range []struct {
		name, kind string
		minimal    bool
	}{
		{"minimal-subscription-storm", chaos.AttackSubscribe, true},
		{"minimal-connection-churn", chaos.AttackChurn, true},
		{"sccgo-connection-churn", chaos.AttackChurn, false},
		{"minimal-cpu-burn", chaos.AttackBurn, true},
		{"sccgo-cpu-burn", chaos.AttackBurn, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := chaos.NewReport(t, "11-reference-"+tc.name, "^TestScenario11Reference$/^"+tc.name+"$")
			var url string
			var pid int
			if tc.minimal {
				url, pid = chaos.StartMinimalServer(t)
				pinMinimal(t, rep, pid)
			} else {
				c := chaos.StartCluster(t, chaos.Spec{Name: "11-reference", Brokers: 1, Frontends: 1})
				c.WaitRing(1, 0, 15*time.Second)
				rep.Attach(c)
				pinForLatency(t, rep, c)
				url, pid = c.WSURL("frontend-1"), c.PID("frontend-1")
			}
			referenceAttack(t, rep, url, pid, tc.kind)
		})
	}
}

// referenceAttack measures the legitimate traffic's p99 before, during
// and after attack kind against the server at url (process pid), and
// records the figures of checkP99 without its 2× promise.
func referenceAttack(t *testing.T, rep *chaos.Report, url string, pid int, kind string) {
	attackFor := envDuration(t, "SCC_CHAOS_ATTACK_FOR", 10*time.Second)
	var srcs []string
	for i := 2; i <= 21; i++ {
		srcs = append(srcs, fmt.Sprintf("127.0.0.%d", i))
	}
	const conns = 500

	lat := chaos.NewLatency()
	tr := startSteady(t, rep, steady([]string{url}, lat))
	base := baseline(lat, 2*time.Second, 5*time.Second)

	a := chaos.StartAttacker(t, chaos.AttackConfig{
		Kind: kind, Addr: hostPort(t, url), Conns: conns, For: attackFor,
		SourceIPs: srcs, MaxPublish: 64 << 10, CPUs: "0",
	})
	cpu0, t0 := cpuSeconds(pid), time.Now()
	st := a.Wait(attackFor + 30*time.Second)
	phase := lat.Cut()
	cpu := cpuSeconds(pid) - cpu0
	el := time.Since(t0).Seconds()
	rep.Figure("server_cpu_s", float64(int(cpu*100))/100)
	rep.Figure("server_cpu_pct", int(cpu/el*100))
	post := after(lat, time.Second, 5*time.Second)
	rep.Figure("attack_conns", conns)
	rep.Figure("attack_dials", st.Dials)
	rep.Figure("attack_dial_errors", st.DialErrors)
	rep.Figure("attack_mib_sent", mib(st.BytesSent))
	rep.Detail("attack_close_codes", st.Closed)
	if !st.Done {
		rep.Failf("the attacker did not finish: %+v", st)
	}
	if st.Dials == 0 && kind != chaos.AttackBurn {
		rep.Failf("the attacker opened no connection: %+v", st)
	}
	rep.Figure("baseline_p99_ms", base.P99)
	rep.Figure("attack_p99_ms", phase.P99)
	rep.Figure("after_p99_ms", post.P99)
	rep.Figure("baseline_p50_ms", base.P50)
	rep.Figure("attack_p50_ms", phase.P50)
	rep.Figure("ratio", ratio(phase.P99, max(base.P99, post.P99)))
	if base.Count == 0 || phase.Count == 0 || post.Count == 0 {
		rep.Failf("no latency samples (baseline %d, attack %d, after %d)", base.Count, phase.Count, post.Count)
	}

	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireClean(rep, "the legitimate clients", r)
}

// pinMinimal is pinForLatency for the minimal server: the server process
// and this test process (whose clients measure latency) on CPU 1, the
// attacker on CPU 0. The test process is unpinned when t ends.
// SCC_CHAOS_NOPIN turns pinning off.
func pinMinimal(t *testing.T, rep *chaos.Report, pid int) {
	t.Helper()
	if runtime.NumCPU() < 2 || os.Getenv("SCC_CHAOS_NOPIN") != "" {
		rep.Notef("not pinned (one CPU, or SCC_CHAOS_NOPIN set)")
		return
	}
	for _, p := range []int{pid, os.Getpid()} {
		if err := chaos.Pin(p, "1"); err != nil {
			rep.Notef("not pinned: %v", err)
			return
		}
	}
	t.Cleanup(func() { _ = chaos.Pin(os.Getpid(), chaos.AllCPUs()) })
	rep.Figure("pinned", "server+measuring clients:1 attacker:0")
}
