package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
)

func TestBroadcastAgainstFrontend(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	cfg.Scenario = Broadcast
	cfg.Subscribers = 30
	cfg.Publishers = 2
	cfg.Rate = 100
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Pass || res.Check.Expected != res.Published*30 || res.Config.Channels != 1 {
		t.Fatalf("pass %v check %+v published %d channels %d", res.Pass, res.Check, res.Published, res.Config.Channels)
	}
}

func TestConnsAgainstFrontend(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	cfg.Scenario = Conns
	cfg.Subscribers = 50
	cfg.Duration = 300 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Pass || res.Connect.Connected != 50 || res.Connect.Failed != 0 || res.Connect.PerSec <= 0 || res.Connect.Latency.Count != 50 {
		t.Fatalf("pass %v connect %+v", res.Pass, res.Connect)
	}
}

func TestSweepAgainstFrontend(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	cfg.Scenario = Sweep
	cfg.Rate = 50
	cfg.SweepSteps = 2
	cfg.SweepRefine = 0
	cfg.Warmup = 0
	cfg.Duration = 400 * time.Millisecond
	cfg.P99Bound = 10 * time.Second // no timing assertions: only the mechanics
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(res.Steps) != 2 || res.Sustainable == nil || res.Sustainable.Rate != 100 || !res.Pass || !res.Correct {
		t.Fatalf("steps %+v sustainable %+v", res.Steps, res.Sustainable)
	}
	for _, st := range res.Steps {
		if !st.Check.OK() || st.Check.Expected == 0 {
			t.Fatalf("step %+v", st)
		}
	}
	// Each step's series samples carry its step number.
	steps := map[int]bool{}
	for _, s := range res.Series {
		steps[s.Step] = true
	}
	if !steps[1] {
		t.Fatalf("series %+v", res.Series)
	}
}

func TestRunProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	url := startFrontend(t)
	cfg := shortConfig(url)
	cfg.Procs = 2
	cfg.WorkerCommand = []string{os.Args[0], "-test.run=^$"}
	cfg.WorkerEnv = []string{"SCC_BENCH_TEST_WORKER=1"}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	c := res.Check
	if !res.Pass || c.Expected != res.Published*8 || c.Received != c.Expected || res.Connect.Connected != 23 {
		t.Fatalf("pass %v check %+v published %d connect %+v", res.Pass, c, res.Published, res.Connect)
	}
	// The latency histogram is merged from both workers: one sample per
	// delivery of a message scheduled in the window.
	if res.Latency.Count == 0 || res.Latency.Count > c.Received {
		t.Fatalf("latency %+v", res.Latency)
	}
}

func TestRunUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := shortConfig("ws://" + addr + "/socketcluster/")
	start := time.Now()
	_, err = Run(context.Background(), cfg)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > cfg.ConnectTimeout {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestRunSilentServer(t *testing.T) {
	// Accepts TCP but never answers: must time out, not hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	cfg := shortConfig("ws://" + ln.Addr().String() + "/socketcluster/")
	cfg.ConnectTimeout = 300 * time.Millisecond
	_, err = Run(context.Background(), cfg)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no handshake") {
		t.Fatalf("got %v", err)
	}
}

func TestRunHandshakeRefused(t *testing.T) {
	url := startFaultyServer(t, true)
	_, err := Run(context.Background(), shortConfig(url))
	if !errors.Is(err, ErrHandshakeRefused) {
		t.Fatalf("got %v", err)
	}
}

func TestRunWrongPath(t *testing.T) {
	url := startFrontend(t)
	_, err := Run(context.Background(), shortConfig(strings.TrimSuffix(url, "socketcluster/")+"nope/"))
	if !errors.Is(err, ErrHandshakeRefused) || !strings.Contains(err.Error(), "HTTP") {
		t.Fatalf("got %v", err)
	}
}

func TestRunFDLimit(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	_, hard := fdLimits()
	if hard == 0 || hard > 1<<30 {
		t.Skip("no finite open-file limit")
	}
	cfg.FDReserve = int(hard) + 1
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrFDLimit) || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("got %v", err)
	}
}

func TestDescribeEMFILE(t *testing.T) {
	err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	got := describeDialError("ws://x/", DefaultConfig(), fmt.Errorf("dialing: %w", err))
	if !errors.Is(got, ErrFDLimit) || !strings.Contains(got.Error(), "EMFILE") || !strings.Contains(got.Error(), "ulimit -n") {
		t.Fatalf("got %v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Scenario = "nope" }, "unknown scenario"},
		{func(c *Config) { c.URLs = []string{"http://x/"} }, "URL"},
		{func(c *Config) { c.SubsPerConn = 101 }, "-k"},
		{func(c *Config) { c.Rate = 0 }, "-rate"},
		{func(c *Config) { c.Procs = 0 }, "-procs"},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Scenario = Broadcast
	if err := cfg.Validate(); err != nil || cfg.Channels != 1 || cfg.SubsPerConn != 1 {
		t.Fatalf("broadcast: %v %+v", err, cfg)
	}
}

func TestParseIPRange(t *testing.T) {
	ips, err := ParseIPRange("127.0.0.1-127.0.0.3, 10.0.0.9")
	if err != nil || len(ips) != 4 || ips[2].String() != "127.0.0.3" || ips[3].String() != "10.0.0.9" {
		t.Fatalf("got %v %v", ips, err)
	}
	for _, bad := range []string{"127.0.0.5-127.0.0.1", "x", "127.0.0.1-::1"} {
		if _, err := ParseIPRange(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSourceIPsRotate(t *testing.T) {
	fs, url := startFaulty(t, false)
	cfg := shortConfig(url)
	cfg.Scenario = Conns
	cfg.Subscribers = 6
	cfg.Duration = 50 * time.Millisecond
	ips, err := ParseIPRange("127.0.0.2-127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SourceIPs = ips
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	// 6 connections and the probe, alternating from 127.0.0.2.
	if len(fs.remotes) != 2 || fs.remotes["127.0.0.2"] != 4 || fs.remotes["127.0.0.3"] != 3 {
		t.Fatalf("connections per source address: %v", fs.remotes)
	}
}

func TestWorkerProcessDies(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	cfg.Procs = 2
	cfg.WorkerCommand = []string{"/bin/sh", "-c", "read line; echo worker exploded >&2; exit 3"}
	_, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "worker exploded") {
		t.Fatalf("got %v", err)
	}
}

func TestSweepStopsWhenConnectionsClose(t *testing.T) {
	fcfg := frontend.DefaultConfig()
	fcfg.InboundRate, fcfg.InboundBurst = 50, 10 // closes a publisher beyond 50 msg/s
	url := startFrontendWith(t, fcfg)
	cfg := shortConfig(url)
	cfg.Scenario = Sweep
	cfg.Subscribers, cfg.Channels, cfg.Publishers = 4, 2, 1
	cfg.Rate, cfg.SweepFactor, cfg.SweepSteps, cfg.SweepRefine = 20, 4, 5, 2
	cfg.Warmup, cfg.Duration, cfg.Drain = 0, 700*time.Millisecond, 500*time.Millisecond
	cfg.P99Bound = 10 * time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(res.Steps) != 2 || res.Steps[1].Disconnects != 1 || res.Sustainable == nil || res.Sustainable.Rate != 20 {
		t.Fatalf("steps %+v", res.Steps)
	}
	if !strings.Contains(res.Steps[1].Reason, "4011") || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "stopped the sweep") {
		t.Fatalf("reason %q notes %v", res.Steps[1].Reason, res.Notes)
	}
}
