package hostile

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/wsframe"
)

// from returns a local TCP address on ip, for a client that must come
// from a given address (127.0.0.0/8 is all loopback on Linux).
func from(ip string) net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(ip)}
}

// TestLimitBreakersAreRefusedAtAccept is the churn of the packet-flood
// and partial-message attacks: hundreds of sockets from one address are
// closed for breaking a limit, and would dial again at once. Their
// address is then refused right after the TCP accept, before any
// handshake work, and counted; another address, and hundreds of clients
// of a third that connect and leave cleanly at once, are not.
func TestLimitBreakersAreRefusedAtAccept(t *testing.T) {
	const attackers = 200
	f := startFrontend(t, func(c *frontend.Config) {
		c.MaxBatchPackets = 10
		c.LimitClosesPerIP, c.LimitCloseBurstPerIP = 1, 10
		c.RefusalHold = 0 // answered at once; holding is TestRefusalsAreHeld's
	})
	conns := make([]*rawConn, attackers)
	for i := range conns {
		c, err := tryDialRaw(t, f, from("127.0.0.2"))
		if err != nil {
			t.Fatalf("attacker %d: %v (no limit was broken yet)", i, err)
		}
		conns[i] = c
	}
	batch := wsframe.AppendClient(nil, 1, true, []byte("["+strings.TrimSuffix(strings.Repeat("{},", 11), ",")+"]"))
	var wg sync.WaitGroup
	codes := make([]int, attackers)
	for i, c := range conns {
		wg.Go(func() {
			_ = c.write(batch)
			codes[i] = c.closeCode()
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != 1009 {
			t.Fatalf("attacker %d closed with %d, want 1009", i, code)
		}
	}
	waitFor(t, waitTimeout, "the attackers' closes", func() bool {
		return f.closesTotal(t, "batch_too_large") == attackers
	})

	// The charge follows the close count; poll for the refusal.
	var err error
	waitFor(t, waitTimeout, "a refusal of the attackers' address", func() bool {
		var c *rawConn
		c, err = tryDialRaw(t, f, from("127.0.0.2"))
		if c != nil {
			c.nc.Close()
		}
		return err != nil
	})
	if !strings.Contains(err.Error(), "503") {
		t.Fatalf("redial from the attackers' address: %v, want HTTP 503", err)
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "limit_closes_per_ip"); n < 1 {
		t.Fatalf("limit_closes_per_ip refusals counted %v", n)
	}
	if _, err := tryDialRaw(t, f, from("127.0.0.3")); err != nil {
		t.Fatalf("another address refused: %v", err)
	}
	// A clean reconnect storm from one address: all of it at once, twice.
	for round := range 2 {
		storm := make([]*rawConn, attackers)
		for i := range storm {
			c, err := tryDialRaw(t, f, from("127.0.0.4"))
			if err != nil {
				t.Fatalf("round %d: clean client %d refused: %v", round, i, err)
			}
			storm[i] = c
		}
		for _, c := range storm {
			_ = c.write(wsframe.AppendClient(nil, 8, true, []byte{0x03, 0xe8}))
			c.nc.Close()
		}
	}
}

// TestChurnIsRefusedAtAccept is attack 8's churn: hundreds of sockets
// from a few addresses connect, subscribe and leave again within a
// second, over and over, and each costs the frontend an accept, an
// upgrade, a handshake, its subscribes and a teardown. Once an address's
// short connections are over its rate, it is refused right after the TCP
// accept and counted. Hundreds of clients of another address that
// connect at once and stay (a reconnect storm) are never refused, a
// client that reconnects a few times in a row waits its turn and is let
// in, and another address is untouched.
func TestChurnIsRefusedAtAccept(t *testing.T) {
	const churners, storm = 300, 300
	f := startFrontend(t, func(c *frontend.Config) {
		c.ShortConnectionsPerIP, c.ShortConnectionBurstPerIP = 2, 8
		c.ShortConnectionTime = time.Minute // every churner is short, however slow the run
		c.RefusalHold = 0                   // answered at once; holding is TestRefusalsAreHeld's
	})
	addrs := []string{"127.0.0.2", "127.0.0.3", "127.0.0.5"}
	// Round one: every churner connects (nothing is charged before the
	// first one leaves), then all subscribe and leave.
	conns := make([]*rawConn, churners)
	var wg sync.WaitGroup
	errs := make(chan error, churners)
	for i := range churners {
		wg.Go(func() {
			c, err := tryDialRaw(t, f, from(addrs[i%len(addrs)]))
			if err != nil {
				errs <- fmt.Errorf("churner %d: %v (nothing was charged yet)", i, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, c := range conns {
		wg.Go(func() {
			subscribeStorm(t, []*rawConn{c}, fmt.Sprintf("churn-%d", i), 10)
			c.nc.Close()
		})
	}
	wg.Wait()
	waitFor(t, waitTimeout, "the churners' sockets to end", func() bool {
		return f.closesTotal(t, "read_error")+f.closesTotal(t, "write_error")+f.closesTotal(t, "client_close") >= churners
	})
	// Round two: every churner address is refused at accept (the charge
	// follows the close count; poll for it).
	for _, a := range addrs {
		var err error
		waitFor(t, waitTimeout, "a refusal of "+a, func() bool {
			var c *rawConn
			if c, err = tryDialRaw(t, f, from(a)); c != nil {
				c.nc.Close()
			}
			return err != nil
		})
		if !strings.Contains(err.Error(), "503") {
			t.Fatalf("redial from churning address %s: %v, want HTTP 503", a, err)
		}
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_rejected_connections_total", "reason", "short_connections_per_ip"); n < float64(len(addrs)) {
		t.Fatalf("short_connections_per_ip refusals counted %v, want at least %d", n, len(addrs))
	}
	// A reconnect storm from one address: all at once, and they stay.
	stayed := make([]*rawConn, storm)
	for i := range stayed {
		c, err := tryDialRaw(t, f, from("127.0.0.4"))
		if err != nil {
			t.Fatalf("reconnecting client %d refused: %v", i, err)
		}
		stayed[i] = c
	}
	subscribeStorm(t, stayed[:50], "stay", 10)
	if _, err := tryDialRaw(t, f, from("127.0.0.6")); err != nil {
		t.Fatalf("another address refused: %v", err)
	}
	// A client that keeps reconnecting: from half its burst on, each
	// upgrade waits its turn (2/s), and none is refused.
	ended := func() float64 {
		return f.closesTotal(t, "read_error") + f.closesTotal(t, "write_error") + f.closesTotal(t, "client_close")
	}
	base := ended()
	for i := range 8 {
		c, err := tryDialRaw(t, f, from("127.0.0.7"))
		if err != nil {
			t.Fatalf("reconnect %d refused: %v", i, err)
		}
		c.nc.Close()
		waitFor(t, waitTimeout, "the reconnecting client's socket to end", func() bool {
			return ended() >= base+float64(i)+1
		})
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_short_connection_waits_total"); n < 2 {
		t.Fatalf("short_connection_waits_total %v after 8 short connections in a row, want at least 2", n)
	}
	for _, c := range stayed {
		c.nc.Close()
	}
}

// acks reads c's frames until n subscribe replies arrived, and fails on
// an error reply or a closed connection.
func (c *rawConn) acks(t *testing.T, n int) {
	c.nc.SetReadDeadline(time.Now().Add(3 * waitTimeout))
	got := 0
	for got < n {
		op, p := c.frame()
		if op < 0 || op == 8 {
			t.Errorf("connection ended after %d of %d subscribe replies (op %d)", got, n, op)
			return
		}
		if strings.Contains(string(p), `"error"`) {
			t.Errorf("subscribe refused: %s", p)
			return
		}
		got += strings.Count(string(p), `"rid":`)
	}
}

// subscribeStorm has each of socks subscribe n new channels in one batch
// and waits for every reply.
func subscribeStorm(t *testing.T, socks []*rawConn, prefix string, n int) {
	var wg sync.WaitGroup
	for i, c := range socks {
		var b strings.Builder
		b.WriteString("[")
		for j := range n {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"%s-%d-%d"},"cid":%d}`, prefix, i, j, 10+j)
		}
		b.WriteString("]")
		frame := wsframe.AppendClient(nil, 1, true, []byte(b.String()))
		wg.Go(func() {
			_ = c.write(frame)
			c.acks(t, n)
		})
	}
	wg.Wait()
}

// TestSubscribeStormIsPaced: hundreds of sockets subscribing many
// channels at once are slowed to the frontend's subscribe rate, and to
// one address's, by waiting; none of their subscribes is refused and none
// of them is closed, as a client resubscribing on reconnect must not be.
func TestSubscribeStormIsPaced(t *testing.T) {
	const (
		socks, each = 250, 8
		rate, burst = 500, 100
	)
	t.Run("frontend", func(t *testing.T) {
		f := startFrontend(t, func(c *frontend.Config) {
			c.SubscribeRate, c.SubscribeBurst = rate, burst
		})
		conns := make([]*rawConn, socks)
		for i := range conns {
			conns[i] = dialRawClient(t, f)
		}
		start := time.Now()
		subscribeStorm(t, conns, "storm", each)
		el := time.Since(start)
		// A lower bound only: the token bucket cannot let them through
		// faster, and a loaded machine only makes it slower.
		if least := time.Duration(float64(socks*each-burst) / rate * float64(time.Second)); el < least*9/10 {
			t.Fatalf("%d subscribes took %v; at %d/s burst %d they take at least %v", socks*each, el, rate, burst, least)
		}
		if n := metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "subscribe_rate"); n == 0 {
			t.Fatal("no subscribe was paced")
		}
		for _, r := range []string{"socket_limit", "max_subscriptions", "max_pending", "broker"} {
			if n := metric(t, f.srv.Registry(), "scc_frontend_subscribe_errors_total", "reason", r); n != 0 {
				t.Fatalf("%v subscribes refused (%s)", n, r)
			}
		}
	})
	t.Run("address", func(t *testing.T) {
		f := startFrontend(t, func(c *frontend.Config) {
			c.SubscribeRate = 0
			c.SubscribeRatePerIP, c.SubscribeBurstPerIP = rate, burst
		})
		conns := make([]*rawConn, socks)
		for i := range conns {
			c, err := tryDialRaw(t, f, from("127.0.0.5"))
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		start := time.Now()
		subscribeStorm(t, conns, "storm", each)
		el := time.Since(start)
		if least := time.Duration(float64(socks*each-burst) / rate * float64(time.Second)); el < least*9/10 {
			t.Fatalf("%d subscribes from one address took %v; at %d/s burst %d they take at least %v", socks*each, el, rate, burst, least)
		}
		if n := metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "subscribe_rate_per_ip"); n == 0 {
			t.Fatal("no subscribe was paced")
		}
		// Another address has its own budget.
		other, err := tryDialRaw(t, f, from("127.0.0.6"))
		if err != nil {
			t.Fatal(err)
		}
		paced := metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "subscribe_rate_per_ip")
		subscribeStorm(t, []*rawConn{other}, "other", each)
		if n := metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "subscribe_rate_per_ip"); n != paced {
			t.Fatalf("another address's subscribes were paced (%v more)", n-paced)
		}
	})
}

// TestChannelDeliveryBudget is the fan-out amplification attack: one
// publisher floods a channel that hundreds of sockets read, with small
// and then large messages, and no publish rate per channel. The
// channel's delivery budget, which charges each publish per subscriber
// and per KiB, bounds what the channel costs; the excess is refused with
// an error and counted, and a channel with one reader is untouched.
func TestChannelDeliveryBudget(t *testing.T) {
	const (
		subscribers = 200
		rate, burst = 4000, 8000
		flood       = 400
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate, c.InboundBurst = 0, 0
		c.ChannelPublishRate = 0
		c.ChannelDeliveryRate, c.ChannelDeliveryBurst = rate, burst
	})
	subs := make([]*rawConn, subscribers)
	for i := range subs {
		subs[i] = dialRawClient(t, f)
		subs[i].write(wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#subscribe","data":{"channel":"hot"},"cid":2}`)))
		subs[i].acks(t, 1)
		subs[i].nc.SetReadDeadline(time.Time{})
	}
	var wg sync.WaitGroup
	for _, c := range subs {
		wg.Go(func() {
			for {
				if op, _ := c.frame(); op < 0 || op == 8 {
					return
				}
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range subs {
			c.nc.Close()
		}
		wg.Wait()
	})
	pub := dialSC(t, f.url)
	pub.handshake("")
	quiet := dialSC(t, f.url)
	quiet.handshake("")
	quiet.subscribe("quiet", 2)

	big := strings.Repeat("x", 8<<10)
	start := time.Now()
	for i := range flood {
		data := fmt.Sprint(i)
		if i >= flood/2 {
			data = big
		}
		pub.sendf(`{"event":"#publish","data":{"channel":"hot","data":%q},"cid":%d}`, data, 10+i)
		if i%50 == 0 {
			quiet.sendf(`{"event":"#publish","data":{"channel":"quiet","data":%d},"cid":%d}`, i, 10+i)
		}
	}
	cost := 0
	refused := 0
	for i := range flood {
		r := pub.reply(10 + i)
		e, no := r["error"].(map[string]any)
		switch {
		case !no && i < flood/2:
			cost += subscribers
		case !no:
			cost += subscribers * (1 + len(big)/1024)
		case e["name"] != "ResourceLimitError":
			t.Fatalf("publish %d: %v", i, e)
		default:
			refused++
		}
	}
	for i := 0; i < flood; i += 50 {
		quiet.expectOK(10 + i)
	}
	el := time.Since(start)
	if limit := burst + int(rate*el.Seconds()) + subscribers*(1+len(big)/1024); cost > limit {
		t.Fatalf("publishes accepted cost %d deliveries in %v at %d/s burst %d", cost, el, rate, burst)
	}
	if refused == 0 {
		t.Fatal("no publish refused")
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_deliveries"); int(n) != refused {
		t.Fatalf("channel_deliveries refusals counted %v, want %d", n, refused)
	}
}
