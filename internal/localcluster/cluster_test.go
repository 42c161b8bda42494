package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/testwait"
)

func fakeOpts(brokers, frontends int, extra map[string]string) Options {
	return Options{
		BinDir:       fakeBinDir,
		Brokers:      brokers,
		Frontends:    frontends,
		AuthKey:      "k",
		ExtraEnv:     extra,
		PollInterval: 20 * time.Millisecond,
		StopTimeout:  3 * time.Second,
	}
}

func startFake(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, d, what, cond)
}

// gone reports whether pid no longer names a live process (a zombie not yet
// reaped by init counts as gone).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func procByName(t *testing.T, c *Cluster, name string) ProcInfo {
	t.Helper()
	in, err := c.Proc(name)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestStartWaitReadyClose(t *testing.T) {
	out := &syncBuffer{}
	opts := fakeOpts(2, 2, map[string]string{"FAKE_READY_AFTER": "300ms"})
	opts.Stdout = out
	c := startFake(t, opts)

	// Not ready at once: the fakes answer 503 for 300ms.
	quick, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := c.WaitReady(quick)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady before the nodes are ready = %v, want deadline exceeded", err)
	}
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}

	procs := c.Procs()
	var names []string
	ports := map[int]bool{}
	for _, p := range procs {
		names = append(names, p.Name)
		if !p.Running || p.PID == 0 || p.Crashed || p.Starts != 1 {
			t.Errorf("%s: %+v, want running once", p.Name, p)
		}
		for _, port := range []int{p.Port, p.GossipPort} {
			if ports[port] {
				t.Errorf("port %d handed out twice", port)
			}
			ports[port] = true
		}
	}
	want := []string{"state", "broker-1", "broker-2", "frontend-1", "frontend-2"}
	if !slices.Equal(names, want) {
		t.Fatalf("Procs names = %v, want %v", names, want)
	}

	urls := c.FrontendURLs()
	if len(urls) != 2 || urls[0] != fmt.Sprintf("ws://127.0.0.1:%d/socketcluster/", procs[3].Port) {
		t.Errorf("FrontendURLs = %v", urls)
	}
	if got, w := c.StatusURL(), fmt.Sprintf("http://127.0.0.1:%d/", procs[0].AdminPort); got != w {
		t.Errorf("StatusURL = %q, want %q", got, w)
	}
	if got, w := c.DemoURL(), fmt.Sprintf("http://127.0.0.1:%d/demo/", procs[3].Port); got != w {
		t.Errorf("DemoURL = %q, want %q", got, w)
	}
	if got, w := c.AdminURL("broker-1", "/metrics"), fmt.Sprintf("http://127.0.0.1:%d/metrics", procs[1].AdminPort); got != w || procs[1].AdminPort == 0 {
		t.Errorf("AdminURL = %q, want %q", got, w)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, p := range procs {
		if !gone(p.PID) {
			t.Errorf("%s (pid %d) still alive after Close", p.Name, p.PID)
		}
	}
	for _, p := range c.Procs() {
		if p.Running || p.Crashed || p.Exit != "exit status 0" {
			t.Errorf("after Close %s: %+v, want exited 0 on purpose", p.Name, p)
		}
	}
	if _, err := c.AddBroker(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("AddBroker after Close = %v, want ErrClosed", err)
	}

	text := out.String()
	for _, line := range []string{
		"broker-1   | fake broker listening on 127.0.0.1:",
		"frontend-2 | fake frontend pid ",
		"state      | partial line\n",
		"broker-2   | got SIGTERM\n",
		"frontend-1 | tail without newline\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("output lacks %q:\n%s", line, text)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("output to a buffer is colored")
	}
}

func TestEnvWiring(t *testing.T) {
	opts := fakeOpts(1, 1, map[string]string{"SCC_STATE_SERVER_SCALE_OUT_DELAY": "100ms"})
	opts.BaseEnv = []string{"KEEP_ME=1", "SCC_INSTANCE_ID=wrong", "SCC_STATE_SERVER_PORT=1"}
	opts.ClientAuthKey = "client-secret"
	c := startFake(t, opts)
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	state := procByName(t, c, "state")
	broker := procByName(t, c, "broker-1")
	front := procByName(t, c, "frontend-1")

	envOf := func(p ProcInfo) map[string]string {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/env", p.Port))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []string
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v // the last duplicate wins, as in exec
		}
		return m
	}
	be, fe, se := envOf(broker), envOf(front), envOf(state)
	checks := []struct {
		env        map[string]string
		key, value string
	}{
		{be, "SCC_INSTANCE_ID", "broker-1"},
		{be, "SCC_BROKER_SERVER_PORT", strconv.Itoa(broker.Port)},
		{be, "SCC_ADMIN_PORT", strconv.Itoa(broker.AdminPort)},
		{fe, "SCC_ADMIN_PORT", strconv.Itoa(front.AdminPort)},
		{se, "SCC_ADMIN_PORT", strconv.Itoa(state.AdminPort)},
		{be, "SCC_STATE_SERVER_PORT", strconv.Itoa(state.Port)},
		{be, "SCC_STATE_SERVER_HOST", "127.0.0.1"},
		{be, "SCC_GOSSIP_PORT", strconv.Itoa(broker.GossipPort)},
		{be, "SCC_AUTH_KEY", "k"},
		{be, "SCC_INSTANCE_IP", "127.0.0.1"},
		{be, "SCC_STATE_SERVER_SCALE_OUT_DELAY", "100ms"},
		{be, "KEEP_ME", "1"},
		{fe, "SOCKETCLUSTER_PORT", strconv.Itoa(front.Port)},
		{fe, "SCC_INSTANCE_ID", "frontend-1"},
		{se, "SCC_INSTANCE_ID", "state"},
		{fe, "SCC_CLIENT_AUTH_KEY", "client-secret"},
		{fe, "SCC_STATE_SERVER_PORT", strconv.Itoa(state.Port)},
		{se, "SCC_STATE_SERVER_PORT", strconv.Itoa(state.Port)},
		{se, "SCC_STATE_SERVER_HOST", "127.0.0.1"},
	}
	for _, ck := range checks {
		if got := ck.env[ck.key]; got != ck.value {
			t.Errorf("%s = %q, want %q", ck.key, got, ck.value)
		}
	}
	seeds := strings.Split(fe["SCC_GOSSIP_SEEDS"], ",")
	for _, p := range []ProcInfo{state, broker} {
		if !slices.Contains(seeds, fmt.Sprintf("127.0.0.1:%d", p.GossipPort)) {
			t.Errorf("frontend seeds %v lack %s's gossip port", seeds, p.Name)
		}
	}
	if slices.Contains(seeds, fmt.Sprintf("127.0.0.1:%d", front.GossipPort)) {
		t.Errorf("frontend seeds %v contain its own gossip port", seeds)
	}
}

func TestCrashAtStartFailsWaitReady(t *testing.T) {
	c := startFake(t, fakeOpts(2, 1, map[string]string{"FAKE_CRASH_ROLE": "broker"}))
	err := c.WaitReady(ctxT(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "broker-") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("WaitReady = %v, want a broker's exit status 2", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady waited for the deadline instead of failing early: %v", err)
	}
}

func TestCrashIsLoggedAndReported(t *testing.T) {
	logs := &syncBuffer{}
	opts := fakeOpts(1, 1, nil)
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	c := startFake(t, opts)
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	fe := procByName(t, c, "frontend-1")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/crash", fe.Port))
	if err == nil {
		resp.Body.Close()
	}
	waitFor(t, 5*time.Second, "frontend-1 to be reaped", func() bool {
		return !procByName(t, c, "frontend-1").Running
	})
	got := procByName(t, c, "frontend-1")
	if !got.Crashed || got.Exit != "exit status 3" {
		t.Fatalf("after a crash: %+v, want crashed with exit status 3", got)
	}
	if l := logs.String(); !strings.Contains(l, "exited unexpectedly") || !strings.Contains(l, "node=frontend-1") {
		t.Errorf("crash not logged:\n%s", l)
	}
	// The rest keeps running.
	if !procByName(t, c, "broker-1").Running || !procByName(t, c, "state").Running {
		t.Fatal("a frontend crash stopped other nodes")
	}
	if err := c.WaitReady(ctxT(t, time.Second)); err == nil || !strings.Contains(err.Error(), "frontend-1 exited") {
		t.Fatalf("WaitReady with a crashed frontend = %v", err)
	}
	if urls := c.FrontendURLs(); len(urls) != 0 {
		t.Errorf("FrontendURLs lists a dead frontend: %v", urls)
	}
}

func TestLifecycleOperations(t *testing.T) {
	c := startFake(t, fakeOpts(2, 1, nil))
	ctx := ctxT(t, 20*time.Second)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// Kill and restart a broker: same port, new pid.
	b1 := procByName(t, c, "broker-1")
	if err := c.StopBroker("broker-1", false); err != nil {
		t.Fatal(err)
	}
	killed := procByName(t, c, "broker-1")
	if killed.Running || killed.Crashed || killed.Exit != "signal: killed" || !gone(b1.PID) {
		t.Fatalf("after kill: %+v", killed)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady with a broker stopped on purpose: %v", err)
	}
	if err := c.RestartBroker(ctx, "broker-1"); err != nil {
		t.Fatal(err)
	}
	re := procByName(t, c, "broker-1")
	if !re.Running || re.Port != b1.Port || re.GossipPort != b1.GossipPort || re.PID == b1.PID || re.Starts != 2 {
		t.Fatalf("after restart: %+v (before %+v)", re, b1)
	}
	// Restarting a running broker kills it first.
	if err := c.RestartBroker(ctx, "broker-1"); err != nil {
		t.Fatal(err)
	}
	if re2 := procByName(t, c, "broker-1"); re2.PID == re.PID || !gone(re.PID) || re2.Starts != 3 {
		t.Fatalf("restart of a running broker: %+v", re2)
	}

	// Graceful stop: SIGTERM, exit 0.
	if err := c.StopBroker("broker-2", true); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExit(ctx, "broker-2"); err != nil {
		t.Fatal(err)
	}
	if b2 := procByName(t, c, "broker-2"); b2.Running || b2.Crashed || b2.Exit != "exit status 0" {
		t.Fatalf("after graceful stop: %+v", b2)
	}

	// State kill and start on the same port.
	st := procByName(t, c, "state")
	if err := c.KillState(); err != nil {
		t.Fatal(err)
	}
	if procByName(t, c, "state").Running || !gone(st.PID) {
		t.Fatal("state still running after KillState")
	}
	if err := c.StartState(ctx); err != nil {
		t.Fatal(err)
	}
	if st2 := procByName(t, c, "state"); !st2.Running || st2.Port != st.Port {
		t.Fatalf("after StartState: %+v", st2)
	}

	// Add a broker and a frontend; kill a frontend.
	name, err := c.AddBroker(ctx)
	if err != nil || name != "broker-3" {
		t.Fatalf("AddBroker = %q, %v", name, err)
	}
	fname, err := c.AddFrontend(ctx)
	if err != nil || fname != "frontend-2" {
		t.Fatalf("AddFrontend = %q, %v", fname, err)
	}
	if n := len(c.FrontendURLs()); n != 2 {
		t.Fatalf("%d frontend URLs, want 2", n)
	}
	if err := c.KillFrontend("frontend-1"); err != nil {
		t.Fatal(err)
	}
	if urls := c.FrontendURLs(); len(urls) != 1 || !strings.Contains(urls[0], strconv.Itoa(procByName(t, c, "frontend-2").Port)) {
		t.Fatalf("FrontendURLs after kill = %v", urls)
	}

	// Wrong names and roles.
	if err := c.StopBroker("frontend-2", false); !errors.Is(err, ErrUnknownProc) {
		t.Errorf("StopBroker(frontend-2) = %v, want ErrUnknownProc", err)
	}
	if err := c.KillFrontend("nope"); !errors.Is(err, ErrUnknownProc) {
		t.Errorf("KillFrontend(nope) = %v, want ErrUnknownProc", err)
	}

	all := c.Procs()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if p.PID != 0 && !gone(p.PID) {
			t.Errorf("%s (pid %d) alive after Close", p.Name, p.PID)
		}
	}
}

func TestCloseKillsWhatIgnoresSIGTERM(t *testing.T) {
	opts := fakeOpts(1, 1, map[string]string{"FAKE_IGNORE_TERM": "1"})
	opts.StopTimeout = 200 * time.Millisecond
	c := startFake(t, opts)
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	procs := c.Procs()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Procs() {
		if p.Running || p.Exit != "signal: killed" {
			t.Errorf("%s: %+v, want killed", p.Name, p)
		}
	}
	for _, p := range procs {
		if !gone(p.PID) {
			t.Errorf("%s (pid %d) alive after Close", p.Name, p.PID)
		}
	}
}

func TestFixedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opts := fakeOpts(1, 1, nil)
	opts.BasePort = ln.Addr().(*net.TCPAddr).Port
	if opts.BasePort > 65535-brokerPortOffset {
		t.Skip("free port too high for a fixed layout")
	}
	c, err := Start(context.Background(), opts)
	if err == nil {
		c.Close()
		t.Fatal("Start on an occupied state port succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Start = %v, want a port-in-use error", err)
	}
}

func TestValidate(t *testing.T) {
	if err := (Options{}).Validate(); err == nil {
		t.Error("empty BinDir accepted")
	}
	err := Options{BinDir: t.TempDir()}.Validate()
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binaries: %v", err)
	}
	if err := (Options{BinDir: fakeBinDir, Brokers: -1}).Validate(); err == nil {
		t.Error("negative brokers accepted")
	}
}

func TestControlHandler(t *testing.T) {
	c := startFake(t, fakeOpts(1, 1, nil))
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.ControlHandler(testToken))
	defer srv.Close()

	do := func(method, path string, wantStatus int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header.Set(ControlTokenHeader, testToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, body, wantStatus)
		}
		var m map[string]any
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return m
	}

	resp, err := srv.Client().Get(srv.URL + "/procs")
	if err != nil {
		t.Fatal(err)
	}
	var procs []ProcInfo
	err = json.NewDecoder(resp.Body).Decode(&procs)
	resp.Body.Close()
	if err != nil || len(procs) != 3 {
		t.Fatalf("GET /procs = %v, %v", procs, err)
	}

	if m := do("POST", "/brokers", http.StatusCreated); m["name"] != "broker-2" || m["running"] != true {
		t.Fatalf("POST /brokers = %v", m)
	}
	if m := do("POST", "/brokers/broker-1/kill", http.StatusOK); m["running"] != false {
		t.Fatalf("kill = %v", m)
	}
	if m := do("POST", "/brokers/broker-1/restart", http.StatusOK); m["running"] != true || m["starts"] != 2.0 {
		t.Fatalf("restart = %v", m)
	}
	do("POST", "/brokers/broker-2/stop", http.StatusAccepted)
	if err := c.WaitExit(ctxT(t, 5*time.Second), "broker-2"); err != nil {
		t.Fatal(err)
	}
	do("POST", "/brokers/broker-9/kill", http.StatusNotFound)
	do("POST", "/brokers/frontend-1/kill", http.StatusNotFound)
	do("GET", "/brokers/broker-1/kill", http.StatusMethodNotAllowed)
	if m := do("POST", "/state/kill", http.StatusOK); m["running"] != false {
		t.Fatalf("state kill = %v", m)
	}
	if m := do("POST", "/state/start", http.StatusOK); m["running"] != true {
		t.Fatalf("state start = %v", m)
	}
	if m := do("POST", "/frontends", http.StatusCreated); m["name"] != "frontend-2" {
		t.Fatalf("POST /frontends = %v", m)
	}
	if m := do("POST", "/frontends/frontend-1/kill", http.StatusOK); m["running"] != false {
		t.Fatalf("frontend kill = %v", m)
	}
	do("GET", "/", http.StatusOK)
}

const testToken = "0123456789abcdef"

// A page on another origin, a DNS-rebinding page (a foreign Host) and a
// request without the token cannot stop a broker; the same request with
// the token from the endpoint's own origin can.
func TestControlHandlerRefusesForeignRequests(t *testing.T) {
	c := startFake(t, fakeOpts(1, 0, nil))
	if err := c.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.ControlHandler(testToken))
	defer srv.Close()
	before := procByName(t, c, "broker-1")
	send := func(method, path string, hdr map[string]string, host string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	own := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		host string
	}{
		// What a form or fetch() from another site sends: no custom
		// header is possible without a preflight.
		{"cross-origin form", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, ""},
		{"cross-origin with the token", map[string]string{"Origin": "http://evil.example", ControlTokenHeader: testToken}, ""},
		{"opaque origin", map[string]string{"Origin": "null"}, ""},
		{"sec-fetch-site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", ControlTokenHeader: testToken}, ""},
		// DNS rebinding: the page's own name resolves to 127.0.0.1, so
		// the request is same-origin but carries the foreign Host.
		{"rebound host", map[string]string{"Origin": "http://evil.example:" + strings.Split(own, ":")[1], ControlTokenHeader: testToken}, "evil.example:" + strings.Split(own, ":")[1]},
		{"rebound host, no origin", map[string]string{ControlTokenHeader: testToken}, "evil.example"},
		{"no token", nil, ""},
		{"wrong token", map[string]string{ControlTokenHeader: "guess"}, ""},
	} {
		if got := send("POST", "/brokers/broker-1/kill", tc.hdr, tc.host); got != http.StatusForbidden {
			t.Errorf("%s: POST kill = %d, want 403", tc.name, got)
		}
	}
	if got := send("GET", "/procs", nil, "evil.example"); got != http.StatusForbidden {
		t.Errorf("GET /procs with a foreign Host = %d, want 403", got)
	}
	if after := procByName(t, c, "broker-1"); !after.Running || after.PID != before.PID {
		t.Fatalf("broker-1 after refused requests: %+v (was %+v)", after, before)
	}
	if got := send("GET", "/procs", nil, "localhost:1"); got != http.StatusOK {
		t.Errorf("GET /procs as localhost = %d, want 200", got)
	}
	if got := send("POST", "/brokers/broker-1/kill", map[string]string{"Origin": "http://" + own, ControlTokenHeader: testToken}, ""); got != http.StatusOK {
		t.Fatalf("POST kill with the token from the own origin = %d, want 200", got)
	}
	if after := procByName(t, c, "broker-1"); after.Running {
		t.Fatalf("broker-1 still running after an authorised kill: %+v", after)
	}
}

func TestControlHostAllowed(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:7700": true, "localhost:7700": true, "LOCALHOST": true, "[::1]:7700": true,
		"192.168.1.5:7700": true, "evil.example:7700": false, "localhost.evil.example": false,
		"": false, "127.0.0.1.nip.io:7700": false,
	} {
		if got := controlHostAllowed(host); got != want {
			t.Errorf("controlHostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}
