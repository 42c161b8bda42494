package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/protocol"
)

// Presence (docs/presence.md): each local member of a presence channel is
// reported to every broker link that holds the channel, so the owner (and,
// during a reshard, the next owner) has it. Reports follow interest: a
// link that newly holds a channel gets the channel's local members after
// its Subscribe (or Sync), read from the PresenceSource under the
// channel's presence lock, so a report never overtakes a later leave.
// Lock order: the source's channel lock, then Broker.mu, then
// brokerLink.mu.

// ErrPresenceUnavailable means the channel's owner could not be asked.
var ErrPresenceUnavailable = errors.New("cluster: the channel's broker is not connected")

var _ frontend.PresenceBroker = (*Broker)(nil)

// presenceState is the Broker's presence plumbing.
type presenceState struct {
	src atomic.Pointer[frontend.PresenceSource]
}

// presenceQueries are a link's queries waiting for their results.
type presenceQueries struct {
	mu   sync.Mutex
	next uint64
	wait map[uint64]chan protocol.PresenceResult
}

// SetPresenceSource implements frontend.PresenceBroker.
func (b *Broker) SetPresenceSource(src frontend.PresenceSource) { b.pres.src.Store(&src) }

func (b *Broker) presenceSource() frontend.PresenceSource {
	if p := b.pres.src.Load(); p != nil {
		return *p
	}
	return nil
}

// linksHolding returns the links that hold ch.
func (b *Broker) linksHolding(ch string) []*brokerLink {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*brokerLink
	for _, l := range b.links {
		l.mu.Lock()
		_, ok := l.interest[ch]
		l.mu.Unlock()
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// PresenceJoin implements frontend.PresenceBroker.
func (b *Broker) PresenceJoin(ch string, m protocol.PresenceMember) {
	for _, l := range b.linksHolding(ch) {
		l.sendPresence(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: ch, Members: []protocol.PresenceMember{m}})
	}
}

// PresenceLeave implements frontend.PresenceBroker.
func (b *Broker) PresenceLeave(ch, client string) {
	for _, l := range b.linksHolding(ch) {
		l.sendPresence(protocol.MsgPresenceLeave, &protocol.PresenceLeave{Channel: ch, Clients: []string{client}})
	}
}

// PresenceQuery implements frontend.PresenceBroker: it asks the owner of
// the channel under the ring publishes follow.
func (b *Broker) PresenceQuery(ctx context.Context, q protocol.PresenceQuery) (protocol.PresenceResult, error) {
	b.route.RLock()
	if b.pubRing == nil || b.pubRing.Len() == 0 {
		b.route.RUnlock()
		return protocol.PresenceResult{}, ErrNoRing
	}
	l := b.pubLinks[b.pubRing.OwnerIndex(q.Channel)]
	b.route.RUnlock()
	return l.query(ctx, q)
}

// reportPresence sends ch's local members to l; silent reports make no
// join events at the broker.
func (b *Broker) reportPresence(l *brokerLink, ch string, silent bool) {
	src := b.presenceSource()
	if src == nil {
		return
	}
	maxBytes := b.cfg.Link.MessageLimit()
	src.ReportPresence(ch, func(ms []protocol.PresenceMember) {
		// Joins are idempotent: a channel with more members than one
		// message holds is reported in several.
		for len(ms) > 0 {
			n := membersThatFit(ch, ms, maxBytes)
			if n == 0 {
				// One member larger than a message (its info is above
				// the frame limit): it cannot be reported.
				l.b.m.drops.WithLabelValues("presence_too_large").Inc()
				ms = ms[1:]
				continue
			}
			l.sendPresence(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: ch, Members: ms[:n], Silent: silent})
			ms = ms[n:]
		}
	})
}

// membersThatFit returns how many of ms, from the first, one PresenceJoin
// for ch of at most maxBytes can carry.
func membersThatFit(ch string, ms []protocol.PresenceMember, maxBytes int64) int {
	size := int64(32 + len(ch)) // the message type, the arrays' and strings' headers and Silent
	for i, m := range ms {
		size += int64(len(m.Client)+len(m.User)+len(m.Info)) + 16
		if size > maxBytes {
			return i
		}
	}
	return len(ms)
}

// reportChannel reports ch's local members to every link that holds it
// (a first local subscriber: join events).
func (b *Broker) reportChannel(ch string) {
	if b.presenceSource() == nil {
		return
	}
	for _, l := range b.linksHolding(ch) {
		b.reportPresence(l, ch, false)
	}
}

// reportAll reports every local presence channel to the links that hold
// it, silently: after a reshard added channels at their new owners.
func (b *Broker) reportAll() {
	if b.presenceSource() == nil {
		return
	}
	b.mu.Lock()
	links := make([]*brokerLink, 0, len(b.links))
	for _, l := range b.links {
		links = append(links, l)
	}
	b.mu.Unlock()
	for _, l := range links {
		for ch := range l.interestSnapshot() {
			b.reportPresence(l, ch, true)
		}
	}
}

// reportLink reports every channel l holds, after its connection came up:
// silently on the first connection (the channels came from a reshard or a
// subscribe that reports them itself), with join events on a reconnect
// (the broker dropped the members when the link went).
func (l *brokerLink) reportLink(gen uint64) {
	if l.b.presenceSource() == nil {
		return
	}
	for ch := range l.interestSnapshot() {
		l.b.reportPresence(l, ch, gen <= 1)
	}
}

// sendPresence sends a presence message if the link is up; while it is
// down, the report after the reconnect carries the members.
func (l *brokerLink) sendPresence(t protocol.MsgType, body any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.l == nil {
		return
	}
	if j, ok := body.(*protocol.PresenceJoin); ok {
		// The broker takes members only for a channel the link holds.
		l.sendBeforeLocked(j.Channel)
	}
	if err := l.l.Send(t, body); err != nil {
		l.b.m.drops.WithLabelValues("presence").Inc()
	}
}

// query sends q to the broker and waits for its result.
func (l *brokerLink) query(ctx context.Context, q protocol.PresenceQuery) (protocol.PresenceResult, error) {
	pq := &l.pq
	ch := make(chan protocol.PresenceResult, 1)
	pq.mu.Lock()
	pq.next++
	q.ID = pq.next
	if pq.wait == nil {
		pq.wait = make(map[uint64]chan protocol.PresenceResult)
	}
	pq.wait[q.ID] = ch
	pq.mu.Unlock()
	defer func() {
		pq.mu.Lock()
		delete(pq.wait, q.ID)
		pq.mu.Unlock()
	}()
	l.mu.Lock()
	up := l.l != nil
	var err error
	if up {
		err = l.l.Send(protocol.MsgPresenceQuery, &q)
	}
	l.mu.Unlock()
	if !up || err != nil {
		return protocol.PresenceResult{}, ErrPresenceUnavailable
	}
	select {
	case res, ok := <-ch:
		if !ok {
			return protocol.PresenceResult{}, ErrPresenceUnavailable
		}
		return res, nil
	case <-ctx.Done():
		return protocol.PresenceResult{}, ctx.Err()
	}
}

// handleResult hands a PresenceResult to its waiting query.
func (l *brokerLink) handleResult(m protocol.Message) {
	var res protocol.PresenceResult
	if err := m.Decode(&res); err != nil {
		l.b.m.drops.WithLabelValues("malformed").Inc()
		return
	}
	pq := &l.pq
	pq.mu.Lock()
	ch, ok := pq.wait[res.ID]
	delete(pq.wait, res.ID)
	pq.mu.Unlock()
	if ok {
		ch <- res
	}
}

// failQueries answers every waiting query with unavailability: the link
// went down, and its results with it.
func (l *brokerLink) failQueries() {
	pq := &l.pq
	pq.mu.Lock()
	for id, ch := range pq.wait {
		close(ch)
		delete(pq.wait, id)
	}
	pq.mu.Unlock()
}

// The node's Broker carries presence through its routing Broker.
var _ frontend.PresenceBroker = nodeBroker{}

func (b nodeBroker) SetPresenceSource(src frontend.PresenceSource) { b.n.broker.SetPresenceSource(src) }
func (b nodeBroker) PresenceJoin(ch string, m protocol.PresenceMember) {
	b.n.broker.PresenceJoin(ch, m)
}
func (b nodeBroker) PresenceLeave(ch, client string) { b.n.broker.PresenceLeave(ch, client) }
func (b nodeBroker) PresenceQuery(ctx context.Context, q protocol.PresenceQuery) (protocol.PresenceResult, error) {
	return b.n.broker.PresenceQuery(ctx, q)
}
