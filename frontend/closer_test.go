package frontend

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// openSockets counts the process's socket descriptors (other descriptors,
// such as /proc files the CPU sampler reads, come and go).
func openSockets(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// vanish connects n subscribed clients, then drops their TCP connections
// without a close frame.
func vanish(t *testing.T, srv *Server, n int) {
	t.Helper()
	var cs []*rawClient
	for range n {
		c := dial(t, srv)
		c.handshake("")
		c.subscribe("vanish", 1)
		cs = append(cs, c)
	}
	waitFor(t, 5*time.Second, "all subscribed", func() bool { return srv.Stats().Connections == int64(n) })
	for _, c := range cs {
		c.ws.CloseNow() // no close frame: the peer just vanishes
	}
}

// TestVanishedPeersClosed: clients that drop their TCP connections without
// a close frame are torn down, counted as read errors, and closed by the
// paced closer, whose backlog shows; each keeps its place in the
// connection count until its descriptor is closed.
func TestVanishedPeersClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts open sockets in /proc/self/fd")
	}
	const n = 200
	cfg := testConfig()
	cfg.CloserShare = 0.05
	// A rest after every close (19× its length): slow enough to watch.
	srv := startServerWith(t, cfg, func(s *Server) { s.closerSlice = 0 })
	before := openSockets(t)
	vanish(t, srv, n)
	sawBacklog := false
	waitFor(t, 30*time.Second, "every connection released", func() bool {
		// Connections first: every socket in the backlog was already
		// counted then, and closes only shrink the backlog.
		conns := srv.Stats().Connections
		backlog := counter(t, srv.Registry(), "scc_frontend_close_backlog")
		if backlog > 0 {
			sawBacklog = true
			if float64(conns) < backlog {
				t.Fatalf("%d connections counted with %v waiting to be closed: released before the close", conns, backlog)
			}
		}
		return conns == 0
	})
	if got := openSockets(t); got > before {
		t.Fatalf("%d sockets open once the count reached 0, %d before: the count was released before the close", got, before)
	}
	if !sawBacklog {
		t.Fatal("the closer's backlog never showed: the connections were not closed by the closer")
	}
	if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonReadError); got != n {
		t.Fatalf("%v read_error closes, want %d", got, n)
	}
}

// TestShutdownFlushesCloser: Shutdown with connections still waiting for a
// nearly idle closer closes them all at once and leaks nothing.
func TestShutdownFlushesCloser(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts open sockets in /proc/self/fd")
	}
	const n = 100
	cfg := testConfig()
	cfg.CloserShare = 0.001 // a rest of 999× each close's length
	srv := startServerWith(t, cfg, func(s *Server) { s.closerSlice = 0 })
	before := openSockets(t)
	vanish(t, srv, n)
	waitFor(t, 10*time.Second, "a close backlog", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_close_backlog") > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.closePending.Load(); got != 0 {
		t.Fatalf("%d closes pending after Shutdown", got)
	}
	if got := srv.Stats().Connections; got != 0 {
		t.Fatalf("%d connections counted after Shutdown", got)
	}
	// The listener is closed too.
	if got := openSockets(t); got >= before {
		t.Fatalf("%d sockets open after Shutdown, %d before", got, before)
	}
}
