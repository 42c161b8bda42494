package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
)

func contextBackground() context.Context { return context.Background() }

// startFrontend serves a standalone frontend on 127.0.0.1:0.
func startFrontend(t testing.TB) string {
	t.Helper()
	return startFrontendWith(t, frontend.DefaultConfig())
}

func startFrontendWith(t testing.TB, cfg frontend.Config) string {
	t.Helper()
	srv, err := frontend.New(cfg)
	if err != nil {
		t.Fatalf("frontend.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("frontend not ready")
	}
	return "ws://" + srv.Addr().String() + "/socketcluster/"
}

// shortConfig is a small, quick scenario.
func shortConfig(urls ...string) Config {
	cfg := DefaultConfig()
	cfg.URLs = urls
	cfg.Subscribers = 20
	cfg.Channels = 5
	cfg.SubsPerConn = 2
	cfg.Publishers = 3
	cfg.Rate = 300
	cfg.Warmup = 200 * time.Millisecond
	cfg.Duration = 800 * time.Millisecond
	cfg.Drain = 3 * time.Second
	cfg.ConnectTimeout = 5 * time.Second
	return cfg
}

func TestFanoutAgainstFrontend(t *testing.T) {
	url := startFrontend(t)
	cfg := shortConfig(url)
	var progress int
	cfg.OnProgress = func(Progress) { progress++ }
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// 3 publishers at 300/s over 1s; each channel has 20*2/5 = 8 subscribers.
	c := res.Check
	if !c.OK() || !res.Pass {
		t.Fatalf("check failed: %+v notes %v", c, res.Notes)
	}
	if res.Published == 0 || c.Expected != res.Published*8 || c.Received != c.Expected {
		t.Fatalf("published %d, expected %d, received %d", res.Published, c.Expected, c.Received)
	}
	if res.Connect.Connected != 23 || res.Latency.Count == 0 || res.Delivered == 0 {
		t.Fatalf("connect %+v latency %+v delivered %d", res.Connect, res.Latency, res.Delivered)
	}
	if len(res.Series) == 0 || progress == 0 {
		t.Fatalf("series %d, progress %d", len(res.Series), progress)
	}
}
