package k8simage

import (
	"bytes"
	"context"
	"fmt"
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

// TestArchiveLoadsInContainerd: the docker-archive that `make image` writes
// loads into containerd (a private instance with its own root, state and
// socket, as a kubelet's node would have) under both tags, and the image
// runs there as its default user on a read-only root: the frontend answers
// /healthz on loopback and stops on SIGTERM.
func TestArchiveLoadsInContainerd(t *testing.T) {
	dir, tag := layout(t)
	if os.Getuid() != 0 {
		t.Skip("containerd needs root")
	}
	for _, tool := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (apt-get install -y containerd)", tool)
		}
	}
	archive := filepath.Join(filepath.Dir(dir), "sccgo-docker.tar")
	if _, err := os.Stat(archive); err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "sccgo-ctrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	sock := filepath.Join(base, "containerd.sock")
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n", filepath.Join(base, "root"), filepath.Join(base, "state"), sock)
	if err := os.WriteFile(filepath.Join(base, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var dlog bytes.Buffer
	daemon := exec.Command("containerd", "--config", filepath.Join(base, "config.toml"))
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- daemon.Wait() }()
	t.Cleanup(func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-daemonDone:
		case <-time.After(20 * time.Second):
			_ = daemon.Process.Kill()
			<-daemonDone
		}
	})
	ctr := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"-a", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ctr(5*time.Second, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not answering in 30s\n%s", dlog.String())
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
	if out, err := ctr(2*time.Minute, "images", "import", archive); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	out, err := ctr(10*time.Second, "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"docker.io/library/sccgo:" + tag, "docker.io/library/sccgo:dev"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("imported images %q lack %s", out, want)
		}
	}

	admin := freePort(t)
	id := fmt.Sprintf("sccgo-test-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rlog bytes.Buffer
	run := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "run", "--rm", "--net-host", "--read-only",
		"--env", "SCC_FRONTEND_HOST=127.0.0.1", "--env", "SOCKETCLUSTER_PORT="+strconv.Itoa(freePort(t)),
		"--env", "SCC_ADMIN_PORT="+strconv.Itoa(admin), "--env", "SCC_DRAIN_DURATION=1s",
		"docker.io/library/sccgo:dev", id)
	run.Stdout, run.Stderr = &rlog, &rlog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", admin)
	client := &http.Client{Timeout: time.Second}
	deadline = time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-runDone:
			t.Fatalf("exited before answering /healthz: %v\n%s", err, rlog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz not 200 in 30s\n%s", rlog.String())
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	tasks, err := ctr(10*time.Second, "task", "ps", id)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, l := range strings.Split(tasks, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			pid, _ = strconv.Atoi(f[0])
		}
	}
	if pid == 0 {
		t.Fatalf("no task pid in %q", tasks)
	}
	if s := procStatus(t, pid); s["Uid"] != "65532 65532 65532 65532" {
		t.Errorf("runs as uid %q, want 65532 (the image's user)", s["Uid"])
	}
	if out, err := ctr(10*time.Second, "task", "kill", "-s", "SIGTERM", id); err != nil {
		t.Fatalf("task kill: %v %s", err, out)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, rlog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\n%s", rlog.String())
	}
}
