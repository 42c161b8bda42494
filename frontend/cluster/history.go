package cluster

import (
	"context"
	"errors"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/protocol"
)

// ErrLinkDown means the channel's owning broker is not linked right now.
var ErrLinkDown = errors.New("cluster: link to the channel's broker is down")

var _ frontend.Recoverer = (*Broker)(nil)

// histWait is one History request waiting for its reply.
type histWait struct {
	attach func(history.Result) // nil for a Latest request
	fail   func(error)          // if set, runs (under the link's lock) when the link fails first
	done   chan struct{}
	err    error
	pubs   []history.Pub
	pos    history.Position
}

// Recover implements frontend.Recoverer. It asks the channel's owner
// under the committed ring for the channel's position and what follows
// from, and attaches the subscriber at the point of this frontend's
// delivery order that the answer matches: under the lock of the
// channel's positions, at the offset last delivered to the channel's
// subscribers (see positions.reveal). During a reshard or a failover
// the channel is delivered by more than one broker link, so the owner's
// answer alone does not say where the other links' deliveries stand.
// While the owner's link is down (a broker that just died, still in the
// ring) the request is asked again every Config.RecoverRetry until ctx
// ends: a subscriber that comes back then waits for the owner's
// successor rather than being refused.
func (b *Broker) Recover(ctx context.Context, channel string, from history.Position, limit int, attach func(history.Result)) error {
	l, err := b.ownerLink(channel)
	if err != nil {
		return err
	}
	rq := &recoverReq{ch: channel, from: from, limit: limit, attach: attach, done: make(chan struct{})}
	if !b.pos.askRecover(l, rq, from) {
		// The owner's link is down: it comes back, or a ring without
		// the owner is committed, within the subscribe's bound.
		b.pos.retryRecover(rq)
	}
	select {
	case <-rq.done:
		return rq.err
	case <-ctx.Done():
		rq.end(ctx.Err())
		b.pos.dropRecover(rq)
		return ctx.Err()
	}
}

// ownerLink returns the link to channel's owner under the committed
// ring.
func (b *Broker) ownerLink(channel string) (*brokerLink, error) {
	b.route.RLock()
	defer b.route.RUnlock()
	if b.pubRing == nil || b.pubRing.Len() == 0 {
		return nil, ErrNoRing
	}
	return b.pubLinks[b.pubRing.OwnerIndex(channel)], nil
}

// History implements frontend.Recoverer.
func (b *Broker) History(ctx context.Context, channel string, limit int) ([]history.Pub, history.Position, error) {
	if limit <= 0 {
		limit = 1
	}
	w := &histWait{done: make(chan struct{})}
	if err := b.askHistory(ctx, protocol.History{Channel: channel, Latest: limit}, w); err != nil {
		return nil, history.Position{}, err
	}
	return w.pubs, w.pos, nil
}

func (b *Broker) askHistory(ctx context.Context, h protocol.History, w *histWait) error {
	b.route.RLock()
	if b.pubRing == nil || b.pubRing.Len() == 0 {
		b.route.RUnlock()
		return ErrNoRing
	}
	l := b.pubLinks[b.pubRing.OwnerIndex(h.Channel)]
	b.route.RUnlock()

	l.mu.Lock()
	if l.l == nil || l.closed {
		l.mu.Unlock()
		return ErrLinkDown
	}
	l.nextHist++
	h.ID = l.nextHist
	if l.hist == nil {
		l.hist = make(map[uint64]*histWait)
	}
	l.hist[h.ID] = w
	err := l.l.Send(protocol.MsgHistory, &h)
	if err != nil {
		delete(l.hist, h.ID)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		l.mu.Lock()
		delete(l.hist, h.ID)
		l.mu.Unlock()
		return ctx.Err()
	}
}

// historyReply answers the request the reply names, on the link's reader.
func (l *brokerLink) historyReply(m protocol.Message) {
	var r protocol.HistoryReply
	if err := m.Decode(&r); err != nil {
		l.b.m.drops.WithLabelValues("malformed").Inc()
		return
	}
	l.mu.Lock()
	w := l.hist[r.ID]
	delete(l.hist, r.ID)
	l.mu.Unlock()
	if w == nil {
		return // given up
	}
	pubs := make([]history.Pub, 0, len(r.Pubs))
	for _, p := range r.Pubs {
		if protocol.CheckData(p.Data) != "" {
			// Not deliverable to clients: the range is not whole.
			r.Recovered, r.Reason, pubs = false, history.ReasonGone, nil
			break
		}
		pubs = append(pubs, history.Pub{Offset: p.Offset, Time: p.Time, Data: p.Data})
	}
	pos := history.Position{Offset: r.Offset, Epoch: r.Epoch}
	if w.attach != nil {
		res := history.Result{Position: pos, Recovered: r.Recovered, Reason: r.Reason}
		if r.Recovered {
			res.Pubs = pubs
		}
		w.attach(res)
	} else {
		w.pubs, w.pos = pubs, pos
	}
	close(w.done)
}

// failHistoryLocked fails every request waiting on a connection that
// ended.
func (l *brokerLink) failHistoryLocked() {
	for id, w := range l.hist {
		w.err = ErrLinkDown
		if w.fail != nil {
			w.fail(ErrLinkDown)
		}
		close(w.done)
		delete(l.hist, id)
	}
}

// Recover implements frontend.Recoverer for the node's broker.
func (b nodeBroker) Recover(ctx context.Context, channel string, from history.Position, limit int, attach func(history.Result)) error {
	return b.n.broker.Recover(ctx, channel, from, limit, attach)
}

// History implements frontend.Recoverer for the node's broker.
func (b nodeBroker) History(ctx context.Context, channel string, limit int) ([]history.Pub, history.Position, error) {
	return b.n.broker.History(ctx, channel, limit)
}

var _ frontend.Recoverer = nodeBroker{}
