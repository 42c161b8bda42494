package frontend

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestWriterHoldsNothingWhileKeepingUp offers a load that is high in
// messages but cheap in frames: every 10ms a burst of 400 publishes to a
// channel of 2 subscribers, 80,000 messages a second that the writers
// send as about 200 frames a second, each as soon as its burst is queued.
// The frontend keeps up with that on any machine that gives it its CPUs,
// so write coalescing must not engage: the gap in force stays 0 and no
// frame is held back (on a machine that starves the test now and then:
// in most bursts). A policy keyed on the message rate (20,000 messages a second
// per CPU) would hold every busy socket's frames here.
func TestWriterHoldsNothingWhileKeepingUp(t *testing.T) {
	cfg := testConfig()
	// Frames that wait up to 5ms on average for their writer count as
	// served without delay: a test machine under -race and other load
	// may well take a few milliseconds to schedule one.
	cfg.WriteCoalesceWait = 5 * time.Millisecond
	// Judge the wait alone: whether the test process reaches its CPU
	// share depends on the machine, and below it nothing is held anyway.
	cfg.WriteCoalesceCPU = 0
	srv := startServer(t, cfg)
	const (
		subs   = 2
		burst  = 400
		warmup = 30  // bursts before the gap is checked
		bursts = 300 // bursts checked
		period = 10 * time.Millisecond
	)
	clients := make([]*rawClient, subs)
	for i := range clients {
		c := dial(t, srv)
		c.handshake("")
		c.subscribe("load", 1)
		clients[i] = c
	}
	// Each subscriber counts the publishes it received, until it has
	// the total (known once the load ends) or its connection ends.
	counted := make(chan int, subs)
	total := make(chan int, subs)
	for _, c := range clients {
		go func() {
			n, want, wants := 0, -1, total
			for n != want {
				select {
				case f := <-c.frames:
					n += strings.Count(f, `"#publish"`)
				case want = <-wants:
					wants = nil
				case <-c.done:
					counted <- n
					return
				}
			}
			counted <- n
		}()
	}

	datas := make([][]byte, burst)
	for i := range datas {
		datas[i] = fmt.Appendf(nil, `{"n":%d}`, i)
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	sent := 0
	deliver := func() {
		<-tick.C
		for _, d := range datas {
			srv.Deliver("load", d)
		}
		sent++
	}
	// The first bursts start goroutines and grow their stacks, and a
	// test machine that runs other packages beside this one may starve
	// the frontend for a while, when it is truly behind and may coalesce.
	// A policy keyed on the load holds frames through every burst; one
	// keyed on the writers' wait lets them go as soon as the frontend
	// keeps up. So the check is that frames are held in at most half of
	// the bursts.
	for range warmup {
		deliver()
	}
	held := 0
	for range bursts {
		deliver()
		if srv.eng.CurrentCoalesce() != 0 {
			held++
		}
	}
	if held*2 > bursts {
		t.Fatalf("the writers held frames in %d of %d bursts (%d messages queued to clients; now up to %v); they keep up with this load (%s)",
			held, bursts, srv.Stats().MessagesOut, srv.eng.CurrentCoalesce(), writerStats(srv))
	}
	want := burst * sent
	for range subs {
		total <- want
	}
	for range subs {
		select {
		case n := <-counted:
			if n != want {
				t.Fatalf("a subscriber got %d publishes, want %d", n, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("subscribers still missing publishes 30s after the load")
		}
	}
	t.Logf("%d messages: %s", srv.Stats().MessagesOut, writerStats(srv))
}

// writerStats describes the frames written so far.
func writerStats(srv *Server) string {
	tot := srv.eng.Totals()
	n := time.Duration(max(tot.Frames, 1))
	return fmt.Sprintf("%d frames, mean wait for the writer %v, mean write %v", tot.Frames, tot.Wait/n, tot.Busy/n)
}

// TestWriterEngagesWhenBehind drives the coalescing law through the
// server's own sampling (adaptCoalesce): with a wait target of 1µs and no
// busy or CPU condition, any load counts as behind, so the gap in force
// must grow above 0 within a few samples, and return to 0 once the load
// stops.
func TestWriterEngagesWhenBehind(t *testing.T) {
	cfg := testConfig()
	cfg.WriteCoalesceWait = time.Microsecond
	cfg.WriteCoalesceBusy, cfg.WriteCoalesceCPU = 0, 0
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	c.subscribe("load", 1)
	go func() { // drain
		for {
			select {
			case <-c.frames:
			case <-c.done:
				return
			}
		}
	}()
	gap := func() float64 { return counter(t, srv.Registry(), "scc_frontend_write_coalesce_seconds") }
	engaged := func() float64 {
		return counter(t, srv.Registry(), "scc_frontend_write_coalesce_engaged_seconds_total")
	}
	if e := engaged(); e != 0 {
		t.Fatalf("a gap in force for %vs before any load", e)
	}
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for range 20000 { // at most 20 s
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			srv.Deliver("load", []byte(`{"n":1}`))
		}
	}()
	waitFor(t, 15*time.Second, "the gap to engage", func() bool { return gap() > 0 })
	waitFor(t, 15*time.Second, "the time in force to count", func() bool { return engaged() > 0 })
	close(stop)
	<-loaded
	waitFor(t, 15*time.Second, "the gap to return to 0 once the load stopped", func() bool { return gap() == 0 })
}
