package demopage

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScriptAgainstRealFrontend runs the page script in two simulated tabs
// (node with a real WebSocket) against a standalone scc-frontend from bin/
// and checks that a message sent in one tab shows up in the other. Skipped
// without node or the binary, unless CI is set.
func TestScriptAgainstRealFrontend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real frontend")
	}
	node, script := scriptFile(t)
	bin := os.Getenv("SCC_BIN_DIR")
	if bin == "" {
		bin = "../../bin"
	}
	exe, _ := filepath.Abs(filepath.Join(bin, "scc-frontend"))
	if _, err := os.Stat(exe); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s is missing: %v", exe, err)
		}
		t.Skipf("%s not built (run make build)", exe)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	var out strings.Builder
	fe := exec.Command(exe)
	fe.Env = []string{"SOCKETCLUSTER_PORT=" + port, "SCC_FRONTEND_HOST=127.0.0.1", "SCC_DRAIN_DURATION=0", "SCC_ADMIN_PORT=0"}
	fe.Stdout, fe.Stderr = &out, &out
	fe.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := fe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		fe.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { fe.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			fe.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("scc-frontend output:\n%s", out.String())
		}
	}()

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:" + port + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("frontend not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws://127.0.0.1:" + port + "/socketcluster/"
	res, err := exec.CommandContext(ctx, node, "--no-warnings", "--experimental-websocket", "testdata/tabs.js", script, url, url).CombinedOutput()
	if err != nil || strings.TrimSpace(string(res)) != "ok" {
		t.Fatalf("two tabs on one frontend: %v\n%s", err, res)
	}
}
