//go:build linux

package frontend

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/wsframe"
)

func TestAcceptLaw(t *testing.T) {
	const target, floor = 5 * time.Millisecond, 50
	for _, c := range []struct {
		name           string
		pace, accepted float64
		p99            time.Duration
		want           float64
	}{
		{"quiet, unpaced: stays unpaced", 0, 400, time.Millisecond, 0},
		{"over the target, unpaced: half of what was accepted", 0, 400, 20 * time.Millisecond, 200},
		{"over the target, paced: half of the pace", 200, 400, 20 * time.Millisecond, 100},
		{"over the target: never below the floor", 60, 60, 20 * time.Millisecond, floor},
		{"over the target with no accepts: the floor", 0, 0, 20 * time.Millisecond, floor},
		{"between half and the target: holds", 100, 100, 4 * time.Millisecond, 100},
		{"under half: grows by a tenth", 100, 100, 2 * time.Millisecond, 110},
		{"under half, far above demand: lifted", 400, 10, time.Millisecond, 0},
	} {
		if got := acceptLaw(c.pace, c.accepted, c.p99, target, floor); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: acceptLaw(%v, %v, %v) = %v, want %v", c.name, c.pace, c.accepted, c.p99, got, c.want)
		}
	}
}

// While goroutines wait long to run, accepts are paced (connections
// wait their turn, and every one is served); once the load is gone the
// pace is lifted.
func TestAcceptPacedWhileGoroutinesWait(t *testing.T) {
	cfg := testConfig()
	cfg.AcceptLatencyTarget = 2 * time.Millisecond
	cfg.AcceptRateFloor = 20
	cfg.MaxConnectionsPerIP = 0
	srv := startServer(t, cfg)

	// Load: more spinning goroutines than CPUs, each yielding every
	// 2 ms, so each waits about (n / GOMAXPROCS) × 2 ms to run again.
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for !stop.Load() {
				end := time.Now().Add(2 * time.Millisecond)
				for time.Now().Before(end) {
				}
				runtime.Gosched()
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	waitFor(t, 10*time.Second, "accepts paced", func() bool { return srv.acceptPaceNow() > 0 })
	const n = 60
	var dials sync.WaitGroup
	errs := make(chan error, n)
	for range n { // at once: faster than the pace
		dials.Go(func() {
			c, br, err := rawUpgrade(srv.Addr().String(), nil)
			if err == nil {
				defer c.Close()
				c.Write(wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`))
				err = readUntil(c, br, `"rid":1`)
			}
			errs <- err
		})
	}
	dials.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a paced connection was not served: %v", err)
		}
	}
	if got := counter(t, srv.Registry(), "scc_frontend_accepts_paced_total"); got == 0 {
		t.Fatalf("%d connections under a pace of %.0f/s, none waited", n, srv.acceptPaceNow())
	}
	stop.Store(true)
	wg.Wait()
	waitFor(t, 10*time.Second, "the pace lifted", func() bool { return srv.acceptPaceNow() == 0 })
	c := dial(t, srv)
	c.handshake("")
}
