package hostile

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/wsframe"
)

// TestRefusalsAreHeld: once an address is refused for its sockets'
// limit closes, its next connections are held unanswered for
// RefusalHold (so a client that redials once answered makes one attempt
// per hold), up to RefusalHoldMax at once; the rest are answered at once;
// each held one gets its 503 when the hold ends; another address is
// served throughout; and Shutdown closes what is still held.
func TestRefusalsAreHeld(t *testing.T) {
	const (
		hold     = 5 * time.Second
		holdMax  = 100
		attempts = 300
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxBatchPackets = 10
		c.LimitClosesPerIP, c.LimitCloseBurstPerIP = 0.1, 2
		c.RefusalHold, c.RefusalHoldMax = hold, holdMax
	})
	// Two limit closes empty 127.0.0.2's bucket (burst 2, a token every
	// 10 s, far beyond the test).
	batch := wsframe.AppendClient(nil, 1, true, []byte("["+strings.TrimSuffix(strings.Repeat("{},", 11), ",")+"]"))
	for i := range 2 {
		c, err := tryDialRaw(t, f, from("127.0.0.2"))
		if err != nil {
			t.Fatalf("breaker %d: %v", i, err)
		}
		_ = c.write(batch)
		if code := c.closeCode(); code != 1009 {
			t.Fatalf("breaker %d closed with %d, want 1009", i, code)
		}
	}
	waitFor(t, waitTimeout, "the limit closes", func() bool { return f.closesTotal(t, "batch_too_large") == 2 })

	// attempts connections from the address, at once.
	var answered atomic.Int64 // attempts that got their answer
	statuses := make([]string, attempts)
	errs := make([]error, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: from("127.0.0.2"), Timeout: 5 * time.Second}
			nc, err := d.Dial("tcp", f.srv.Addr().String())
			if err != nil {
				errs[i] = err
				return
			}
			defer nc.Close()
			nc.SetReadDeadline(time.Now().Add(hold + waitTimeout))
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			answered.Add(1)
			if err != nil {
				errs[i] = err
				return
			}
			statuses[i] = resp.Status
		})
	}
	// While the cap is held, every other attempt has its answer and the
	// held ones have none: observed together, not timed.
	held := func() int64 { return int64(metric(t, f.srv.Registry(), "scc_frontend_refusals_held")) }
	waitFor(t, waitTimeout, "the cap held and the rest answered", func() bool {
		return held() == holdMax && answered.Load() == attempts-holdMax && held() == holdMax
	})
	// Meanwhile another address upgrades and completes its handshake.
	if c, err := tryDialRaw(t, f, from("127.0.0.3")); err != nil {
		t.Fatalf("another address while refusals are held: %v", err)
	} else {
		c.nc.Close()
	}
	// The hold ends: every held attempt gets its 503 too.
	wg.Wait()
	for i := range attempts {
		if errs[i] != nil {
			t.Fatalf("attempt %d: %v", i, errs[i])
		}
		if !strings.HasPrefix(statuses[i], "503") {
			t.Fatalf("attempt %d answered %q, want 503", i, statuses[i])
		}
	}
	holds := metric(t, f.srv.Registry(), "scc_frontend_refusal_holds_total")
	if holds < holdMax {
		t.Fatalf("refusal_holds_total = %v, want at least %d", holds, holdMax)
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "limit_closes_per_ip"); n != attempts {
		t.Fatalf("rejected{limit_closes_per_ip} = %v, want %d", n, attempts)
	}
	waitFor(t, waitTimeout, "the holds to end", func() bool { return held() == 0 })
}

// TestShutdownClosesHeldRefusals: refused connections still held when
// the frontend shuts down are closed then, not left to their timers.
func TestShutdownClosesHeldRefusals(t *testing.T) {
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxBatchPackets = 10
		c.LimitClosesPerIP, c.LimitCloseBurstPerIP = 0.1, 1
		c.RefusalHold, c.RefusalHoldMax = time.Hour, 10
	})
	batch := wsframe.AppendClient(nil, 1, true, []byte("["+strings.TrimSuffix(strings.Repeat("{},", 11), ",")+"]"))
	c, err := tryDialRaw(t, f, from("127.0.0.5"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.write(batch)
	c.closeCode()
	waitFor(t, waitTimeout, "the limit close", func() bool { return f.closesTotal(t, "batch_too_large") == 1 })
	var conns []net.Conn
	for range 5 {
		nc, err := (&net.Dialer{LocalAddr: from("127.0.0.5")}).Dial("tcp", f.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns = append(conns, nc)
	}
	waitFor(t, waitTimeout, "the held refusals", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_refusals_held") == 5
	})
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(t.Context()) }()
	for i, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("held connection %d after Shutdown: %v, want it closed", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
