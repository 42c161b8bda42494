package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

// TestSubControlSyncRest: channels a Sync cannot carry go out after it as
// batches, and every subscriber waiting at the reconnect (for a pending
// subscribe, or for a batch of the old connection) is released by the
// last of those batches, not by the Sync.
func TestSubControlSyncRest(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	wa := c.subscribe(interest, []string{"a"}, &st)
	batch(t, &c, 1000, nil, []string{"a"}) // lost with the connection
	wb := c.subscribe(interest, []string{"b"}, &st)
	id := c.sync([]string{"c", "d"}) // the Sync carries a and b
	if c.pendingLen() != 2 {
		t.Fatalf("%d pending after the sync, want 2", c.pendingLen())
	}
	c.acked(id)
	if isClosed(wa) || isClosed(wb) {
		t.Fatal("released by the Sync while part of the interest was not sent")
	}
	_, sub, id1, ok := c.next(1, 4)
	if !ok || len(sub) != 1 || sub[0] != "c" {
		t.Fatalf("first batch %v (%v), want [c]", sub, ok)
	}
	_, sub, id2, ok := c.next(1, 4)
	if !ok || len(sub) != 1 || sub[0] != "d" {
		t.Fatalf("second batch %v (%v), want [d]", sub, ok)
	}
	c.acked(id1)
	if isClosed(wa) || isClosed(wb) {
		t.Fatal("released before the last batch of the rest")
	}
	c.acked(id2)
	if !isClosed(wa) || !isClosed(wb) || len(c.waiters) != 0 || len(c.marks) != 0 {
		t.Fatalf("after the last batch: %v %v, %d waiters, %d marks", isClosed(wa), isClosed(wb), len(c.waiters), len(c.marks))
	}
}

// TestSubControlBatchBytes: a batch stops where its names would not fit in
// one message, and always takes at least one.
func TestSubControlBatchBytes(t *testing.T) {
	c := subControl{maxBytes: 16 + 2*(10+5)}
	var st ctlStats
	interest := map[string]struct{}{}
	c.subscribe(interest, []string{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"}, &st)
	c.acked(batch(t, &c, 1000, nil, []string{"aaaaaaaaaa", "bbbbbbbbbb"}))
	c.acked(batch(t, &c, 1000, nil, []string{"cccccccccc"}))
	c.maxBytes = 1
	c.subscribe(interest, []string{"dd"}, &st)
	batch(t, &c, 1000, nil, []string{"dd"})
}

// syncRecorder is a broker that holds, per connection, the channels the
// frontend's link asks for, and acknowledges every Subscribe and Sync.
type syncRecorder struct {
	mu    sync.Mutex
	held  map[*nodelink.Link]map[string]struct{}
	syncs map[*nodelink.Link][]int // channels named by each Sync
	joins map[*nodelink.Link][]int // members named by each PresenceJoin
	// members: the distinct clients joined per link (joins are idempotent)
	members map[*nodelink.Link]map[string]struct{}
}

func (r *syncRecorder) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.held[l]
	if set == nil {
		set = map[string]struct{}{}
		r.held[l] = set
	}
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgSync:
			var s protocol.Sync
			if m.Decode(&s) != nil {
				continue
			}
			clear(set)
			for _, ch := range s.Channels {
				set[ch] = struct{}{}
			}
			r.syncs[l] = append(r.syncs[l], len(s.Channels))
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		case protocol.MsgSubscribe:
			var s protocol.Subscribe
			if m.Decode(&s) != nil {
				continue
			}
			for _, ch := range s.Channels {
				set[ch] = struct{}{}
			}
			_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
		case protocol.MsgPresenceJoin:
			var j protocol.PresenceJoin
			if m.Decode(&j) != nil {
				continue
			}
			if _, ok := set[j.Channel]; ok {
				r.joins[l] = append(r.joins[l], len(j.Members))
				if r.members[l] == nil {
					r.members[l] = map[string]struct{}{}
				}
				for _, m := range j.Members {
					r.members[l][m.Client] = struct{}{}
				}
			}
		case protocol.MsgUnsubscribe:
			var u protocol.Unsubscribe
			if m.Decode(&u) != nil {
				continue
			}
			for _, ch := range u.Channels {
				delete(set, ch)
			}
		}
	}
}

func (*syncRecorder) Closed(*nodelink.Link, error) {}

func newSyncRecorder() *syncRecorder {
	return &syncRecorder{
		held:    map[*nodelink.Link]map[string]struct{}{},
		syncs:   map[*nodelink.Link][]int{},
		joins:   map[*nodelink.Link][]int{},
		members: map[*nodelink.Link]map[string]struct{}{},
	}
}

func (r *syncRecorder) joined(l *nodelink.Link) (joins []int, members int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.joins[l]...), len(r.members[l])
}

// manyMembers is a presence source whose one channel has n members.
type manyMembers struct {
	ch string
	n  int
}

func (m manyMembers) ReportPresence(ch string, report func([]protocol.PresenceMember)) {
	if ch != m.ch {
		return
	}
	ms := make([]protocol.PresenceMember, m.n)
	for i := range ms {
		ms[i] = protocol.PresenceMember{Client: fmt.Sprintf("client-%05d", i), User: "user", Info: []byte(`{"name":"someone"}`)}
	}
	report(ms)
}

// TestPresenceReportLargerThanAFrame: a channel with more local members
// than one message of the link's frame limit holds is reported to the
// broker in several joins, all of them; it used to be one join, refused
// as too large, and the broker held none of them.
func TestPresenceReportLargerThanAFrame(t *testing.T) {
	rec := newSyncRecorder()
	addr, links := fakeBrokerWith(t, rec)
	cfg := DefaultConfig()
	cfg.Link = nodelink.DefaultConfig()
	cfg.Link.NodeID, cfg.Link.Role, cfg.Link.AuthKey = "frontend-1", protocol.RoleFrontend, testLinkKey
	cfg.Link.MaxFrameBytes = 8 << 10
	cfg.Registry = prometheus.NewRegistry()
	b := New(cfg)
	const n = 1000 // about 45 KB of members
	b.SetPresenceSource(manyMembers{ch: "room", n: n})
	if err := b.Start(context.Background(), &recordSink{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "fake-broker", Addr: addr}}})
	var l1 *nodelink.Link
	select {
	case l1 = <-links:
	case <-time.After(10 * time.Second):
		t.Fatal("the frontend did not link to the broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	b.reportChannel("room")
	var joins []int
	waitFor(t, fmt.Sprintf("joins of all %d members", n), func() bool {
		var members int
		joins, members = rec.joined(l1)
		return members == n
	})
	for _, k := range joins {
		if k >= n {
			t.Fatalf("joins of %v members: one named them all", joins)
		}
	}
	t.Logf("%d members in joins of %v", n, joins)
}

func (r *syncRecorder) state(l *nodelink.Link) (held int, syncs []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held[l]), append([]int(nil), r.syncs[l]...)
}

// TestSyncLargerThanAFrame: a frontend whose interest does not fit in one
// message of the link's frame limit has the broker hold all of it, before
// and after a reconnect: batches stop at the limit, and the Sync carries
// what fits and batches the rest. The Sync used to be refused as too
// large (the broker then held nothing), and a batch of long names closed
// the link.
func TestSyncLargerThanAFrame(t *testing.T) {
	t.Run("frame", func(t *testing.T) { testSyncLarger(t, 8<<10, 0) })
	// A frame larger than half the queue: the Sync must fit the queue.
	t.Run("queue", func(t *testing.T) { testSyncLarger(t, 64<<10, 16<<10) })
}

func testSyncLarger(t *testing.T, frame int64, queue int) {
	rec := newSyncRecorder()
	addr, links := fakeBrokerWith(t, rec)
	cfg := DefaultConfig()
	cfg.Link = nodelink.DefaultConfig()
	cfg.Link.NodeID, cfg.Link.Role, cfg.Link.AuthKey = "frontend-1", protocol.RoleFrontend, testLinkKey
	cfg.Link.MaxFrameBytes = frame
	if queue > 0 {
		cfg.Link.QueueMaxBytes = queue
	}
	// 128 names of 145 bytes would not fit in one message either.
	cfg.SubscribeBatch, cfg.SubscribeWindow = 128, 2
	cfg.Registry = prometheus.NewRegistry()
	b := New(cfg)
	if err := b.Start(context.Background(), &recordSink{}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "fake-broker", Addr: addr}}})
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
	l1 := next()

	const n = 300 // about 44 KB of channel names
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		if err := b.Subscribe(ctx, fmt.Sprintf("%s-%04d", strings.Repeat("x", 140), i)); err != nil {
			t.Fatal(err)
		}
	}
	if held, _ := rec.state(l1); held != n {
		t.Fatalf("the broker holds %d channels after every subscribe returned, want %d", held, n)
	}

	l1.Close("test")
	l2 := next()
	var syncs []int
	waitFor(t, fmt.Sprintf("the broker to hold all %d channels after the reconnect", n), func() bool {
		var held int
		held, syncs = rec.state(l2)
		return held == n
	})
	if len(syncs) != 1 || syncs[0] <= 0 || syncs[0] >= n {
		t.Fatalf("Syncs naming %v channels, want one naming part of the %d", syncs, n)
	}
	t.Logf("the Sync named %d of %d channels", syncs[0], n)
}
