package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
)

// rulesChecks are the checks rules-client.mjs must report, all passing.
var rulesChecks = []string{
	"rules-anonymous-private-channel", "rules-owner-private-channel", "rules-other-user-private-channel",
	"rules-public-room", "rules-client-publish-to-private-channel", "rules-reserved-channel",
	"rules-subscription-token", "rules-logout-kicks-out",
}

// TestFrontendChannelRules runs the channel-rules checks with the real
// client against scc-frontend started with SCC_CHANNELS_FILE: private
// user:{sub} channels, public rooms, subscription tokens, reserved names,
// and the error names the stock client reports.
func TestFrontendChannelRules(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("rules-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, port := startFrontend(t, key, "SCC_CHANNELS_FILE="+file)
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	runScript(t, node, "rules-client.mjs", key, rulesChecks, "--url", url)
	checkAlive(t, s)
}

// TestClusterChannelRules runs the same checks against a cluster of real
// processes (a state server, a broker, two frontends, all with the rules
// file): the private channel's owner on one frontend, everyone else on
// the other, and the public room's messages crossing between them.
func TestClusterChannelRules(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	node := needNode(t)
	key := randomKey(t)
	file, err := filepath.Abs("rules-channels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 1, Frontends: 2, Output: out,
		Env: map[string]string{"SCC_CHANNELS_FILE": file, "SCC_CLIENT_AUTH_KEY": key}})
	c.WaitRing(1, 0, 15*time.Second)
	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("frontends %v", urls)
	}
	runScript(t, node, "rules-client.mjs", key, rulesChecks, "--url", urls[0], "--url2", urls[1])
	if t.Failed() {
		t.Logf("cluster output:\n%s", tail(out.String(), 60))
	}
}

// runScript runs a check script with args and reports each of its checks
// as a subtest; every name in required must be reported.
func runScript(t *testing.T, node, script, key string, required []string, args ...string) {
	t.Helper()
	runScriptEvents(t, node, script, key, required, nil, args...)
}

// runScriptEvents is runScript that also calls onEvent, as soon as it is
// printed, with each line {"event":NAME}: the script's cue for the test
// to act on the cluster (the script goes on meanwhile).
func runScriptEvents(t *testing.T, node, script, key string, required []string, onEvent func(name string), args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "SCC_CLIENT_AUTH_KEY="+key, "SCC_INTEROP_STEP_TIMEOUT=5000")
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	seen := map[string]bool{}
	var summary *checkLine
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l checkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("%s printed a line that is not JSON: %q", script, sc.Text())
			continue
		}
		if l.Summary {
			summary = &l
			continue
		}
		if l.Event != "" && onEvent != nil {
			onEvent(l.Event)
			continue
		}
		if l.Check == "" {
			continue
		}
		seen[l.Check] = true
		t.Run(l.Check, func(t *testing.T) {
			if !l.OK {
				t.Errorf("failed after %dms: %s", l.MS, l.Error)
			} else if len(l.Detail) > 0 {
				t.Logf("%dms %s", l.MS, l.Detail)
			}
		})
	}
	for _, name := range required {
		if !seen[name] {
			t.Errorf("check %q was not reported", name)
		}
	}
	// The pipe is read to its end: now Wait may close it.
	runErr := cmd.Wait()
	if ctx.Err() != nil {
		t.Errorf("%s did not finish within %v", script, clientTimeout)
	} else if runErr != nil {
		t.Errorf("%s: %v", script, runErr)
	}
	if summary == nil || summary.Failed != 0 {
		t.Errorf("%s summary: %+v", script, summary)
	}
	if t.Failed() && stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", script, tail(stderr.String(), 40))
	}
}
