//go:build linux

package frontend

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// Parked sockets hold no goroutine; these tests check that everything a
// socket's reader and the sweeper do still happens while it is parked.

// awaitParked waits until n sockets are parked.
func awaitParked(t testing.TB, srv *Server, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d parked sockets", n), func() bool { return srv.parkedN.Load() == n })
}

// awaitDetached waits until n sockets are detached (parked without their
// WebSocket state).
func awaitDetached(t testing.TB, srv *Server, n int64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d detached sockets", n), func() bool { return srv.detachedN.Load() == n })
}

// reattaches is how many times a detached socket was given its WebSocket
// state again.
func reattaches(t testing.TB, srv *Server) float64 {
	t.Helper()
	var n float64
	for _, by := range []string{reattachRead, reattachWrite, reattachClose} {
		n += counter(t, srv.Registry(), "scc_frontend_socket_reattaches_total", "by", by)
	}
	return n
}

// waitGone waits until srv has no socket left, parked or registered in
// its poller.
func waitGone(t testing.TB, srv *Server) {
	t.Helper()
	waitFor(t, 10*time.Second, "every socket torn down", func() bool {
		p := srv.poller.Load()
		return srv.Stats().Connections == 0 && srv.parkedN.Load() == 0 && (p == nil || p.Len() == 0)
	})
}

// A parked socket answers pings, detached (its pings written raw and
// its pongs read without rebuilding its WebSocket state) or not.
func TestParkedSocketAnswersPings(t *testing.T) {
	for _, detach := range []bool{false, true} {
		for _, v := range []protocol.Version{protocol.V1, protocol.V2} {
			t.Run(fmt.Sprintf("v%d/detach=%v", v, detach), func(t *testing.T) {
				cfg := testConfig()
				cfg.ProtocolVersion = v
				cfg.PingInterval = 30 * time.Millisecond
				cfg.PingTimeout = 300 * time.Millisecond
				cfg.IdleDetach = 0
				if detach {
					// Longer than the ping interval: pings and pongs do
					// not count as use.
					cfg.IdleDetach = 150 * time.Millisecond
				}
				srv := startServer(t, cfg)
				c := dial(t, srv)
				c.handshake("")
				c.subscribe("p", 2)
				awaitParked(t, srv, 1)
				var r0 float64
				if detach {
					awaitDetached(t, srv, 1)
					r0 = reattaches(t, srv)
				}
				// More pongs than fit in a ping timeout: each one woke the
				// parked socket, was read, and the socket parked again.
				waitFor(t, 10*time.Second, "pongs", func() bool {
					if detach {
						return counter(t, srv.Registry(), "scc_frontend_detached_pongs_total") >= 20
					}
					return counter(t, srv.Registry(), "scc_frontend_messages_in_total", "type", "pong") >= 20
				})
				select {
				case <-c.done:
					t.Fatalf("connection closed: %v", c.readErr())
				default:
				}
				if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonPongTimeout); got != 0 {
					t.Fatalf("%v pong timeouts", got)
				}
				awaitParked(t, srv, 1)
				pings := counter(t, srv.Registry(), "scc_frontend_detached_pings_total")
				pongs := counter(t, srv.Registry(), "scc_frontend_detached_pongs_total")
				if detach {
					// Pings and pongs alone never rebuilt the state.
					if pings < 20 || pongs < 20 {
						t.Fatalf("detached pings %v, pongs %v; want 20 exchanged", pings, pongs)
					}
					if r := reattaches(t, srv); r != r0 {
						t.Fatalf("%v reattaches while only pings and pongs flowed", r-r0)
					}
				} else if pings != 0 || pongs != 0 || srv.detachedN.Load() != 0 {
					t.Fatalf("detached with IdleDetach 0: pings %v, pongs %v", pings, pongs)
				}
				// A parked subscriber still gets what is published.
				if err := srv.Publish(context.Background(), "p", []byte(`"hi"`)); err != nil {
					t.Fatal(err)
				}
				for {
					if p := c.packet2(); p != "" {
						if want := `{"event":"#publish","data":{"channel":"p","data":"hi"}}`; p != want {
							t.Fatalf("got %s, want %s", p, want)
						}
						break
					}
				}
				if !detach {
					return
				}
				if got := counter(t, srv.Registry(), "scc_frontend_socket_reattaches_total", "by", reattachWrite); got < 1 {
					t.Fatal("the delivery did not rebuild the state")
				}
				// It detaches again; a request from the client rebuilds it
				// to read, and is answered.
				awaitDetached(t, srv, 1)
				c.subscribe("q", 3)
				if got := counter(t, srv.Registry(), "scc_frontend_socket_reattaches_total", "by", reattachRead); got < 1 {
					t.Fatal("the request did not rebuild the state")
				}
				awaitDetached(t, srv, 1)
				if err := c.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
					t.Fatalf("close handshake: %v", err)
				}
				waitGone(t, srv)
				if n := srv.detachedN.Load(); n != 0 {
					t.Fatalf("%d detached after every socket left", n)
				}
			})
		}
	}
}

// Sockets that only exchange pings and pongs, once detached, stay
// detached: no ping rebuilds the state, including the ping due in the
// sweep that detaches the socket.
func TestDetachedSocketsStayDetached(t *testing.T) {
	const n = 200
	cfg := testConfig()
	cfg.PingInterval = 30 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	cfg.IdleDetach = 100 * time.Millisecond
	cfg.MaxConnectionsPerIP = 0
	srv := startServer(t, cfg)
	for range n {
		c := dial(t, srv)
		c.handshake("")
	}
	awaitDetached(t, srv, n)
	if r := reattaches(t, srv); r != 0 {
		t.Fatalf("%v reattaches while becoming detached", r)
	}
	waitFor(t, 20*time.Second, "ten pongs per socket", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_detached_pongs_total") >= 10*n
	})
	if r := reattaches(t, srv); r != 0 {
		t.Fatalf("%v reattaches while only pings and pongs flowed", r)
	}
	if got := srv.detachedN.Load(); got != n {
		t.Fatalf("%d detached, want %d", got, n)
	}
}

// A client that stops answering is closed for its pong timeout while
// its socket is parked.
func TestParkedSocketPongTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 30 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg)
	c := dialWith(t, wsURL(srv), dialOpts{noAutoPong: true})
	c.handshake("")
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
	c.expectClose(protocol.ClosePongTimeout)
	waitGone(t, srv)
}

func TestParkedSocketHandshakeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = time.Second
	srv := startServer(t, cfg)
	c := dial(t, srv)
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
	c.expectClose(protocol.CloseHandshakeTimeout)
	waitGone(t, srv)
	// The socket leaves the registry before its close is counted.
	waitFor(t, 5*time.Second, "the close to be counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonHandshakeTimeout) >= 1
	})
	if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonHandshakeTimeout); got != 1 {
		t.Fatalf("handshake timeouts %v, want 1", got)
	}
}

func TestParkedSocketTokenExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = time.Minute
	cfg.PingTimeout = 2 * time.Minute
	conns := make(chan *Socket, 1)
	cfg.OnConnect = func(s *Socket) { conns <- s }
	srv := startServer(t, cfg)
	c := dial(t, srv)
	hs := c.handshake(hsToken(t, testKey, jwt.MapClaims{"username": "eve", "exp": time.Now().Unix() + 2}))
	if hs["isAuthenticated"] != true {
		t.Fatalf("handshake %v", hs)
	}
	s := <-conns
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
	// No packet and no pong comes in: the sweeper notices the expiry.
	c.expect(`{"event":"#removeAuthToken"}`)
	if s.IsAuthenticated() {
		t.Fatal("still authenticated after expiry")
	}
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
}

func TestParkedSocketCloseFrames(t *testing.T) {
	cfg := testConfig()
	srv := startServer(t, cfg)

	t.Run("client closes", func(t *testing.T) {
		c := dial(t, srv)
		c.handshake("")
		awaitParked(t, srv, 1)
		awaitDetached(t, srv, 1)
		if err := c.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("close handshake: %v", err)
		}
		waitGone(t, srv)
		// The socket leaves the registry before its close is counted.
		waitFor(t, 5*time.Second, "the close to be counted", func() bool {
			return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonNormal) >= 1
		})
		if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonNormal); got != 1 {
			t.Fatalf("normal closes %v, want 1", got)
		}
	})
	t.Run("server closes", func(t *testing.T) {
		conns := make(chan *Socket, 1)
		srv := startServer(t, func() Config { c := testConfig(); c.OnConnect = func(s *Socket) { conns <- s }; return c }())
		c := dial(t, srv)
		c.handshake("")
		s := <-conns
		awaitParked(t, srv, 1)
		awaitDetached(t, srv, 1)
		s.Close(4321, "bye")
		c.expectClose(4321)
		waitGone(t, srv)
	})
	t.Run("peer vanishes", func(t *testing.T) {
		c := dial(t, srv)
		c.handshake("")
		awaitParked(t, srv, 1)
		awaitDetached(t, srv, 1)
		c.ws.CloseNow()
		waitGone(t, srv)
	})
	t.Run("shutdown", func(t *testing.T) {
		srv, err := New(testConfig())
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		<-srv.Ready()
		c := dial(t, srv)
		c.handshake("")
		awaitParked(t, srv, 1)
		awaitDetached(t, srv, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		c.expectClose(protocol.CloseGoingAway)
		waitGone(t, srv)
	})
}

// A WebSocket ping from the client wakes the parked socket and is
// answered (by coder/websocket, inside the read).
func TestParkedSocketClientPing(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	c.handshake("")
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// TestParkedSocketsWakeTogether parks 10,000 subscribed sockets (held by a
// child process, so that each process stays within its descriptor limit,
// from eight loopback source addresses), wakes them all at once with one
// request each, and checks that every one is answered, that the sockets
// park again without a goroutine each, and that nothing leaks when they
// close.
func TestParkedSocketsWakeTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	n := 10000
	if s := os.Getenv("FRONTEND_WAKE_CONNS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	cfg := testConfig()
	cfg.PingInterval = time.Minute
	cfg.PingTimeout = 2 * time.Minute
	cfg.HandshakeTimeout = time.Minute
	cfg.MaxConnectionsPerIP = 0
	srv := startServer(t, cfg)
	fds0 := openFDs(t)
	g0 := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^TestWakeClientProcess$")
	cmd.Env = append(os.Environ(), "FRONTEND_WAKECLIENT_ADDR="+srv.Addr().String(), "FRONTEND_WAKECLIENT_N="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	expectLine := func(want string) {
		t.Helper()
		for lines.Scan() {
			line := lines.Text()
			if line == want {
				return
			}
			if strings.HasPrefix(line, "error") {
				t.Fatalf("client process: %s", line)
			}
		}
		t.Fatalf("client process ended before %q", want)
	}
	expectLine("ready")
	awaitParked(t, srv, int64(n))
	awaitDetached(t, srv, int64(n))
	r0 := reattaches(t, srv)
	// Writers that sent the answers linger a little (WriterLinger); no
	// goroutine stays per socket.
	fewGoroutines := func() bool { return runtime.NumGoroutine() <= g0+100 }
	waitFor(t, 30*time.Second, "goroutines to end", fewGoroutines)

	io.WriteString(stdin, "wake\n")
	expectLine("answered")
	awaitParked(t, srv, int64(n))
	// Every request rebuilt its socket's WebSocket state, and every
	// socket drops it again.
	if r := reattaches(t, srv) - r0; r < float64(n) {
		t.Fatalf("%v reattaches for %d requests to detached sockets", r, n)
	}
	awaitDetached(t, srv, int64(n))
	waitFor(t, 30*time.Second, "goroutines to end", fewGoroutines)

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client process: %v", err)
	}
	waitFor(t, 60*time.Second, "every socket torn down", func() bool {
		p := srv.poller.Load()
		return srv.Stats().Connections == 0 && srv.parkedN.Load() == 0 && p.Len() == 0
	})
	waitFor(t, 30*time.Second, "descriptors back to where they were", func() bool { return openFDs(t) <= fds0 })
}

func openFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// TestWakeClientProcess is the client side of
// TestParkedSocketsWakeTogether, run in a child process. It opens N
// handshaken, subscribed connections with raw frames (no goroutine per
// connection), prints "ready", and on "wake" from stdin writes one
// request to every connection in a tight loop, reads every answer and
// prints "answered". It closes them all when stdin closes.
func TestWakeClientProcess(t *testing.T) {
	addr := os.Getenv("FRONTEND_WAKECLIENT_ADDR")
	if addr == "" {
		t.Skip("helper process for TestParkedSocketsWakeTogether")
	}
	n, _ := strconv.Atoi(os.Getenv("FRONTEND_WAKECLIENT_N"))
	fail := func(format string, args ...any) {
		fmt.Printf("error "+format+"\n", args...)
		os.Exit(1)
	}
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	conns := make([]conn, n)
	for i := range conns {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}
		c, br, err := rawUpgrade(addr, src)
		if err != nil {
			fail("conn %d: %v", i, err)
		}
		conns[i] = conn{c, br}
		c.Write(wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`))
		c.Write(wsframe.AppendText(nil, fmt.Sprintf(`{"event":"#subscribe","data":{"channel":"wake-%d"},"cid":2}`, i)))
	}
	for i, cn := range conns {
		if err := readUntil(cn.c, cn.br, `"rid":2`); err != nil {
			fail("conn %d: subscribing: %v", i, err)
		}
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if line, _ := in.ReadString('\n'); line != "wake\n" {
		return
	}
	frames := make([][]byte, n)
	for i := range frames {
		// Already subscribed: answered with a plain ack.
		frames[i] = wsframe.AppendText(nil, fmt.Sprintf(`{"event":"#subscribe","data":{"channel":"wake-%d"},"cid":3}`, i))
	}
	for i, cn := range conns {
		if _, err := cn.c.Write(frames[i]); err != nil {
			fail("conn %d: waking: %v", i, err)
		}
	}
	for i, cn := range conns {
		if err := readUntil(cn.c, cn.br, `"rid":3`); err != nil {
			fail("conn %d: waiting for the answer: %v", i, err)
		}
	}
	fmt.Println("answered")
	io.Copy(io.Discard, in)
	for _, cn := range conns {
		cn.c.Close()
	}
}

// rawUpgrade opens a WebSocket connection to addr (from src, if not nil)
// with a bare HTTP upgrade request.
func rawUpgrade(addr string, src *net.TCPAddr) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if src != nil {
		d.LocalAddr = src
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	var key [16]byte
	rand.Read(key[:])
	req := "GET /socketcluster/ HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	return c, br, nil
}

// readUntil reads server frames until a text frame contains want.
func readUntil(c net.Conn, br *bufio.Reader, want string) error {
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		op, p, err := readFrameRaw(br)
		if err != nil {
			return err
		}
		switch op {
		case 0x8:
			return errors.New("closed by the server")
		case 0x1:
			if strings.Contains(string(p), want) {
				return nil
			}
		}
	}
}

// readFrameRaw reads one unmasked frame and returns its opcode and
// payload.
func readFrameRaw(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}

// rawHandshaken opens a raw WebSocket to srv, closed at cleanup, and
// completes its #handshake.
func rawHandshaken(t *testing.T, srv *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br, err := rawUpgrade(srv.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write(wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`))
	if err := readUntil(c, br, `"rid":1`); err != nil {
		t.Fatal(err)
	}
	return c, br
}

// A parked subscriber that stops reading is closed as a slow consumer
// and torn down, though no reader goroutine runs for it.
func TestParkedSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.QueueMaxBytes = 64 << 10
	cfg.QueueMaxMessages = 1000
	srv := startServer(t, cfg)
	c, br := rawHandshaken(t, srv)
	c.Write(wsframe.AppendText(nil, `{"event":"#subscribe","data":{"channel":"firehose"},"cid":2}`))
	if err := readUntil(c, br, `"rid":2`); err != nil {
		t.Fatal(err)
	}
	awaitParked(t, srv, 1)
	awaitDetached(t, srv, 1)
	payload := []byte(`"` + strings.Repeat("x", 4000) + `"`)
	for sent := 0; srv.Stats().Connections == 1; sent++ {
		if sent == 100000 {
			t.Fatal("never closed as a slow consumer")
		}
		if err := srv.Publish(context.Background(), "firehose", payload); err != nil {
			t.Fatal(err)
		}
	}
	waitGone(t, srv)
	// The socket leaves the registry before its close is counted.
	waitFor(t, 5*time.Second, "the close to be counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonSlowConsumer) >= 1
	})
	if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonSlowConsumer); got != 1 {
		t.Fatalf("slow consumer closes %v, want 1", got)
	}
}

// readClose reads frames until a close frame and returns its code.
func readClose(c net.Conn, br *bufio.Reader) (int, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		op, p, err := readFrameRaw(br)
		if err != nil {
			return 0, err
		}
		if op == 0x8 {
			if len(p) < 2 {
				return 0, errors.New("close frame without a code")
			}
			return int(binary.BigEndian.Uint16(p)), nil
		}
	}
}

// A detached socket's reader takes a pong at the head of a segment
// itself and hands the request behind it to a rebuilt Conn; pongs are
// metered like any frame, so a flood of them is closed for the rate.
func TestDetachedSocketRawTraffic(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = time.Minute
	cfg.PingTimeout = 2 * time.Minute
	cfg.InboundRate = 100
	cfg.InboundBurst = 100
	srv := startServer(t, cfg)
	c, br := rawHandshaken(t, srv)
	awaitDetached(t, srv, 1)
	pong := wsframe.AppendText(nil, "#2")
	c.Write(append(append([]byte{}, pong...), wsframe.AppendText(nil, `{"event":"#subscribe","data":{"channel":"x"},"cid":2}`)...))
	if err := readUntil(c, br, `"rid":2`); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, srv.Registry(), "scc_frontend_detached_pongs_total"); got != 1 {
		t.Fatalf("detached pongs %v, want 1", got)
	}
	if got := counter(t, srv.Registry(), "scc_frontend_socket_reattaches_total", "by", reattachRead); got != 1 {
		t.Fatalf("read reattaches %v, want 1", got)
	}
	awaitDetached(t, srv, 1)
	var flood []byte
	for range 300 {
		flood = append(flood, pong...)
	}
	c.Write(flood)
	code, err := readClose(c, br)
	if err != nil || code != protocol.CloseRateLimited {
		t.Fatalf("closed with %d (%v), want %d", code, err, protocol.CloseRateLimited)
	}
	waitGone(t, srv)
	// The socket leaves the registry before its close is counted.
	waitFor(t, 5*time.Second, "the rate-limited close to be counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonRateLimited) >= 1
	})
	if got := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonRateLimited); got != 1 {
		t.Fatalf("rate-limited closes %v, want 1", got)
	}
}
