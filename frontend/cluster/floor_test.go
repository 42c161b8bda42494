package cluster

import (
	"context"
	"fmt"
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
}

func (*floorRecorder) Closed(*nodelink.Link, error) {}

func (r *floorRecorder) seen(l *nodelink.Link) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log[l])
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
		var got []string
		waitFor(t, fmt.Sprintf("the broker to read %q", want), func() bool {
			got = rec.seen(l)
			return len(got) >= len(want)
		})
		if !slices.Equal(got, want) {
			t.Fatalf("the broker read %q, want %q", got, want)
		}
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
