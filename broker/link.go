package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

// link is one frontend link: its declared channels and the routing of
// what it sends. Every method runs on the link's reader goroutine, so
// chans needs no lock.
type link struct {
	s     *Server
	nl    *nodelink.Link
	id    uint64
	chans map[string]struct{}

	// targets collects, per frame read, the links that frame's publishes
	// were forwarded to (reader goroutine only).
	targets map[*link]struct{}

	// acks are this link's PubAcks waiting for the deliveries they cover
	// to be written, in publish order.
	ackMu sync.Mutex
	acks  []*pendingAck
	// pending is the acknowledgement of the frame being read, made by
	// the first publish that waits for a standby (reader goroutine only).
	pending *pendingAck

	// floor is the ring version the frontend routes this link's
	// publishes by (its latest RingFloor); floorMet the floor this
	// broker's ring was last checked against (reader goroutine only).
	floor, floorMet uint64
	// holdUntil bounds, together, the waits of the frame being read
	// (zero until one waits).
	holdUntil time.Time
}

// pendingAck is the acknowledgement of one frame's publishes: it goes out
// once every link those publishes were forwarded to has written them, and
// after every earlier acknowledgement (PubAck is cumulative).
type pendingAck struct {
	seq  uint64
	left atomic.Int32
}

// HandleMessages applies one frame in order: interest changes take effect
// before the next message is read, so a SubAck means every earlier message
// on the link was applied.
func (l *link) HandleMessages(_ *nodelink.Link, msgs []protocol.Message) {
	s := l.s
	l.holdUntil = time.Time{}
	var maxSeq uint64
	var pubs, deliveries int
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgPublish:
			seq, ch, data, key, err := protocol.ParsePublishKey(m.Body)
			if err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			if !l.warmedUp() {
				return
			}
			if s.repl != nil {
				if opts := s.historyOptions(ch); opts.Enabled() {
					if s.repl.pubs.seen(ch, l.nl.Peer().NodeID, seq) {
						// Re-sent after a failover: the channel has it.
						s.repl.m.duplicates.Inc()
						maxSeq = max(maxSeq, seq)
						continue
					}
					// Wait for the ring and the handoff before claiming
					// the idempotency key: a key claimed by a publish
					// that then waits would drop its retry through
					// another frontend, and what that frontend published
					// next would overtake it.
					l.awaitFloor()
					s.repl.awaitHandoff(ch, l.nl.Done(), l.holdDeadline())
					if key == "" || s.dedup.FirstSeen(ch+"\x00"+key) {
						pubs++
						if !l.forwardToOwner(ch, opts, data, seq) {
							l.publishReplicated(ch, opts, data, seq)
						}
					} else {
						s.m.drops.WithLabelValues(dropDuplicate).Inc()
					}
					maxSeq = max(maxSeq, seq)
					continue
				}
			}
			if key != "" && !s.dedup.FirstSeen(ch+"\x00"+key) {
				// A retried server API publish: acknowledged, not delivered again.
				s.m.drops.WithLabelValues(dropDuplicate).Inc()
				maxSeq = max(maxSeq, seq)
				continue
			}
			pubs++
			if ho := s.historyOptions(ch); ho.Enabled() {
				deliveries += l.forwardHistory(ch, data, ho)
			} else {
				deliveries += l.forward(ch, data)
			}
			maxSeq = max(maxSeq, seq)
		case protocol.MsgSubscribe:
			var sub protocol.Subscribe
			if err := m.Decode(&sub); err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			for _, ch := range sub.Channels {
				l.add(ch)
			}
			l.subAck(sub.ID)
		case protocol.MsgUnsubscribe:
			var un protocol.Unsubscribe
			if err := m.Decode(&un); err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			for _, ch := range un.Channels {
				l.remove(ch)
			}
		case protocol.MsgSync:
			var sy protocol.Sync
			if err := m.Decode(&sy); err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			l.sync(sy.Channels)
			l.subAck(sy.ID)
		case protocol.MsgHistory:
			var h protocol.History
			if err := m.Decode(&h); err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			if s.repl != nil {
				// A new owner answers after the old one handed the channel over.
				l.awaitFloor()
				s.repl.awaitHandoff(h.Channel, l.nl.Done(), l.holdDeadline())
			}
			l.history(h)
		case protocol.MsgRingFloor:
			var f protocol.RingFloor
			if err := m.Decode(&f); err != nil {
				s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			// The latest, not the highest: a bogus version is checked
			// once and then forgotten.
			l.floor = f.Version
		default:
			if !l.handlePresence(m) {
				s.m.drops.WithLabelValues(dropUnknown).Inc()
			}
		}
	}
	if pubs > 0 {
		s.m.publishesIn.Add(float64(pubs))
		s.m.deliveriesOut.Add(float64(deliveries))
	}
	if maxSeq > 0 {
		l.ackAfterFlush(maxSeq)
	}
}

// ackAfterFlush sends one cumulative PubAck for the frame's publishes once
// the Delivers they caused have been written on every target link. A
// publish acknowledged this way survives this broker being killed, so the
// frontend counts exactly the unacknowledged ones as lost in flight.
func (l *link) ackAfterFlush(seq uint64) {
	pa := l.framePending() // holds one count until every target is added
	l.pending = nil
	pa.seq = seq
	l.ackMu.Lock()
	l.acks = append(l.acks, pa)
	l.ackMu.Unlock()
	for t := range l.targets {
		pa.left.Add(1)
		t.nl.AfterFlush(func() { l.donePending(pa) })
	}
	clear(l.targets)
	l.donePending(pa)
}

// framePending returns the acknowledgement of the frame being read,
// holding one count that ackAfterFlush drops.
func (l *link) framePending() *pendingAck {
	if l.pending == nil {
		l.pending = &pendingAck{}
		l.pending.left.Store(1)
	}
	return l.pending
}

// donePending drops one count of pa and sends what is complete.
func (l *link) donePending(pa *pendingAck) {
	if pa.left.Add(-1) == 0 {
		l.releaseAcks()
	}
}

// releaseAcks sends the highest sequence whose acknowledgement, and every
// earlier one, is complete.
func (l *link) releaseAcks() {
	l.ackMu.Lock()
	var top uint64
	n := 0
	for n < len(l.acks) && l.acks[n].left.Load() <= 0 {
		top = l.acks[n].seq
		n++
	}
	rest := copy(l.acks, l.acks[n:])
	clear(l.acks[rest:])
	l.acks = l.acks[:rest]
	l.ackMu.Unlock()
	if top > 0 && !l.nl.SendRaw(protocol.AppendPubAckMsg(make([]byte, 0, 10), top)) {
		l.s.m.drops.WithLabelValues(dropAck).Inc()
	}
}

// awaitFloor holds this link's publishes of channels with history until
// the broker follows the ring the frontend routed them by (once per ring
// version the frontend announces).
func (l *link) awaitFloor() {
	if l.floor == l.floorMet {
		return
	}
	l.floorMet = l.floor
	r := l.s.repl
	if rg := r.ring.Load(); rg != nil && rg.Version() >= l.floor {
		return
	}
	r.m.floorWaiting.Inc()
	result := r.awaitRing(l.floor, l.nl.Done(), l.holdDeadline())
	r.m.floorWaiting.Dec()
	if result != "" {
		r.m.floorWaits.WithLabelValues(result).Inc()
	}
}

// holdDeadline is when the waits of the frame being read end, together:
// at most Config.HandoffTimeout after the first, and at most two thirds
// of the link's ping timeout, which closes a link whose reader reads
// nothing for longer.
func (l *link) holdDeadline() time.Time {
	if l.holdUntil.IsZero() {
		d := l.s.cfg.HandoffTimeout
		pt := l.s.cfg.Link.PingTimeout
		if pt <= 0 {
			pt = nodelink.DefaultPingTimeout
		}
		l.holdUntil = time.Now().Add(min(d, pt*2/3))
	}
	return l.holdUntil
}

// warmedUp waits, on this link's reader, until the broker's warm-up is
// over; it reports false if the broker shut down meanwhile. Only the
// publishing link waits: other links keep applying their Syncs.
func (l *link) warmedUp() bool {
	select {
	case <-l.s.warm:
		return true
	default:
	}
	select {
	case <-l.s.warm:
		return true
	case <-l.s.stop:
		return false
	case <-l.nl.Done():
		return false
	}
}

// forward encodes one Deliver and queues the same bytes to every link that
// holds ch; it returns how many links took it.
func (l *link) forward(ch string, data []byte) int {
	s := l.s
	targets := s.table.links(ch)
	if len(targets) == 0 {
		return 0
	}
	msg := protocol.AppendDeliverMsg(make([]byte, 0, 8+len(ch)+len(data)), ch, data)
	sent := 0
	if l.targets == nil {
		l.targets = make(map[*link]struct{})
	}
	for _, t := range targets {
		if t.nl.SendRaw(msg) {
			sent++
			l.targets[t] = struct{}{}
		} else {
			s.m.drops.WithLabelValues(dropLinkQueue).Inc()
		}
	}
	return sent
}

func (l *link) add(ch string) {
	if _, ok := l.chans[ch]; ok {
		return
	}
	l.chans[ch] = struct{}{}
	l.s.table.add(ch, l)
}

func (l *link) remove(ch string) {
	if _, ok := l.chans[ch]; !ok {
		return
	}
	delete(l.chans, ch)
	l.s.table.remove(ch, l)
	l.s.pres.DropChannel(l.id, ch)
}

// sync replaces the link's channel set: new channels are added before old
// ones are removed, so a channel in both sets never misses a message.
func (l *link) sync(chans []string) {
	want := make(map[string]struct{}, len(chans))
	for _, ch := range chans {
		want[ch] = struct{}{}
		l.add(ch)
	}
	for ch := range l.chans {
		if _, ok := want[ch]; !ok {
			l.remove(ch)
		}
	}
}

func (l *link) subAck(id uint64) {
	if err := l.nl.Send(protocol.MsgSubAck, protocol.SubAck{ID: id}); err != nil {
		l.s.m.drops.WithLabelValues(dropAck).Inc()
	}
}

// Closed drops the link's interest.
func (l *link) Closed(_ *nodelink.Link, err error) {
	for ch := range l.chans {
		l.s.table.remove(ch, l)
	}
	clear(l.chans)
	s := l.s
	s.pres.DropSource(l.id)
	s.mu.Lock()
	delete(s.links, l)
	s.mu.Unlock()
	s.m.links.Dec()
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}
