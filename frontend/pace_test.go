package frontend

import (
	"context"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestAcceptPacing: with pacing on, upgrades beyond the handshake rate
// wait in the listen queue and are admitted at the rate, none refused.
func TestAcceptPacing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the listen queue gauge reads TCP_INFO, Linux only")
	}
	const (
		rate  = 20
		burst = 4
		n     = 24
	)
	cfg := testConfig()
	cfg.MaxHandshakesPerSecond = rate
	cfg.HandshakeBurst = burst
	cfg.HandshakeQueue = 5 * time.Second
	srv := startServer(t, cfg)

	var maxQueue atomic.Int64
	stop := make(chan struct{})
	var pollWG sync.WaitGroup
	pollWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if q := int64(srv.listenQueue()); q > maxQueue.Load() {
				maxQueue.Store(q)
			}
		}
	})

	start := time.Now()
	var mu sync.Mutex
	var at []time.Duration
	var errs []error
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, wsURL(srv), nil)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			at = append(at, d)
			ws.CloseNow()
		})
	}
	wg.Wait()
	close(stop)
	pollWG.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d upgrades failed, first: %v", len(errs), n, errs[0])
	}
	// The k-th admission comes no sooner than the bucket allows: burst at
	// once (one more for the token the idle accept loop held), then one
	// per 1/rate.
	slices.Sort(at)
	for k, d := range at {
		if floor := time.Duration(k-burst-1) * time.Second / rate; d < floor {
			t.Fatalf("upgrade %d done after %v, before the rate allows (%v): %v", k, d, floor, at)
		}
	}
	if got := counter(t, srv.Registry(), "scc_frontend_accepts_paced_total"); got == 0 {
		t.Fatal("no accept was counted as paced")
	}
	if got := counter(t, srv.Registry(), "scc_frontend_rejected_connections_total", "reason", rejectHandshakeRate); got != 0 {
		t.Fatalf("%v upgrades refused; paced ones should wait", got)
	}
	if maxQueue.Load() == 0 {
		t.Fatal("the listen queue gauge never showed a waiting connection")
	}
}

// TestListenBacklog: setBacklog bounds the accept queue; beyond it the
// kernel drops SYNs (the dial does not complete) and counts an overflow.
func TestListenBacklog(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("listen backlog is set on Linux only")
	}
	ln := listen(t)
	defer ln.Close()
	const backlog = 2
	if err := setBacklog(ln, backlog); err != nil {
		t.Fatal(err)
	}
	overflows := listenOverflows()
	// One at a time, so each completes its handshake (and joins the
	// queue) before the next SYN arrives. Linux queues backlog+1.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := 0
	for range backlog + 4 {
		c, err := (&net.Dialer{Timeout: 300 * time.Millisecond}).Dial("tcp", ln.Addr().String())
		if err != nil {
			refused++
			continue
		}
		conns = append(conns, c)
	}
	if len(conns) != backlog+1 || refused != 3 {
		t.Fatalf("%d connected and %d refused with backlog %d, want %d and 3", len(conns), refused, backlog, backlog+1)
	}
	if q := listenQueueLen(ln); q != backlog+1 {
		t.Fatalf("listen queue %d, want %d", q, backlog+1)
	}
	if got := listenOverflows(); got <= overflows {
		t.Fatalf("ListenOverflows %v, was %v: the dropped SYNs were not counted", got, overflows)
	}
}

// TestPrepaidHandshake: a paced connection's first upgrade was paid for at
// accept; any further one draws on the HTTP-level bucket.
func TestPrepaidHandshake(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHandshakesPerSecond = 0.001
	cfg.HandshakeBurst = 1
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !srv.allowHandshake() {
		t.Fatal("a full bucket refused")
	}
	if srv.admitHandshake(context.Background()) {
		t.Fatal("an empty bucket admitted an unpaced upgrade")
	}
	ctx := prepaidContext(context.Background(), nil)
	if !srv.admitHandshake(ctx) {
		t.Fatal("a paced connection's first upgrade was refused")
	}
	if srv.admitHandshake(ctx) {
		t.Fatal("a paced connection's second upgrade was admitted from an empty bucket")
	}
}

func TestParseNetstat(t *testing.T) {
	b := []byte("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 3 17 19\nIpExt: InNoRoutes\nIpExt: 5\n")
	if got := parseNetstat(b, "TcpExt:", "ListenOverflows"); got != 17 {
		t.Fatalf("ListenOverflows %v, want 17", got)
	}
	if got := parseNetstat(b, "IpExt:", "ListenOverflows"); got != 0 {
		t.Fatalf("missing field %v, want 0", got)
	}
}
