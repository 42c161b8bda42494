package hostile

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
	"github.com/sccgo/sccgo/state"
)

// Pre-authentication flood: connections without the key, each declaring
// a 16 MiB frame (or gossip message) and sending 1 MiB (3 MiB) of it.
const (
	floodConns      = 200
	floodDeclared   = 16 << 20
	floodSent       = 1 << 20
	floodGossipSent = 3 << 20
	// floodHeapBound is what the whole flood may add to the heap: the
	// handshakes a node admits hold a few KiB each, gossip streams at most
	// MaxStreamBytes each.
	floodHeapBound = 64 << 20
)

// floodKey is a cluster key the attackers do not have.
var floodKey = []byte("preauth-flood-cluster-key-0123456789abcdef")

// startLinkNode starts a broker or a state server with production link
// limits (16 MiB frames).
func startLinkNode(t *testing.T, role string) (addr string, reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serve func() error
	var shutdown func(context.Context) error
	var ready <-chan struct{}
	closed := broker.ErrServerClosed
	switch role {
	case protocol.RoleBroker:
		cfg := broker.DefaultConfig()
		cfg.NodeID, cfg.AuthKey, cfg.GossipPort, cfg.WarmUp, cfg.Registry = "broker-flooded", floodKey, -1, 0, reg
		s, err := broker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		serve, shutdown, ready = func() error { return s.Serve(ln) }, s.Shutdown, s.Ready()
	default:
		cfg := state.DefaultConfig()
		cfg.NodeID, cfg.AuthKey, cfg.GossipPort, cfg.StartupDelay, cfg.Registry = "state-flooded", floodKey, -1, 0, reg
		s, err := state.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		serve, shutdown, ready, closed = func() error { return s.Serve(ln) }, s.Shutdown, s.Ready(), state.ErrServerClosed
	}
	done := make(chan error, 1)
	go func() { done <- serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("%s Shutdown: %v", role, err)
		}
		if err := <-done; !errors.Is(err, closed) {
			t.Errorf("%s Serve: %v", role, err)
		}
	})
	select {
	case <-ready:
	case <-time.After(waitTimeout):
		t.Fatalf("%s not ready", role)
	}
	return ln.Addr().String(), reg
}

// flood opens n connections with open, each of which then writes what
// payload says, and returns once every attacker has sent all or been cut
// off, with the connections still open (closed at cleanup) and the
// highest heap in use sampled meanwhile and just after.
func flood(t *testing.T, n int, open func() (net.Conn, bool), payload func(net.Conn) error) (peak uint64, admitted, cut int) {
	t.Helper()
	var wg sync.WaitGroup
	var nAdmitted, nCut atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	for range n {
		wg.Go(func() {
			c, ok := open()
			if c == nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if !ok {
				return
			}
			nAdmitted.Add(1)
			if err := payload(c); err != nil {
				nCut.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	sent := make(chan struct{})
	go func() { wg.Wait(); close(sent) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-sent:
			waiting = false
		case <-tick.C:
			peak = max(peak, heapInUse())
		}
	}
	// What the node read last is still held (its handshake or stream
	// deadline is seconds away): sample a few more times.
	for range 5 {
		<-tick.C
		peak = max(peak, heapInUse())
	}
	return peak, int(nAdmitted.Load()), int(nCut.Load())
}

// sendDeclared writes a header declaring a huge message, then n bytes of
// it in chunks, and reports the first write error.
func sendDeclared(c net.Conn, header []byte, n int) error {
	_ = c.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(header); err != nil {
		return err
	}
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// TestPreAuthLinkFlood: 200 connections without the key upgrade to the
// link endpoint of a broker and of a state server and each sends 1 MiB of
// a frame declared as 16 MiB before any Hello. The node may read only
// HelloMaxBytes before the Hello verifies and admits only so many pending
// handshakes per source, so its heap stays bounded, the excess is refused
// with 503 and counted, and a legitimate frontend still links.
func TestPreAuthLinkFlood(t *testing.T) {
	for _, role := range []string{protocol.RoleBroker, protocol.RoleState} {
		t.Run(role, func(t *testing.T) {
			addr, reg := startLinkNode(t, role)
			// A masked binary frame header declaring floodDeclared bytes.
			hdr := []byte{0x82, 0x80 | 127}
			hdr = binary.BigEndian.AppendUint64(hdr, floodDeclared)
			hdr = append(hdr, 0, 0, 0, 0) // mask key 0: the payload goes as is
			var refused atomic.Int64
			open := func() (net.Conn, bool) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, false
				}
				_ = c.SetDeadline(time.Now().Add(waitTimeout))
				req := "GET " + nodelink.Path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
					"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
				if _, err := c.Write([]byte(req)); err != nil {
					return c, false
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return c, false
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusSwitchingProtocols {
					refused.Add(1)
					return c, false
				}
				return c, true
			}
			base := heapInUse()
			peak, admitted, cut := flood(t, floodConns, open, func(c net.Conn) error { return sendDeclared(c, hdr, floodSent) })
			t.Logf("%s: %d admitted (%d cut off), %d refused; heap in use %d MiB before, %d MiB peak",
				role, admitted, cut, refused.Load(), base>>20, peak>>20)
			if peak > base+floodHeapBound {
				t.Fatalf("heap in use grew by %d MiB under %d keyless connections (bound %d MiB)", (peak-base)>>20, floodConns, floodHeapBound>>20)
			}
			if got := metric(t, reg, "scc_"+role+"_link_rejects_total", "reason", nodelink.ReasonPendingSource); got == 0 || got != float64(refused.Load()) {
				t.Fatalf("rejects{pending_source} = %v, %d refused with 503", got, refused.Load())
			}
			waitFor(t, waitTimeout, "the oversized pre-hello frames refused", func() bool {
				return metric(t, reg, "scc_"+role+"_link_rejects_total", "reason", protocol.RejectMalformed) >= float64(admitted)
			})
			lc := nodelink.DefaultConfig()
			lc.NodeID, lc.Role, lc.AuthKey = "frontend-legit", protocol.RoleFrontend, floodKey
			waitFor(t, waitTimeout, "a keyed frontend linked", func() bool {
				l, err := nodelink.Dial(context.Background(), addr, lc)
				if err != nil {
					return false // a pending slot may still be taken
				}
				l.Close(nodelink.ReasonShutdown)
				return true
			})
		})
	}
}

// TestPreAuthGossipFlood: 200 connections without the key open the gossip
// TCP port and each sends 3 MiB of an encrypted message declared as 16 MiB
// (memberlist buffers up to 20 MiB of one before it can decrypt it). The
// node admits only so many streams per source and reads at most
// MaxStreamBytes of each, so its heap stays bounded, the refusals are
// counted, and a member with the key still joins.
func TestPreAuthGossipFlood(t *testing.T) {
	reg := prometheus.NewRegistry()
	gc := gossip.DefaultConfig()
	gc.NodeName, gc.Role, gc.BindAddr, gc.BindPort, gc.AuthKey, gc.Registry = "broker-flooded", protocol.RoleBroker, "127.0.0.1", 0, floodKey, reg
	// One source, as an attacker has: the per-source cap at 4 makes it
	// bite even though each oversized stream is closed quickly.
	gc.MaxStreamsPerSource = 4
	g, err := gossip.New(gc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })

	// memberlist's encrypted message: type 10, then a 4-byte length.
	hdr := []byte{10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[1:], floodDeclared)
	open := func() (net.Conn, bool) {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			return nil, false
		}
		return c, true
	}
	base := heapInUse()
	peak, admitted, cut := flood(t, floodConns, open, func(c net.Conn) error { return sendDeclared(c, hdr, floodGossipSent) })
	rejected := func(reason string) float64 {
		return metric(t, reg, "scc_broker_gossip_rejects_total", "reason", reason)
	}
	t.Logf("gossip: %d connected (%d cut off); streams refused: %v per source, %v in total, %v too large; heap in use %d MiB before, %d MiB peak",
		admitted, cut, rejected(gossip.ReasonStreamSource), rejected(gossip.ReasonStreamTotal), rejected(gossip.ReasonStreamTooLarge), base>>20, peak>>20)
	if peak > base+floodHeapBound {
		t.Fatalf("heap in use grew by %d MiB under %d keyless gossip streams (bound %d MiB)", (peak-base)>>20, floodConns, floodHeapBound>>20)
	}
	if rejected(gossip.ReasonStreamSource)+rejected(gossip.ReasonStreamTotal) == 0 {
		t.Fatal("no stream refused for the caps")
	}

	mc := gossip.DefaultConfig()
	mc.NodeName, mc.Role, mc.BindAddr, mc.BindPort, mc.AuthKey = "frontend-legit", protocol.RoleFrontend, "127.0.0.1", 0, floodKey
	m, err := gossip.New(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	// The flood's connections are closed by now or soon (deadline): a
	// keyed member joins once a stream slot is free.
	waitFor(t, waitTimeout, "a keyed member joined", func() bool {
		if m.NumAlive() == 2 {
			return true
		}
		_, _ = m.Join([]string{g.Addr()})
		return m.NumAlive() == 2
	})
}

// TestPreAuthHeaderFlood: 200 connections send 1 MiB of HTTP request
// header to the link port of a broker and of a state server, before any
// link handshake. The header is bounded by SCC_LINK_MAX_HEADER_BYTES, not
// Go's 1 MiB default, so the heap stays bounded.
func TestPreAuthHeaderFlood(t *testing.T) {
	for _, role := range []string{protocol.RoleBroker, protocol.RoleState} {
		t.Run(role, func(t *testing.T) {
			addr, _ := startLinkNode(t, role)
			open := func() (net.Conn, bool) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, false
				}
				return c, true
			}
			line := []byte("X-Pad: " + strings.Repeat("a", 64<<10-9) + "\r\n")
			base := heapInUse()
			peak, admitted, cut := flood(t, floodConns, open, func(c net.Conn) error {
				_ = c.SetWriteDeadline(time.Now().Add(waitTimeout))
				if _, err := c.Write([]byte("GET " + nodelink.Path + " HTTP/1.1\r\nHost: x\r\n")); err != nil {
					return err
				}
				for sent := 0; sent < floodSent; sent += len(line) {
					if _, err := c.Write(line); err != nil {
						return err
					}
				}
				return nil
			})
			t.Logf("%s: %d connected (%d cut off); heap in use %d MiB before, %d MiB peak", role, admitted, cut, base>>20, peak>>20)
			if peak > base+floodHeapBound {
				t.Fatalf("heap in use grew by %d MiB under %d connections sending 1 MiB headers (bound %d MiB)", (peak-base)>>20, floodConns, floodHeapBound>>20)
			}
		})
	}
}

// startNodeBinary runs bin/<name> with env and waits until url answers
// 200. It skips when the binary is missing, unless CI is set. It returns
// the process id.
func startNodeBinary(t *testing.T, name string, env []string, url string) int {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing under CI (make test runs make build first)", bin)
		}
		t.Skipf("%s is missing; run make build", bin)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	waitFor(t, waitTimeout, name+" ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", name, out.String())
		default:
		}
		return status(t, url) == http.StatusOK
	})
	return cmd.Process.Pid
}

// procKiB reads a VmRSS or VmHWM line of /proc/<pid>/status, in KiB.
func procKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestPreAuthFloodBinaryRSS runs the real scc-broker and scc-state and
// floods each one's link port (200 connections, 1 MiB of a 16 MiB frame
// each, then 200 sending 1 MiB of HTTP header) and gossip port (200
// streams, 3 MiB of a 16 MiB encrypted message each) without the key. The
// process's peak resident set (VmHWM) may grow by at most 64 MiB over its
// size before the flood.
func TestPreAuthFloodBinaryRSS(t *testing.T) {
	for _, name := range []string{"scc-broker", "scc-state"} {
		t.Run(name, func(t *testing.T) { floodBinary(t, name) })
	}
}

func floodBinary(t *testing.T, name string) {
	port, gport := freePort(t), freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	gaddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(gport))
	env := []string{"SCC_GOSSIP_BIND=127.0.0.1", "SCC_GOSSIP_PORT=" + strconv.Itoa(gport), "SCC_AUTH_KEY=" + string(floodKey)}
	if name == "scc-broker" {
		env = append(env, "SCC_BROKER_HOST=127.0.0.1", "SCC_BROKER_SERVER_PORT="+strconv.Itoa(port), "SCC_BROKER_WARMUP=0")
	} else {
		env = append(env, "SCC_STATE_SERVER_HOST=127.0.0.1", "SCC_STATE_SERVER_PORT="+strconv.Itoa(port), "SCC_STATE_SERVER_STARTUP_DELAY=0")
	}
	pid := startNodeBinary(t, name, env, "http://"+addr+"/readyz")
	before := procKiB(t, pid, "VmRSS")

	dial := func(a string) func() (net.Conn, bool) {
		return func() (net.Conn, bool) {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return nil, false
			}
			return c, true
		}
	}
	linkHdr := []byte{0x82, 0x80 | 127}
	linkHdr = binary.BigEndian.AppendUint64(linkHdr, floodDeclared)
	linkHdr = append(linkHdr, 0, 0, 0, 0)
	upgrade := "GET " + nodelink.Path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	flood(t, floodConns, dial(addr), func(c net.Conn) error {
		return sendDeclared(c, append([]byte(upgrade), linkHdr...), floodSent)
	})
	line := []byte("X-Pad: " + strings.Repeat("a", 64<<10-9) + "\r\n")
	flood(t, floodConns, dial(addr), func(c net.Conn) error {
		_ = c.SetWriteDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Write([]byte("GET " + nodelink.Path + " HTTP/1.1\r\nHost: x\r\n")); err != nil {
			return err
		}
		for sent := 0; sent < floodSent; sent += len(line) {
			if _, err := c.Write(line); err != nil {
				return err
			}
		}
		return nil
	})
	gossipHdr := []byte{10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(gossipHdr[1:], floodDeclared)
	flood(t, floodConns, dial(gaddr), func(c net.Conn) error { return sendDeclared(c, gossipHdr, floodGossipSent) })

	peak := procKiB(t, pid, "VmHWM")
	t.Logf("%s RSS %d MiB before the flood, peak %d MiB", name, before>>10, peak>>10)
	if peak-before > floodHeapBound>>10 {
		t.Fatalf("%s's peak RSS grew by %d MiB under the keyless flood (bound %d MiB)", name, (peak-before)>>10, floodHeapBound>>20)
	}
	if status(t, "http://"+addr+"/healthz") != http.StatusOK {
		t.Fatalf("%s stopped answering /healthz", name)
	}
}
