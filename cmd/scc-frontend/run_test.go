package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/protocol"
)

func TestLoadPrecedence(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SOCKETCLUSTER_OPTIONS":    `{"authKey":"from-options","pingInterval":1000,"pingTimeout":5000,"socketChannelLimit":7,"allowClientPublish":false,"protocolVersion":1,"origins":"a:1"}`,
		"SCC_PING_TIMEOUT":         "4s",
		"SCC_SOCKET_CHANNEL_LIMIT": "9",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if string(c.AuthKey) != "from-options" || c.PingInterval != time.Second || c.PingTimeout != 4*time.Second ||
		c.SocketChannelLimit != 9 || c.AllowClientPublish || c.ProtocolVersion != protocol.V1 || c.Origins != "a:1" {
		t.Fatalf("config %+v", c)
	}
	if c.ServeAdmin || st.port != 8000 || st.admin.Port != 8001 || st.admin.Host != "" {
		t.Fatalf("defaults: port %d admin %+v on client port %v", st.port, st.admin, c.ServeAdmin)
	}
	st, _, err = load(env(map[string]string{"SCC_PING_INTERVAL": "250", "SCC_ADMIN_PORT": "9100", "SCC_ADMIN_ON_CLIENT_PORT": "true"}))
	if err != nil || st.cfg.PingInterval != 250*time.Millisecond || !st.cfg.ServeAdmin || st.admin.Port != 9100 {
		t.Fatalf("bare ms / admin port: %v %+v %+v", err, st.admin, st.cfg)
	}
	if _, _, err := load(env(map[string]string{"SCC_PING_INTERVAL": "soon", "SOCKETCLUSTER_OPTIONS": "{"})); err == nil {
		t.Fatal("bad values accepted")
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h: %v", err)
	}
	for _, v := range []string{"SOCKETCLUSTER_PORT", "SCC_FRONTEND_HOST", "SOCKETCLUSTER_PATH", "SCC_CLIENT_AUTH_KEY",
		"SCC_CLIENT_AUTH_PUBLIC_KEY_FILE", "SCC_CLIENT_AUTH_PRIVATE_KEY_FILE", "SCC_CLIENT_AUTH_ALGORITHM",
		"SCC_AUTH_DEFAULT_EXPIRY", "SCC_PROTOCOL_VERSION", "SCC_PING_INTERVAL", "SCC_PING_TIMEOUT",
		"SCC_HANDSHAKE_TIMEOUT", "SCC_ACK_TIMEOUT", "SCC_SOCKET_CHANNEL_LIMIT", "SCC_MAX_PAYLOAD",
		"SCC_ALLOW_CLIENT_PUBLISH", "SCC_ORIGINS", "SCC_MAX_CONNECTIONS", "SCC_MAX_HANDSHAKES_PER_SECOND",
		"SCC_INBOUND_RATE", "SCC_QUEUE_MAX_BYTES", "SCC_QUEUE_MAX_MESSAGES", "SCC_WRITE_TIMEOUT",
		"SCC_DRAIN_DURATION", "SCC_SHUTDOWN_TIMEOUT", "SCC_LOG_LEVEL", "SCC_ADMIN_PORT", "SCC_ADMIN_HOST", "SCC_ADMIN_ON_CLIENT_PORT", "SOCKETCLUSTER_OPTIONS",
		"SCC_MAX_CHANNEL_LENGTH"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h does not list %s", v)
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
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

func TestRunServesAndStops(t *testing.T) {
	// Probes on both ports; metrics only on the admin port.
	t.Run("default", func(t *testing.T) {
		runAndProbe(t, nil, func(client, admin string) map[string]int {
			return map[string]int{
				client + "/readyz": 200, client + "/healthz": 200, client + "/metrics": 400, client + "/debug/pprof/cmdline": 400,
				admin + "/readyz": 200, admin + "/metrics": 200, admin + "/debug/pprof/cmdline": 404,
			}
		})
	})
	// Profiles only on the admin port, even when the admin pages are on
	// the client port too.
	t.Run("profiles", func(t *testing.T) {
		runAndProbe(t, map[string]string{"SCC_ADMIN_PPROF": "true", "SCC_ADMIN_ON_CLIENT_PORT": "true"}, func(client, admin string) map[string]int {
			return map[string]int{
				client + "/metrics": 200, client + "/debug/pprof/cmdline": 400, client + "/debug/pprof/goroutine": 400,
				admin + "/metrics": 200, admin + "/debug/pprof/cmdline": 200, admin + "/debug/pprof/goroutine": 200,
			}
		})
	})
}

// runAndProbe runs the frontend with extra settings on real ports, checks
// the status of each URL that want returns for its client and admin base
// URLs, and stops it.
func runAndProbe(t *testing.T, extra map[string]string, want func(client, admin string) map[string]int) {
	t.Helper()
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	adminPort := freePort(t)
	vars := map[string]string{
		"SOCKETCLUSTER_PORT": "0", "SCC_FRONTEND_HOST": "127.0.0.1", "SCC_CLIENT_AUTH_KEY": "k-of-at-least-thirty-two-bytes-long",
		"SCC_PING_INTERVAL": "1000", "SCC_PING_TIMEOUT": "3000", "SCC_DRAIN_DURATION": "10ms",
		"SCC_ADMIN_PORT": strconv.Itoa(adminPort),
	}
	maps.Copy(vars, extra)
	go func() { errc <- run(ctx, nil, env(vars), &logs) }()
	re := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no serving line in %q", logs.String())
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	admin := "http://127.0.0.1:" + strconv.Itoa(adminPort)
	for url, code := range want("http://"+addr, admin) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("%s: %d, want %d", url, resp.StatusCode, code)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestLoadAPI(t *testing.T) {
	st, _, err := load(env(map[string]string{"SCC_API_KEY": "s3cret", "SCC_API_MAX_BODY_BYTES": "4096", "SCC_API_QUERY_TIMEOUT": "250", "SCC_IDEMPOTENCY_KEYS": "10"}))
	if err != nil {
		t.Fatal(err)
	}
	a := st.cfg.API
	if a.Key != "s3cret" || a.MaxBodyBytes != 4096 || a.QueryTimeout != 250*time.Millisecond || a.IdempotencyKeys != 10 {
		t.Fatalf("api config %+v", a)
	}
	if _, _, err := load(env(map[string]string{"SCC_API_MAX_BODY_BYTES": "lots"})); err == nil {
		t.Fatal("bad SCC_API_MAX_BODY_BYTES accepted")
	}
}

// In cluster mode (SCC_STATE_SERVER_HOST or SCC_GOSSIP_SEEDS) the frontend
// refuses an empty, short or example SCC_AUTH_KEY unless
// SCC_INSECURE_NO_AUTH=true; standalone it needs none. The gossip bind
// defaults to SCC_INSTANCE_IP.
func TestClusterAuthKeyRequired(t *testing.T) {
	good := "0123456789abcdef0123456789abcdef"
	for name, key := range map[string]string{"empty": "", "short": good[:31], "example": "REPLACE-ME"} {
		for _, mode := range []string{"SCC_STATE_SERVER_HOST", "SCC_GOSSIP_SEEDS"} {
			_, _, err := load(env(map[string]string{mode: "127.0.0.1:1", "SCC_AUTH_KEY": key}))
			if !errors.Is(err, config.ErrNoAuthKey) && !errors.Is(err, config.ErrShortAuthKey) && !errors.Is(err, config.ErrExampleAuthKey) {
				t.Errorf("%s key, %s: load = %v, want a key error", name, mode, err)
			}
			if _, _, err := load(env(map[string]string{mode: "127.0.0.1:1", "SCC_AUTH_KEY": key, "SCC_INSECURE_NO_AUTH": "1"})); err != nil {
				t.Errorf("%s key, %s, insecure: %v", name, mode, err)
			}
		}
		if _, _, err := load(env(map[string]string{"SCC_AUTH_KEY": key})); err != nil {
			t.Errorf("%s key, standalone: %v", name, err)
		}
	}
	st, _, err := load(env(map[string]string{"SCC_STATE_SERVER_HOST": "s", "SCC_AUTH_KEY": good, "SCC_INSTANCE_IP": "10.0.0.5"}))
	if err != nil || st.cluster.GossipBind != "10.0.0.5" {
		t.Fatalf("gossip bind %q, err %v; want SCC_INSTANCE_IP", st.cluster.GossipBind, err)
	}
	st, _, err = load(env(map[string]string{"SCC_STATE_SERVER_HOST": "s", "SCC_AUTH_KEY": good, "SCC_INSTANCE_IP": "10.0.0.5", "SCC_GOSSIP_BIND": "10.0.0.6"}))
	if err != nil || st.cluster.GossipBind != "10.0.0.6" {
		t.Fatalf("gossip bind %q, err %v; want SCC_GOSSIP_BIND", st.cluster.GossipBind, err)
	}
}

func TestLoadClientRates(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SCC_SUBSCRIBE_RATE": "100", "SCC_SUBSCRIBE_BURST": "200",
		"SCC_SUBSCRIBE_RATE_PER_IP": "10", "SCC_SUBSCRIBE_BURST_PER_IP": "20",
		"SCC_LIMIT_CLOSES_PER_IP": "0.5", "SCC_LIMIT_CLOSE_BURST_PER_IP": "3",
		"SCC_MAX_HANDSHAKES_PER_IP": "7", "SCC_HANDSHAKE_BURST_PER_IP": "8",
		"SCC_SHORT_CONNECTIONS_PER_IP": "4", "SCC_SHORT_CONNECTION_BURST_PER_IP": "9", "SCC_SHORT_CONNECTION_TIME": "3s",
		"SCC_SOURCE_TABLE_SIZE":     "99",
		"SCC_CHANNEL_DELIVERY_RATE": "500", "SCC_CHANNEL_DELIVERY_BURST": "600",
		"SCC_ACCEPT_RUNNABLE_MAX": "3", "SCC_ACCEPT_HOLD_MAX": "40ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if c.SubscribeRate != 100 || c.SubscribeBurst != 200 || c.SubscribeRatePerIP != 10 || c.SubscribeBurstPerIP != 20 ||
		c.LimitClosesPerIP != 0.5 || c.LimitCloseBurstPerIP != 3 || c.MaxHandshakesPerIP != 7 || c.HandshakeBurstPerIP != 8 ||
		c.ShortConnectionsPerIP != 4 || c.ShortConnectionBurstPerIP != 9 || c.ShortConnectionTime != 3*time.Second ||
		c.SourceTableSize != 99 || c.ChannelDeliveryRate != 500 || c.ChannelDeliveryBurst != 600 ||
		c.AcceptRunnableMax != 3 || c.AcceptHoldMax != 40*time.Millisecond {
		t.Fatalf("client rates not read: %+v", c)
	}
}

func TestLoadLinkSubscribeBatch(t *testing.T) {
	st, _, err := load(env(map[string]string{
		"SCC_STATE_SERVER_HOST": "s", "SCC_AUTH_KEY": strings.Repeat("k", 40),
		"SCC_LINK_SUBSCRIBE_BATCH": "64", "SCC_LINK_SUBSCRIBE_WINDOW": "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if st.cluster.Broker.SubscribeBatch != 64 || st.cluster.Broker.SubscribeWindow != 3 {
		t.Fatalf("subscribe batch %d, window %d", st.cluster.Broker.SubscribeBatch, st.cluster.Broker.SubscribeWindow)
	}
}

// TestLoadPublicationFitsTheLink: a frontend whose largest publication
// (client publish or server API body) would not fit its links' messages
// refuses to start, naming the settings; one that fits starts.
func TestLoadPublicationFitsTheLink(t *testing.T) {
	apiKey := strings.Repeat("a", 40)
	base := map[string]string{"SCC_STATE_SERVER_HOST": "s", "SCC_AUTH_KEY": strings.Repeat("k", 40)}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"defaults", with(), true},
		{"defaults with the server API", with("SCC_API_KEY", apiKey), true},
		// The API's 1 MiB body does not fit a 1 MiB frame.
		{"api body over the frame", with("SCC_API_KEY", apiKey, "SCC_LINK_MAX_FRAME_BYTES", "1048576"), false},
		{"api body lowered", with("SCC_API_KEY", apiKey, "SCC_LINK_MAX_FRAME_BYTES", "1048576", "SCC_API_MAX_BODY_BYTES", "262144"), true},
		// Without the server API its body size does not count.
		{"api off", with("SCC_LINK_MAX_FRAME_BYTES", "1048576"), true},
		{"a body size that would overflow", with("SCC_API_KEY", apiKey, "SCC_API_MAX_BODY_BYTES", "9223372036854775807"), false},
		// The frame is large enough; half the queue is not.
		{"queue", with("SCC_API_KEY", apiKey, "SCC_LINK_QUEUE_MAX_BYTES", "2097152"), false},
		{"client publish over the frame", with("SCC_LINK_MAX_FRAME_BYTES", "131072", "SCC_API_MAX_BODY_BYTES", "4096"), false},
		{"client publish lowered", with("SCC_LINK_MAX_FRAME_BYTES", "131072", "SCC_API_MAX_BODY_BYTES", "4096", "SCC_MAX_PUBLISH_BYTES", "32768"), true},
		{"long channel names", with("SCC_LINK_MAX_FRAME_BYTES", "131072", "SCC_API_MAX_BODY_BYTES", "4096", "SCC_MAX_PUBLISH_BYTES", "32768", "SCC_MAX_CHANNEL_LENGTH", "65536"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(env(tc.env))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "SCC_LINK_MAX_FRAME_BYTES")) {
				t.Fatalf("want a refusal naming SCC_LINK_MAX_FRAME_BYTES, got %v", err)
			}
		})
	}
	// Standalone, the link settings do not apply.
	if _, _, err := load(env(map[string]string{"SCC_LINK_MAX_FRAME_BYTES": "1048576"})); err != nil {
		t.Fatalf("standalone refused: %v", err)
	}
}

func TestLoadIdleMemoryLimit(t *testing.T) {
	st, _, err := load(env(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.idleMemLimit || st.idleGCPercent != 10 {
		t.Fatalf("defaults: idle memory limit %v, idle GC percent %d; want off and 10", st.idleMemLimit, st.idleGCPercent)
	}
	st, _, err = load(env(map[string]string{"SCC_IDLE_MEMORY_LIMIT": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if !st.idleMemLimit {
		t.Fatal("SCC_IDLE_MEMORY_LIMIT=true not read")
	}
	// Without the idle tuner it would do nothing: refused.
	for _, e := range []map[string]string{
		{"SCC_IDLE_MEMORY_LIMIT": "true", "SCC_IDLE_GC_PERCENT": "0"},
		{"SCC_IDLE_MEMORY_LIMIT": "true", "GOGC": "200"},
	} {
		if _, _, err := load(env(e)); err == nil || !strings.Contains(err.Error(), "SCC_IDLE_MEMORY_LIMIT") {
			t.Fatalf("%v: want a refusal naming SCC_IDLE_MEMORY_LIMIT, got %v", e, err)
		}
	}
}
