package broker

import (
	"time"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Planned reshards keep a channel's stream (epoch and offsets):
//
//   - Handoff. When a committed ring gives a channel this broker owned to
//     another broker, this broker sends that broker the channel's history
//     (a ReplSnapshot, unless the link already carried it, as it has when
//     the new owner was the standby), then a ReplHandoff for the ring. A
//     broker that gains channels from a broker still in the ring, or from
//     one that said it is leaving (ReplLeaving) and is still linked,
//     holds their publishes until that broker's ReplHandoff arrives, at
//     most Config.HandoffTimeout, so it continues the streams instead of
//     starting new ones. A broker that crashed or is cut off said nothing
//     and is not waited for.
//   - Ring floor. A frontend tells each link which ring its publishes are
//     routed by (RingFloor); a broker behind holds them until it commits
//     that ring, so it never forwards one by a ring the frontend left.
//   - One writer. Frontends switch to a new ring a few milliseconds apart.
//     A publish that reaches this broker for a channel another broker owns
//     under the ring this broker follows is forwarded to that owner (a
//     Replicate with offset 0), which appends it; only when the owner is
//     unreachable does this broker append it itself.

// handoff starts the handoffs of a ring change: the wait for the brokers
// this one takes channels from, and the push of the channels it gives.
func (r *replicator) awaitHandoffs(prev, cur *ring.Ring) {
	if cur == nil || cur.Len() == 0 || (prev != nil && prev.SameBrokers(cur)) {
		return
	}
	timeout := r.s.cfg.HandoffTimeout
	r.mu.Lock()
	defer r.mu.Unlock()
	self := r.self
	r.prev, r.awaitVersion = prev, cur.Version()
	for id, ch := range r.awaiting {
		close(ch)
		delete(r.awaiting, id)
		r.awaitTimers[id].Stop()
		delete(r.awaitTimers, id)
	}
	clear(r.leavers)
	// Without a previous ring (this broker just joined, or restarted) a
	// channel it owns came from the broker that ranks next for it, which
	// may be any other.
	for _, b := range cur.Brokers() {
		if b.ID == self || (prev != nil && !prev.Contains(b.ID)) || r.handedOff[b.ID] >= cur.Version() {
			continue
		}
		r.awaitLocked(b.ID, timeout)
	}
	// A broker that leaves the ring on purpose said so (ReplLeaving) and
	// commits the ring too, then hands its channels over: their new
	// owners wait for it as for any other, while a link from it is up.
	// One that crashed or is cut off said nothing and is not waited for;
	// nor is any broker for a ring of the same version (a fallback ring
	// this broker derived: nobody hands off for it).
	if prev != nil && prev.Version() != cur.Version() {
		for _, b := range prev.Brokers() {
			id := b.ID
			if id == self || cur.Contains(id) || r.handedOff[id] >= cur.Version() || !r.leaving[id] || r.inLinks[id] == 0 {
				continue
			}
			r.leavers[id] = true
			r.awaitLocked(id, timeout)
		}
	}
	r.awaitingAny.Store(len(r.awaiting) > 0)
}

// awaitLocked starts the wait for id's ReplHandoff, at most timeout.
func (r *replicator) awaitLocked(id string, timeout time.Duration) {
	wait := make(chan struct{})
	r.awaiting[id] = wait
	r.awaitTimers[id] = time.AfterFunc(timeout, func() { r.handoffDone(id, wait) })
}

// peerUp counts a replication link from broker id; a broker says again
// on each link that it is leaving.
func (r *replicator) peerUp(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inLinks[id] == 0 {
		delete(r.leaving, id)
	}
	r.inLinks[id]++
}

// peerLeaving records broker id's ReplLeaving.
func (r *replicator) peerLeaving(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaving[id] = true
}

// peerGone uncounts a replication link from broker id; with its last
// link gone, the wait for the handoff of a leaving broker ends: nothing
// more comes from it.
func (r *replicator) peerGone(id string) {
	r.mu.Lock()
	var wait chan struct{}
	if r.inLinks[id]--; r.inLinks[id] <= 0 {
		delete(r.inLinks, id)
		if r.leavers[id] {
			wait = r.awaiting[id]
		}
	}
	r.mu.Unlock()
	if wait != nil {
		r.handoffDone(id, wait)
	}
}

// leave tells every broker this one replicates to that it is leaving the
// cluster (and again on every link that comes up), so that the new owners
// of its channels wait for its handoff.
func (r *replicator) leave() {
	r.mu.Lock()
	r.leavingSelf = true
	peers := make([]*peerOut, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.sendLeaving()
	}
}

// handoff sends the channels this broker gives under cur to their new
// owners, then a ReplHandoff to every other broker.
func (r *replicator) handoff(prev, cur *ring.Ring) {
	if cur == nil || cur.Len() == 0 || (prev != nil && prev.SameBrokers(cur)) {
		return
	}
	timeout := r.s.cfg.HandoffTimeout
	r.mu.Lock()
	self := r.self
	peers := make(map[string]*peerOut)
	for _, b := range cur.Brokers() {
		if p := r.peers[b.ID]; p != nil {
			peers[b.ID] = p
		}
	}
	r.mu.Unlock()
	give := make(map[string][]string)
	if prev.Index(self) >= 0 {
		for _, ch := range r.hist.Channels() {
			if prev.OwnerID(ch) != self {
				continue
			}
			if to := cur.OwnerID(ch); to != self && to != "" {
				give[to] = append(give[to], ch)
			}
		}
	}
	// Every other broker gets a ReplHandoff, with or without channels,
	// so none waits for this one longer than needed.
	for id, p := range peers {
		chans := give[id]
		r.s.wg.Go(func() { r.give(p, chans, cur.Version(), timeout) })
	}
}

// give sends p the histories of chans and then the ReplHandoff for ring
// version v, once p's link is up (at most timeout).
//
// Many channels' histories would outrun the link's queue: each waits for
// it to be under half full. The new owner waits for the handover until
// the same timeout and then starts the channels it has not got under new
// epochs, so a history sent after that would replace a live stream: none
// is, nor on a later connection of the link than the first, nor after a
// history the link could not take. In each case no ReplHandoff follows:
// the new owner must not take over the channels as if it held them all.
func (r *replicator) give(p *peerOut, chans []string, v uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	gone := func() { r.m.handoffs.WithLabelValues("link_down").Inc() }
	if !r.waitUntil(deadline, p.isUp) {
		gone()
		return
	}
	half := r.s.cfg.Link.QueueMaxBytes / 2
	if half <= 0 {
		half = nodelink.DefaultConfig().QueueMaxBytes / 2
	}
	gen := p.generation()
	for _, ch := range chans {
		if !r.waitUntil(deadline, func() bool { return p.queuedBytes() <= half }) || p.generation() != gen || !r.sync(p, ch) {
			gone()
			return
		}
	}
	msg, err := protocol.AppendMessage(nil, protocol.MsgReplHandoff, &protocol.ReplHandoff{Version: v})
	p.mu.Lock()
	ok := err == nil && p.l != nil && p.l.SendRaw(msg)
	p.mu.Unlock()
	if ok {
		r.m.handoffs.WithLabelValues("sent").Inc()
	} else {
		r.m.handoffs.WithLabelValues("link_down").Inc()
	}
}

// waitUntil polls ok until it holds (true), or deadline passes or the
// broker stops (false).
func (r *replicator) waitUntil(deadline time.Time, ok func() bool) bool {
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-r.s.stop:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// generation returns the number of p's link's current connection.
func (p *peerOut) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// queuedBytes returns what p's link has waiting for its writer (0 while
// it is down).
func (p *peerOut) queuedBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return 0
	}
	return p.l.QueuedBytes()
}

// sendLeaving tells the broker at the other end that this one is
// leaving the cluster.
func (p *peerOut) sendLeaving() {
	msg, err := protocol.AppendMessage(nil, protocol.MsgReplLeaving, &protocol.ReplLeaving{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && p.l != nil && !p.l.SendRaw(msg) {
		p.r.s.m.drops.WithLabelValues(dropLinkQueue).Inc()
	}
}

func (p *peerOut) isUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.l != nil
}

// handoffReceived records from's ReplHandoff for ring version v.
func (r *replicator) handoffReceived(from string, v uint64) {
	r.mu.Lock()
	if v > r.handedOff[from] {
		r.handedOff[from] = v
	}
	wait := r.awaiting[from]
	want := r.awaitVersion
	r.mu.Unlock()
	if wait != nil && v >= want {
		r.handoffDone(from, wait)
	}
}

// handoffDone ends the wait for from (received or timed out).
func (r *replicator) handoffDone(from string, wait chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.awaiting[from] != wait {
		return
	}
	close(wait)
	delete(r.awaiting, from)
	r.awaitTimers[from].Stop()
	delete(r.awaitTimers, from)
	r.awaitingAny.Store(len(r.awaiting) > 0)
}

// awaitHandoff holds a publish of ch, on its link's reader, while the
// broker that owned ch under the previous ring has not handed it over, at
// most until deadline (shared by the waits of one frame: the link's ping
// timeout would close a link whose reader reads nothing for longer).
func (r *replicator) awaitHandoff(ch string, done <-chan struct{}, deadline time.Time) {
	if r.s.cfg.StateAddr != "" && !isClosed(r.hasRing) {
		// A broker that just joined may see publishes before its first
		// ring that holds it (frontends commit a ring a few milliseconds
		// before it does, and the ring it learned from gossip may be one
		// it is not in yet, whose owners it would forward to): wait for
		// it, and then for the handoffs it brings.
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-r.hasRing:
		case <-t.C:
		case <-done:
		case <-r.s.stop:
		}
		t.Stop()
	}
	if !r.awaitingAny.Load() {
		return
	}
	r.mu.Lock()
	from := r.prev.OwnerID(ch)
	if r.prev == nil {
		from = ""
		if rg := r.ring.Load(); rg.OwnerID(ch) == r.self {
			if i := rg.StandbyIndex(ch, r.self); i >= 0 {
				from = rg.Broker(i).ID
			}
		}
	}
	wait := r.awaiting[from]
	r.mu.Unlock()
	if wait == nil {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-wait:
	case <-t.C:
	case <-done:
	case <-r.s.stop:
	}
}

// awaitRing waits, on a frontend link's reader, until this broker
// follows ring version v or a later one: the frontend routed what follows
// by that ring. A broker a few milliseconds behind would otherwise take a
// publish for a channel it now owns as another broker's and forward it
// there, to the broker that handed the channel over, and both would number
// the channel. It waits at most until deadline (then the older ring
// routes, as before) and reports how the wait ended: "ok" (the ring
// arrived), "timeout", or "" (the link or the broker closed).
func (r *replicator) awaitRing(v uint64, done <-chan struct{}, deadline time.Time) string {
	var timeout <-chan time.Time
	for {
		tick := *r.ringTick.Load()
		if rg := r.ring.Load(); rg != nil && rg.Version() >= v {
			return "ok"
		}
		if timeout == nil {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-tick:
		case <-timeout:
			return "timeout"
		case <-done:
			return ""
		case <-r.s.stop:
			return ""
		}
	}
}

// ownedElsewhere reports whether ch's owner under this broker's ring is
// another broker.
func (r *replicator) ownedElsewhere(ch string) bool {
	rg := r.ring.Load()
	if rg == nil || rg.Len() == 0 {
		return false
	}
	r.mu.Lock()
	self := r.self
	r.mu.Unlock()
	owner := rg.OwnerID(ch)
	return self != "" && owner != "" && owner != self
}

// forwardToOwner sends a publish of ch to ch's owner when that is another
// broker this one is linked to, and reports whether it did; the frame's
// acknowledgement waits for the owner's.
func (l *link) forwardToOwner(ch string, opts history.Options, data []byte, seq uint64) bool {
	r := l.s.repl
	rg := r.ring.Load()
	owner := rg.OwnerID(ch)
	r.mu.Lock()
	self := r.self
	p := r.peers[owner]
	r.mu.Unlock()
	if owner == "" || owner == self || p == nil || !p.isUp() {
		return false
	}
	// The channel's history goes first on this link: a forward that
	// overtook the handoff's snapshot would start the stream anew at the
	// owner, under another epoch.
	if p.needsSync(ch) {
		r.sync(p, ch)
	}
	publisher := l.nl.Peer().NodeID
	pa := l.framePending()
	pa.left.Add(1)
	owned := append([]byte(nil), data...)
	// A forward the link refuses is appended here (below): the channel
	// stays synced on this link.
	p.send("", func(rseq uint64) []byte {
		return protocol.AppendReplicateMsg(make([]byte, 0, 32+len(ch)+len(data)+len(publisher)), &protocol.Replicate{
			Seq: rseq, Channel: ch, Data: data, Publisher: publisher, PubSeq: seq,
		})
	}, func(ok bool) {
		if ok {
			// The owner's standby holds it (peerIn acknowledges a forward
			// only then).
			r.m.forwarded.WithLabelValues("forwarded").Inc()
			l.donePending(pa)
			return
		}
		// The owner may not have it: append it here, and acknowledge it
		// once this broker's standby holds it.
		if r.publishForwarded(ch, opts, owned, publisher, seq, func() { l.donePending(pa) }) {
			r.m.forwarded.WithLabelValues("appended_here").Inc()
		}
	})
	return true
}

// publishForwarded appends a publish another broker forwarded (or one
// whose forward failed), replicates it and delivers it, as the owner.
// done, which must not block, runs once the channel's standby holds the
// publication (or could not take it, or there is none), or at once when
// the channel already holds the publish. It reports whether it appended it.
func (r *replicator) publishForwarded(ch string, opts history.Options, data []byte, publisher string, seq uint64, done func()) bool {
	s := r.s
	if r.pubs.seen(ch, publisher, seq) {
		r.m.duplicates.Inc()
		done()
		return false
	}
	p := r.standby(ch)
	if p != nil && p.needsSync(ch) {
		r.sync(p, ch)
	}
	// Checked again under the stream's lock: the owner this publish was
	// forwarded to may have appended it after all, and its Replicate
	// (recorded before it is stored) may have arrived since the check
	// above; appended again, the stream would hold it at two offsets.
	seen := func() bool { return r.pubs.seen(ch, publisher, seq) }
	_, appended := r.hist.AppendUnless(ch, opts, data, seen, func(pos history.Position) {
		r.pubs.record(ch, publisher, seq)
		msg := protocol.AppendDeliverPosMsg(make([]byte, 0, 24+len(ch)+len(data)), ch, data, pos.Offset, pos.Epoch)
		deliver := func() {
			n := 0
			for _, t := range s.table.links(ch) {
				if t.nl.SendRaw(msg) {
					n++
				} else {
					s.m.drops.WithLabelValues(dropLinkQueue).Inc()
				}
			}
			s.m.deliveriesOut.Add(float64(n))
		}
		if p == nil {
			r.m.results.WithLabelValues(replNoStandby).Inc()
			deliver()
			done()
			return
		}
		p.send(ch, func(rseq uint64) []byte {
			return protocol.AppendReplicateMsg(make([]byte, 0, 32+len(ch)+len(pos.Epoch)+len(data)+len(publisher)), &protocol.Replicate{
				Seq: rseq, Channel: ch, Epoch: pos.Epoch, Offset: pos.Offset, Time: time.Now().UnixNano(),
				Data: data, Publisher: publisher, PubSeq: seq,
			})
		}, func(replicated bool) {
			if replicated {
				r.m.results.WithLabelValues(replOK).Inc()
			} else {
				r.m.results.WithLabelValues(replUnreplicated).Inc()
			}
			deliver()
			done()
		})
	})
	if !appended {
		done()
		if opts.Enabled() {
			r.m.duplicates.Inc()
		}
	}
	return appended
}

// giveBack runs when broker id links to this one: it sends id the
// histories this broker holds of channels id owns, then a ReplHandoff. A
// broker restarted at the same address, still in the ring, so gets its
// channels back from their standbys instead of starting them anew.
func (r *replicator) giveBack(id string) {
	rg := r.ring.Load()
	if !rg.Contains(id) {
		return
	}
	var chans []string
	for _, ch := range r.hist.Channels() {
		if rg.OwnerID(ch) == id {
			chans = append(chans, ch)
		}
	}
	r.mu.Lock()
	p := r.peers[id]
	r.mu.Unlock()
	if p == nil {
		return
	}
	r.s.wg.Go(func() { r.give(p, chans, rg.Version(), r.s.cfg.HandoffTimeout) })
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
