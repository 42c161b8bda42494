package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
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

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
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

func TestHelpListsVariables(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, v := range []string{"SCC_BROKER_SERVER_PORT", "SCC_BROKER_HOST", "SCC_INSTANCE_IP", "SCC_INSTANCE_ID",
		"SCC_AUTH_KEY", "SCC_STATE_SERVER_HOST", "SCC_STATE_SERVER_PORT", "SCC_GOSSIP_PORT", "SCC_GOSSIP_BIND",
		"SCC_GOSSIP_SEEDS", "SCC_BROKER_SERVER_LOG_LEVEL", "SCC_LOG_LEVEL", "SCC_LINK_QUEUE_MAX_BYTES", "SCC_SHUTDOWN_TIMEOUT",
		"SCC_ADMIN_PORT", "SCC_ADMIN_HOST", "SCC_ADMIN_ON_CLIENT_PORT", "SCC_CHANNELS_FILE"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h lacks %s", v)
		}
	}
}

func TestLoad(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SCC_BROKER_SERVER_PORT":      "9000",
		"SCC_INSTANCE_IP":             "10.0.0.5",
		"SCC_INSTANCE_ID":             "b1",
		"SCC_STATE_SERVER_HOST":       "state.local",
		"SCC_GOSSIP_SEEDS":            "a:1, b:2",
		"SCC_LINK_QUEUE_MAX_BYTES":    "1048576",
		"SCC_SHUTDOWN_TIMEOUT":        "5000",
		"SCC_BROKER_SERVER_LOG_LEVEL": "debug",
		"SCC_LOG_LEVEL":               "error",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if st.port != 9000 || c.NodeID != "b1" || c.StateAddr != "state.local:7777" || len(c.GossipSeeds) != 2 ||
		c.GossipBind != "10.0.0.5" || c.Link.QueueMaxBytes != 1<<20 || st.shutdownTimeout != 5*time.Second ||
		st.logLevel.String() != "DEBUG" || c.GossipPort != 7946 || st.admin.Port != 8889 || c.ServeAdmin {
		t.Fatalf("settings %+v", st)
	}
	for name, e := range map[string]map[string]string{
		"bad duration":      {"SCC_SHUTDOWN_TIMEOUT": "soon"},
		"bad level":         {"SCC_LOG_LEVEL": "loud"},
		"bad port":          {"SCC_BROKER_SERVER_PORT": "99999"},
		"state, no gossip":  {"SCC_STATE_SERVER_HOST": "s", "SCC_GOSSIP_PORT": "-1"},
		"tiny link queue":   {"SCC_LINK_QUEUE_MAX_BYTES": "10"},
		"not a queue bound": {"SCC_LINK_QUEUE_MAX_BYTES": "lots"},
	} {
		if _, _, err := load(env(e)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAdvertisedIP(t *testing.T) {
	addrs := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
			&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(24, 32)},
		}, nil
	}
	none := func() ([]net.Addr, error) { return nil, errors.New("no interfaces") }
	for _, c := range []struct {
		configured, bind string
		addrs            func() ([]net.Addr, error)
		want             string
	}{
		{"192.168.1.1", "", addrs, "192.168.1.1"},
		{"", "127.0.0.1", addrs, "127.0.0.1"},
		{"", "::1", addrs, "127.0.0.1"},
		{"", "localhost", addrs, "127.0.0.1"},
		{"", "10.9.9.9", addrs, "10.9.9.9"},
		{"", "", addrs, "10.1.2.3"},
		{"", "0.0.0.0", addrs, "10.1.2.3"},
		{"", "", none, "127.0.0.1"},
	} {
		if got := advertisedIP(c.configured, c.bind, c.addrs); got != c.want {
			t.Errorf("advertisedIP(%q, %q) = %q, want %q", c.configured, c.bind, got, c.want)
		}
	}
}

// A standalone broker starts, is ready at once, and stops on cancel.
func TestRunStandalone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	adminPort := freePort(t)
	go func() {
		done <- run(ctx, nil, env(map[string]string{
			"SCC_BROKER_SERVER_PORT": "0",
			"SCC_BROKER_HOST":        "127.0.0.1",
			"SCC_GOSSIP_PORT":        "-1",
			"SCC_AUTH_KEY":           testAuthKey,
			"SCC_ADMIN_PORT":         strconv.Itoa(adminPort),
		}), &logs)
	}()
	re := regexp.MustCompile(`broker serving.* addr=(127\.0\.0\.1:\d+) advertised=(\S+)`)
	var m []string
	deadline := time.Now().Add(5 * time.Second)
	for m == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no serving line in logs:\n%s", logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v\n%s", err, logs.String())
		case <-time.After(5 * time.Millisecond):
		}
		m = re.FindStringSubmatch(logs.String())
	}
	if m[2] != m[1] {
		t.Fatalf("advertised %s, listening on %s", m[2], m[1])
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + m[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz %d", resp.StatusCode)
	}
	// Metrics are on the admin port, not on the link port.
	admin := "http://127.0.0.1:" + strconv.Itoa(adminPort)
	for url, want := range map[string]int{"http://" + m[1] + "/metrics": 404, admin + "/metrics": 200, admin + "/readyz": 200} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", url, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("logs:\n%s", logs.String())
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
