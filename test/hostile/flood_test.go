package hostile

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// The attacks of this file flood one in-process frontend from hundreds of
// connections while a healthy pair runs beside them; each checks the
// attackers were stopped and counted, the healthy pair received every
// message, and logs the pair's round-trip p99 before and during the
// attack.

// rawConn is a WebSocket client written by hand, to send frames no library
// sends (unsolicited pongs, empty fragments, unfinished messages) and to
// hold many connections without a goroutine each.
type rawConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRawClient(t testing.TB, f *testFrontend) *rawConn {
	t.Helper()
	c, err := tryDialRaw(t, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDialRaw connects from local (nil: any address) and upgrades; a
// refused upgrade is an error.
func tryDialRaw(t testing.TB, f *testFrontend, local net.Addr) (*rawConn, error) {
	t.Helper()
	return dialRawAndThen(f, local, func(nc net.Conn) { t.Cleanup(func() { nc.Close() }) })
}

// dialRawAndThen is tryDialRaw that hands the connection to keep
// (registering its close) instead of registering a cleanup itself.
func dialRawAndThen(f *testFrontend, local net.Addr, keep func(net.Conn)) (*rawConn, error) {
	d := net.Dialer{LocalAddr: local}
	nc, err := d.Dial("tcp", f.srv.Addr().String())
	if err != nil {
		return nil, err
	}
	keep(nc)
	req := "GET /socketcluster/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		return nil, err
	}
	nc.SetReadDeadline(time.Now().Add(waitTimeout))
	br := bufio.NewReaderSize(nc, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	c := &rawConn{nc: nc, br: br}
	c.write(wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#handshake","data":{},"cid":1}`)))
	for {
		op, p := c.frame()
		if op == 1 && strings.HasPrefix(string(p), `{"rid":1,`) {
			return c, nil
		}
		if op < 0 || op == 8 {
			return nil, fmt.Errorf("no handshake reply (op %d)", op)
		}
	}
}

// write sends bytes; errors are expected (the server cuts attackers off).
func (c *rawConn) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// frame reads one server frame; op -1 when the connection ended, -2 when
// the read deadline passed.
func (c *rawConn) frame() (int, []byte) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return -2, nil
		}
		return -1, nil
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return -1, nil
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return -1, nil
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return -1, nil
	}
	return int(h[0] & 0x0f), p
}

// closeCode reads until the server's close frame and returns its code, -1
// when the connection ended without one, or -2 when it is still open after
// a bound (generous, as hundreds of attackers share a loaded machine).
func (c *rawConn) closeCode() int {
	c.nc.SetReadDeadline(time.Now().Add(3 * waitTimeout))
	for {
		op, p := c.frame()
		switch {
		case op < 0:
			return op
		case op == 8 && len(p) >= 2:
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// heapAfterGC returns the live heap in bytes after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// logP99 logs the healthy pair's round-trip p99 since mark beside the
// baseline.
func logP99(t testing.TB, h *healthyPair, attack string, base time.Duration, mark int) {
	t.Helper()
	p, n := h.p99(mark)
	t.Logf("healthy pair round trip p99: %v baseline, %v during %s (%d round trips)", base, p, attack, n)
}

// baseline lets the healthy pair run a little and returns its p99.
func baseline(h *healthyPair) time.Duration {
	m := h.mark()
	for range 5 {
		h.progress()
	}
	p, _ := h.p99(m)
	return p
}

// TestPublishBurstSparesSubscribers: one client's burst of six 1 MiB
// publishes must not cut off subscribers that read at a normal pace. The
// publishes are refused with a clear error instead (a publish's size is a
// limit of its own, well below the queue bound).
func TestPublishBurstSparesSubscribers(t *testing.T) {
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxPayload = 2 << 20
		c.QueueMaxBytes = 1 << 20
		c.InboundByteBurst = 8 << 20 // the byte rate is tested on its own
	})
	h := startHealthy(t, f.url, "healthy")
	base := baseline(h)

	const subscribers = 200
	var closed, gotDone atomic.Int32
	var wg sync.WaitGroup
	var subs []*rawConn
	for range subscribers {
		c := dialRawClient(t, f)
		subs = append(subs, c)
		c.write(wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#subscribe","data":{"channel":"burst"},"cid":2}`)))
		for {
			if op, p := c.frame(); op < 0 || string(p) == `{"rid":2}` {
				break
			}
		}
		c.nc.SetReadDeadline(time.Time{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				op, p := c.frame()
				switch {
				case op < 0:
					return
				case op == 8:
					closed.Add(1)
					return
				case op == 1 && len(p) == 0:
					c.write(wsframe.AppendClient(nil, 1, true, nil)) // pong
				case strings.Contains(string(p), `"data":"done"`):
					gotDone.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range subs {
			c.nc.Close()
		}
		wg.Wait()
	})

	mark := h.mark()
	pub := dialSC(t, f.url)
	pub.handshake("")
	mb := strings.Repeat("x", 1<<20)
	for i := range 6 {
		pub.sendf(`{"event":"#publish","data":{"channel":"burst","data":%q},"cid":%d}`, mb, 10+i)
	}
	replies := make([]string, 6)
	for i := range replies {
		replies[i] = pub.next(waitTimeout)
	}
	pub.sendf(`{"event":"#publish","data":{"channel":"burst","data":"done"},"cid":20}`)
	pub.expectOK(20)
	waitFor(t, waitTimeout, "every subscriber got the publish after the burst, or some closed", func() bool {
		return gotDone.Load()+closed.Load() == subscribers
	})
	if n := closed.Load(); n > 0 {
		t.Fatalf("%d of %d subscribers closed by another client's burst", n, subscribers)
	}
	for i, p := range replies {
		e := decodeObject(t, p)
		errObj, _ := e["error"].(map[string]any)
		if e["rid"] != float64(10+i) || errObj["name"] != protocol.ErrNameInvalidAction || !strings.Contains(fmt.Sprint(errObj["message"]), "exceeds the limit") {
			t.Fatalf("1 MiB publish answered %s, want InvalidActionError about the size", p)
		}
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_publish_errors_total", "reason", "too_big"); n != 6 {
		t.Fatalf("too_big publishes counted %v, want 6", n)
	}
	if n := f.closesTotal(t, "slow_consumer"); n != 0 {
		t.Fatalf("%v slow-consumer closes", n)
	}
	h.progress()
	logP99(t, h, "a 6 x 1 MiB publish burst to 200 subscribers", base, mark)
	h.check()
}

// TestPacketFloods: control frames nobody asked for, empty fragments and
// a batch of 300k empty packets, from hundreds of connections, are
// charged before they are decoded: each attacker is closed, counted, and
// the healthy pair keeps its messages.
func TestPacketFloods(t *testing.T) {
	f := startFrontend(t, func(c *frontend.Config) { c.MaxPayload = 1 << 20 })
	h := startHealthy(t, f.url, "healthy")
	base := baseline(h)

	pong := wsframe.AppendClient(nil, 0xa, true, nil)
	pongs := make([]byte, 0, 1000*len(pong))
	for range 1000 {
		pongs = append(pongs, pong...)
	}
	frags := wsframe.AppendClient(nil, 1, false, nil)
	for range 1000 {
		frags = wsframe.AppendClient(frags, 0, false, nil)
	}
	bomb := wsframe.AppendClient(nil, 1, true, []byte("["+strings.TrimSuffix(strings.Repeat("{},", 300000), ",")+"]"))
	attacks := []struct {
		name   string
		n      int
		frames []byte
		code   int
		reason string
	}{
		{"unsolicited pongs", 100, pongs, protocol.CloseRateLimited, "rate_limited"},
		{"empty continuation frames", 100, frags, protocol.CloseMessageTooBig, "too_many_fragments"},
		{"300k-packet batch", 20, bomb, protocol.CloseMessageTooBig, "batch_too_large"},
	}
	conns := make([][]*rawConn, len(attacks))
	for i, a := range attacks {
		for range a.n {
			conns[i] = append(conns[i], dialRawClient(t, f))
		}
	}
	mark := h.mark()
	var wg sync.WaitGroup
	codes := make([][]int, len(attacks))
	for i, a := range attacks {
		codes[i] = make([]int, a.n)
		for j, c := range conns[i] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				go c.write(a.frames)
				codes[i][j] = c.closeCode()
			}()
		}
	}
	wg.Wait()
	for i, a := range attacks {
		for j, code := range codes[i] {
			// The server closes as soon as its close frame is out; an
			// attacker still writing then gets a reset, which may discard
			// the frame before it is read. The counters below say why.
			if code != a.code && code != -1 {
				for _, r := range []string{"rate_limited", "too_many_fragments", "batch_too_large", "read_error", "pong_timeout", "client_close", "byte_rate_limited"} {
					t.Logf("closes %s: %v", r, f.closesTotal(t, r))
				}
				t.Fatalf("%s: attacker %d closed with %d, want %d", a.name, j, code, a.code)
			}
		}
		waitFor(t, waitTimeout, a.name+" closes counted", func() bool { return f.closesTotal(t, a.reason) == float64(a.n) })
	}
	h.progress()
	logP99(t, h, "packet floods from 220 connections", base, mark)
	h.check()
}

// TestPartialMessagesBounded: hundreds of sockets that each leave a 900 KB
// message unfinished cannot make the frontend hold more than its read
// budget; those beyond it are closed with 4012.
func TestPartialMessagesBounded(t *testing.T) {
	const budget = 32 << 20
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxPayload = 1 << 20
		c.ReadBudget = budget
	})
	h := startHealthy(t, f.url, "healthy")
	base := baseline(h)
	heap0 := heapAfterGC()

	const n = 300
	part := wsframe.AppendClient(nil, 1, false, []byte(`{"event":"x","data":"`+strings.Repeat("a", 900<<10)))
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRawClient(t, f)
	}
	mark := h.mark()
	var wg sync.WaitGroup
	var written atomic.Int32 // writes that ended: all read, or cut off
	for _, c := range conns {
		wg.Go(func() {
			c.write(part)
			written.Add(1)
		})
	}
	held := budget / (900 << 10) // at most this many fit, each holding at least its 900 KB
	waitFor(t, 2*waitTimeout, "every partial message read or refused", func() bool {
		return written.Load() == n || f.closesTotal(t, "read_budget") >= float64(n-held)
	})
	if got := metric(t, f.srv.Registry(), "scc_frontend_read_held_bytes"); got > budget {
		t.Fatalf("%v bytes held in partial messages, budget %d", got, budget)
	}
	heap1 := heapAfterGC()
	t.Logf("heap %.1f MiB before, %.1f MiB with %d sockets holding partial messages (budget %d MiB)", mib(heap0), mib(heap1), n, budget>>20)
	// Unbounded, the 300 sockets would pin 270 MB. The budget bounds the
	// buffers held; on a loaded machine the heap may also hold as much
	// again of buffers dropped while the collections ran (a closed
	// socket's, a grown buffer's old copy), so the bound checked is twice
	// the budget plus the test's own 16 MiB.
	if heap1 > heap0+2*budget+16<<20 {
		t.Fatalf("heap grew by %.1f MiB, budget %d MiB (bound twice that plus 16 MiB)", mib(heap1-heap0), budget>>20)
	}
	waitFor(t, waitTimeout, "the sockets beyond the budget closed", func() bool {
		return f.closesTotal(t, "read_budget") >= float64(n-held)
	})
	h.progress()
	logP99(t, h, "300 sockets holding partial messages", base, mark)
	for _, c := range conns {
		c.nc.Close()
	}
	wg.Wait()
	waitFor(t, waitTimeout, "the budget given back", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_read_held_bytes") == 0
	})
	h.check()
}

// TestSubscriptionStorm: a thousand sockets subscribing a hundred
// channels each stay within the frontend's subscription bound, and the
// memory comes back once they leave.
func TestSubscriptionStorm(t *testing.T) {
	const maxSubs = 50000
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate = 0
		c.SocketChannelLimit = 1000
		c.MaxSubscriptions = maxSubs
		c.SubscribeRate = 0 // pacing is tested on its own (sources_test.go)
	})
	h := startHealthy(t, f.url, "healthy")
	base := baseline(h)
	heap0 := heapAfterGC()

	const sockets, perSocket = 1000, 100
	// One cleanup for all: a cleanup per connection would keep the
	// clients' memory reachable and count it as the frontend's below.
	conns := make([]*rawConn, sockets)
	open := make([]net.Conn, 0, sockets)
	t.Cleanup(func() {
		for _, nc := range open {
			nc.Close()
		}
	})
	for i := range conns {
		c, err := dialRawAndThen(f, nil, func(nc net.Conn) { open = append(open, nc) })
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	mark := h.mark()
	for i, c := range conns {
		var b strings.Builder
		b.WriteString("[")
		for j := range perSocket {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"storm-%d-%d"},"cid":%d}`, i, j, 10+j)
		}
		b.WriteString("]")
		c.write(wsframe.AppendClient(nil, 1, true, []byte(b.String())))
	}
	subs := func() float64 { return metric(t, f.srv.Registry(), "scc_frontend_subscriptions") }
	rejected := func() float64 {
		return metric(t, f.srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", "max_subscriptions")
	}
	waitFor(t, 6*waitTimeout, "every subscribe answered", func() bool {
		return subs()-1+rejected() == sockets*perSocket
	})
	if got := subs(); got > maxSubs {
		t.Fatalf("%v subscriptions, bound %d", got, maxSubs)
	}
	heapPeak := heapAfterGC()
	h.progress()
	logP99(t, h, "a storm of 1000 sockets x 100 channels", base, mark)

	for _, c := range conns {
		c.nc.Close()
	}
	conns, open = nil, nil // the clients' own memory is not the frontend's
	waitFor(t, 2*waitTimeout, "the storm's sockets gone", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_connections") == 2 && subs() == 1
	})
	heap1 := heapAfterGC()
	t.Logf("heap %.1f MiB before, %.1f MiB during, %.1f MiB after a storm of %d subscriptions (%v refused)",
		mib(heap0), mib(heapPeak), mib(heap1), sockets*perSocket, rejected())
	if heap1 > heap0 && heap1-heap0 > (heapPeak-heap0)/10 {
		t.Fatalf("%.1f MiB of the storm's %.1f MiB stayed after it left", mib(heap1-heap0), mib(heapPeak-heap0))
	}
	h.check()
}

// slowBroker answers subscribes after a delay, like a busy broker.
type slowBroker struct {
	*frontend.LocalBroker
	delay time.Duration
}

func (b slowBroker) Subscribe(ctx context.Context, ch string) error {
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSlowBrokerResubscribe: a client that resubscribes a thousand
// channels at once (a reconnect) while the broker answers slowly keeps
// answering pings and gets every ack: subscribing never blocks the
// socket's reader.
func TestSlowBrokerResubscribe(t *testing.T) {
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate = 0
		c.SocketChannelLimit = 1000
		c.PingInterval = 200 * time.Millisecond
		c.PingTimeout = 2 * time.Second
		c.Broker = slowBroker{LocalBroker: frontend.NewLocalBroker(), delay: 4 * time.Second}
	})
	c := dialSC(t, f.url)
	c.handshake("")
	var b strings.Builder
	b.WriteString("[")
	for j := range 1000 {
		if j > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"re-%d"},"cid":%d}`, j, 10+j)
	}
	b.WriteString("]")
	c.send(b.String())
	for j := range 1000 {
		if p := c.next(waitTimeout); !strings.HasPrefix(p, `{"rid":`) || strings.Contains(p, "error") {
			t.Fatalf("subscribe %d answered %s", j, p)
		}
	}
	if !c.open() {
		t.Fatalf("closed while subscribing: %v", c.readErr())
	}
	if n := f.closesTotal(t, "pong_timeout"); n != 0 {
		t.Fatalf("%v pong timeouts", n)
	}
}

// TestOneAddressFloods: one address opening hundreds of sockets and
// subscribing all it can is held to its per-address caps, while a client
// from another address (the healthy pair) is untouched.
func TestOneAddressFloods(t *testing.T) {
	const perIP, subsPerIP = 100, 2000
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate = 0
		c.SocketChannelLimit = 1000
		c.MaxConnectionsPerIP = perIP
		c.MaxSubscriptionsPerIP = subsPerIP
	})
	h := startHealthy(t, f.url, "healthy") // from 127.0.0.1
	base := baseline(h)
	attacker := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	mark := h.mark()
	var conns []*rawConn
	refused := 0
	for range 300 {
		c, err := tryDialRaw(t, f, attacker)
		if err != nil {
			refused++
			continue
		}
		conns = append(conns, c)
	}
	if len(conns) != perIP || refused != 300-perIP {
		t.Fatalf("%d sockets from one address accepted, %d refused; want %d accepted", len(conns), refused, perIP)
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "max_connections_per_ip"); n != float64(300-perIP) {
		t.Fatalf("%v refusals counted, want %d", n, 300-perIP)
	}
	for i, c := range conns {
		var b strings.Builder
		b.WriteString("[")
		for j := range 100 {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"ip-%d-%d"},"cid":%d}`, i, j, 10+j)
		}
		b.WriteString("]")
		c.write(wsframe.AppendClient(nil, 1, true, []byte(b.String())))
	}
	rejected := func() float64 {
		return metric(t, f.srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", "max_subscriptions_per_ip")
	}
	waitFor(t, 3*waitTimeout, "every subscribe answered", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_subscriptions")-1+rejected() == perIP*100
	})
	if got := metric(t, f.srv.Registry(), "scc_frontend_subscriptions") - 1; got != subsPerIP {
		t.Fatalf("%v subscriptions from one address, cap %d", got, subsPerIP)
	}
	h.progress()
	logP99(t, h, "one address opening 300 sockets and 10000 subscriptions", base, mark)
	// Another address still connects and subscribes.
	c := dialSC(t, f.url)
	c.handshake("")
	c.subscribe("healthy-2", 3)
	h.check()
}
