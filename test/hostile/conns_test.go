package hostile

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/protocol"
	"github.com/sccgo/sccgo/state"
)

// The descriptor-exhaustion attack: about a thousand connections that
// hold a descriptor each and do nothing, half of them silent since their
// TCP handshake, half kept alive after one request. Each port under attack
// runs with a cap well below the attack, so on a cap derived from a 1024
// descriptor limit the attack would have taken every descriptor.
const (
	idleAttackConns = 1000
	idleCap         = 200
	idleReserve     = 8
	idleTimeout     = time.Second
)

func idleConns() connlimit.Config {
	return connlimit.Config{Max: idleCap, Reserve: idleReserve, IdleTimeout: idleTimeout}
}

// idleAttack opens n connections to addr: even ones send nothing, odd ones
// send one complete request and then idle with the connection kept alive.
// It returns them; the test closes them at cleanup.
func idleAttack(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("attack connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			// The server may already have closed it to make room.
			_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		}
	}
	return conns
}

// allClosedByServer waits until the server has closed every connection in
// conns (a read returns EOF or a reset), within d.
func allClosedByServer(t *testing.T, conns []net.Conn, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	open := make(chan int, len(conns))
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			buf := make([]byte, 512)
			for {
				_, err := c.Read(buf) // skips the kept-alive one's response
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					open <- i
				}
				return
			}
		})
	}
	wg.Wait()
	close(open)
	if n := len(open); n > 0 {
		t.Fatalf("%d of %d idle connections still open after %v", n, len(conns), d)
	}
}

func healthz(t *testing.T, addr string) {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz during the attack: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz during the attack: %s", resp.Status)
	}
}

// checkCapped asserts the open-connection gauge stayed within the cap and
// the reserve, and that the evictions were counted.
func checkCapped(t *testing.T, reg prometheus.Gatherer, role string) {
	t.Helper()
	if open := metric(t, reg, "scc_"+role+"_tcp_connections"); open > idleCap+idleReserve || open < 1 {
		t.Fatalf("%s holds %v connections, cap %d + reserve %d", role, open, idleCap, idleReserve)
	}
	// Some of the silent ones may have timed out on their own first.
	if ev := metric(t, reg, "scc_"+role+"_tcp_drops_total", "reason", connlimit.ReasonIdleEvicted); ev < 1 {
		t.Fatalf("%s counted no idle eviction for %d idle connections over a cap of %d", role, idleAttackConns, idleCap)
	}
}

func TestIdleConnectionsFrontend(t *testing.T) {
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxConnections = idleCap
		c.AdminReserve = idleReserve
		c.IdleTimeout = idleTimeout
	})
	addr := f.srv.Addr().String()
	conns := idleAttack(t, addr, idleAttackConns)

	healthz(t, addr)
	c := dialSC(t, f.url) // a new client still connects
	c.handshake("")
	keepsWorking(t, c, 2)
	checkCapped(t, f.srv.Registry(), "frontend")

	allClosedByServer(t, conns, 10*time.Second)
	keepsWorking(t, c, 3)
	waitFor(t, waitTimeout, "the idle connections released", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_tcp_connections") == 1
	})
}

func TestIdleConnectionsBroker(t *testing.T) {
	cfg := broker.DefaultConfig()
	cfg.NodeID = "broker-under-attack"
	cfg.AuthKey = clusterKey
	cfg.GossipPort = -1
	cfg.WarmUp = 0
	cfg.Link = peerLinkConfig()
	cfg.Conns = idleConns()
	cfg.Registry = prometheus.NewRegistry()
	s, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveIdleTarget(t, s.Serve, s.Shutdown, broker.ErrServerClosed)
	testIdlePeerPort(t, addr, cfg.Registry, protocol.RoleBroker)
}

func TestIdleConnectionsState(t *testing.T) {
	cfg := state.DefaultConfig()
	cfg.NodeID = "state-under-attack"
	cfg.AuthKey = clusterKey
	cfg.GossipPort = -1
	cfg.StartupDelay = 0
	cfg.Link = peerLinkConfig()
	cfg.Conns = idleConns()
	cfg.Registry = prometheus.NewRegistry()
	s, err := state.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveIdleTarget(t, s.Serve, s.Shutdown, state.ErrServerClosed)
	testIdlePeerPort(t, addr, cfg.Registry, protocol.RoleState)
}

// serveIdleTarget serves a broker or state server on 127.0.0.1:0 until
// the test ends and returns its address.
func serveIdleTarget(t *testing.T, serve func(net.Listener) error, shutdown func(context.Context) error, closed error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, closed) {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := ln.Addr().String()
	waitFor(t, waitTimeout, "the server answering", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return addr
}

func testIdlePeerPort(t *testing.T, addr string, reg prometheus.Gatherer, role string) {
	conns := idleAttack(t, addr, idleAttackConns)
	healthz(t, addr)
	g := dialLegit(t, addr, "frontend-legit") // a new link still connects
	g.alive()
	checkCapped(t, reg, role)
	allClosedByServer(t, conns, 10*time.Second)
	g.alive()
	waitFor(t, waitTimeout, "the idle connections released", func() bool {
		return metric(t, reg, "scc_"+role+"_tcp_connections") == 1
	})
}

// TestFullFrontendAnswersProbes fills a frontend's connection cap with
// sockets, which are not idle and cannot be evicted: probes and scrapes
// still get through the admin reserve, while a new socket gets HTTP 503.
func TestFullFrontendAnswersProbes(t *testing.T) {
	const full = 20
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxConnections = full
		c.AdminReserve = 2
	})
	for range full {
		dialSC(t, f.url).handshake("")
	}
	addr := f.srv.Addr().String()
	for range 5 { // more probes than the reserve: each frees its place
		healthz(t, addr)
	}
	if _, err := tryDialSC(t, f.url); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a socket over the cap: %v", err)
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_tcp_drops_total", "reason", connlimit.ReasonReserved); n != 1 {
		t.Fatalf("reserved refusals counted %v, want 1", n)
	}
}

// TestIdleConnectionsBinary is the attack as it was found: the built
// scc-frontend with its defaults under a 1024-descriptor limit, and 1013
// idle connections. Without a cap they took every descriptor, and
// /healthz and new clients timed out; the cap derived from the limit
// keeps both answered.
func TestIdleConnectionsBinary(t *testing.T) {
	const key = "hostile-binary-key-of-at-least-32-bytes"
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "scc-frontend"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing under CI (make test runs make build first)", bin)
		}
		t.Skipf("%s is missing; run make build", bin)
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// ulimit without -H or -S sets both, so the process cannot raise it.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 1024 && exec "$0"`, bin)
	cmd.Env = []string{"SOCKETCLUSTER_PORT=" + strconv.Itoa(port), "SCC_FRONTEND_HOST=127.0.0.1", "SCC_CLIENT_AUTH_KEY=" + key}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("scc-frontend output:\n%s", out.String())
		}
	})
	waitFor(t, waitTimeout, "scc-frontend ready", func() bool { return status(t, "http://"+addr+"/readyz") == http.StatusOK })

	idleAttack(t, addr, 1013)
	healthz(t, addr)
	c := dialSC(t, "ws://"+addr+"/socketcluster/")
	c.handshake("")
	keepsWorking(t, c, 2)
	select {
	case <-exited:
		t.Fatal("scc-frontend exited")
	default:
	}
}
