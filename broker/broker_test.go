package broker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

func TestSubAckOrderingAndInterest(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	pub := dialFE(t, b.addr(), "fe-pub")

	// Several changes in a row are answered in order, each once in force.
	id1 := a.syncChans("a")
	id2 := a.subscribe("b")
	a.send(protocol.MsgUnsubscribe, protocol.Unsubscribe{Channels: []string{"a"}})
	id3 := a.subscribe("c", "c")
	a.waitSubAck(id3)
	a.mu.Lock()
	acks := slices.Clone(a.subAcks)
	a.mu.Unlock()
	if !slices.Equal(acks, []uint64{id1, id2, id3}) {
		t.Fatalf("subacks %v, want %v", acks, []uint64{id1, id2, id3})
	}
	if n := b.metric("scc_broker_subscriptions"); n != 2 {
		t.Fatalf("subscriptions = %v, want 2 (b, c)", n)
	}

	// A SubAck means the subscription is in force: a publish made after it
	// by any other frontend arrives.
	for i, ch := range []string{"a", "b", "c", "d"} {
		pub.publish(ch, fmt.Sprint(i))
	}
	a.subscribeWait("end")
	pub.publish("end", "x")
	waitFor(t, "end marker", func() bool { return len(a.gotOn("end")) == 1 })
	if got := a.got(); !slices.Equal(got[:2], []delivery{{"b", "1"}, {"c", "2"}}) || len(got) != 3 {
		t.Fatalf("a got %v, want b, c and the end marker", got)
	}
}

func TestFanOutExactlyOnceIncludingOrigin(t *testing.T) {
	b := startBroker(t, nil)
	fes := []*fakeFE{dialFE(t, b.addr(), "fe-0"), dialFE(t, b.addr(), "fe-1"), dialFE(t, b.addr(), "fe-2")}
	other := dialFE(t, b.addr(), "fe-other")
	for _, f := range fes {
		f.subscribeWait("room")
	}
	other.subscribeWait("elsewhere")
	const n = 200
	var want []string
	for i := 1; i <= n; i++ {
		fes[0].publish("room", fmt.Sprintf(`{"n":%d}`, i))
		want = append(want, fmt.Sprintf(`{"n":%d}`, i))
	}
	for _, f := range fes {
		waitFor(t, f.id+" deliveries", func() bool { return len(f.gotOn("room")) >= n })
	}
	waitFor(t, "puback", func() bool { return fes[0].lastPubAck() == n })
	// Let any duplicate show up behind a marker published after.
	fes[1].publish("room", "marker")
	for _, f := range fes {
		waitFor(t, f.id+" marker", func() bool { return len(f.gotOn("room")) >= n+1 })
		got := f.gotOn("room")
		if !slices.Equal(got[:n], want) || len(got) != n+1 || got[n] != "marker" {
			t.Fatalf("%s got %d messages, want each of %d exactly once in order", f.id, len(got), n)
		}
	}
	if len(other.got()) != 0 {
		t.Fatalf("uninterested frontend got %v", other.got())
	}
	fes[0].mu.Lock()
	acks := slices.Clone(fes[0].pubAcks)
	fes[0].mu.Unlock()
	if !slices.IsSorted(acks) || acks[len(acks)-1] != n {
		t.Fatalf("pubacks %v not cumulative up to %d", acks, n)
	}
	if got := b.metric("scc_broker_publishes_in_total"); got != n+1 {
		t.Fatalf("publishes_in = %v", got)
	}
	if got := b.metric("scc_broker_deliveries_out_total"); got != 3*(n+1) {
		t.Fatalf("deliveries_out = %v", got)
	}
}

// Publishes read in one frame get one PubAck with the highest Seq, queued
// after the Delivers of the same frame.
func TestPubAckCoalescedPerFrame(t *testing.T) {
	b := startBroker(t, nil)
	sub := dialFE(t, b.addr(), "fe-sub")
	sub.subscribeWait("x")
	const n = 50
	pub := dialFEWith(t, b.addr(), "fe-pub", func(f *fakeFE) {
		f.nextSub++
		f.send(protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"x"}})
		for i := 0; i < n; i++ {
			f.publish("x", fmt.Sprint(i))
		}
	})
	waitFor(t, "puback", func() bool { return pub.lastPubAck() == n })
	pub.mu.Lock()
	acks, events := slices.Clone(pub.pubAcks), slices.Clone(pub.events)
	pub.mu.Unlock()
	if !slices.Equal(acks, []uint64{n}) {
		t.Fatalf("pubacks %v, want one PubAck{%d}", acks, n)
	}
	// SubAck, then the 50 Delivers to itself, then the PubAck.
	if len(events) != n+2 || events[0] != protocol.MsgSubAck || events[n+1] != protocol.MsgPubAck {
		t.Fatalf("events %v", events)
	}
	waitFor(t, "subscriber", func() bool { return len(sub.gotOn("x")) == n })
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	pub := dialFE(t, b.addr(), "fe-pub")
	a.subscribeWait("ch", "marker")
	pub.publish("ch", "1")
	waitFor(t, "first", func() bool { return len(a.gotOn("ch")) == 1 })
	a.send(protocol.MsgUnsubscribe, protocol.Unsubscribe{Channels: []string{"ch", "never-held"}})
	a.subscribeWait("barrier") // the unsubscribe is applied once this is acked
	pub.publish("ch", "2")
	pub.publish("marker", "m")
	waitFor(t, "marker", func() bool { return len(a.gotOn("marker")) == 1 })
	if got := a.gotOn("ch"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("after unsubscribe got %v", got)
	}
}

func TestSyncReplaces(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	pub := dialFE(t, b.addr(), "fe-pub")
	a.waitSubAck(a.syncChans("a", "b"))
	a.waitSubAck(a.syncChans("b", "c", "m"))
	if n := b.metric("scc_broker_channels"); n != 3 {
		t.Fatalf("channels = %v", n)
	}
	for _, ch := range []string{"a", "b", "c", "m"} {
		pub.publish(ch, ch)
	}
	waitFor(t, "marker", func() bool { return len(a.gotOn("m")) == 1 })
	if got := a.got(); !slices.Equal(got, []delivery{{"b", "b"}, {"c", "c"}, {"m", "m"}}) {
		t.Fatalf("got %v", got)
	}
}

func TestLinkCloseDropsInterest(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	pub := dialFE(t, b.addr(), "fe-pub")
	a.subscribeWait("ch", "ch2")
	waitFor(t, "links", func() bool { return b.metric("scc_broker_links") == 2 })
	if b.metric("scc_broker_subscriptions") != 2 {
		t.Fatal("interest not recorded")
	}
	a.l.Close("test")
	waitFor(t, "interest dropped", func() bool {
		return b.metric("scc_broker_subscriptions") == 0 && b.metric("scc_broker_channels") == 0 && b.metric("scc_broker_links") == 1
	})
	pub.publish("ch", "x")
	waitFor(t, "puback", func() bool { return pub.lastPubAck() == 1 })
	if n := b.metric("scc_broker_deliveries_out_total"); n != 0 {
		t.Fatalf("delivered %v to a closed link", n)
	}
}

func TestUnauthenticatedPeerRejected(t *testing.T) {
	b := startBroker(t, nil)
	cfg := feConfig("intruder")
	cfg.AuthKey = []byte("guess")
	if _, err := nodelink.Dial(context.Background(), b.addr(), cfg); err == nil {
		t.Fatal("dial with the wrong key succeeded")
	}
	cfg.AuthKey = nil
	if _, err := nodelink.Dial(context.Background(), b.addr(), cfg); err == nil {
		t.Fatal("dial without a key succeeded")
	}
	if n := b.metric("scc_broker_link_rejects_total", "reason", protocol.RejectAuth); n != 2 {
		t.Fatalf("auth rejects = %v", n)
	}
	// Only frontends (and brokers, which replicate) may link to a broker.
	cfg = feConfig("a-state-server")
	cfg.Role = protocol.RoleState
	if _, err := nodelink.Dial(context.Background(), b.addr(), cfg); err == nil {
		t.Fatal("a state server linked to a broker")
	}
	if n := b.metric("scc_broker_link_rejects_total", "reason", protocol.RejectRole); n != 1 {
		t.Fatalf("role rejects = %v", n)
	}
	if b.metric("scc_broker_links") != 0 || b.metric("scc_broker_subscriptions") != 0 {
		t.Fatal("a rejected peer got a link")
	}
}

func TestMalformedAndUnexpectedMessagesCounted(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	a.l.SendRaw([]byte{byte(protocol.MsgPublish), 0x90})        // empty array: not a Publish
	a.l.SendRaw([]byte{byte(protocol.MsgSubscribe), 0xa1, 'x'}) // a string: not a Subscribe
	a.send(protocol.MsgDeliver, protocol.Deliver{Channel: "x"}) // brokers send Deliver, never receive it
	a.send(protocol.MsgType(200), protocol.Ping{})              // unknown to this build
	a.subscribeWait("ok")
	if n := b.metric("scc_broker_drops_total", "reason", dropMalformed); n != 2 {
		t.Fatalf("malformed = %v", n)
	}
	if n := b.metric("scc_broker_drops_total", "reason", dropUnknown); n != 2 {
		t.Fatalf("unexpected = %v", n)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	b := startBroker(t, nil)
	<-b.Ready()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + b.addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d", code)
	}
	// Metrics are on the admin handler, not on the link port.
	if code, _ := get("/metrics"); code != http.StatusNotFound {
		t.Errorf("link port /metrics %d, want 404", code)
	}
	admin := httptest.NewServer(b.AdminHandler())
	defer admin.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := httpGet(t, admin.URL+path); code != 200 {
			t.Errorf("admin %s %d", path, code)
		}
	}
	code, body := httpGet(t, admin.URL+"/metrics")
	for _, name := range []string{"scc_broker_links", "scc_broker_channels", "scc_broker_subscriptions",
		"scc_broker_publishes_in_total", "scc_broker_deliveries_out_total", "scc_broker_drops_total",
		"scc_broker_link_frames_out_total", "scc_broker_link_rejects_total"} {
		if code != 200 || !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// ServeAdmin puts them back on the link port.
	old := startBroker(t, func(c *Config) { c.ServeAdmin = true })
	if code, _ := httpGet(t, "http://"+old.addr()+"/metrics"); code != 200 {
		t.Errorf("with ServeAdmin, link port /metrics %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"shards":           func(c *Config) { c.InterestShards = 0 },
		"state no gossip":  func(c *Config) { c.StateAddr, c.GossipPort = "127.0.0.1:7777", -1 },
		"gossip port":      func(c *Config) { c.GossipPort = 70000 },
		"link ping":        func(c *Config) { c.Link.PingTimeout = c.Link.PingInterval },
		"ready poll":       func(c *Config) { c.ReadyPoll = 0 },
		"link queue small": func(c *Config) { c.Link.QueueMaxBytes = 1 },
	} {
		c := DefaultConfig()
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestShutdownClosesLinks(t *testing.T) {
	b := startBroker(t, nil)
	a := dialFE(t, b.addr(), "fe-a")
	a.subscribeWait("x")
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "frontend link closed", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.closed })
	if _, err := nodelink.Dial(context.Background(), b.addr(), feConfig("late")); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

// TestIdempotencyKeyDedupe: a Publish whose (channel, key) pair was seen
// within the window is acknowledged but not forwarded, whichever frontend
// link it comes from; another channel or another key is a new publish;
// and with deduplication off every publish is forwarded.
func TestIdempotencyKeyDedupe(t *testing.T) {
	for _, keys := range []int{DefaultIdempotencyKeys, 0} {
		t.Run(fmt.Sprint("keys=", keys), func(t *testing.T) {
			b := startBroker(t, func(c *Config) { c.IdempotencyKeys = keys; c.WarmUp = 0 })
			sub := dialFE(t, b.addr(), "fe-sub")
			sub.subscribeWait("room", "other")
			p1 := dialFE(t, b.addr(), "fe-1")
			p2 := dialFE(t, b.addr(), "fe-2")
			send := func(f *fakeFE, ch, data, key string) uint64 {
				f.mu.Lock()
				f.seq++
				seq := f.seq
				f.mu.Unlock()
				f.l.SendRaw(protocol.AppendPublishKeyMsg(nil, seq, ch, []byte(data), key))
				return seq
			}
			send(p1, "room", "1", "k")
			send(p2, "room", "1", "k") // the retry, through another frontend
			send(p2, "other", "2", "k")
			s1 := send(p1, "room", "3", "k2")
			s2 := send(p2, "room", "end", "")
			// Acknowledged means written to the subscriber's link: a marker
			// sent after both acknowledgements arrives after all of them.
			waitFor(t, "acks", func() bool { return p1.lastPubAck() >= s1 && p2.lastPubAck() >= s2 })
			send(p1, "other", "zz", "")
			waitFor(t, "marker", func() bool { return slices.Contains(sub.gotOn("other"), "zz") })
			want := []string{"1", "3", "end"}
			dups := 1.0
			if keys == 0 {
				want = []string{"1", "1", "3", "end"}
				dups = 0
			}
			// Two publisher links: no order between them.
			got := sub.gotOn("room")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("room got %v, want %v in any order", got, want)
			}
			if got := sub.gotOn("other"); !slices.Equal(got, []string{"2", "zz"}) {
				t.Fatalf("other got %v", got)
			}
			if n := b.metric("scc_broker_drops_total", "reason", dropDuplicate); n != dups {
				t.Fatalf("duplicates = %v, want %v", n, dups)
			}
		})
	}
}
