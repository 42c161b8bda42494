package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testAuthKey is a cluster key long enough for CheckAuthKey.
const testAuthKey = "run-test-key-0123456789abcdef0123456789"

// env serves kv, with SCC_AUTH_KEY set to testAuthKey unless kv names it.
func env(kv map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := kv[k]; ok || k != "SCC_AUTH_KEY" {
			return v
		}
		return testAuthKey
	}
}

func TestHelpListsVariables(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, v := range []string{"SCC_STATE_SERVER_PORT", "SCC_AUTH_KEY", "SCC_STATE_SERVER_SCALE_OUT_DELAY",
		"SCC_STATE_SERVER_SCALE_BACK_DELAY", "SCC_STATE_SERVER_STARTUP_DELAY", "SCC_STATE_SERVER_PREPARE_TIMEOUT",
		"SCC_RESHARD_DRAIN_WINDOW", "SCC_GOSSIP_PORT", "SCC_GOSSIP_SEEDS", "SCC_INSTANCE_IP", "SCC_LOG_LEVEL",
		"SCC_ADMIN_PORT", "SCC_ADMIN_HOST", "SCC_ADMIN_ON_CLIENT_PORT"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h lacks %s", v)
		}
	}
}

func TestLoad(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SCC_STATE_SERVER_PORT":             "7000",
		"SCC_STATE_SERVER_SCALE_OUT_DELAY":  "250",
		"SCC_STATE_SERVER_SCALE_BACK_DELAY": "2s",
		"SCC_STATE_SERVER_STARTUP_DELAY":    "0",
		"SCC_GOSSIP_SEEDS":                  "a:1, b:2",
		"SCC_INSTANCE_IP":                   "10.0.0.5",
		"SCC_STATE_SERVER_LOG_LEVEL":        "2",
		"SCC_LINK_MAX_FRAME_BYTES":          "1048576",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if st.port != 7000 || c.Link.MaxFrameBytes != 1<<20 || c.ScaleOutDelay != 250*time.Millisecond || c.ScaleBackDelay != 2*time.Second ||
		c.StartupDelay != 0 || len(c.GossipSeeds) != 2 || c.GossipBind != "10.0.0.5" || c.GossipAdvertise != "10.0.0.5" ||
		st.logLevel.String() != "WARN" {
		t.Fatalf("settings %+v", st)
	}
	if st.admin.Port != 7778 || c.ServeAdmin {
		t.Fatalf("admin defaults %+v, on the link port %v", st.admin, c.ServeAdmin)
	}
	if st, _, err := load(env(map[string]string{"SCC_ADMIN_ON_CLIENT_PORT": "true", "SCC_ADMIN_PORT": "0"})); err != nil || !st.cfg.ServeAdmin || st.admin.Port != 0 {
		t.Fatalf("admin on the link port: %v %+v", err, st.admin)
	}
	if _, _, err := load(env(map[string]string{"SCC_STATE_SERVER_PREPARE_TIMEOUT": "soon"})); err == nil {
		t.Fatal("bad duration accepted")
	}
	if _, _, err := load(env(map[string]string{"SCC_LOG_LEVEL": "loud"})); err == nil {
		t.Fatal("bad level accepted")
	}
}

func TestRunStartsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	port, adminPort := freePort(t), freePort(t)
	go func() {
		done <- run(ctx, nil, env(map[string]string{
			"SCC_STATE_SERVER_PORT": strconv.Itoa(port), "SCC_STATE_SERVER_HOST": "127.0.0.1", "SCC_GOSSIP_PORT": "-1",
			"SCC_ADMIN_PORT": strconv.Itoa(adminPort),
		}), &out)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "state server listening") {
		if time.Now().After(deadline) {
			t.Fatalf("not listening; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The status page, /status and /metrics are on the admin port only.
	link, admin := "http://127.0.0.1:"+strconv.Itoa(port), "http://127.0.0.1:"+strconv.Itoa(adminPort)
	for url, want := range map[string]int{
		link + "/healthz": 200, link + "/": 404, link + "/status": 404, link + "/metrics": 404,
		admin + "/healthz": 200, admin + "/": 200, admin + "/status": 200, admin + "/metrics": 200,
	} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", url, resp.StatusCode, want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// freePort returns a TCP port that was free a moment ago on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Without a key of at least 32 bytes that is not an example key, the
// binary refuses to start; SCC_INSECURE_NO_AUTH=true lets it run with any
// key and warns.
func TestAuthKeyRequired(t *testing.T) {
	for name, key := range map[string]string{
		"empty":   "",
		"short":   "0123456789abcdef0123456789abcde", // 31 bytes
		"example": "REPLACE-ME",
		"dev":     "dev-only-insecure-cluster-key",
	} {
		_, _, err := load(env(map[string]string{"SCC_AUTH_KEY": key}))
		if err == nil || !strings.Contains(err.Error(), "SCC_AUTH_KEY") {
			t.Errorf("%s key: load = %v, want a refusal", name, err)
		}
		err = run(t.Context(), nil, env(map[string]string{"SCC_AUTH_KEY": key}), io.Discard)
		if !errors.Is(err, config.ErrNoAuthKey) && !errors.Is(err, config.ErrShortAuthKey) && !errors.Is(err, config.ErrExampleAuthKey) {
			t.Errorf("%s key: run = %v, want a key error", name, err)
		}
		if _, _, err := load(env(map[string]string{"SCC_AUTH_KEY": key, "SCC_INSECURE_NO_AUTH": "true"})); err != nil {
			t.Errorf("%s key with SCC_INSECURE_NO_AUTH: %v", name, err)
		}
	}
	if _, _, err := load(env(map[string]string{"SCC_AUTH_KEY": "0123456789abcdef0123456789abcdef"})); err != nil {
		t.Errorf("32-byte key refused: %v", err)
	}
}
