package chaos_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
)

func TestMain(m *testing.M) {
	if os.Getenv(chaos.WorkerEnv) != "" {
		if err := chaos.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(chaos.AttackerEnv) != "" {
		if err := chaos.RunAttacker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if lines := chaos.Lines(); len(lines) > 0 {
		slices.Sort(lines)
		fmt.Println("\nchaos results:")
		for _, l := range lines {
			fmt.Println(l)
		}
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// requireChaos skips the scenarios unless SCC_CHAOS is set (make chaos):
// they take minutes and start many processes.
func requireChaos(t *testing.T) {
	t.Helper()
	if os.Getenv("SCC_CHAOS") == "" {
		t.Skip("chaos scenarios run with make chaos (SCC_CHAOS=1)")
	}
}

// envDuration reads a duration from the environment, or def.
func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, nerr := strconv.Atoi(v); nerr == nil {
			return time.Duration(n) * time.Second
		}
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return d
}

// steady is the sequence-checked traffic of every scenario: 200 channels,
// 4 subscribers and 2 publishers spread over the given frontends, each
// publisher one acknowledged publish every 2ms.
func steady(urls []string, lat *chaos.Latency) clustertest.TrafficOptions {
	o := clustertest.TrafficOptions{
		URLs:        urls,
		Channels:    200,
		Subscribers: 4,
		Publishers:  2,
		Interval:    2 * time.Millisecond,
	}
	if lat != nil {
		o.OnDeliver = lat.Observe
	}
	return o
}

// startSteady starts steady traffic and waits until it flows on every
// channel.
func startSteady(t *testing.T, rep *chaos.Report, o clustertest.TrafficOptions) *clustertest.Traffic {
	t.Helper()
	tr := clustertest.StartTraffic(t, o)
	if _, ok := tr.WaitFlowing(time.Now(), 15*time.Second); !ok {
		tr.Stop(time.Second)
		rep.Fatalf("traffic did not flow on every channel before the fault")
	}
	return tr
}

// requireClean fails the scenario unless r lost, duplicated and reordered
// nothing.
func requireClean(rep *chaos.Report, what string, r bench.CheckResult) {
	if r.Expected == 0 {
		rep.Failf("%s: no message was expected: the traffic did not run", what)
		return
	}
	if r.Lost != 0 || r.Duplicated != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 || r.Malformed != 0 {
		rep.Failf("%s: want 0 lost, duplicated, out of order: lost=%d duplicated=%d out_of_order=%d unexpected=%d malformed=%d",
			what, r.Lost, r.Duplicated, r.OutOfOrder, r.Unexpected, r.Malformed)
	}
}

// requireOrdered fails the scenario if r duplicated or reordered anything
// (a crash may lose in-flight messages, never more).
func requireOrdered(rep *chaos.Report, what string, r bench.CheckResult) {
	if r.Duplicated != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 || r.Malformed != 0 {
		rep.Failf("%s: a crash may lose in-flight messages but never duplicate or reorder them: duplicated=%d out_of_order=%d unexpected=%d",
			what, r.Duplicated, r.OutOfOrder, r.Unexpected)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// lossySettle is how long a scenario that may lose in-flight messages
// waits for stragglers before counting: a lost message never arrives, so
// the wait always runs out.
const lossySettle = 2 * time.Second
