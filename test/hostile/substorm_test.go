package hostile

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// recordingBroker is a broker that keeps, in the order it reads them,
// what a frontend's link asks of it: it holds the channels subscribed,
// delivers each publish back to the same link, and can withhold its
// subscribe acknowledgements (hold), as a broker does whose reader is
// busy with a subscription storm.
type recordingBroker struct {
	links chan *nodelink.Link
	cur   *nodelink.Link // the connection read last: acknowledgements go back on it

	mu      sync.Mutex
	hold    bool
	held    []uint64            // SubAcks withheld
	chans   map[string]struct{} // channels the frontend holds here
	control int                 // channels named by Subscribe and Unsubscribe so far
	ahead   map[string]int      // per published channel: control at its first publish
	named   map[string]int      // per channel: times named by Subscribe or Unsubscribe
	log     []string            // the control messages read, in order, as "sub(id) n first" or "unsub n first"
	// presence counts presence reports, and orphans those for a channel
	// the link did not hold yet (a real broker refuses them).
	presence, orphans int
}

func (*recordingBroker) Closed(*nodelink.Link, error) {}

func (rb *recordingBroker) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.cur = l
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgSubscribe:
			var s protocol.Subscribe
			if m.Decode(&s) != nil {
				continue
			}
			for _, ch := range s.Channels {
				rb.chans[ch] = struct{}{}
				rb.named[ch]++
			}
			rb.control += len(s.Channels)
			rb.logLocked(fmt.Sprintf("sub(%d)", s.ID), s.Channels, rb.hold)
			if rb.hold {
				rb.held = append(rb.held, s.ID)
				continue
			}
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		case protocol.MsgUnsubscribe:
			var u protocol.Unsubscribe
			if m.Decode(&u) != nil {
				continue
			}
			for _, ch := range u.Channels {
				delete(rb.chans, ch)
				rb.named[ch]++
			}
			rb.control += len(u.Channels)
			rb.logLocked("unsub", u.Channels, rb.hold)
		case protocol.MsgSync:
			var s protocol.Sync
			if m.Decode(&s) != nil {
				continue
			}
			clear(rb.chans)
			// A new connection (the link's liveness check closes a
			// link that a stalled machine left silent): what the last
			// one carried is not ahead of anything on this one, and
			// this Sync's acknowledgement covers the acknowledgements
			// withheld there.
			rb.control = 0
			rb.held = nil
			for _, ch := range s.Channels {
				rb.chans[ch] = struct{}{}
			}
			rb.logLocked(fmt.Sprintf("sync(%d)", s.ID), s.Channels, rb.hold)
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		case protocol.MsgPresenceJoin:
			var j protocol.PresenceJoin
			if m.Decode(&j) != nil {
				continue
			}
			rb.presence++
			if _, ok := rb.chans[j.Channel]; !ok {
				rb.orphans++
			}
		case protocol.MsgPublish:
			seq, ch, data, _, err := protocol.ParsePublishKey(m.Body)
			if err != nil {
				continue
			}
			if _, ok := rb.ahead[ch]; !ok {
				rb.ahead[ch] = rb.control
				rb.logLocked("publish", []string{ch}, rb.hold)
			}
			msg := protocol.AppendDeliverMsg(nil, ch, data)
			if _, ok := rb.chans[ch]; ok {
				l.SendRaw(msg)
			}
			l.SendRaw(protocol.AppendPubAckMsg(nil, seq))
		}
	}
}

// logLocked records a control message for a failure's report (the first
// 64 only: enough to show what went ahead of a publish).
func (rb *recordingBroker) logLocked(what string, chans []string, held bool) {
	if len(rb.log) >= 64 {
		return
	}
	first := ""
	if len(chans) > 0 {
		first = chans[0]
	}
	rb.log = append(rb.log, fmt.Sprintf("%s n=%d first=%s held=%v", what, len(chans), first, held))
}

// release sends the withheld acknowledgements and stops withholding.
func (rb *recordingBroker) release() {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.hold = false
	for _, id := range rb.held {
		_ = rb.cur.Send(protocol.MsgSubAck, &protocol.SubAck{ID: id})
	}
	rb.held = nil
}

func (rb *recordingBroker) with(fn func()) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	fn()
}

func startRecordingBroker(t *testing.T) (string, *recordingBroker) {
	t.Helper()
	rb := &recordingBroker{
		links: make(chan *nodelink.Link, 4),
		chans: map[string]struct{}{},
		ahead: map[string]int{},
		named: map[string]int{},
	}
	cfg := peerLinkConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = "recording-broker", protocol.RoleBroker, clusterKey
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, func(w http.ResponseWriter, r *http.Request) {
		l, err := nodelink.Accept(w, r, cfg, nil, nil)
		if err != nil {
			return
		}
		rb.links <- l
		_ = l.Run(rb)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		_ = hs.Close()
		<-done
	})
	return ln.Addr().String(), rb
}

// TestSubscriptionStormLink: hundreds of sockets subscribe to thousands
// of new channels while the broker is slow to acknowledge (its reader is
// busy). A legitimate client's publish, made meanwhile, must not queue
// behind the storm's subscription traffic on the frontend's broker link:
// at most a window of batches of subscription changes is ahead of it. Once the
// broker catches up, every storm socket is answered, the broker holds
// exactly what the frontend's clients hold, and the legitimate
// subscriber received the publish.
//
// Then a reconnect storm: every client of a set of channels leaves and
// comes back while the window of batches in flight is full. The unsubscribes and the
// subscribes that follow them cancel out and the broker is never asked
// to drop or add those channels.
func TestSubscriptionStormLink(t *testing.T) {
	const batch, window = 128, 2
	addr, rb := startRecordingBroker(t)
	reg := prometheus.NewRegistry()
	ccfg := cluster.DefaultConfig()
	ccfg.Link = peerLinkConfig()
	ccfg.Link.NodeID, ccfg.Link.Role, ccfg.Link.AuthKey = "frontend-under-storm", protocol.RoleFrontend, clusterKey
	ccfg.Registry = reg
	ccfg.SubscribeBatch, ccfg.SubscribeWindow = batch, window
	b := cluster.New(ccfg)
	set, err := rules.Parse([]byte(`
default: {subscribe: anyone, publish: anyone}
rules:
  - {match: "pres-*", subscribe: anyone, publish: anyone, presence: true}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	f := startFrontend(t, func(c *frontend.Config) {
		c.Broker = b
		c.Rules = set
		c.InboundRate = 0
		c.SocketChannelLimit = 100
		c.SubscribeRate = 0 // the link's pacing is under test, not the sockets'
		c.MaxPendingSubscribes = 20000
	})
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "recording-broker", Addr: addr}}})
	select {
	case <-rb.links:
	case <-time.After(waitTimeout):
		t.Fatal("the frontend did not link to the broker")
	}
	clusterChannels := func() float64 { return metric(t, reg, "scc_frontend_cluster_channels") }

	legit := dialSC(t, f.url)
	legit.handshake("")
	legit.subscribe("legit", 2)

	rb.with(func() { rb.hold = true })
	const sockets, perSocket = 200, 40
	conns := make([]*rawConn, sockets)
	for i := range conns {
		conns[i] = dialRawClient(t, f)
	}
	for i, c := range conns {
		var sb strings.Builder
		sb.WriteString("[")
		for j := range perSocket {
			if j > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, `{"event":"#subscribe","data":{"channel":"storm-%d-%d"},"cid":%d}`, i, j, 10+j)
		}
		sb.WriteString("]")
		c.write(wsframe.AppendClient(nil, 1, true, []byte(sb.String())))
	}
	// Every storm subscribe has reached the cluster layer.
	waitFor(t, 6*waitTimeout, "the storm's subscribes handed to the broker links", func() bool {
		return clusterChannels() == 1+sockets*perSocket
	})

	legit.sendf(`{"event":"#publish","data":{"channel":"legit","data":"during the storm"},"cid":3}`)
	// The delivery of the publish may come before its reply.
	delivery := legit.replyAndPacket(3, "during the storm")
	var ahead int
	waitFor(t, waitTimeout, "the legitimate publish at the broker", func() bool {
		ok := false
		rb.with(func() { ahead, ok = rb.ahead["legit"] })
		return ok
	})
	t.Logf("channels of subscription traffic read by the broker before the legitimate publish: %d (storm %d, batch %d, window %d)",
		ahead, sockets*perSocket, batch, window)
	// One for the legitimate subscribe itself, then at most a window of
	// batches.
	if ahead > 1+batch*window {
		var log []string
		rb.with(func() { log = append(log, rb.log...) })
		t.Fatalf("%d channels of subscription traffic went ahead of a publish on the link, bound %d; what the broker read:\n%s",
			ahead, 1+batch*window, strings.Join(log, "\n"))
	}
	if !strings.HasPrefix(delivery, `{"event":"#publish","data":{"channel":"legit"`) {
		t.Fatalf("the legitimate subscriber got %q", delivery)
	}

	rb.release()
	for _, c := range conns {
		c.nc.Close()
	}
	subs := func() float64 { return metric(t, f.srv.Registry(), "scc_frontend_subscriptions") }
	waitFor(t, 6*waitTimeout, "the storm gone at the frontend and the broker", func() bool {
		n := 0
		rb.with(func() { n = len(rb.chans) })
		return subs() == 1 && clusterChannels() == 1 && n == 1 &&
			metric(t, reg, "scc_frontend_broker_subscription_pending") == 0
	})

	// The reconnect storm: 100 channels held by 100 sockets, which all
	// leave and come back while a batch is in flight.
	const reconnecting = 100
	subscribeAll := func() []*scClient {
		cs := make([]*scClient, reconnecting)
		for i := range cs {
			cs[i] = dialSC(t, f.url)
			cs[i].handshake("")
			cs[i].sendf(`{"event":"#subscribe","data":{"channel":"room-%d"},"cid":2}`, i)
		}
		return cs
	}
	cs := subscribeAll()
	for _, c := range cs {
		c.expectOK(2)
	}
	named := map[string]int{}
	rb.with(func() {
		rb.hold = true
		for i := range reconnecting {
			named[fmt.Sprint("room-", i)] = rb.named[fmt.Sprint("room-", i)]
		}
	})
	// Fill the window of batches in flight.
	blockers := make([]*scClient, window)
	for i := range blockers {
		blockers[i] = dialSC(t, f.url)
		blockers[i].handshake("")
		blockers[i].sendf(`{"event":"#subscribe","data":{"channel":"blocker-%d"},"cid":2}`, i)
		waitFor(t, waitTimeout, "a batch in flight", func() bool {
			n := 0
			rb.with(func() { n = len(rb.held) })
			return n == i+1
		})
	}
	// A presence channel subscribed meanwhile: its subscribe waits for
	// the window, and its members must not reach the broker before it.
	pres := dialSC(t, f.url)
	pres.handshake("")
	pres.sendf(`{"event":"#subscribe","data":{"channel":"pres-1"},"cid":2}`)
	waitFor(t, waitTimeout, "the presence report at the broker", func() bool {
		n := 0
		rb.with(func() { n = rb.presence })
		return n > 0
	})
	for _, c := range cs {
		c.ws.CloseNow()
	}
	waitFor(t, waitTimeout, "the reconnecting sockets gone", func() bool {
		return subs() == 2+window // legit, blockers and pres
	})
	cs = subscribeAll()
	waitFor(t, waitTimeout, "the reconnecting sockets back", func() bool {
		return subs() == 2+window+reconnecting && clusterChannels() == 2+window+reconnecting
	})
	rb.release()
	for _, b := range blockers {
		b.expectOK(2)
	}
	pres.expectOK(2)
	rb.with(func() {
		if rb.orphans > 0 {
			t.Errorf("%d of %d presence reports reached the broker before their channel's subscribe", rb.orphans, rb.presence)
		}
	})
	for _, c := range cs {
		c.expectOK(2)
	}
	waitFor(t, waitTimeout, "the frontend settled", func() bool {
		return metric(t, reg, "scc_frontend_broker_subscription_pending") == 0 && clusterChannels() == 2+window+reconnecting
	})
	rb.with(func() {
		for ch, n := range named {
			if rb.named[ch] != n {
				t.Errorf("%s named %d more times at the broker by a reconnect storm", ch, rb.named[ch]-n)
			}
			if _, ok := rb.chans[ch]; !ok {
				t.Errorf("%s not held at the broker", ch)
			}
		}
	})
	if n := metric(t, reg, "scc_frontend_broker_subscription_changes_total", "result", "coalesced"); n < 2*reconnecting {
		t.Fatalf("%v changes coalesced, want at least %d", n, 2*reconnecting)
	}
}

// TestUnsubscribeStormIsPaced: hundreds of sockets that subscribe and
// unsubscribe in a loop are slowed to the frontend's subscribe rate,
// which their unsubscribes take from as well, by waiting: every request
// is answered, none refused and no socket closed.
func TestUnsubscribeStormIsPaced(t *testing.T) {
	const (
		socks, each = 200, 4
		rate, burst = 200, 50
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate = 0
		c.SubscribeRate, c.SubscribeBurst = rate, burst
	})
	conns := make([]*rawConn, socks)
	for i := range conns {
		conns[i] = dialRawClient(t, f)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		var b strings.Builder
		b.WriteString("[")
		for j := range each {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"churn-%d"},"cid":%d},`, i, 10+2*j)
			fmt.Fprintf(&b, `{"event":"#unsubscribe","data":"churn-%d","cid":%d}`, i, 11+2*j)
		}
		b.WriteString("]")
		frame := wsframe.AppendClient(nil, 1, true, []byte(b.String()))
		wg.Go(func() {
			_ = c.write(frame)
			c.acks(t, 2*each)
		})
	}
	wg.Wait()
	if n := metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "unsubscribe_rate"); n < (socks*each-burst)/3 {
		// The bucket holds burst and refills at rate, far below what
		// the sockets ask: most unsubscribes waited.
		t.Fatalf("%v unsubscribes paced, want most of %d", n, socks*each)
	}
	for _, c := range conns {
		c.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if op, _ := c.frame(); op == 8 || op == -1 {
			t.Fatal("a churning socket was closed")
		}
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_subscriptions"); n != 0 {
		t.Fatalf("%v subscriptions left", n)
	}
}

// TestClosingSocketChargesSubscribeRate: the subscriptions a closing
// socket releases are charged to the subscribe rate, so a storm of
// sockets that subscribe and leave pays for its unsubscribes too: the
// next subscribe waits for them.
func TestClosingSocketChargesSubscribeRate(t *testing.T) {
	const (
		channels    = 150
		rate, burst = 20, 200
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate = 0
		c.SocketChannelLimit = channels
		c.SubscribeRate, c.SubscribeBurst = rate, burst
	})
	paced := func() float64 {
		return metric(t, f.srv.Registry(), "scc_frontend_subscribes_paced_total", "reason", "subscribe_rate")
	}
	a := dialRawClient(t, f)
	subscribeStorm(t, []*rawConn{a}, "leaving", channels) // within the burst
	if n := paced(); n != 0 {
		t.Fatalf("%v subscribes paced within the burst", n)
	}
	a.nc.Close()
	waitFor(t, waitTimeout, "the socket's subscriptions released", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_subscriptions") == 0
	})
	// The bucket had burst-channels (+ refill) left; the release took
	// channels more, so it is in debt until (2×channels-burst)/rate
	// seconds after the subscribes.
	b := dialRawClient(t, f)
	subscribeStorm(t, []*rawConn{b}, "next", 1)
	if n := paced(); n != 1 {
		t.Fatalf("%v subscribes paced after a socket released %d subscriptions, want 1", n, channels)
	}
}
