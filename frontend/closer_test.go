package frontend

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestVanishedPeersClosed: clients that drop their TCP connections without
// a close frame are torn down and their sockets closed (the paced closer
// releases every file descriptor), each counted as a read error.
func TestVanishedPeersClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts open descriptors in /proc/self/fd")
	}
	const n = 200
	cfg := testConfig()
	cfg.CloserShare = 0.25
	srv := startServer(t, cfg)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	var cs []*rawClient
	for range n {
		c := dial(t, srv)
		c.handshake("")
		c.subscribe("vanish", 1)
		cs = append(cs, c)
	}
	waitFor(t, 5*time.Second, "all subscribed", func() bool { return srv.Stats().Connections == n })
	if got := fds(); got < before+2*n {
		t.Fatalf("%d descriptors open with %d connections, from %d", got, n, before)
	}
	for _, c := range cs {
		c.ws.CloseNow() // no close frame: the peer just vanishes
	}
	waitFor(t, 10*time.Second, "every socket closed", func() bool { return fds() <= before })
	if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonReadError); got != n {
		t.Fatalf("%v read_error closes, want %d", got, n)
	}
	if srv.Stats().Connections != 0 {
		t.Fatalf("%d connections left", srv.Stats().Connections)
	}
}
