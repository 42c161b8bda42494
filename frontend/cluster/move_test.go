package cluster

import (
	"context"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// silentBroker reads publishes and never acknowledges them; it
// acknowledges subscription changes.
type silentBroker struct {
	mu   sync.Mutex
	pubs []string
}

func (r *silentBroker) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgPublish:
			if _, _, data, _, err := protocol.ParsePublishKey(m.Body); err == nil {
				r.mu.Lock()
				r.pubs = append(r.pubs, string(data))
				r.mu.Unlock()
			}
		default:
			ackSubscription(l, m)
		}
	}
}

func (*silentBroker) Closed(*nodelink.Link, error) {}

func (r *silentBroker) read() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pubs)
}

// moveTestBroker starts a frontend's broker client linking to fake
// brokers; before, when set, runs before Start.
func moveTestBroker(t *testing.T, resend bool, fence time.Duration, before func(*Broker)) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Link = nodelink.DefaultConfig()
	cfg.Link.NodeID, cfg.Link.Role, cfg.Link.AuthKey = "frontend-1", protocol.RoleFrontend, testLinkKey
	cfg.Registry = prometheus.NewRegistry()
	if fence > 0 {
		cfg.FenceTimeout = fence
	}
	if resend {
		cfg.Resend = func(string) bool { return true }
	}
	b := New(cfg)
	if before != nil {
		before(b)
	}
	if err := b.Start(context.Background(), &recordSink{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func (b *Broker) linkUp(id string) bool {
	b.mu.Lock()
	l := b.links[id]
	b.mu.Unlock()
	return l != nil && l.isUp()
}

// TestFenceWaitsForAMovedBroker: a publish routed by the old ring to a
// broker that moved is sent on the link to its new address; when the next
// ring also gives its channel to another broker, the commit's fence waits
// for the moved broker to acknowledge it before publishes go to the new
// owner, as for a broker that did not move.
func TestFenceWaitsForAMovedBroker(t *testing.T) {
	x := &silentBroker{}
	addrX, _ := fakeBrokerNamed(t, "x", x)
	addrY, _ := fakeBrokerNamed(t, "y", &silentBroker{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	b := moveTestBroker(t, false, time.Second, nil)

	// x moves to addrX, and y joins and takes channel c from x.
	v2 := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: addrX}, {ID: "y", Addr: addrY}}}
	r2 := ring.FromProtocol(v2)
	c := ""
	for i := 0; c == ""; i++ {
		if ch := "ch-" + strconv.Itoa(i); r2.OwnerID(ch) == "y" {
			c = ch
		}
	}
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: gone}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Prepare(ctx, v2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link to x's new address", func() bool { return b.linkUp("x") })
	if err := b.Publish(ctx, c, []byte(`"a"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "x to read the publish", func() bool { return x.read() == 1 })
	b.Commit(v2)
	// x never acknowledges: the fence waits it out (FenceTimeout).
	if got := counterValue(t, b.m.reshards, "fence_timeout"); got != 1 {
		t.Fatalf("fence timeouts %v, want 1: the commit did not wait for x's acknowledgement", got)
	}
}

// TestMovedBrokerKeepsOrder: publishes in flight on the old connection
// when the broker moves are re-sent at the new address ahead of every
// publish routed to the old link later, even while a publisher keeps
// publishing through the move.
func TestMovedBrokerKeepsOrder(t *testing.T) {
	old := &silentBroker{}
	addrA, _ := fakeBrokerNamed(t, "x", old)
	rec := &floorRecorder{log: map[*nodelink.Link][]string{}}
	addrB, linksB := fakeBrokerNamed(t, "x", rec)
	b := moveTestBroker(t, true, 0, nil)
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: addrA}}})
	waitFor(t, "the link to x", func() bool { return b.linkUp("x") })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for ; n < 200000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := b.Publish(ctx, "room", []byte(strconv.Itoa(n))); err != nil {
				t.Errorf("publish %d: %v", n, err)
				return
			}
			runtime.Gosched()
		}
	}()
	waitFor(t, "publishes in flight at the old address", func() bool { return old.read() >= 100 })
	if err := b.Prepare(ctx, protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: addrB}}}); err != nil {
		t.Fatal(err)
	}
	var l *nodelink.Link
	select {
	case l = <-linksB:
	case <-time.After(10 * time.Second):
		t.Fatal("no link to x's new address")
	}
	waitFor(t, "publishes at the new address", func() bool { return len(rec.seen(l)) >= 100 })
	close(stop)
	n := <-done
	// Nothing was acknowledged at the old address, so every publish is
	// read at the new one, in order.
	want := []string{"floor 1"}
	for i := range n {
		want = append(want, "publish "+strconv.Itoa(i))
	}
	var got []string
	waitFor(t, "every publish at the new address", func() bool {
		got = rec.seen(l)
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("the new address read %q at %d, want %q (%d publishes)", got[i], i, want[i], n)
			}
		}
		t.Fatalf("the new address read %d messages, want %d", len(got), len(want))
	}
}

// lockingSource is a presence source whose report, once armed, waits
// until the broker's lock is taken by someone else (or done is set) and
// then sends a presence join, which needs that lock: as a local join
// racing a link's report does.
type lockingSource struct {
	b       *Broker
	armed   atomic.Bool
	done    atomic.Bool
	entered chan struct{}
	once    sync.Once
}

func (s *lockingSource) ReportPresence(ch string, report func([]protocol.PresenceMember)) {
	if !s.armed.Load() {
		return
	}
	s.once.Do(func() { close(s.entered) })
	for !s.done.Load() {
		if !s.b.mu.TryLock() {
			break
		}
		s.b.mu.Unlock()
		runtime.Gosched()
	}
	s.b.PresenceJoin(ch, protocol.PresenceMember{Client: "c1"})
}

// TestMovedBrokerWhileItsLinkReports: a broker moves while its link's
// new connection is reporting presence, and the report waits for the
// broker's lock (a local join). Retiring the old link used to wait,
// under that lock, for the connection to end: a deadlock.
func TestMovedBrokerWhileItsLinkReports(t *testing.T) {
	addrA, linksA := fakeBrokerNamed(t, "x", &floorRecorder{log: map[*nodelink.Link][]string{}})
	addrB, _ := fakeBrokerNamed(t, "x", &floorRecorder{log: map[*nodelink.Link][]string{}})
	var src *lockingSource
	b := moveTestBroker(t, false, 0, func(b *Broker) {
		src = &lockingSource{b: b, entered: make(chan struct{})}
		b.SetPresenceSource(src)
	})
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: addrA}}})
	var l1 *nodelink.Link
	select {
	case l1 = <-linksA:
	case <-time.After(10 * time.Second):
		t.Fatal("no link to x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	// The next connection's report waits for the lock.
	src.armed.Store(true)
	l1.Close("test")
	select {
	case <-src.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the link's next connection did not report presence")
	}
	prepared := make(chan error, 1)
	go func() {
		prepared <- b.Prepare(ctx, protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "x", Addr: addrB}}})
		src.done.Store(true)
	}()
	select {
	case err := <-prepared:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Prepare did not return: retiring the link waited for a connection that waits for the broker's lock")
	}
}
