package interop

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
)

// recoveryChecks are the checks recovery-client.mjs must report.
var recoveryChecks = []string{
	"recovery-stock-client-ignores-position", "recovery-reconnect-within-window", "recovery-too-late-is-told",
}

// TestFrontendRecoveryHelper runs js/sccgo-recovery.mjs over the stock
// client against scc-frontend with history on: the stock client ignores
// the position fields, a client away within the window gets exactly what
// it missed, in order, once, and one away too long is told.
func TestFrontendRecoveryHelper(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	s, port := startFrontend(t, key, "SCC_HISTORY_SIZE=100", "SCC_HISTORY_TTL=1m")
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "recovery-client.mjs", key, recoveryChecks, "--url", url)
	checkAlive(t, s)
}

// TestClusterRecoveryHelper runs the same checks on a cluster of real
// processes: subscribers start on one frontend and come back on the
// other, where the publisher is.
func TestClusterRecoveryHelper(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 1, Frontends: 2, Output: out,
		Env: map[string]string{"SCC_HISTORY_SIZE": "100", "SCC_HISTORY_TTL": "1m", "SCC_CLIENT_AUTH_KEY": key}})
	c.WaitRing(1, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	runScript(t, node, "recovery-client.mjs", key, recoveryChecks, "--url", urls[0], "--url2", urls[1])
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}

// TestFrontendRecoveryHelperEpochChange: the helper tells a subscriber
// that stayed connected when a message arrives under a new epoch (the
// frontend dropped the channel's history while it idled past
// SCC_HISTORY_META_TTL).
func TestFrontendRecoveryHelperEpochChange(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	s, port := startFrontend(t, key, "SCC_HISTORY_SIZE=100", "SCC_HISTORY_TTL=1m", "SCC_HISTORY_META_TTL=1s")
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "recovery-client.mjs", key, []string{"recovery-epoch-change-mid-stream"}, "--url", url, "--epoch-change", "1000")
	checkAlive(t, s)
}

// TestClusterRecoveryHelperFrontendKill runs recovery-kill-client.mjs:
// stock clients wrapped by js/sccgo-recovery.mjs reach frontend A of a
// cluster of processes through a TCP switch proxy (a load balancer) and
// subscribe to channels with history while a publisher on frontend B
// publishes 1, 2, 3, … on each. Frontend A is killed (-9) and, a second
// later, the proxy switched to B: the stock clients reconnect by
// themselves, the helper asks to recover on resubscribe, and every
// subscription gets every number exactly once, in order, its recovery
// reported complete.
func TestClusterRecoveryHelperFrontendKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	// balancerDelay is how long the proxy keeps sending connections to
	// the dead frontend: the clients' reconnects fail meanwhile.
	const balancerDelay = time.Second
	node := needNode(t)
	key := randomKey(t)
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 2, Frontends: 2, Output: out,
		Env: map[string]string{"SCC_HISTORY_SIZE": "1000", "SCC_HISTORY_TTL": "1m", "SCC_CLIENT_AUTH_KEY": key}})
	c.WaitRing(2, 0, 15*time.Second)
	a, b := c.WSURL("frontend-1"), c.WSURL("frontend-2")
	proxy := clustertest.StartSwitchProxy(t, hostPort(t, a))
	var killed time.Time
	runScriptEvents(t, node, "recovery-kill-client.mjs", key, []string{"recovery-frontend-kill"}, func(event string) {
		if event != "kill" || !killed.IsZero() {
			t.Errorf("unexpected event %q", event)
			return
		}
		killed = time.Now()
		if err := c.KillFrontend("frontend-1"); err != nil {
			t.Errorf("SIGKILL frontend-1: %v", err)
			return
		}
		time.Sleep(balancerDelay)
		proxy.Switch(hostPort(t, b))
		t.Logf("frontend-1 killed, proxy switched to frontend-2 %v later", time.Since(killed).Round(time.Millisecond))
	}, "--url", proxy.URL(), "--url2", b, "--sockets", "4", "--channels", "6", "--per-socket", "3", "--total", "300", "--kill-at", "50")
	if killed.IsZero() {
		t.Error("the script never asked for the kill")
	}
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}

// hostPort returns the host:port of a URL.
func hostPort(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Host
}
