package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
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
