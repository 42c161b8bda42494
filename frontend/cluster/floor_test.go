package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

// floorRecorder is a broker that logs, per connection, the ring floors
// and publishes it reads, in order, and acknowledges every publish and
// subscription change.
type floorRecorder struct {
	mu  sync.Mutex
	log map[*nodelink.Link][]string
}

func (r *floorRecorder) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgRingFloor:
			var f protocol.RingFloor
			if m.Decode(&f) == nil {
				r.log[l] = append(r.log[l], fmt.Sprintf("floor %d", f.Version))
			}
		case protocol.MsgPublish:
			seq, _, data, _, err := protocol.ParsePublishKey(m.Body)
			if err == nil {
				r.log[l] = append(r.log[l], "publish "+string(data))
				l.SendRaw(protocol.AppendPubAckMsg(nil, seq))
			}
		default:
			ackSubscription(l, m)
		}
	}
}

// ackSubscription acknowledges m when it is a Sync or a Subscribe.
func ackSubscription(l *nodelink.Link, m protocol.Message) {
	switch m.Type {
	case protocol.MsgSync:
		var s protocol.Sync
		if m.Decode(&s) == nil {
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		}
	case protocol.MsgSubscribe:
		var s protocol.Subscribe
		if m.Decode(&s) == nil {
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		}
	}
}

func (*floorRecorder) Closed(*nodelink.Link, error) {}

func (r *floorRecorder) seen(l *nodelink.Link) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log[l])
}

// expect waits until the broker read as many messages on l as want
// has, and fails unless they are want.
func (r *floorRecorder) expect(t *testing.T, l *nodelink.Link, want ...string) {
	t.Helper()
	var got []string
	waitFor(t, fmt.Sprintf("the broker to read %q", want), func() bool {
		got = r.seen(l)
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		t.Fatalf("the broker read %q, want %q", got, want)
	}
}

// TestRingFloorPrecedesPublishes: the broker reads the version of the
// ring a publish was routed by before the publish, at every commit and
// again on every new connection, so a broker behind the frontends can
// wait for that ring instead of routing by an older one.
func TestRingFloorPrecedesPublishes(t *testing.T) {
	rec := &floorRecorder{log: map[*nodelink.Link][]string{}}
	addr, links := fakeBrokerWith(t, rec)
	cfg := DefaultConfig()
	cfg.Link = nodelink.DefaultConfig()
	cfg.Link.NodeID, cfg.Link.Role, cfg.Link.AuthKey = "frontend-1", protocol.RoleFrontend, testLinkKey
	cfg.Registry = prometheus.NewRegistry()
	b := New(cfg)
	if err := b.Start(context.Background(), &recordSink{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	next := func() *nodelink.Link {
		t.Helper()
		select {
		case l := <-links:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("the frontend did not link to the broker")
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish := func(data string) {
		t.Helper()
		if err := b.Publish(ctx, "room", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(l *nodelink.Link, want ...string) {
		t.Helper()
		rec.expect(t, l, want...)
	}
	brokers := []protocol.BrokerInfo{{ID: "fake-broker", Addr: addr}}

	b.Commit(protocol.Ring{Version: 1, Brokers: brokers})
	l1 := next()
	publish(`"a"`)
	expect(l1, "floor 1", `publish "a"`)

	// The same broker under a later ring: the fence, then the new floor.
	b.Commit(protocol.Ring{Version: 2, Brokers: brokers})
	publish(`"b"`)
	expect(l1, "floor 1", `publish "a"`, "floor 2", `publish "b"`)

	// A new connection hears the floor before anything is published on it
	// (nothing is re-sent on it: every publish was acknowledged).
	waitFor(t, "the acknowledgements", func() bool {
		b.mu.Lock()
		fl := b.links["fake-broker"]
		b.mu.Unlock()
		fl.mu.Lock()
		defer fl.mu.Unlock()
		return len(fl.inflight) == 0
	})
	l1.Close("test")
	l2 := next()
	publish(`"c"`)
	expect(l2, "floor 2", `publish "c"`)
}

// TestMovedBrokerTakesItsPublishes: when a broker's address changes
// (a restarted pod), the link to its new address takes over what the
// old link held (its backlog) and what is routed to the old link until
// the commit switches the routing, after the old ring's floor; nothing
// is refused or lost in between.
func TestMovedBrokerTakesItsPublishes(t *testing.T) {
	rec := &floorRecorder{log: map[*nodelink.Link][]string{}}
	addr, links := fakeBrokerWith(t, rec)
	// The old address: nothing listens there, so publishes wait in the
	// old link's backlog.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()

	b := moveTestBroker(t, false, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish := func(data string) {
		t.Helper()
		if err := b.Publish(ctx, "room", []byte(data)); err != nil {
			t.Fatalf("publish %s: %v", data, err)
		}
	}

	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "fake-broker", Addr: gone}}})
	publish(`"held"`)
	// The broker comes back at another address: the next ring, prepared
	// but not committed, names it there.
	moved := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "fake-broker", Addr: addr}}}
	if err := b.Prepare(ctx, moved); err != nil {
		t.Fatal(err)
	}
	publish(`"between"`)
	var l *nodelink.Link
	select {
	case l = <-links:
	case <-time.After(10 * time.Second):
		t.Fatal("the frontend did not link to the broker's new address")
	}
	expect := func(want ...string) {
		t.Helper()
		rec.expect(t, l, want...)
	}
	// Routed by ring 1 to the old link, sent at the new address.
	expect("floor 1", `publish "held"`, `publish "between"`)
	// A subscribe while both rings are in force keeps the link at the
	// new address (it used to flip the link to the old address and
	// back, retiring a link each time).
	linkNow := func() *brokerLink {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.links["fake-broker"]
	}
	before := linkNow()
	if err := b.Subscribe(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if after := linkNow(); after != before || after.info.Addr != addr {
		t.Fatalf("the subscribe replaced the link (now at %s)", after.info.Addr)
	}
	b.Commit(moved)
	publish(`"after"`)
	expect("floor 1", `publish "held"`, `publish "between"`, "floor 2", `publish "after"`)
}
