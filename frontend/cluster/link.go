package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// brokerLink is this frontend's link to one broker: the channels it holds
// there, the publishes waiting for the link, and the acknowledgement
// bookkeeping for fences and reshards.
type brokerLink struct {
	b    *Broker
	info protocol.BrokerInfo
	red  *nodelink.Redialer

	mu       sync.Mutex
	l        *nodelink.Link // nil while down
	gen      uint64         // connection generation
	interest map[string]struct{}
	intPeak  int // largest len(interest) since it was made
	// pendingCounted is this link's share of the pending-changes gauge.
	pendingCounted int

	// ctl holds the subscription changes not yet sent and paces them:
	// a window of batches in flight (subctl.go).
	ctl subControl

	seq, acked uint64        // publishes sent and acknowledged on this connection
	ackCh      chan struct{} // closed at the next PubAck or disconnect

	backlog      []heldPub
	backlogBytes int

	pq presenceQueries // presence.go
	// inflight are the publishes sent on this connection and not yet
	// acknowledged, in send order: re-sent after a failover (Config.Resend)
	// or counted as lost.
	inflight []heldPub
	closed   bool
	// next is the link to the same broker at its new address that
	// replaced this one (retire): what is still routed here goes there.
	next *brokerLink

	// History requests waiting for their reply, by id (history.go).
	nextHist uint64
	hist     map[uint64]*histWait

	// floor is the version of the ring this frontend routes publishes
	// by, told to the broker (RingFloor) ahead of the first publish
	// routed by it, and again on every connection.
	floor uint64
}

// newLink makes and starts the link to info; interest (nil: none) is
// what it holds from its start.
func (b *Broker) newLink(info protocol.BrokerInfo, interest map[string]struct{}, peak int) *brokerLink {
	if interest == nil {
		interest = make(map[string]struct{})
	}
	l := &brokerLink{
		b:        b,
		info:     info,
		interest: interest,
		intPeak:  peak,
	}
	l.red = nodelink.NewRedialer(info.Addr, b.cfg.Link, b.cfg.ReconnectMin, b.cfg.ReconnectMax, l.up)
	l.red.Start()
	return l
}

func (l *brokerLink) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.l != nil
}

// up runs one connection: full sync, backlog flush, then the read loop.
func (l *brokerLink) up(ctx context.Context, nl *nodelink.Link) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		nl.Close("closed")
		return
	}
	l.l = nl
	l.gen++
	l.seq, l.acked = 0, 0
	chans := make([]string, 0, len(l.interest))
	for ch := range l.interest {
		chans = append(chans, ch)
	}
	total := len(chans)
	maxBytes := l.b.cfg.Link.MessageLimit()
	l.ctl.maxBytes = maxBytes
	chans, rest := splitSync(chans, maxBytes)
	id := l.ctl.sync(rest)
	if err := nl.Send(protocol.MsgSync, &protocol.Sync{ID: id, Channels: chans}); err != nil {
		// Kept, the link would have the broker hold none of the
		// interest while its subscribers are told it does. The backlog
		// waits for the next connection.
		l.b.log.Warn("sending sync", "peer", l.info.ID, "err", err)
		_ = nl.Close(nodelink.ReasonQueueFull)
	} else {
		l.flushLocked() // the rest, as the window allows
		l.sendFloorLocked()
		l.expireLocked(time.Now())
		backlog := l.backlog
		l.backlog, l.backlogBytes = nil, 0
		for _, h := range backlog {
			l.sendLocked(h)
		}
	}
	l.countPendingLocked()
	gen := l.gen
	l.mu.Unlock()
	l.b.m.linksUp.Inc()
	l.b.log.Info("broker link up", "peer", l.info.ID, "addr", l.info.Addr, "channels", total, "after_sync", total-len(chans))
	l.reportLink(gen)

	err := nl.Run(l)
	l.failQueries()

	l.mu.Lock()
	l.failHistoryLocked()
	if l.l == nl {
		l.l = nil
		l.requeueInflightLocked()
		if l.ackCh != nil {
			close(l.ackCh)
			l.ackCh = nil
		}
	}
	l.mu.Unlock()
	l.b.m.linksUp.Dec()
	l.b.log.Info("broker link down", "peer", l.info.ID, "err", err)
}

// announceFloor tells the broker that the publishes that follow on this
// link are routed by ring version v.
func (l *brokerLink) announceFloor(v uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v <= l.floor {
		return
	}
	l.floor = v
	l.sendFloorLocked()
}

// sendFloorLocked sends the floor on the current connection; while down,
// the next connection sends it before its first publish.
func (l *brokerLink) sendFloorLocked() {
	if l.l == nil || l.floor == 0 {
		return
	}
	if err := l.l.Send(protocol.MsgRingFloor, &protocol.RingFloor{Version: l.floor}); err != nil {
		// The queue is full. Publishes must not follow without it: the
		// link closes, and its next connection sends it first.
		l.b.log.Warn("sending ring floor", "peer", l.info.ID, "err", err)
		_ = l.l.Close(nodelink.ReasonQueueFull)
	}
}

// splitSync splits chans into those one Sync message of at most maxBytes
// can name and the rest.
func splitSync(chans []string, maxBytes int64) (synced, rest []string) {
	size := int64(16) // the message type, the array, the id and the list's headers
	for i, ch := range chans {
		size += int64(len(ch)) + 5 // a string's header is at most 5 bytes
		if size > maxBytes {
			return chans[:i], chans[i:]
		}
	}
	return chans, nil
}

// HandleMessages implements nodelink.Handler.
func (l *brokerLink) HandleMessages(nl *nodelink.Link, msgs []protocol.Message) {
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgDeliver:
			ch, data, off, epoch, err := protocol.ParseDeliverPos(m.Body)
			if err != nil {
				l.b.m.drops.WithLabelValues("malformed").Inc()
				continue
			}
			// A broker's bytes go verbatim into clients' text frames:
			// check each publication once here, not per subscriber, so a
			// faulty or hostile broker cannot make browsers fail their
			// WebSockets or feed clients something that is not JSON.
			if reason := protocol.CheckData(data); reason != "" {
				l.b.m.deliveryDrops.WithLabelValues(reason).Inc()
				continue
			}
			l.b.m.delivered.Inc()
			if off > 0 {
				l.b.pos.deliver(l, ch, data, off, epoch)
			} else if l.b.sink != nil {
				l.b.sink.Deliver(ch, data)
			}
		case protocol.MsgHistoryReply:
			l.historyReply(m)
		case protocol.MsgPubAck:
			seq, err := protocol.ParsePubAck(m.Body)
			if err != nil {
				continue
			}
			l.mu.Lock()
			if l.l == nl && seq > l.acked {
				l.acked = seq
				l.inflight = ackInflight(l.inflight, seq)
				if l.ackCh != nil {
					close(l.ackCh)
					l.ackCh = nil
				}
			}
			l.mu.Unlock()
		case protocol.MsgSubAck:
			var a protocol.SubAck
			if err := m.Decode(&a); err != nil {
				continue
			}
			l.mu.Lock()
			l.ctl.acked(a.ID)
			if l.l == nl {
				l.flushLocked()
			}
			l.mu.Unlock()
		case protocol.MsgPresenceResult:
			l.handleResult(m)
		}
	}
}

// Closed implements nodelink.Handler.
func (l *brokerLink) Closed(*nodelink.Link, error) {}

// addInterest holds chans at this broker and returns a channel closed once
// the broker acknowledged them. The subscribes are sent in the next batch
// (at once when the window of batches in flight is not full).
func (l *brokerLink) addInterest(chans []string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st ctlStats
	w := l.ctl.subscribe(l.interest, chans, &st)
	l.intPeak = max(l.intPeak, len(l.interest))
	l.ctlDoneLocked(st)
	// While down, the Sync after the reconnect carries them and its
	// acknowledgement releases w.
	return w
}

// removeInterest drops chans at this broker, in the next batch.
func (l *brokerLink) removeInterest(chans []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st ctlStats
	l.ctl.unsubscribe(l.interest, chans, &st)
	l.interest = shrunk(l.interest, &l.intPeak)
	l.ctlDoneLocked(st)
}

// ctlDoneLocked counts what a change did and sends a batch if none is in
// flight.
func (l *brokerLink) ctlDoneLocked(st ctlStats) {
	if st.coalesced > 0 {
		l.b.m.subChanges.WithLabelValues(subChangeCoalesced).Add(float64(st.coalesced))
	}
	l.flushLocked()
	l.countPendingLocked()
}

// countPendingLocked brings the pending-changes gauge up to date.
func (l *brokerLink) countPendingLocked() {
	n := l.ctl.pendingLen()
	l.b.m.subPending.Add(float64(n - l.pendingCounted))
	l.pendingCounted = n
}

// sendBeforeLocked sends ch's pending subscribe at once, out of its
// batch, so that a message about ch sent next is read by the broker
// after it.
func (l *brokerLink) sendBeforeLocked(ch string) {
	id, ok := l.ctl.take(ch)
	if !ok || l.l == nil {
		return
	}
	if err := l.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: id, Channels: []string{ch}}); err != nil {
		l.b.log.Warn("sending subscription changes", "peer", l.info.ID, "err", err)
		_ = l.l.Close(nodelink.ReasonQueueFull)
	}
	l.b.m.subBatches.Inc()
	l.b.m.subChanges.WithLabelValues(subChangeSubscribe).Inc()
	l.countPendingLocked()
}

// flushLocked sends the next batch of subscription changes, if the link
// is up and the window of batches in flight is not full: the unsubscribes, then a Subscribe
// whose acknowledgement says the broker applied both. A batch the link
// cannot queue closes the link: the Sync of the next connection puts
// the broker right, where a lost change would leave it wrong.
func (l *brokerLink) flushLocked() {
	if l.l == nil {
		return
	}
	unsub, sub, id, ok := l.ctl.next(l.b.cfg.SubscribeBatch, l.b.cfg.SubscribeWindow)
	if !ok {
		l.countPendingLocked()
		return
	}
	var err error
	if len(unsub) > 0 {
		err = l.l.Send(protocol.MsgUnsubscribe, &protocol.Unsubscribe{Channels: unsub})
	}
	if err == nil {
		err = l.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: id, Channels: sub})
	}
	if err != nil {
		l.b.log.Warn("sending subscription changes", "peer", l.info.ID, "err", err)
		_ = l.l.Close(nodelink.ReasonQueueFull)
	}
	l.b.m.subBatches.Inc()
	if len(sub) > 0 {
		l.b.m.subChanges.WithLabelValues(subChangeSubscribe).Add(float64(len(sub)))
	}
	if len(unsub) > 0 {
		l.b.m.subChanges.WithLabelValues(subChangeUnsubscribe).Add(float64(len(unsub)))
	}
	l.countPendingLocked()
}

func (l *brokerLink) interestSnapshot() map[string]struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]struct{}, len(l.interest))
	for ch := range l.interest {
		out[ch] = struct{}{}
	}
	return out
}

// publish sends one message, or holds it while the link is down. at is the
// time the message was first accepted (zero = now); key is its idempotency
// key ("" for none).
// publishHeld is publish for a held or re-sent publish, which keeps its
// sequence number (h.seq, 0 for one never sent).
func (l *brokerLink) publishHeld(h heldPub) error {
	l.mu.Lock()
	if l.closed {
		next := l.next
		l.mu.Unlock()
		if next != nil {
			// Retired because its broker moved, before the routing
			// switched to the new link: the new link takes it.
			return next.publishHeld(h)
		}
		l.b.m.drops.WithLabelValues("link_closed").Inc()
		return ErrLinkClosed
	}
	defer l.mu.Unlock()
	if l.l != nil && len(l.backlog) == 0 {
		l.sendLocked(h)
		return nil
	}
	if l.backlogBytes+len(h.data) > l.b.cfg.BacklogMaxBytes {
		l.b.m.drops.WithLabelValues("backlog_full").Inc()
		return ErrBacklogFull
	}
	if h.at.IsZero() {
		h.at = time.Now()
		h.data = append([]byte(nil), h.data...)
	}
	l.backlog = append(l.backlog, h)
	l.backlogBytes += len(h.data)
	return nil
}

// sendLocked sends one publish and keeps it until the broker
// acknowledges it.
func (l *brokerLink) sendLocked(h heldPub) {
	if h.seq == 0 {
		h.seq = l.b.pubSeq.Add(1)
	}
	l.seq = h.seq
	msg := protocol.AppendPublishKeyMsg(make([]byte, 0, 16+len(h.channel)+len(h.data)+len(h.key)), h.seq, h.channel, h.data, h.key)
	if h.key == "" {
		// The data is the message's tail: keep it without a copy.
		h.data = msg[len(msg)-len(h.data):]
	} else if h.at.IsZero() {
		h.data = append([]byte(nil), h.data...)
	}
	if h.at.IsZero() {
		h.at = time.Now()
	}
	if err := l.l.TrySendRaw(msg); err != nil && !errors.Is(err, nodelink.ErrClosed) {
		// Dropped on a link that stays up: a later acknowledgement
		// must not cover it.
		l.b.m.drops.WithLabelValues("link_queue_full").Inc()
		h.settle(ErrPublishLost)
		return
	}
	// On a closed connection it stays in flight: the link is going down,
	// and requeueInflightLocked re-sends or settles it.
	l.inflight = append(l.inflight, h)
}

// ackInflight removes from inflight (in send order) the publishes an
// acknowledgement numbered seq covers, settles them, and returns the
// rest. The broker acknowledged every publish it read up to the one
// numbered seq. A re-sent publish keeps its older number, so the numbers
// on a link are not always in order: only the entries up to the one
// numbered seq are known to be acknowledged. Those after it with lower
// numbers, which leave flight as before, are answered as unknown, never
// as accepted.
func ackInflight(inflight []heldPub, seq uint64) []heldPub {
	last := -1
	for i := 0; i < len(inflight) && inflight[i].seq <= seq; i++ {
		if inflight[i].seq == seq {
			last = i
		}
	}
	n := 0
	for n < len(inflight) && inflight[n].seq <= seq {
		if n <= last {
			inflight[n].settle(nil)
		} else {
			inflight[n].settle(errAckUnknown)
		}
		n++
	}
	clear(inflight[:n])
	if inflight = inflight[n:]; len(inflight) == 0 {
		return nil
	}
	return inflight
}

// requeueInflightLocked handles the publishes the broker had not
// acknowledged when the link failed: with Config.Resend, those of
// channels it names go back to the front of the backlog, with their
// sequence numbers, to be sent to whichever broker owns their channel
// next; the others are lost in flight and counted.
func (l *brokerLink) requeueInflightLocked() {
	if len(l.inflight) == 0 {
		return
	}
	var again []heldPub
	lost, moved := 0, 0
	for _, h := range l.inflight {
		resend := l.b.cfg.Resend != nil && l.b.cfg.Resend(h.channel)
		switch {
		case resend && !l.closed:
			again = append(again, h)
			l.backlogBytes += len(h.data)
		case resend && l.next != nil:
			// Retired: the link to the broker's new address re-sends
			// it (it counts its own drops).
			if err := l.next.publishHeld(h); err != nil {
				h.settle(ErrPublishLost)
			} else {
				moved++
			}
		default:
			lost++
			h.settle(ErrPublishLost)
		}
	}
	l.inflight = nil
	if lost > 0 {
		l.b.m.drops.WithLabelValues("in_flight").Add(float64(lost))
	}
	if n := len(again) + moved; n > 0 {
		l.b.m.resent.Add(float64(n))
	}
	if len(again) > 0 {
		l.backlog = append(again, l.backlog...)
	}
}

// expire drops backlog entries older than the maximum age.
func (l *brokerLink) expire(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expireLocked(now)
}

func (l *brokerLink) expireLocked(now time.Time) {
	n := 0
	for _, h := range l.backlog {
		if now.Sub(h.at) > l.b.cfg.BacklogMaxAge {
			l.b.m.drops.WithLabelValues("backlog_expired").Inc()
			l.backlogBytes -= len(h.data)
			h.settle(ErrPublishLost)
			continue
		}
		l.backlog[n] = h
		n++
	}
	clear(l.backlog[n:])
	l.backlog = l.backlog[:n]
}

// takeMisrouted removes and returns the held publishes whose owner under r
// is not this link.
func (l *brokerLink) takeMisrouted(r *ring.Ring, links []*brokerLink) []heldPub {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.backlog) == 0 {
		return nil
	}
	var out []heldPub
	n := 0
	for _, h := range l.backlog {
		if r.Len() > 0 && links[r.OwnerIndex(h.channel)] == l {
			l.backlog[n] = h
			n++
			continue
		}
		l.backlogBytes -= len(h.data)
		out = append(out, h)
	}
	clear(l.backlog[n:])
	l.backlog = l.backlog[:n]
	return out
}

// ackTarget is what a fence waits for on one link.
type ackTarget struct {
	l   *brokerLink
	gen uint64
	seq uint64
}

func (l *brokerLink) ackTarget() ackTarget {
	l.mu.Lock()
	if l.closed && l.next != nil {
		// Retired: what was sent or routed here went on to next, and
		// the fence waits for it there.
		next := l.next
		l.mu.Unlock()
		return next.ackTarget()
	}
	defer l.mu.Unlock()
	return ackTarget{l: l, gen: l.gen, seq: l.seq}
}

// wait returns true once the broker acknowledged every publish up to the
// target, or the connection it was sent on is gone (nothing more will be
// acknowledged); false at the deadline.
func (t ackTarget) wait(ctx context.Context, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		t.l.mu.Lock()
		if t.l.gen != t.gen || t.l.l == nil || t.l.acked >= t.seq {
			t.l.mu.Unlock()
			return true
		}
		if t.l.ackCh == nil {
			t.l.ackCh = make(chan struct{})
		}
		ch := t.l.ackCh
		t.l.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// retire closes l for next, the link to the same broker at its new
// address. Its publishes in flight (those Config.Resend re-sends after
// a failure) and then its backlog go to next now, in order; what is
// routed to l until the routing switches to next goes there too, and
// the commit's fence waits for them on next. They were routed by l's
// ring, so next announces l's floor first. l's lock is held while its
// publishes move, so a publish routed to l meanwhile waits and follows
// them. (Locks go from a retired link to its successor, never back.)
func (l *brokerLink) retire(next *brokerLink) {
	l.mu.Lock()
	l.closed, l.next = true, next
	l.ctl.close()
	l.countPendingLocked()
	next.announceFloor(l.floor)
	if l.l != nil {
		// The publishes in flight on the old connection go first, as
		// if it had failed now (its end finds nothing left to do):
		// publishes routed here meanwhile wait for the lock and follow.
		l.l = nil
		l.requeueInflightLocked()
		if l.ackCh != nil {
			close(l.ackCh)
			l.ackCh = nil
		}
	}
	l.expireLocked(time.Now())
	for _, h := range l.backlog {
		if err := next.publishHeld(h); err != nil {
			h.settle(ErrPublishLost)
		}
	}
	l.backlog, l.backlogBytes = nil, 0
	l.mu.Unlock()
	l.b.stopLater(l)
}

// close ends l for good: its backlog is lost and counted; the caller
// stops its redialer (stopLater, or l.red.Close without b.mu).
func (l *brokerLink) close() {
	l.mu.Lock()
	l.closed = true
	l.ctl.close()
	l.countPendingLocked()
	if n := len(l.backlog); n > 0 {
		l.b.m.drops.WithLabelValues("link_closed").Add(float64(n))
	}
	for i := range l.backlog {
		l.backlog[i].settle(ErrPublishLost)
	}
	l.backlog, l.backlogBytes = nil, 0
	l.mu.Unlock()
}

// stopLater stops l's redialer on another goroutine that Close waits for.
// Stopping waits for the link's current connection to end, and its
// reader may be waiting for b.mu (presence reports), which the callers
// hold. Called with b.mu held and b not closed.
func (b *Broker) stopLater(l *brokerLink) { b.wg.Go(l.red.Close) }
