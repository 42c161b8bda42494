package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

func historyRules(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.Parse([]byte(`rules:
  - {match: "*", subscribe: anyone, publish: anyone, history: {size: 100, ttl: 1m}}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// historyBroker returns, per broker id, the settings of a test broker
// with history on every channel (set), replicating or not, and extra.
func historyBroker(set *rules.Set, replicate bool, extra ...func(*Config)) func(id string) func(*Config) {
	return func(id string) func(*Config) {
		return func(c *Config) {
			c.NodeID, c.Rules, c.WarmUp, c.Replication = id, set, 0, replicate
			for _, f := range extra {
				f(c)
			}
		}
	}
}

// startPair starts two brokers with history on every channel (and extra
// settings) and commits a ring of both on each; it returns them and a
// channel broker-1 owns.
func startPair(t *testing.T, replicate bool, extra ...func(*Config)) (b1, b2 *testBroker, ch string) {
	t.Helper()
	mod := historyBroker(historyRules(t), replicate, extra...)
	b1 = startBroker(t, mod("broker-1"))
	b2 = startBroker(t, mod("broker-2"))
	<-b1.Ready()
	<-b2.Ready()
	r := protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}, {ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b1.Server}.Commit(r)
	agentHandler{b2.Server}.Commit(r)
	if replicate {
		waitFor(t, "replication links", func() bool { return b1.repl.linksUp() == 1 && b2.repl.linksUp() == 1 })
	}
	rg := ring.FromProtocol(r)
	for i := 0; ; i++ {
		ch = fmt.Sprintf("room-%d", i)
		if rg.OwnerID(ch) == "broker-1" {
			return b1, b2, ch
		}
	}
}

// resendSeq is where the test publishers' sequence numbers start: above
// MinResendSeq, as real frontends' do, so re-sends are deduplicated.
const resendSeq = MinResendSeq + 1000

func (f *fakeFE) publishSeq(ch, data string, seq uint64) {
	f.t.Helper()
	if !f.l.SendRaw(protocol.AppendPublishMsg(nil, seq, ch, []byte(data))) {
		f.t.Fatal("publish dropped")
	}
}

// The owner sends every publication of a channel with history to the
// standby, which then holds the same stream (epoch, offsets, data); when
// the owner is gone, the standby continues it at the next offset, and a
// publish the frontend re-sends because its acknowledgement was lost is
// recognized and not delivered again.
func TestReplicationStandbyContinuesStream(t *testing.T) {
	b1, b2, ch := startPair(t, true)
	sub := dialFE(t, b1.addr(), "frontend-sub")
	sub.subscribeWait(ch)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	for i := uint64(1); i <= 5; i++ {
		pub.publishSeq(ch, fmt.Sprintf(`"m%d"`, i), resendSeq+i)
	}
	waitFor(t, "pubacks", func() bool { return pub.lastPubAck() == resendSeq+5 })
	if n := b1.metric("scc_broker_replication_total", "result", replOK); n != 5 {
		t.Fatalf("replicated %v publications, want 5", n)
	}
	p1, _ := b1.hist.Position(ch)
	p2, ok := b2.hist.Position(ch)
	if !ok || p1 != p2 || p1.Offset != 5 {
		t.Fatalf("owner at %+v, standby at %+v (ok %v): want the same position, offset 5", p1, p2, ok)
	}
	s1, _ := b1.hist.Snapshot(ch)
	s2, _ := b2.hist.Snapshot(ch)
	for i := range s1.Pubs {
		if i >= len(s2.Pubs) || string(s1.Pubs[i].Data) != string(s2.Pubs[i].Data) || s1.Pubs[i].Offset != s2.Pubs[i].Offset {
			t.Fatalf("standby history %+v differs from the owner's %+v", s2.Pubs, s1.Pubs)
		}
	}
	if got := sub.gotOn(ch); len(got) != 5 {
		t.Fatalf("subscriber got %q", got)
	}

	// The owner dies; its frontends move to the standby and re-send the
	// last two publishes as if their acknowledgement had been lost.
	if err := b1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub2 := dialFE(t, b2.addr(), "frontend-sub")
	sub2.subscribeWait(ch)
	pub2 := dialFE(t, b2.addr(), "frontend-pub")
	pub2.publishSeq(ch, `"m4"`, resendSeq+4)
	pub2.publishSeq(ch, `"m5"`, resendSeq+5)
	pub2.publishSeq(ch, `"m6"`, resendSeq+6)
	waitFor(t, "pubacks at the standby", func() bool { return pub2.lastPubAck() == resendSeq+6 })
	if got := sub2.gotOn(ch); len(got) != 1 || got[0] != `"m6"` {
		t.Fatalf("after the failover the subscriber got %q, want only m6", got)
	}
	if n := b2.metric("scc_broker_resend_duplicates_total"); n != 2 {
		t.Fatalf("resend duplicates = %v, want 2", n)
	}
	pos, _ := b2.hist.Position(ch)
	if pos.Epoch != p1.Epoch || pos.Offset != 6 {
		t.Fatalf("standby continued at %+v, want epoch %s offset 6", pos, p1.Epoch)
	}
	if n := b2.metric("scc_broker_replication_total", "result", replUnreplicated); n != 1 {
		t.Fatalf("unreplicated = %v, want 1 (the standby's own standby is gone)", n)
	}
}

// Without replication the second broker knows nothing of the channel.
func TestReplicationOff(t *testing.T) {
	b1, b2, ch := startPair(t, false)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "puback", func() bool { return pub.lastPubAck() == resendSeq+1 })
	if _, ok := b2.hist.Position(ch); ok {
		t.Fatal("a broker without replication copied the channel")
	}
	var _ history.Position
}

// A broker that becomes a channel's standby (here: it joins the ring)
// gets the channel's whole history ahead of its next publication, not
// only what follows.
func TestReplicationSnapshotToNewStandby(t *testing.T) {
	b1, b2, ch := startPair(t, true)
	alone := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}}}
	agentHandler{b1.Server}.Commit(alone)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	for i := uint64(1); i <= 3; i++ {
		pub.publishSeq(ch, fmt.Sprintf(`"m%d"`, i), resendSeq+i)
	}
	waitFor(t, "pubacks", func() bool { return pub.lastPubAck() == resendSeq+3 })
	if _, ok := b2.hist.Position(ch); ok {
		t.Fatal("a broker outside the ring got the channel")
	}
	both := protocol.Ring{Version: 3, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}, {ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b1.Server}.Commit(both)
	waitFor(t, "replication link", func() bool { return b1.repl.linksUp() == 1 })
	pub.publishSeq(ch, `"m4"`, resendSeq+4)
	waitFor(t, "puback", func() bool { return pub.lastPubAck() == resendSeq+4 })
	s1, _ := b1.hist.Snapshot(ch)
	s2, ok := b2.hist.Snapshot(ch)
	if !ok || s2.Position != s1.Position || len(s2.Pubs) != 4 {
		t.Fatalf("new standby holds %+v (%d publications), owner %+v", s2.Position, len(s2.Pubs), s1.Position)
	}
	if n := b1.metric("scc_broker_replication_snapshots_total"); n != 1 {
		t.Fatalf("snapshots sent = %v, want 1", n)
	}
}

// history asks b for ch's position over f and returns the reply.
func (f *fakeFE) history(id uint64, ch string) protocol.HistoryReply {
	f.t.Helper()
	f.send(protocol.MsgHistory, &protocol.History{ID: id, Channel: ch})
	var r protocol.HistoryReply
	waitFor(f.t, "the history reply", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, h := range f.histories {
			if h.ID == id {
				r = h
				return true
			}
		}
		return false
	})
	return r
}

// A broker asked for the position of a channel that another broker owns
// under its ring, and of which it holds no stream, says so (moved)
// instead of starting a stream under an epoch of its own; one that holds
// the stream (the standby) answers from it.
func TestHistoryAtNonOwner(t *testing.T) {
	b1, b2, ch := startPair(t, true)
	f2 := dialFE(t, b2.addr(), "fe-2")
	if r := f2.history(1, ch); r.Reason != history.ReasonMoved || r.Epoch != "" {
		t.Fatalf("non-owner without the stream answered %+v", r)
	}
	if _, ok := b2.hist.Position(ch); ok {
		t.Fatal("the non-owner created a stream")
	}
	f1 := dialFE(t, b1.addr(), "fe-1")
	owner := f1.history(1, ch)
	if owner.Epoch == "" || owner.Reason != "" {
		t.Fatalf("owner answered %+v", owner)
	}
	f1.publishSeq(ch, `1`, resendSeq)
	waitFor(t, "the standby's copy", func() bool { p, ok := b2.hist.Position(ch); return ok && p.Offset == 1 })
	if r := f2.history(2, ch); r.Epoch != owner.Epoch || r.Offset != 1 {
		t.Fatalf("standby answered %+v, want 1/%s", r, owner.Epoch)
	}
}

// A stream that starts because a subscriber asked for the channel's
// position (nothing published yet) reaches the standby at once, so the
// epoch that subscriber holds survives the owner.
func TestHistoryPositionReachesStandby(t *testing.T) {
	b1, b2, ch := startPair(t, true)
	f1 := dialFE(t, b1.addr(), "fe-1")
	r := f1.history(1, ch)
	if r.Epoch == "" {
		t.Fatalf("owner answered %+v", r)
	}
	waitFor(t, "the standby's copy of the empty stream", func() bool {
		p, ok := b2.hist.Position(ch)
		return ok && p.Epoch == r.Epoch && p.Offset == 0
	})
}

// A broker a few milliseconds behind the frontends on a ring change must
// not route a publish by its older ring. broker-1 leaves: it has
// committed the ring without itself and handed its channel to broker-2,
// which has not committed that ring yet when a frontend that has sends
// it a publish of the channel. broker-2 holds the publish until it has
// the ring (the frontend's RingFloor says which), then appends it as the
// owner. Routed by its older ring it would forward it to broker-1, which
// would append it after handing the channel over: two brokers numbering
// one channel, whose publications then collide on offsets (a client
// loses one, or gets one twice).
func TestPublishWaitsForTheRingItWasRoutedBy(t *testing.T) {
	// The waits end on the events; the timeout only keeps a lost one
	// from passing for them.
	b1, b2, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = time.Hour })
	sub := dialFE(t, b2.addr(), "frontend-sub")
	sub.subscribeWait(ch)
	old := dialFE(t, b1.addr(), "frontend-old")
	for i := uint64(1); i <= 3; i++ {
		old.publishSeq(ch, fmt.Sprintf(`"m%d"`, i), resendSeq+i)
	}
	waitFor(t, "pubacks at broker-1", func() bool { return old.lastPubAck() == resendSeq+3 })
	waitFor(t, "the standby's copy", func() bool { p, _ := b2.hist.Position(ch); return p.Offset == 3 })

	v2 := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-2", Addr: b2.addr()}}}
	sent := b1.metric("scc_broker_handoffs_total", "result", "sent")
	agentHandler{b1.Server}.Commit(v2)
	waitFor(t, "broker-1's handoff", func() bool { return b1.metric("scc_broker_handoffs_total", "result", "sent") == sent+1 })

	pub := dialFE(t, b2.addr(), "frontend-new")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 2})
	pub.publishSeq(ch, `"m4"`, resendSeq+1)
	waitFor(t, "broker-2 holding the publish, or broker-1 appending it", func() bool {
		p, _ := b1.hist.Position(ch)
		return b2.metric("scc_broker_ring_floor_waiting") == 1 || p.Offset > 3
	})
	agentHandler{b2.Server}.Commit(v2)
	pub.publishSeq(ch, `"m5"`, resendSeq+2)
	waitFor(t, "pubacks at broker-2", func() bool { return pub.lastPubAck() == resendSeq+2 })

	if p, _ := b1.hist.Position(ch); p.Offset != 3 {
		t.Errorf("broker-1 numbered the channel after handing it over: at offset %d, want 3", p.Offset)
	}
	if n := b2.metric("scc_broker_forwarded_total", "result", "forwarded"); n != 0 {
		t.Errorf("broker-2 forwarded %v publishes to the broker that left", n)
	}
	if n := b2.metric("scc_broker_ring_floor_waits_total", "result", "ok"); n != 1 {
		t.Errorf("ring floor waits ok = %v, want 1", n)
	}
	snap, _ := b2.hist.Snapshot(ch)
	var got []string
	for _, p := range snap.Pubs {
		got = append(got, fmt.Sprintf("%d:%s", p.Offset, p.Data))
	}
	want := `[1:"m1" 2:"m2" 3:"m3" 4:"m4" 5:"m5"]`
	if fmt.Sprint(got) != want {
		t.Errorf("broker-2's history %v, want %s", got, want)
	}
	waitFor(t, "deliveries", func() bool { return len(sub.gotOn(ch)) == 2 })
	if got := sub.gotOn(ch); fmt.Sprint(got) != `["m4" "m5"]` {
		t.Errorf("subscriber at broker-2 got %q", got)
	}
}

// A ring version that never comes holds a link's publishes once, for the
// handoff timeout, and then they are routed by the ring the broker has.
func TestRingFloorThatNeverComes(t *testing.T) {
	b1, _, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = 100 * time.Millisecond })
	pub := dialFE(t, b1.addr(), "frontend-pub")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 1 << 40})
	for i := uint64(1); i <= 3; i++ {
		pub.publishSeq(ch, fmt.Sprintf(`"m%d"`, i), resendSeq+i)
	}
	waitFor(t, "pubacks", func() bool { return pub.lastPubAck() == resendSeq+3 })
	if n := b1.metric("scc_broker_ring_floor_waits_total", "result", "timeout"); n != 1 {
		t.Fatalf("ring floor timeouts = %v, want 1 (one wait per announced version)", n)
	}
	if p, _ := b1.hist.Position(ch); p.Offset != 3 {
		t.Fatalf("broker-1 at offset %d, want 3", p.Offset)
	}
}

// A broker that leaves the ring hands its channels over before their new
// owner numbers them, even when the new owner commits the ring first.
// broker-2 commits the ring without broker-1 while broker-1 has not yet:
// a frontend that switched publishes m5 at broker-2, which holds it, and
// one that has not publishes m4 at broker-1, which appends it as the
// owner it still is. Once broker-1 commits the ring and hands the channel
// over, broker-2 appends m5 after m4. Without the wait broker-2 appended
// m5 at broker-1's next offset, and broker-1's m4 landed on the same one.
func TestLeavingBrokerHandsOverBeforeTheNewOwnerNumbers(t *testing.T) {
	b1, b2, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = time.Hour })
	old := dialFE(t, b1.addr(), "frontend-old")
	for i := uint64(1); i <= 3; i++ {
		old.publishSeq(ch, fmt.Sprintf(`"m%d"`, i), resendSeq+i)
	}
	waitFor(t, "pubacks at broker-1", func() bool { return old.lastPubAck() == resendSeq+3 })
	waitFor(t, "the standby's copy", func() bool { p, _ := b2.hist.Position(ch); return p.Offset == 3 })

	leaving(t, b1, b2)
	v2 := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b2.Server}.Commit(v2)
	pub := dialFE(t, b2.addr(), "frontend-new")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 2})
	pub.publishSeq(ch, `"m5"`, resendSeq+1)
	waitFor(t, "broker-2 holding m5 for broker-1's handoff", func() bool {
		p, _ := b2.hist.Position(ch)
		return blockedIn("(*replicator).awaitHandoff(") || p.Offset > 3
	})
	old.publishSeq(ch, `"m4"`, resendSeq+4)
	waitFor(t, "m4 at broker-1", func() bool { return old.lastPubAck() == resendSeq+4 })
	agentHandler{b1.Server}.Commit(v2)
	waitFor(t, "m5 at broker-2", func() bool { return pub.lastPubAck() == resendSeq+1 })

	snap, _ := b2.hist.Snapshot(ch)
	var got []string
	for _, p := range snap.Pubs {
		got = append(got, fmt.Sprintf("%d:%s", p.Offset, p.Data))
	}
	if want := `[1:"m1" 2:"m2" 3:"m3" 4:"m4" 5:"m5"]`; fmt.Sprint(got) != want {
		t.Fatalf("broker-2's stream %v, want %s", got, want)
	}
}

// The wait for a leaving broker's handoff ends when its link closes: a
// broker that dies while leaving does not hold its channels' publishes
// for the whole handoff timeout.
func TestLeavingBrokerThatDiesIsNotAwaited(t *testing.T) {
	b1, b2, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = time.Hour })
	leaving(t, b1, b2)
	v2 := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b2.Server}.Commit(v2)
	pub := dialFE(t, b2.addr(), "frontend-new")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 2})
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "broker-2 holding m1 for broker-1's handoff", func() bool { return blockedIn("(*replicator).awaitHandoff(") })
	if err := b1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m1 at broker-2", func() bool { return pub.lastPubAck() == resendSeq+1 })
}

// leaving has from tell to that it is leaving the cluster, as Leave does.
func leaving(t *testing.T, from, to *testBroker) {
	t.Helper()
	from.repl.leave()
	waitFor(t, "the leaving notice", func() bool {
		to.repl.mu.Lock()
		defer to.repl.mu.Unlock()
		return to.repl.leaving[from.repl.self]
	})
}

// A broker that drops out of the ring without saying it leaves (it
// crashed, or is cut off, while its link still looks up) is not waited
// for: its channels' new owner numbers them at once. Waiting for it would
// hold them for the handoff timeout after every such failure.
func TestSilentBrokerOutOfTheRingIsNotAwaited(t *testing.T) {
	b1, b2, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = time.Hour })
	waitFor(t, "broker-1's link to broker-2", func() bool {
		b2.repl.mu.Lock()
		defer b2.repl.mu.Unlock()
		return b2.repl.inLinks[b1.repl.self] > 0
	})
	v2 := protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-2", Addr: b2.addr()}}}
	agentHandler{b2.Server}.Commit(v2)
	b2.repl.mu.Lock()
	_, waits := b2.repl.awaiting["broker-1"]
	b2.repl.mu.Unlock()
	if waits {
		t.Fatal("broker-2 waits for the handoff of a broker that did not say it leaves")
	}
	pub := dialFE(t, b2.addr(), "frontend-new")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 2})
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "m1 at broker-2", func() bool { return pub.lastPubAck() == resendSeq+1 })
}

// A frontend's latest RingFloor counts, not its highest: a bogus version
// holds its publishes once, for the handoff timeout, and a later genuine
// one is waited for as usual.
func TestRingFloorLatestCounts(t *testing.T) {
	b1, _, ch := startPair(t, true, func(c *Config) { c.HandoffTimeout = time.Second })
	pub := dialFE(t, b1.addr(), "frontend-pub")
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 1 << 62})
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "m1", func() bool { return pub.lastPubAck() == resendSeq+1 })
	pub.send(protocol.MsgRingFloor, &protocol.RingFloor{Version: 2})
	pub.publishSeq(ch, `"m2"`, resendSeq+2)
	waitFor(t, "broker-1 holding m2 for ring 2", func() bool { return b1.metric("scc_broker_ring_floor_waiting") == 1 })
	agentHandler{b1.Server}.Commit(protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "broker-1", Addr: b1.addr()}}})
	waitFor(t, "m2", func() bool { return pub.lastPubAck() == resendSeq+2 })
	if ok, to := b1.metric("scc_broker_ring_floor_waits_total", "result", "ok"), b1.metric("scc_broker_ring_floor_waits_total", "result", "timeout"); ok != 1 || to != 1 {
		t.Fatalf("ring floor waits ok %v, timeout %v; want 1 and 1", ok, to)
	}
}

// A publication replicated at an offset the standby's copy already has is
// not stored, and is counted: two brokers numbering one channel shows.
func TestStaleReplicaCounted(t *testing.T) {
	b1, b2, ch := startPair(t, true)
	pub := dialFE(t, b1.addr(), "frontend-pub")
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "the standby's copy", func() bool { p, _ := b2.hist.Position(ch); return p.Offset == 1 })
	// broker-2 numbers the channel itself (as a second writer would),
	// then broker-1's next publication arrives at the same offset.
	b2.hist.Append(ch, b2.historyOptions(ch), []byte(`"x"`), nil)
	pub.publishSeq(ch, `"m2"`, resendSeq+2)
	waitFor(t, "the stale replica", func() bool { return b2.metric("scc_broker_replicas_received_total", "kind", "stale") == 1 })
	if n := b2.metric("scc_broker_replicas_received_total", "kind", "publication"); n != 1 {
		t.Fatalf("publications stored = %v, want 1", n)
	}
}
