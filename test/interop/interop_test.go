// Package interop runs the real socketcluster-client (Node, client.mjs)
// against scc-frontend as a real process, and against the stock
// socketcluster-server (reference-server.mjs) to keep the script itself
// honest.
//
// It needs node and `npm ci` in this directory (make node-deps). Without
// them the tests skip, or fail when the CI environment variable is set.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}),
		// The in-process cluster's memberlist and net/http background
		// goroutines stop asynchronously after Shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).triggerFunc"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// Settings of the servers under test. The ping timeout is short so the
// client's ping-pong check outlasts it within a few seconds.
const (
	pingInterval = "1000"
	pingTimeout  = "3000"
	// clientTimeout bounds client.mjs; the script has its own hard limit
	// (SCC_INTEROP_TIMEOUT) below this one.
	clientTimeout = 60 * time.Second
	readyTimeout  = 15 * time.Second
)

// requiredChecks must all be reported, and pass, for the run to count.
var requiredChecks = []string{
	"handshake", "handshake-ping-timeout", "subscribe", "subscribe-with-data",
	"publish-receive", "transmit-publish-echo", "invoke-publish", "publish-scalar-data",
	"batch", "invoke-missing-procedure", "subscribe-malformed-channel",
	"publish-malformed-channel", "unsubscribe-not-subscribed",
	"authenticate-bad-signature", "authenticate",
	"subscribe-wait-for-auth", "unsubscribe", "ping-pong", "reconnect",
	"reconnect-handshake-token", "resubscribe", "publish-after-reconnect",
	"deauthenticate", "handshake-valid-token", "handshake-expired-token",
	"handshake-bad-signature", "disconnect",
}

// needNode returns the node binary, or skips (fails under CI) when node or
// the npm packages are missing.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		if _, err = os.Stat(filepath.Join("node_modules", "socketcluster-client", "package.json")); err != nil {
			err = fmt.Errorf("socketcluster-client is not installed (run make node-deps, or npm ci in test/interop): %w", err)
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("interop prerequisites missing under CI: %v", err)
		}
		t.Skipf("skipping interop test: %v", err)
	}
	return node
}

var (
	buildOnce  sync.Mutex
	builtPath  string
	buildDir   string
	buildFails error
)

// frontendBinary returns bin/scc-frontend as built by make build, or builds
// it once into a temporary directory when it is missing.
func frontendBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Lock()
	defer buildOnce.Unlock()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "scc-frontend"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(bin); err == nil {
		t.Logf("using %s (built %s)", bin, st.ModTime().Format(time.RFC3339))
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing under CI: make test runs make build first", bin)
	}
	if builtPath == "" && buildFails == nil {
		dir, err := os.MkdirTemp("", "sccgo-interop-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
		out := filepath.Join(dir, "scc-frontend")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goBin, "build", "-o", out, "./cmd/scc-frontend")
		cmd.Dir = filepath.Join("..", "..")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildFails = fmt.Errorf("%s is missing and go build failed: %v\n%s", bin, err, b)
		} else {
			builtPath = out
		}
	}
	if buildFails != nil {
		t.Fatal(buildFails)
	}
	t.Logf("%s is missing; using a fresh build at %s", bin, builtPath)
	return builtPath
}

func randomKey(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output for the test's logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is a process under test.
type server struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
}

// startServer starts cmd and registers a cleanup that stops it: SIGTERM,
// then SIGKILL after a grace period.
func startServer(t *testing.T, cmd *exec.Cmd) *server {
	t.Helper()
	s := &server{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(cmd.Path), tail(s.stderr.String(), 60))
		}
	})
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls GET /readyz until it answers 200, the process exits, or
// the deadline passes.
func waitReady(t *testing.T, s *server, port int) error {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("process exited before it was ready: %v", s.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (last: %v)", url, readyTimeout, err)
		}
	}
}

// serverEnv is the environment of the server under test: the env contract
// of scc-frontend, and nothing inherited that could make it cluster.
func serverEnv(port int, key string) []string {
	env := []string{
		"SOCKETCLUSTER_PORT=" + strconv.Itoa(port),
		"SCC_FRONTEND_HOST=127.0.0.1",
		"SCC_CLIENT_AUTH_KEY=" + key,
		"SCC_PING_INTERVAL=" + pingInterval,
		"SCC_PING_TIMEOUT=" + pingTimeout,
		"SCC_ADMIN_PORT=0", // no fixed admin port: tests run side by side
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func TestFrontendWithSocketClusterClient(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	s, port := startFrontend(t, key)
	runClient(t, node, port, key)
	checkAlive(t, s)
}

// TestFrontendProtocolV1 runs the checks with protocol v1 on both ends:
// pings are "#1" and pongs "#2".
func TestFrontendProtocolV1(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the v2 run covers everything else")
	}
	node := needNode(t)
	key := randomKey(t)
	s, port := startFrontend(t, key, "SCC_PROTOCOL_VERSION=1")
	runClient(t, node, port, key, "SCC_INTEROP_PROTOCOL_VERSION=1")
	checkAlive(t, s)
}

// startFrontend starts scc-frontend on a free loopback port and waits for
// /readyz.
func startFrontend(t *testing.T, key string, extraEnv ...string) (*server, int) {
	t.Helper()
	bin := frontendBinary(t)
	var (
		s    *server
		port int
		err  error
	)
	// The free port can be taken between the probe and the bind: retry.
	for attempt := 0; attempt < 3; attempt++ {
		port = freePort(t)
		cmd := exec.Command(bin)
		cmd.Env = append(serverEnv(port, key), extraEnv...)
		s = startServer(t, cmd)
		if err = waitReady(t, s, port); err == nil {
			return s, port
		}
		t.Logf("attempt %d: %v\n%s", attempt+1, err, tail(s.stderr.String(), 20))
	}
	t.Fatalf("scc-frontend did not become ready: %v", err)
	return nil, 0
}

// checkAlive fails the test if the server process has exited.
func checkAlive(t *testing.T, s *server) {
	t.Helper()
	select {
	case <-s.done:
		t.Errorf("%s exited during the run: %v", filepath.Base(s.cmd.Path), s.err)
	default:
	}
}

// TestReferenceServerWithSocketClusterClient runs the same checks against
// a stock socketcluster-server 20, so a broken check shows up as a failure
// here and not as a frontend bug.
func TestReferenceServerWithSocketClusterClient(t *testing.T) {
	t.Parallel()
	node := needNode(t)
	key := randomKey(t)
	_, port := startReference(t, node, key)
	runClient(t, node, port, key, "SCC_INTEROP_ECHO_PROCEDURE=echo")
}

// startReference starts reference-server.mjs and waits for /readyz.
func startReference(t *testing.T, node, key string) (*server, int) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("node_modules", "socketcluster-server", "package.json")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("socketcluster-server (a dev dependency) is missing under CI: %v", err)
		}
		t.Skipf("skipping: socketcluster-server is not installed: %v", err)
	}
	cmd := exec.Command(node, "reference-server.mjs")
	cmd.Env = serverEnv(0, key)
	s := startServer(t, cmd)

	var port int
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for port == 0 {
		var l struct{ Listening int }
		if line, _, ok := strings.Cut(s.stdout.String(), "\n"); ok {
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("reference server said %q: %v", line, err)
			}
			port = l.Listening
			break
		}
		select {
		case <-s.done:
			t.Fatalf("reference server exited: %v\n%s", s.err, s.stderr.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatal("reference server did not report its port")
		}
	}
	if err := waitReady(t, s, port); err != nil {
		t.Fatal(err)
	}
	return s, port
}

// checkLine is one line of client.mjs's output.
type checkLine struct {
	Check     string          `json:"check"`
	OK        bool            `json:"ok"`
	MS        int64           `json:"ms"`
	Error     string          `json:"error"`
	ErrorName string          `json:"errorName"`
	Detail    json.RawMessage `json:"detail"`
	Summary   bool            `json:"summary"`
	Passed    int             `json:"passed"`
	Failed    int             `json:"failed"`
	Event     string          `json:"event"`
}

// runClient runs client.mjs against the server on port and reports each
// check as a subtest.
func runClient(t *testing.T, node string, port int, key string, extraEnv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	url := fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", port)
	cmd := exec.CommandContext(ctx, node, "client.mjs", "--url", url)
	cmd.Env = append(os.Environ(),
		"SCC_CLIENT_AUTH_KEY="+key,
		"SCC_INTEROP_PING_TIMEOUT="+pingTimeout,
		"SCC_INTEROP_TIMEOUT=45000",
		"SCC_INTEROP_STEP_TIMEOUT=5000",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()

	var (
		checks  = map[string]checkLine{}
		order   []string
		summary *checkLine
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l checkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("client.mjs printed a line that is not JSON: %q", sc.Text())
			continue
		}
		switch {
		case l.Summary:
			summary = &l
		case l.Check != "":
			if _, dup := checks[l.Check]; !dup {
				order = append(order, l.Check)
			}
			checks[l.Check] = l
		case l.Event != "":
			t.Logf("client: %s", sc.Text())
		}
	}

	for _, name := range order {
		l := checks[name]
		t.Run(name, func(t *testing.T) {
			if !l.OK {
				msg := l.Error
				if l.ErrorName != "" && l.ErrorName != "Error" {
					msg = l.ErrorName + ": " + msg
				}
				t.Errorf("failed after %dms: %s", l.MS, msg)
			} else if len(l.Detail) > 0 {
				t.Logf("%dms %s", l.MS, l.Detail)
			}
		})
	}
	for _, name := range requiredChecks {
		if _, ok := checks[name]; !ok {
			t.Errorf("check %q was not reported", name)
		}
	}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("client.mjs did not finish within %v", clientTimeout)
	case errors.As(runErr, &exitErr):
		t.Errorf("client.mjs exited with %d", exitErr.ExitCode())
	case runErr != nil:
		t.Errorf("running client.mjs: %v", runErr)
	}
	if summary == nil {
		t.Error("client.mjs printed no summary")
	} else if summary.Failed != 0 || summary.Passed != len(checks) {
		t.Errorf("client.mjs summary: %d passed, %d failed, %d checks reported", summary.Passed, summary.Failed, len(checks))
	}
	if t.Failed() && stderr.Len() > 0 {
		t.Logf("client.mjs stderr:\n%s", tail(stderr.String(), 40))
	}
}
