package interop

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// presenceChecks are the checks presence-client.mjs must report, all
// passing.
var presenceChecks = []string{
	"presence-members", "presence-stats", "presence-join-leave",
	"presence-refused-without-subscription", "presence-companion-read-only",
}

// TestFrontendPresence runs the presence checks with the real client
// against scc-frontend started with SCC_CHANNELS_FILE: members and
// stats through the stock client's invoke, join and leave events
// through its subscribe, and the refusals.
func TestFrontendPresence(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("presence-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, port := startFrontend(t, key, "SCC_CHANNELS_FILE="+file, "SCC_PRESENCE_EVENT_INTERVAL=100ms")
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "presence-client.mjs", key, presenceChecks, "--url", url)
	checkAlive(t, s)
}

// TestClusterPresence runs the same checks against a cluster of real
// processes (a state server, two brokers, two frontends), with the
// members split between the frontends.
func TestClusterPresence(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("presence-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 2, Frontends: 2, Output: out,
		Env: map[string]string{"SCC_CHANNELS_FILE": file, "SCC_CLIENT_AUTH_KEY": key, "SCC_PRESENCE_EVENT_INTERVAL": "100ms"}})
	c.WaitRing(2, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	runScript(t, node, "presence-client.mjs", key, presenceChecks, "--url", urls[0], "--url2", urls[1])
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}

// presenceHelperChecks are the checks presence-helper-client.mjs must
// report, all passing.
var presenceHelperChecks = []string{
	"helper-stats-and-pages", "helper-join-leave-listener", "helper-refused-without-subscription",
	"helper-live-list", "helper-live-list-storm", "helper-live-list-reconnect",
}

// TestFrontendPresenceHelper runs js/sccgo-presence.mjs over the stock
// client against scc-frontend, with an event cap of 2 so that twelve joins
// at once are a storm: members, pages and stats, the join/leave listener,
// and the live list through a storm and a reconnect.
func TestFrontendPresenceHelper(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("presence-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, port := startFrontend(t, key, "SCC_CHANNELS_FILE="+file, "SCC_PRESENCE_EVENT_INTERVAL=100ms", "SCC_PRESENCE_EVENT_MAX_MEMBERS=2")
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "presence-helper-client.mjs", key, presenceHelperChecks, "--url", url)
	checkAlive(t, s)
}

// TestClusterPresenceHelper runs the same checks against a cluster of
// real processes, with the members split between two frontends.
func TestClusterPresenceHelper(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("presence-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 2, Frontends: 2, Output: out,
		Env: map[string]string{"SCC_CHANNELS_FILE": file, "SCC_CLIENT_AUTH_KEY": key,
			"SCC_PRESENCE_EVENT_INTERVAL": "100ms", "SCC_PRESENCE_EVENT_MAX_MEMBERS": "2"}})
	c.WaitRing(2, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	runScript(t, node, "presence-helper-client.mjs", key, presenceHelperChecks, "--url", urls[0], "--url2", urls[1])
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}
