package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/rules"
)

// TestRecoveryHelperInChromium loads js/sccgo-recovery.mjs as an ES module
// next to the stock socketcluster-client browser build in a real headless
// Chromium, against an in-process frontend with history (size 100) that
// also serves the page: a socket disconnected while 7 publications are
// made gets exactly those, in order, once, then live ones; one away for
// 150 gets a recoveryfailed event with reason gone.
func TestRecoveryHelperInChromium(t *testing.T) {
	chromium := os.Getenv("SCC_CHROMIUM")
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
	clientJS, err := os.ReadFile(filepath.Join("..", "interop", "node_modules", "socketcluster-client", "socketcluster-client.min.js"))
	if err != nil {
		need(t, "socketcluster-client is missing (npm ci in test/interop)")
	}
	helper, err := os.ReadFile(filepath.Join("..", "..", "js", "sccgo-recovery.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join("recovery", "page.html"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]struct {
		body []byte
		typ  string
	}{
		"/recovery/":                   {page, "text/html; charset=utf-8"},
		"/recovery/sc.min.js":          {clientJS, "text/javascript"},
		"/recovery/sccgo-recovery.mjs": {helper, "text/javascript"},
	}

	set, err := rules.Default().WithDefaultHistory(100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cfg := frontend.DefaultConfig()
	cfg.Rules = set
	cfg.DrainDuration = 0
	cfg.Pages = map[string]http.Handler{"/recovery/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", f.typ)
		w.Write(f.body)
	})}
	srv, err := frontend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-errc
	}()

	raw, _ := json.Marshal(map[string]string{"chromium": chromium, "url": "http://" + ln.Addr().String() + "/recovery/"})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "recovery.mjs", string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("recovery.mjs: %v\n%s\n%s", err, out, stderr.String())
	}
	var res struct {
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Within struct {
			Got  []int `json:"got"`
			Last struct {
				Asked, Recovered bool
				Offset           int
			} `json:"last"`
		} `json:"within"`
		Late struct {
			Reason    string `json:"reason"`
			Recovered bool   `json:"recovered"`
			Offset    int    `json:"offset"`
			Got       []int  `json:"got"`
		} `json:"late"`
		PageErrors []string `json:"pageErrors"`
		Version    string   `json:"version"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("result %q: %v", out, err)
	}
	t.Logf("Chromium %s: %s", res.Version, bytes.TrimSpace(out))
	if !res.OK || len(res.PageErrors) > 0 {
		t.Fatalf("page failed: %s %v", res.Error, res.PageErrors)
	}
	want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	if len(res.Within.Got) != len(want) {
		t.Fatalf("within the window got %v, want %v", res.Within.Got, want)
	}
	for i := range want {
		if res.Within.Got[i] != want[i] {
			t.Fatalf("within the window got %v, want %v", res.Within.Got, want)
		}
	}
	if !res.Within.Last.Asked || !res.Within.Last.Recovered || res.Within.Last.Offset != 10 {
		t.Fatalf("recovery event %+v", res.Within.Last)
	}
	if res.Late.Reason != "gone" || res.Late.Recovered || res.Late.Offset != 150 || len(res.Late.Got) != 1 || res.Late.Got[0] != 151 {
		t.Fatalf("away too long: %+v", res.Late)
	}
}
