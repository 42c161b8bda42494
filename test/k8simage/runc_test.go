package k8simage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bundle unpacks the image into a runc bundle and rewrites its runtime
// config the way the manifests run a container: the binary as the command,
// the image's user (which must be 65532), a read-only root filesystem, a
// tmpfs on /tmp (the emptyDir), no capabilities, no new privileges. The
// network namespace is the host's, so the binary's loopback ports are the
// test's.
func bundle(t *testing.T, layoutDir, tag, binary string, env []string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":"+tag, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "config.json")
	var spec map[string]any
	if err := json.Unmarshal(blob0(t, cfgPath), &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	user := proc["user"].(map[string]any)
	if uid, gid := user["uid"], user["gid"]; uid != float64(65532) || gid != float64(65532) {
		t.Fatalf("the image runs as %v:%v, want 65532:65532", uid, gid)
	}
	proc["args"] = []string{"/usr/local/bin/" + binary}
	proc["terminal"] = false
	proc["noNewPrivileges"] = true
	proc["capabilities"] = map[string]any{"bounding": []string{}, "effective": []string{}, "inheritable": []string{}, "permitted": []string{}, "ambient": []string{}}
	proc["env"] = append(toStrings(proc["env"]), env...)
	spec["root"].(map[string]any)["readonly"] = true
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
		"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
		"options": []string{"nosuid", "nodev", "noexec", "size=16m", "mode=1777"},
	})
	linux := spec["linux"].(map[string]any)
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "network" {
			ns = append(ns, n)
		}
	}
	linux["namespaces"] = ns
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func toStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, s := range a {
			out = append(out, s.(string))
		}
	}
	return out
}

// procStatus reads fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// TestBinariesUnderRunc runs scc-state, scc-broker and scc-frontend from the
// image under runc as the manifests run them: each must run as 65532 with
// no capabilities on a read-only root, answer /healthz on its admin port on
// loopback, and exit 0 on SIGTERM within its shutdown bound.
func TestBinariesUnderRunc(t *testing.T) {
	dir, tag := layout(t)
	if os.Getuid() != 0 {
		t.Skip("runc needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatal("runc missing (apt-get install -y runc)")
	}
	cases := []struct {
		binary string
		env    func(main, admin int) []string
	}{
		{"scc-state", func(main, admin int) []string {
			return []string{"SCC_STATE_SERVER_HOST=127.0.0.1", "SCC_STATE_SERVER_PORT=" + strconv.Itoa(main),
				"SCC_ADMIN_PORT=" + strconv.Itoa(admin), "SCC_GOSSIP_PORT=-1"}
		}},
		{"scc-broker", func(main, admin int) []string {
			return []string{"SCC_BROKER_HOST=127.0.0.1", "SCC_BROKER_SERVER_PORT=" + strconv.Itoa(main),
				"SCC_ADMIN_PORT=" + strconv.Itoa(admin), "SCC_GOSSIP_PORT=-1"}
		}},
		{"scc-frontend", func(main, admin int) []string {
			return []string{"SCC_FRONTEND_HOST=127.0.0.1", "SOCKETCLUSTER_PORT=" + strconv.Itoa(main),
				"SCC_ADMIN_PORT=" + strconv.Itoa(admin)}
		}},
	}
	runcRoot := t.TempDir()
	for _, c := range cases {
		t.Run(c.binary, func(t *testing.T) {
			main, admin := freePort(t), freePort(t)
			b := bundle(t, dir, tag, c.binary, append(c.env(main, admin), "SCC_SHUTDOWN_TIMEOUT=5s", "SCC_DRAIN_DURATION=1s",
				"SCC_AUTH_KEY=runc-test-cluster-key-of-at-least-32-bytes"))
			id := fmt.Sprintf("sccgo-test-%s-%d", c.binary, os.Getpid())
			var logs bytes.Buffer
			cmd := exec.Command("runc", "--root", runcRoot, "run", "--bundle", b, id)
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = exec.Command("runc", "--root", runcRoot, "delete", "--force", id).Run()
			})

			url := fmt.Sprintf("http://127.0.0.1:%d/healthz", admin)
			client := &http.Client{Timeout: time.Second}
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := client.Get(url)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				select {
				case err := <-done:
					t.Fatalf("exited before answering /healthz: %v\n%s", err, logs.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz on %s not 200 within 30s (last error %v)\n%s", url, err, logs.String())
				}
				time.Sleep(100 * time.Millisecond) // poll interval, not synchronization
			}

			// How the process runs: user, capabilities, privileges, root.
			out, err := exec.Command("runc", "--root", runcRoot, "state", id).Output()
			if err != nil {
				t.Fatal(err)
			}
			var st struct{ Pid int }
			if err := json.Unmarshal(out, &st); err != nil || st.Pid == 0 {
				t.Fatalf("runc state: %v %s", err, out)
			}
			s := procStatus(t, st.Pid)
			for k, want := range map[string]string{
				"Uid": "65532 65532 65532 65532", "Gid": "65532 65532 65532 65532",
				"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
				"NoNewPrivs": "1",
			} {
				if s[k] != want {
					t.Errorf("%s: %q, want %q", k, s[k], want)
				}
			}
			mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", st.Pid))
			if err != nil {
				t.Fatal(err)
			}
			rootRO := false
			for _, l := range strings.Split(string(mi), "\n") {
				f := strings.Fields(l)
				if len(f) > 5 && f[4] == "/" {
					rootRO = strings.HasPrefix(f[5], "ro")
				}
			}
			if !rootRO {
				t.Errorf("root filesystem not read-only:\n%s", mi)
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("SIGTERM: exit %v, want 0\n%s", err, logs.String())
				}
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running 20s after SIGTERM\n%s", logs.String())
			}
		})
	}
}
