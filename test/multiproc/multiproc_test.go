package multiproc

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/localcluster"
)

func TestMain(m *testing.M) {
	if os.Getenv(stormEnv) != "" {
		if err := runStormClient(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// TestMultiProcess starts a state server, 2 brokers and 2 frontends from
// bin/, checks sequence-checked delivery across the frontends, SIGKILLs a
// broker and checks that every channel delivers again within 2s and that
// the frontends counted what was lost.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	out := &logBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 2, Frontends: 2, Output: out})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster output (last 200 lines):\n%s", out.tail(200))
		}
	})
	v := c.WaitRing(2, 0, 15*time.Second)

	tr := clustertest.StartTraffic(t, clustertest.TrafficOptions{
		URLs:        c.FrontendURLs(),
		Channels:    100,
		Subscribers: 4,
		Publishers:  2,
		Interval:    2 * time.Millisecond,
	})
	if _, ok := tr.WaitFlowing(time.Now(), 15*time.Second); !ok {
		tr.Stop(time.Second)
		t.Fatal("messages did not flow across the frontends on every channel")
	}
	before := tr.Checkpoint(10 * time.Second)
	t.Logf("before the kill: expected=%d received=%d lost=%d duplicated=%d out_of_order=%d",
		before.Expected, before.Received, before.Lost, before.Duplicated, before.OutOfOrder)
	if !before.OK() || before.Expected == 0 {
		tr.Stop(time.Second)
		t.Fatalf("cross-frontend delivery is not clean: %+v", before)
	}

	killed := time.Now()
	if err := c.StopBroker("broker-1", false); err != nil {
		t.Fatal(err)
	}
	took, ok := tr.WaitFlowing(killed, 15*time.Second)
	if !ok {
		tr.Stop(time.Second)
		t.Fatal("delivery did not resume on every channel within 15s of the broker kill")
	}
	t.Logf("delivery resumed on every channel %v after SIGKILL of broker-1", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("delivery resumed after %v, want under 2s", took)
	}
	v2 := c.WaitRing(1, v, 10*time.Second)

	r := tr.Stop(2 * time.Second)
	var drops float64
	byReason := map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		s, err := c.Metrics(name)
		if err != nil {
			t.Errorf("scraping %s: %v", name, err)
			continue
		}
		drops += s.Sum("scc_frontend_route_drops_total")
		for k, v := range s.ByLabel("scc_frontend_route_drops_total", "reason") {
			if v > 0 {
				byReason[k] += v
			}
		}
	}
	t.Logf("ring %d → %d; expected=%d received=%d lost=%d duplicated=%d out_of_order=%d; frontends counted %v route drops %v",
		v, v2, r.Expected, r.Received, r.Lost, r.Duplicated, r.OutOfOrder, drops, byReason)
	if r.Duplicated != 0 || r.OutOfOrder != 0 || r.Unexpected != 0 || r.Malformed != 0 {
		t.Errorf("a crash may lose in-flight messages but never duplicate or reorder them")
	}
	if r.Lost > 0 && drops == 0 {
		t.Errorf("%d deliveries were lost but no frontend counted a route drop", r.Lost)
	}
}

// logBuffer keeps the cluster's output for a failure report.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 8<<20 {
		b.buf = b.buf[len(b.buf)-4<<20:]
	}
	return len(p), nil
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(string(b.buf), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
