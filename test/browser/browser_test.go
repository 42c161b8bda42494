// Package browser checks the demo chat page and the state server's status
// page in a real headless Chromium against a local cluster of real
// processes (bin/scc-state, bin/scc-broker, bin/scc-frontend).
//
// Needs /usr/bin/chromium (Debian's chromium package; SCC_CHROMIUM
// overrides the path), node, and playwright-core in node_modules (npm ci in
// this directory). Without them the test is skipped, or fails when CI is
// set. Screenshots go to artifacts/ (git-ignored).
package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/localcluster"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// need skips the test with why, or fails it when CI is set.
func need(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", why)
	}
	t.Skipf("skipping: %s", why)
}

// prerequisites returns the Chromium path, node and the bin directory.
func prerequisites(t *testing.T) (chromium, node, binDir string) {
	t.Helper()
	chromium = os.Getenv("SCC_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if fi, err := os.Stat(chromium); err != nil || fi.IsDir() {
		need(t, chromium+" is missing (apt-get install chromium)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need(t, "node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		need(t, "node_modules/playwright-core is missing (npm ci in test/browser)")
	}
	binDir = os.Getenv("SCC_BIN_DIR")
	if binDir == "" {
		if binDir, err = filepath.Abs("../../bin"); err != nil {
			t.Fatal(err)
		}
	}
	if err := (localcluster.Options{BinDir: binDir}).Validate(); err != nil {
		need(t, fmt.Sprintf("the real binaries are missing (make build): %v", err))
	}
	return chromium, node, binDir
}

// syncBuffer collects the cluster's output for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clusterStatus is the part of the state server's /status the test reads.
type clusterStatus struct {
	Ring *struct {
		Version uint64                `json:"version"`
		Brokers []protocol.BrokerInfo `json:"brokers"`
	} `json:"ring"`
	Members []struct {
		ID   string `json:"id"`
		Role string `json:"role"`
		Addr string `json:"addr"`
	} `json:"members"`
}

func getStatus(ctx context.Context, url string) (clusterStatus, string, error) {
	var st clusterStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return st, string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return st, string(body), json.Unmarshal(body, &st)
}

// waitStatus polls /status until ok accepts it or d passes.
func waitStatus(t *testing.T, url string, d time.Duration, what string, ok func(clusterStatus) bool) clusterStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last string
	var lastErr error
	for {
		st, raw, err := getStatus(ctx, url)
		if err == nil && ok(st) {
			return st
		}
		last, lastErr = raw, err
		select {
		case <-ctx.Done():
			t.Fatalf("/status never showed %s within %v (last error %v); last /status:\n%s", what, d, lastErr, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// result is the browser script's last line.
type result struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error"`
	Screenshots []string `json:"screenshots"`
	FrontendA   string   `json:"frontendA"`
	FrontendB   string   `json:"frontendB"`
	Recovery    *struct {
		AToB struct{ Ms, Attempts int } `json:"aToB"`
		BToA struct{ Ms, Attempts int } `json:"bToA"`
	} `json:"recovery"`
	Status *struct {
		Conn           string   `json:"conn"`
		RingVersion    string   `json:"ringVersion"`
		RingBrokers    []string `json:"ringBrokers"`
		TotalBrokers   string   `json:"totalBrokers"`
		TotalFrontends string   `json:"totalFrontends"`
		Members        []struct {
			Role, ID, Addr, Health, InRing string
		} `json:"members"`
	} `json:"status"`
	ConsoleErrors []string `json:"consoleErrors"`
}

// TestDemoAndStatusPages starts 1 state, 2 brokers and 2 frontends, opens
// the demo page in two browser tabs connected to different frontends,
// exchanges messages both ways, SIGKILLs the broker that owns the chat
// room, checks the tabs still exchange messages within 10s, then renders
// the status page and checks it shows the surviving members and the ring.
func TestDemoAndStatusPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster and a browser")
	}
	chromium, node, binDir := prerequisites(t)
	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(artifacts); err != nil {
		t.Fatal(err)
	}

	out := &syncBuffer{}
	c, err := localcluster.Start(context.Background(), localcluster.Options{
		BinDir:    binDir,
		Brokers:   2,
		Frontends: 2,
		AuthKey:   "browser-test-cluster-key-0123456789abcdef",
		ExtraEnv: map[string]string{
			"SCC_STATE_SERVER_STARTUP_DELAY":    "0",
			"SCC_STATE_SERVER_SCALE_OUT_DELAY":  "500ms",
			"SCC_STATE_SERVER_SCALE_BACK_DELAY": "500ms",
		},
		Stdout:       out,
		PollInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
		if t.Failed() {
			t.Logf("cluster output:\n%s", out)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = c.WaitReady(ctx)
	cancel()
	if err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}

	statusURL := c.StatusURL()
	statusJSON := strings.TrimSuffix(statusURL, "/") + "/status"
	st := waitStatus(t, statusJSON, 15*time.Second, "both brokers in the ring", func(s clusterStatus) bool {
		return s.Ring != nil && len(s.Ring.Brokers) == 2
	})

	// Kill the broker that owns the chat room's channel, so the kill is
	// one the pages must get over.
	room := fmt.Sprintf("browser-%d", rand.Uint32())
	r := ring.New(st.Ring.Version, st.Ring.Brokers)
	owner, _ := r.Owner(room)
	var victim string
	var survivor protocol.BrokerInfo
	for _, b := range st.Ring.Brokers {
		if b.ID != owner.ID {
			survivor = b
		}
	}
	for _, p := range c.Procs() {
		if p.Role == localcluster.RoleBroker && (p.Name == owner.ID || strings.HasSuffix(owner.Addr, ":"+strconv.Itoa(p.Port))) {
			victim = p.Name
		}
	}
	if victim == "" || survivor.ID == "" {
		t.Fatalf("cannot tell which broker owns %q (owner %+v) among %+v", room, owner, c.Procs())
	}
	t.Logf("room %q is owned by %s (%s); the survivor is %s", room, victim, owner.ID, survivor.ID)

	urls := c.FrontendURLs()
	if len(urls) != 2 {
		t.Fatalf("want 2 frontends, have %v", urls)
	}
	// Tab A loads frontend 1's own page; tab B loads frontend 2's page and
	// names its socket explicitly with ?url=.
	httpOf := func(ws string) string {
		return strings.Replace(strings.TrimSuffix(ws, "socketcluster/"), "ws://", "http://", 1) + "demo/"
	}
	cfg := map[string]any{
		"chromium":        chromium,
		"artifacts":       artifacts,
		"demoA":           httpOf(urls[0]) + "?room=" + room + "&name=alice",
		"demoB":           httpOf(urls[1]) + "?room=" + room + "&name=bob&url=" + urls[1],
		"afterExchange":   "wait",
		"statusURL":       statusURL,
		"expectRing":      []string{survivor.ID},
		"expectFrontends": 2,
		"recoverMs":       10000,
		"timeoutMs":       90000,
	}
	res := runBrowser(t, node, cfg, func() {
		if err := c.StopBroker(victim, false); err != nil {
			t.Errorf("killing %s: %v", victim, err)
		}
		t.Logf("killed %s", victim)
	})

	for _, p := range res.Screenshots {
		t.Logf("screenshot: %s", p)
	}
	if len(res.Screenshots) > 0 {
		index := strings.Join(res.Screenshots, "\n") + "\n"
		_ = os.WriteFile(filepath.Join(artifacts, "index.txt"), []byte(index), 0o644)
	}
	if !res.OK {
		t.Fatalf("browser run failed: %s", res.Error)
	}
	if res.FrontendA != urls[0] || res.FrontendB != urls[1] {
		t.Errorf("tabs connected to %s and %s, want %s and %s", res.FrontendA, res.FrontendB, urls[0], urls[1])
	}
	if res.Recovery == nil {
		t.Fatal("no exchange after the kill was reported")
	}
	t.Logf("after the kill: A to B in %d ms (%d attempts), B to A in %d ms (%d attempts)",
		res.Recovery.AToB.Ms, res.Recovery.AToB.Attempts, res.Recovery.BToA.Ms, res.Recovery.BToA.Attempts)
	if len(res.ConsoleErrors) > 0 {
		t.Logf("browser console errors: %v", res.ConsoleErrors)
	}

	// What the status page showed, checked here against the cluster.
	s := res.Status
	if s == nil {
		t.Fatal("no status page snapshot")
	}
	if v, err := strconv.ParseUint(strings.NewReplacer(",", "", ".", "", " ", "").Replace(s.RingVersion), 10, 64); err != nil || v <= st.Ring.Version {
		t.Errorf("status page ring version %q, want a number above %d (the ring before the kill)", s.RingVersion, st.Ring.Version)
	}
	if len(s.RingBrokers) != 1 || !strings.HasPrefix(s.RingBrokers[0], survivor.ID) {
		t.Errorf("status page ring brokers %q, want just %s", s.RingBrokers, survivor.ID)
	}
	var fronts, liveBrokers int
	for _, m := range s.Members {
		switch {
		case m.Role == "frontend" && m.Health == "healthy":
			fronts++
		case m.Role == "broker" && m.ID == survivor.ID:
			if m.Health != "healthy" || m.InRing != "yes" {
				t.Errorf("status page shows the surviving broker as %q, in ring %q", m.Health, m.InRing)
			}
			liveBrokers++
		case m.Role == "broker" && m.ID == owner.ID && m.Health == "healthy":
			t.Errorf("status page shows the killed broker %s as healthy", owner.ID)
		}
	}
	if fronts != 2 || liveBrokers != 1 {
		t.Errorf("status page members: %d healthy frontends and %d surviving broker rows, want 2 and 1: %+v",
			fronts, liveBrokers, s.Members)
	}
	if s.TotalFrontends != "2" {
		t.Errorf("status page frontend total %q, want 2", s.TotalFrontends)
	}
}

// runBrowser runs browser.mjs with cfg, calls between() when the script
// waits between its two exchanges, and returns the script's result. The
// script's process group (node and Chromium) is killed on the way out.
func runBrowser(t *testing.T, node string, cfg map[string]any, between func()) result {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "browser.mjs", string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Chromium children left behind by a crashed script.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}()

	var res result
	var last string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		last = line
		var ev struct {
			Step string          `json:"step"`
			OK   json.RawMessage `json:"ok"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			t.Logf("browser: %s", line)
			continue
		}
		if ev.OK != nil {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				t.Errorf("browser result %s: %v", line, err)
			}
			continue
		}
		t.Logf("browser: %s", line)
		if ev.Step == "waiting" {
			between()
			if _, err := io.WriteString(stdin, "continue\n"); err != nil {
				t.Errorf("resuming the browser script: %v", err)
			}
		}
	}
	stdin.Close()
	werr := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("browser script timed out; last line %s; stderr:\n%s", last, stderr.String())
	}
	if werr != nil && res.Error == "" {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || res.OK {
			t.Fatalf("browser script: %v; stderr:\n%s", werr, stderr.String())
		}
		res.Error = fmt.Sprintf("%v (last line %s); stderr:\n%s", werr, last, stderr.String())
	}
	return res
}
