package broker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// TestSnapshotLargerThanAFrame: a channel whose history is larger than a
// link frame reaches a new standby without its oldest publications,
// under the same epoch and position, so that a failover continues the
// stream. The snapshot used to be refused as too large while the channel
// counted as synced: the standby then held only what followed.
func TestSnapshotLargerThanAFrame(t *testing.T) {
	const frame = 16 << 10
	b1, b2, ch := startPair(t, true, func(c *Config) { c.Link.MaxFrameBytes = frame })
	alone := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}}}
	agentHandler{b1.Server}.Commit(alone)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	const n = 40 // about 40 KB of history, more than a frame
	for i := uint64(1); i <= n; i++ {
		pub.publishAcked(ch, kilobyte, resendSeq+i)
	}
	addStandby(t, b1, b2)
	pub.publishAcked(ch, kilobyte, resendSeq+n+1)
	s1, s2 := standbyCopy(t, b1, b2, ch, 1)
	if len(s2.Pubs) > n || s2.Pubs[len(s2.Pubs)-1].Offset != s1.Position.Offset {
		t.Fatalf("the standby holds %d publications ending at %d, want the newest run of the owner's %d (position %+v)",
			len(s2.Pubs), s2.Pubs[len(s2.Pubs)-1].Offset, len(s1.Pubs), s1.Position)
	}
	if got := b1.metric("scc_broker_replication_snapshots_total"); got != 1 {
		t.Fatalf("snapshots sent = %v, want 1", got)
	}
	t.Logf("the standby holds the newest %d of %d publications", len(s2.Pubs), len(s1.Pubs))
}

// TestHandoffPacedByTheLinkQueue: a planned reshard hands over more
// history than the replication link's queue holds at once; every channel
// reaches its new owner under its epoch and position. The snapshots used
// to be queued in one go, those beyond the queue were dropped, and the
// ReplHandoff was sent anyway.
func TestHandoffPacedByTheLinkQueue(t *testing.T) {
	b1, b2, _ := startPair(t, true, func(c *Config) { c.Link.QueueMaxBytes = 32 << 10 })
	alone := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}}}
	agentHandler{b1.Server}.Commit(alone)
	agentHandler{b2.Server}.Commit(alone)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	seq := uint64(resendSeq)
	var chans []string
	for c := range 40 { // 40 channels × 10 KB: about half move, 200 KB
		ch := fmt.Sprintf("moving-%d", c)
		chans = append(chans, ch)
		for range 10 {
			seq++
			pub.publishAcked(ch, kilobyte, seq)
		}
	}
	both := protocol.Ring{Version: 3, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}, {ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b2.Server}.Commit(both)
	agentHandler{b1.Server}.Commit(both)
	rg := ring.FromProtocol(both)
	moved := 0
	for _, ch := range chans {
		if rg.OwnerID(ch) != "broker-2" {
			continue
		}
		moved++
		want, _ := b1.hist.Position(ch)
		waitFor(t, "the new owner's copy of "+ch, func() bool {
			p, ok := b2.hist.Position(ch)
			return ok && p == want
		})
	}
	if moved < 10 {
		t.Fatalf("only %d of %d channels moved", moved, len(chans))
	}
	waitFor(t, "the handoff", func() bool { return b1.metric("scc_broker_handoffs_total", "result", "sent") >= 1 })
	t.Logf("%d channels handed over", moved)
}

// TestLatestHistoryFitsAFrame: a request for a channel's latest
// publications that would not fit in one link frame is answered with the
// newest that do. It used to get no reply at all.
func TestLatestHistoryFitsAFrame(t *testing.T) {
	const frame = 16 << 10
	b1, _, ch := startPair(t, false, func(c *Config) { c.Link.MaxFrameBytes = frame })
	pub := dialFE(t, b1.addr(), "frontend-pub")
	const n = 40
	for i := uint64(1); i <= n; i++ {
		pub.publishAcked(ch, kilobyte, resendSeq+i)
	}
	pub.send(protocol.MsgHistory, &protocol.History{ID: 7, Channel: ch, Latest: n})
	var r protocol.HistoryReply
	waitFor(t, "the history reply", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		for _, h := range pub.histories {
			if h.ID == 7 {
				r = h
				return true
			}
		}
		return false
	})
	if len(r.Pubs) == 0 || len(r.Pubs) >= n || r.Pubs[len(r.Pubs)-1].Offset != r.Offset || r.Offset != n {
		t.Fatalf("reply with %d publications at position %d, want the newest that fit, up to %d", len(r.Pubs), r.Offset, n)
	}
	t.Logf("the newest %d of %d publications", len(r.Pubs), n)
}

// TestReplicateRefusedResyncs: publications the replication link's queue
// refuses go out unreplicated, and the channel's next publication sends
// the standby its history first (a snapshot, here the newest that fit half
// a frame), so the standby's copy continues at the owner's position. No
// snapshot was sent: the standby saw a gap at the next publication and
// dropped its copy.
func TestReplicateRefusedResyncs(t *testing.T) {
	b1, b2, ch := startPair(t, true, func(c *Config) {
		c.Link.QueueMaxBytes = 12 << 10
		c.Link.MaxFrameBytes = 16 << 10
	})
	pub := dialFE(t, b1.addr(), "frontend-pub")
	// Bursts of 14 (one frame under the brokers' limit each), faster than
	// the standby's link takes them, until one publication was refused.
	seq := uint64(resendSeq)
	for b := 0; b1.metric("scc_broker_replication_total", "result", "unreplicated") == 0; b++ {
		if b == 50 {
			t.Fatal("every burst fit the replication link's queue: nothing to test")
		}
		for range 14 {
			seq++
			pub.publishSeq(ch, kilobyte, seq)
		}
		waitFor(t, "pubacks", func() bool { return pub.lastPubAck() == seq })
	}
	pub.publishAcked(ch, kilobyte, seq+1)
	if n := b1.metric("scc_broker_replication_snapshots_total"); n == 0 {
		t.Fatal("no snapshot followed the refused publications")
	}
	standbyCopy(t, b1, b2, ch, 1)
}

// TestSnapshotFitsTheQueue: a new standby of a channel whose history is
// larger than the replication link's queue gets a snapshot that fits it
// (the newest publications), and no publication reaches it before that
// snapshot. The snapshot used to be refused at every try while the
// publications behind it went through, so the standby started the
// channel at a later offset and kept no older publication.
func TestSnapshotFitsTheQueue(t *testing.T) {
	b1, b2, ch := startPair(t, true, func(c *Config) {
		c.Link.QueueMaxBytes = 4 << 10
		c.Link.MaxFrameBytes = 16 << 10
	})
	alone := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}}}
	agentHandler{b1.Server}.Commit(alone)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	seq := uint64(resendSeq)
	for range 9 { // 6 KB of history before the standby, 3 after
		if seq == resendSeq+6 {
			addStandby(t, b1, b2)
		}
		seq++
		pub.publishAcked(ch, kilobyte, seq)
	}
	if n := b1.metric("scc_broker_replication_snapshots_total"); n == 0 {
		t.Fatal("no snapshot reached the new standby")
	}
	standbyCopy(t, b1, b2, ch, 3)
}

// kilobyte is a publication of about 1 KB.
var kilobyte = `"` + strings.Repeat("x", 1000) + `"`

// publishAcked publishes data on ch with seq and waits for its PubAck.
func (f *fakeFE) publishAcked(ch, data string, seq uint64) {
	f.t.Helper()
	f.publishSeq(ch, data, seq)
	waitFor(f.t, "puback", func() bool { return f.lastPubAck() == seq })
}

// standbyCopy waits until standby holds ch at owner's position with more
// than minPubs publications, and returns both copies.
func standbyCopy(t *testing.T, owner, standby *testBroker, ch string, minPubs int) (own, copy history.Snapshot) {
	t.Helper()
	own, _ = owner.hist.Snapshot(ch)
	waitFor(t, "the standby's copy", func() bool {
		var ok bool
		copy, ok = standby.hist.Snapshot(ch)
		return ok && copy.Position == own.Position && len(copy.Pubs) > minPubs
	})
	return own, copy
}

// addStandby commits, on owner, a ring of owner and standby after one of
// owner alone, and waits for the replication link.
func addStandby(t *testing.T, owner, standby *testBroker) {
	t.Helper()
	both := protocol.Ring{Version: 3, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: owner.addr()}, {ID: "broker-2", Addr: standby.addr()}}}
	agentHandler{owner.Server}.Commit(both)
	waitFor(t, "replication link", func() bool { return owner.repl.linksUp() == 1 })
}
