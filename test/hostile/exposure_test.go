package hostile

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/localcluster"
)

// startRealCluster runs bin/scc-state, one scc-broker and one scc-frontend
// on free loopback ports with their defaults, and waits until all are
// ready. It skips when the binaries are missing, unless CI is set.
func startRealCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := (localcluster.Options{BinDir: bin}).Validate(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("binaries missing under CI: %v", err)
		}
		t.Skipf("binaries missing (run make build): %v", err)
	}
	c, err := localcluster.Start(context.Background(), localcluster.Options{
		BinDir: bin, Brokers: 1, Frontends: 1, AuthKey: "hostile-exposure-key-0123456789abcdef0123",
		BaseEnv:  []string{"PATH=" + os.Getenv("PATH")},
		ExtraEnv: map[string]string{"SCC_STATE_SERVER_STARTUP_DELAY": "200ms", "SCC_STATE_SERVER_SCALE_OUT_DELAY": "200ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// An outsider who reaches a node's client or link port learns nothing
// about the cluster from it: metrics, /status and the status page are on
// the admin ports only. Probes still answer on the main ports.
func TestHostileOutsiderReadsNoAdminPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := startRealCluster(t)
	for _, p := range c.Procs() {
		main := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port))
		for _, path := range []string{"/metrics", "/status", "/", "/index.html"} {
			if code := status(t, main+path); code == http.StatusOK || code == 0 {
				t.Errorf("%s: GET %s on its %s port = %d, want a refusal", p.Name, path, p.Role, code)
			}
		}
		if code := status(t, main+"/healthz"); code != http.StatusOK {
			t.Errorf("%s: /healthz on the main port = %d", p.Name, code)
		}
		if code := status(t, c.AdminURL(p.Name, "/metrics")); code != http.StatusOK {
			t.Errorf("%s: /metrics on the admin port = %d", p.Name, code)
		}
	}
	if code := status(t, strings.TrimSuffix(c.StatusURL(), "/")+"/status"); code != http.StatusOK {
		t.Errorf("/status on the state's admin port = %d", code)
	}
}

// A web page on another origin, and a DNS-rebinding page that reaches
// scc-local's control endpoint under its own host name, cannot kill a
// broker; the developer's own request with the printed token can.
func TestHostileControlEndpointRefusesWebPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := startRealCluster(t)
	const token = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: c.ControlHandler(token), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	base := "http://" + ln.Addr().String()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	broker := func() localcluster.ProcInfo {
		p, err := c.Proc("broker-1")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	before := broker()
	post := func(hdr map[string]string, host string) int {
		req, _ := http.NewRequest("POST", base+"/brokers/broker-1/kill", strings.NewReader("x"))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	attacks := map[string]struct {
		hdr  map[string]string
		host string
	}{
		// A cross-origin form post or no-cors fetch: a simple request, no
		// custom header possible.
		"cross-origin form": {map[string]string{"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}, ""},
		// A page that also learnt the token still cannot send it cross-site.
		"cross-origin with token": {map[string]string{"Origin": "https://evil.example", "X-SCC-Local-Token": token}, ""},
		// DNS rebinding: same-origin for the browser, foreign Host here.
		"rebound host": {map[string]string{"Origin": "http://rebind.evil.example:" + port, "X-SCC-Local-Token": token}, "rebind.evil.example:" + port},
		"no token":     {nil, ""},
	}
	for name, a := range attacks {
		if code := post(a.hdr, a.host); code != http.StatusForbidden {
			t.Errorf("%s: POST kill = %d, want 403", name, code)
		}
	}
	after := broker()
	if !after.Running || after.PID != before.PID || syscall.Kill(after.PID, 0) != nil {
		t.Fatalf("broker-1 hurt by refused requests: before %+v, after %+v", before, after)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitProcReady(ctx, "broker-1"); err != nil {
		t.Fatalf("broker-1 not ready after the attacks: %v", err)
	}
	if code := post(map[string]string{"X-SCC-Local-Token": token}, ""); code != http.StatusOK {
		t.Fatalf("POST kill with the token = %d, want 200", code)
	}
	if broker().Running {
		t.Fatal("broker-1 still running after the authorised kill")
	}
}
