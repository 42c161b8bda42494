package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/config"
)

var fakeBinDir string

// TestMain builds the supervisor tests' fake node binary once and links it
// as scc-state, scc-broker and scc-frontend.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scc-local-fake-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "fakenode")
		cmd := exec.Command("go", "build", "-o", bin, "../../internal/localcluster/testdata/fakenode")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building fakenode:", err)
			return 1
		}
		for _, r := range []string{"state", "broker", "frontend"} {
			if err := os.Symlink(bin, filepath.Join(dir, "scc-"+r)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fakeBinDir = dir
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

func noEnv(string) string { return "" }

func TestRunPrintsURLsServesControlAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-bin-dir", fakeBinDir, "-base-port", "0", "-control-port", "0",
			"-brokers", "1", "-frontends", "2", "-env", "FAKE_READY_AFTER=100ms"}, noEnv, stdout, stderr)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stdout.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s\n%s", err, stdout, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", stdout, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := stdout.String()
	for _, re := range []string{
		`clients:\s+ws://127\.0\.0\.1:\d+/socketcluster/\n\s+ws://127\.0\.0\.1:\d+/socketcluster/`,
		`status:\s+http://127\.0\.0\.1:\d+/\n`,
		`metrics:\s+http://127\.0\.0\.1:\d+/metrics `,
		`demo:\s+http://127\.0\.0\.1:\d+/demo/\n`,
		`/demo/\?url=ws://127\.0\.0\.1:\d+/socketcluster/`,
		`1 state, 1 brokers, 2 frontends`,
		`broker-1\s+\| fake broker listening`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	m := regexp.MustCompile(`control:\s+(http://\S+)/ `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no control URL:\n%s", out)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(m[1] + "/procs")
	if err != nil {
		t.Fatal(err)
	}
	var procs []struct {
		Name    string
		PID     int
		Running bool
	}
	err = json.NewDecoder(resp.Body).Decode(&procs)
	resp.Body.Close()
	if err != nil || len(procs) != 4 {
		t.Fatalf("GET /procs: %v %v", procs, err)
	}
	// Without the printed token a POST is refused; with it, it works.
	resp, err = client.Post(m[1]+"/brokers", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /brokers without the token = %d, want 403", resp.StatusCode)
	}
	tok := regexp.MustCompile(`token:\s+([0-9a-f]{32,}) `).FindStringSubmatch(out)
	if tok == nil {
		t.Fatalf("no control token in the banner:\n%s", out)
	}
	req, _ := http.NewRequest("POST", m[1]+"/brokers", nil)
	req.Header.Set("X-SCC-Local-Token", tok[1])
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /brokers = %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for _, p := range procs {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) survived: %v", p.Name, p.PID, err)
		}
	}
}

func TestRunFailsWhenANodeCrashes(t *testing.T) {
	err := run(context.Background(), []string{"-bin-dir", fakeBinDir, "-base-port", "0", "-control-port", "0",
		"-env", "FAKE_CRASH_ROLE=frontend"}, noEnv, &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "frontend-") {
		t.Fatalf("run with a crashing frontend = %v", err)
	}
}

func TestRunHelpAndBadFlags(t *testing.T) {
	var stderr syncBuffer
	err := run(context.Background(), []string{"-h"}, noEnv, &syncBuffer{}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h = %v", err)
	}
	for _, want := range []string{"-brokers", "-control-port", "curl -X POST", "/brokers/broker-1/restart", "/state/kill", "X-SCC-Local-Token", "-control-token"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h lacks %q", want)
		}
	}
	if err := run(context.Background(), []string{"-color", "pink"}, noEnv, &syncBuffer{}, &syncBuffer{}); err == nil {
		t.Error("-color pink accepted")
	}
	if err := run(context.Background(), []string{"-env", "NOEQUALS"}, noEnv, &syncBuffer{}, &syncBuffer{}); err == nil {
		t.Error("-env without = accepted")
	}
	if err := run(context.Background(), []string{"-bin-dir", t.TempDir(), "-control-port", "0"}, noEnv, &syncBuffer{}, &syncBuffer{}); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binaries: %v", err)
	}
}

// A key the nodes would refuse is refused before anything starts, unless
// the nodes get SCC_INSECURE_NO_AUTH.
func TestRunRefusesWeakAuthKey(t *testing.T) {
	err := run(context.Background(), []string{"-bin-dir", t.TempDir(), "-control-port", "0", "-auth-key", "short"}, noEnv, &syncBuffer{}, &syncBuffer{})
	if !errors.Is(err, config.ErrShortAuthKey) {
		t.Fatalf("short -auth-key: %v", err)
	}
	err = run(context.Background(), []string{"-bin-dir", t.TempDir(), "-control-port", "0", "-auth-key", "short", "-env", "SCC_INSECURE_NO_AUTH=true"}, noEnv, &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("short -auth-key with SCC_INSECURE_NO_AUTH: %v, want the missing binaries", err)
	}
}
