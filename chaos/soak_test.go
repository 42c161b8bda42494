package chaos_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/client"
)

// soakSample is one process's resource use at one time.
type soakSample struct {
	T          float64 `json:"t_s"`
	Proc       string  `json:"proc"`
	PID        int     `json:"pid"`
	Goroutines float64 `json:"goroutines"`
	RSS        int64   `json:"rss_bytes"`
	FDs        int     `json:"fds"`
}

// soakTolerance is how much a process's resource use may grow from the
// end of the warm-up to the end of the soak: end ≤ max(Factor × warm,
// warm + Slack).
// The warm-up is the larger of Warmup and a tenth of the soak.
var soakTolerance = struct {
	Factor                  float64
	GoroutineSlack, FDSlack float64
	RSSSlack                int64
	Warmup                  time.Duration
}{1.5, 50, 20, 16 << 20, 30 * time.Second}

// TestSoak runs SOAK_DURATION (default 10m) of steady mixed load: the
// sequence-checked traffic, a fan-out to idle subscribers (one worker
// process), and short-lived clients that connect, subscribe, publish and
// leave; with a graceful leave and re-add of broker-3 every
// SOAK_CHURN_EVERY (default 60s) and one kill and restart of broker-2
// half-way. Every 10s it samples goroutines (go_goroutines), RSS and open
// fds of every process. It fails when a process that lived through the
// whole soak grew beyond the tolerance after warm-up, or when anything was
// lost or duplicated outside the kill's window.
func TestSoak(t *testing.T) {
	if os.Getenv("SCC_SOAK") == "" {
		t.Skip("the soak runs with make soak (SCC_SOAK=1, SOAK_DURATION)")
	}
	dur := envDuration(t, "SOAK_DURATION", 10*time.Minute)
	churnEvery := envDuration(t, "SOAK_CHURN_EVERY", time.Minute)
	sampleEvery := 10 * time.Second
	warm := max(soakTolerance.Warmup, dur/10)
	rep := chaos.NewReport(t, "soak", "^TestSoak$")
	rep.Figure("duration_s", dur.Seconds())
	c := chaos.StartCluster(t, chaos.Spec{Name: "soak", Brokers: 3, Frontends: 2})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	urls := c.FrontendURLs()
	start := time.Now()

	// Load.
	tr := startSteady(t, rep, steady(urls, nil))
	fan := channels("fan-", 10)
	w := chaos.StartWorkers(t, 1, chaos.WorkerConfig{URLs: urls, Clients: 500, Channels: fan, ConnectRate: 500})
	if st, ok := w.WaitFor(60*time.Second, func(st chaos.WorkerStatus) bool { return st.Ready }); !ok || st.Dialed != 500 {
		rep.Fatalf("fan-out subscribers did not connect: %+v", st)
	}
	chaos.StartPinger(t, urls[0], fan, 200*time.Millisecond, 64)
	ctx, cancel := context.WithCancel(context.Background())
	var churnWG sync.WaitGroup
	var shortLived, shortFailed int64
	churnWG.Go(func() { shortLived, shortFailed = shortLivedClients(ctx, urls) })
	t.Cleanup(func() { cancel(); churnWG.Wait() })

	// Sampling.
	var (
		mu      sync.Mutex
		samples []soakSample
	)
	sample := func() {
		at := time.Since(start).Round(time.Second).Seconds()
		for _, p := range c.Procs() {
			if !p.Running {
				continue
			}
			s := soakSample{T: at, Proc: p.Name, PID: p.PID, Goroutines: c.MetricOf(p.Name, "go_goroutines")}
			if ps, err := chaos.ReadProcStats(p.PID); err == nil {
				s.RSS, s.FDs = ps.RSS, ps.FDs
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	}
	churnWG.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		sample()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				sample()
			}
		}
	})

	// Churn: graceful leave and re-add every churnEvery; one kill and
	// restart half-way between two churns.
	killAt := dur/2 + churnEvery/2
	if killAt > dur-20*time.Second {
		killAt = dur / 2
	}
	nextChurn := churnEvery
	killed := false
	var faultLost, churns int64
	var kill time.Duration
	ringV := v
	for time.Since(start) < dur {
		el := time.Since(start)
		switch {
		case !killed && el >= killAt:
			killed = true
			cp0 := tr.Checkpoint(10 * time.Second)
			at := time.Now()
			if err := c.RestartBroker(ctxTimeout(t, 30*time.Second), "broker-2"); err != nil {
				rep.Failf("kill and restart of broker-2: %v", err)
			}
			took, ok := tr.WaitFlowing(at, 15*time.Second)
			if !ok {
				rep.Failf("delivery did not resume after the kill and restart of broker-2")
			}
			kill = took
			rep.Recovery(took)
			cp1 := tr.Checkpoint(lossySettle)
			faultLost = cp1.Lost - cp0.Lost
			t.Logf("%v: broker-2 killed and restarted; delivery resumed in %v; %d lost in the fault window",
				el.Round(time.Second), took.Round(time.Millisecond), faultLost)
		case el >= nextChurn && el < dur-15*time.Second:
			nextChurn += churnEvery
			churns++
			if err := c.StopBroker("broker-3", true); err != nil {
				rep.Failf("SIGTERM broker-3: %v", err)
			}
			if err := c.WaitExit(ctxTimeout(t, 40*time.Second), "broker-3"); err != nil {
				rep.Failf("broker-3 did not leave: %v", err)
			}
			ringV = c.WaitRing(2, ringV, 30*time.Second)
			if err := c.RestartBroker(ctxTimeout(t, 30*time.Second), "broker-3"); err != nil {
				rep.Failf("re-adding broker-3: %v", err)
			}
			ringV = c.WaitRing(3, ringV, 30*time.Second)
			cp := tr.Checkpoint(10 * time.Second)
			t.Logf("%v: broker-3 left and rejoined (ring version %d); lost so far %d (%d in the kill window)",
				el.Round(time.Second), ringV, cp.Lost, faultLost)
		default:
			time.Sleep(200 * time.Millisecond)
		}
	}
	sample()
	cancel()
	churnWG.Wait()
	r := tr.Stop(lossySettle)
	rep.Check(r)
	rep.Figure("churns", churns)
	rep.Figure("kill_restart_recovery_ms", ms(kill))
	rep.Figure("lost_in_kill_window", faultLost)
	rep.Figure("lost_outside_fault_windows", r.Lost-faultLost)
	rep.Figure("short_lived_clients", shortLived)
	rep.Figure("short_lived_failed", shortFailed)
	if r.Lost-faultLost != 0 || r.Duplicated != 0 || r.OutOfOrder != 0 {
		rep.Failf("outside the kill window: lost %d, duplicated %d, out of order %d; want 0",
			r.Lost-faultLost, r.Duplicated, r.OutOfOrder)
	}
	ws := w.Status()
	rep.Figure("fanout_received", ws.Received)

	// Flatness.
	mu.Lock()
	defer mu.Unlock()
	rep.Detail("samples", samples)
	table, problems := soakTable(samples, warm.Seconds())
	fmt.Print(table)
	rep.Detail("table", strings.Split(strings.TrimSpace(table), "\n"))
	for _, p := range problems {
		rep.Failf("%s", p)
	}
}

// soakTable compares each process's first sample after warm-up with its
// last, for processes that kept one pid through the soak, and returns a
// table and the breaches of soakTolerance.
func soakTable(samples []soakSample, warm float64) (string, []string) {
	type run struct {
		first, warm, last *soakSample
		restarted         bool
	}
	runs := map[string]*run{}
	var order []string
	for i := range samples {
		s := &samples[i]
		r := runs[s.Proc]
		if r == nil {
			r = &run{first: s}
			runs[s.Proc] = r
			order = append(order, s.Proc)
		}
		if r.first.PID != s.PID {
			r.restarted = true // a new process: not judged
		}
		if r.warm == nil && s.T >= warm {
			r.warm = s
		}
		r.last = s
	}
	var b strings.Builder
	var problems []string
	fmt.Fprintf(&b, "%-11s %6s %17s %21s %11s  %s\n", "process", "pid", "goroutines w→end", "RSS MiB w→end", "fds w→end", "verdict")
	tol := soakTolerance
	for _, name := range order {
		r := runs[name]
		if r.restarted || r.warm == nil || r.warm == r.last {
			fmt.Fprintf(&b, "%-11s %6d %17s %21s %11s  %s\n", name, r.last.PID, "-", "-", "-", "restarted (not judged)")
			continue
		}
		w, e := r.warm, r.last
		var bad []string
		if e.Goroutines > max(tol.Factor*w.Goroutines, w.Goroutines+tol.GoroutineSlack) {
			bad = append(bad, "goroutines")
		}
		if float64(e.RSS) > max(tol.Factor*float64(w.RSS), float64(w.RSS+tol.RSSSlack)) {
			bad = append(bad, "RSS")
		}
		if float64(e.FDs) > max(tol.Factor*float64(w.FDs), float64(w.FDs)+tol.FDSlack) {
			bad = append(bad, "fds")
		}
		verdict := "flat"
		if len(bad) > 0 {
			verdict = "GREW: " + strings.Join(bad, ", ")
			problems = append(problems, fmt.Sprintf("%s grew after warm-up (%s): goroutines %.0f→%.0f, RSS %.1f→%.1f MiB, fds %d→%d",
				name, strings.Join(bad, ", "), w.Goroutines, e.Goroutines, mib(w.RSS), mib(e.RSS), w.FDs, e.FDs))
		}
		fmt.Fprintf(&b, "%-11s %6d %8.0f→%-8.0f %10.1f→%-10.1f %5d→%-5d  %s\n", name, e.PID,
			w.Goroutines, e.Goroutines, mib(w.RSS), mib(e.RSS), w.FDs, e.FDs, verdict)
	}
	return b.String(), problems
}

// shortLivedClients connects a client every 250ms, alternating frontends,
// which subscribes to 5 channels, publishes to each, unsubscribes and
// leaves; until ctx ends. It returns how many ran and how many failed.
func shortLivedClients(ctx context.Context, urls []string) (ran, failed int64) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return ran, failed
		case <-tick.C:
		}
		ran++
		if err := shortLived(ctx, urls[i%len(urls)], i); err != nil && ctx.Err() == nil {
			failed++
		}
	}
}

func shortLived(ctx context.Context, url string, i int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	for k := range 5 {
		ch := fmt.Sprintf("short-%d", (i+k)%50)
		sub, err := c.Subscribe(ctx, ch, client.SubscribeOptions{})
		if err != nil {
			return err
		}
		if err := c.Publish(ctx, ch, bench.EncodePayload(1, uint64(i), time.Now(), 32)); err != nil {
			return err
		}
		if err := sub.Unsubscribe(); err != nil {
			return err
		}
	}
	return nil
}
