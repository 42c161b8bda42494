package cluster

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/protocol"
)

// positions keeps, per locally subscribed channel with history, the last
// offset and epoch this frontend delivered, so that what reaches local
// subscribers stays a gap-free, duplicate-free run of offsets across
// broker failures and reshards:
//
//   - a publication at or below the last offset is dropped (the new and
//     the old owner both deliver during a reshard; a re-sent publish);
//   - one past the next offset means the frontend missed publications
//     (they were queued at an owner that died, or were published at the
//     new owner before this frontend had subscribed there): the channel's
//     deliveries are held, the missed ones are asked for with History on
//     the link that delivered the gap (the owner's), and the reply's
//     publications go out first, then the held ones, in offset order;
//   - after a ring switch moves a channel to another broker, the same
//     History request fetches what the old owner had not yet delivered,
//     even when nothing else is published;
//   - another epoch means the channel's history was lost (its owner and
//     standby failed together): nothing can be recovered; it is counted
//     and delivery continues under the new epoch, so clients see the
//     epoch change.
//
// A subscriber that joins a channel with history (Broker.Recover) is
// attached here too, under the shard's lock, at the offset last
// delivered: the owner's answer says where the owner stands, but during
// a reshard or a failover another broker link may have delivered past
// it, or this frontend may still be filling a gap short of it. The
// subscriber gets the publications between its own offset and the
// delivered one (asking the link that delivered last for those past the
// answer), then everything delivered after, each once.
//
// The lock of a shard is held while delivering to the sink, so a
// channel's publications reach it in order; the sink never calls back.
type positions struct {
	b      *Broker
	shards []posShard
	m      posMetrics
}

type posShard struct {
	mu sync.Mutex
	m  map[string]*chanPos
	_  [32]byte
}

type chanPos struct {
	epoch      string
	offset     uint64
	recovering bool
	ask        *histWait     // the request of the recovery in progress
	held       []heldDeliver // deliveries held while recovering
	heldBytes  int
	last       *brokerLink   // the link that delivered the latest publication
	waiting    []*recoverReq // subscribers to reveal once the channel gets to their point
}

type heldDeliver struct {
	data   []byte
	offset uint64
	epoch  string
}

type posMetrics struct {
	duplicates prometheus.Counter
	recoveries *prometheus.CounterVec
}

// Recovery results (bounded: metric labels). A failure reason is one of
// history's Reason* words, or one of these.
const (
	recoverOK       = "recovered"
	recoverLinkDown = "link_down" // the broker link failed before the reply
	recoverHeldFull = "held_full" // too much arrived while recovering
	recoverEpoch    = "epoch"     // a new epoch arrived: the history was lost
	recoverTimeout  = "timeout"   // no reply within Config.RecoverTimeout
)

func newPositions(b *Broker, reg prometheus.Registerer) *positions {
	p := &positions{b: b, shards: make([]posShard, 32)}
	for i := range p.shards {
		p.shards[i].m = make(map[string]*chanPos)
	}
	p.m.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scc_frontend_history_duplicates_total",
		Help: "Publications of channels with history received again at or below the offset already delivered (during reshards and failovers), dropped.",
	})
	p.m.recoveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scc_frontend_history_recoveries_total",
		Help: "Gaps in a channel's offsets this frontend filled from the owner's history, by result (recovered, or why not: epoch, gone, limit, ahead, moved, link_down, held_full, timeout).",
	}, []string{"result"})
	for _, r := range []string{recoverOK, recoverLinkDown, recoverHeldFull, recoverEpoch, recoverTimeout, history.ReasonGone, history.ReasonLimit, history.ReasonAhead, history.ReasonMoved} {
		p.m.recoveries.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(p.m.duplicates, p.m.recoveries)
	}
	return p
}

func (p *positions) shard(ch string) *posShard {
	return &p.shards[xxhash.Sum64String(ch)%uint64(len(p.shards))]
}

// emit hands one publication to the sink.
func (p *positions) emit(ch string, data []byte, off uint64, epoch string) {
	if s := p.b.posSink; s != nil {
		s.DeliverPos(ch, data, off, epoch)
	} else if s := p.b.sink; s != nil {
		s.Deliver(ch, data)
	}
}

// deliver takes one publication with a position from link l.
func (p *positions) deliver(l *brokerLink, ch string, data []byte, off uint64, epoch string) {
	sh := p.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[ch]
	if st == nil {
		st = &chanPos{epoch: epoch, offset: off, last: l}
		sh.m[ch] = st
		p.emit(ch, data, off, epoch)
		return
	}
	if epoch != st.epoch || off > st.offset {
		st.last = l
	}
	if st.recovering {
		p.holdLocked(ch, st, data, off, epoch)
		return
	}
	switch {
	case epoch != st.epoch:
		p.m.recoveries.WithLabelValues(recoverEpoch).Inc()
		st.epoch, st.offset = epoch, off
		p.emit(ch, data, off, epoch)
	case off <= st.offset:
		p.m.duplicates.Inc()
		return
	case off == st.offset+1:
		st.offset = off
		p.emit(ch, data, off, epoch)
	default:
		st.recovering = true
		p.holdLocked(ch, st, data, off, epoch)
		p.askLocked(l, ch, st)
		return
	}
	if len(st.waiting) > 0 {
		p.waitingLocked(sh, ch, st)
	}
}

// holdLocked keeps a delivery until the recovery in progress ends; over
// the bound the recovery is given up.
func (p *positions) holdLocked(ch string, st *chanPos, data []byte, off uint64, epoch string) {
	if st.heldBytes+len(data) > p.b.cfg.RecoverHeldMaxBytes {
		p.endLocked(ch, st, history.Result{Reason: recoverHeldFull})
		p.deliverLocked(ch, st, data, off, epoch)
		return
	}
	st.held = append(st.held, heldDeliver{data: append([]byte(nil), data...), offset: off, epoch: epoch})
	st.heldBytes += len(data)
}

// deliverLocked is deliver's decision for a channel not recovering,
// without starting a recovery: used while flushing held deliveries.
func (p *positions) deliverLocked(ch string, st *chanPos, data []byte, off uint64, epoch string) {
	if epoch == st.epoch && off <= st.offset {
		p.m.duplicates.Inc()
		return
	}
	st.epoch, st.offset = epoch, off
	p.emit(ch, data, off, epoch)
}

// askLocked sends History for what follows st's position on l; the
// reply ends the recovery on l's reader.
func (p *positions) askLocked(l *brokerLink, ch string, st *chanPos) {
	h := protocol.History{Channel: ch, Offset: st.offset, Epoch: st.epoch, Limit: p.b.cfg.RecoverLimit}
	w := &histWait{done: make(chan struct{})}
	w.attach = func(r history.Result) { p.recovered(ch, r) }
	st.ask = w
	if !l.askAsync(&h, w) {
		p.endLocked(ch, st, history.Result{Reason: recoverLinkDown})
		return
	}
	p.b.wg.Add(1)
	go func() {
		defer p.b.wg.Done()
		t := time.NewTimer(p.b.cfg.RecoverTimeout)
		defer t.Stop()
		reason := recoverLinkDown
		select {
		case <-w.done:
			if w.err == nil {
				return // recovered ran
			}
		case <-t.C:
			reason = recoverTimeout
			l.mu.Lock()
			delete(l.hist, h.ID)
			l.mu.Unlock()
		case <-p.b.ctx.Done():
			return
		}
		sh := p.shard(ch)
		sh.mu.Lock()
		if st := sh.m[ch]; st != nil && st.recovering && st.ask == w {
			p.endLocked(ch, st, history.Result{Reason: reason})
		}
		sh.mu.Unlock()
	}()
}

// recovered ends a recovery with the owner's reply.
func (p *positions) recovered(ch string, r history.Result) {
	sh := p.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.m[ch]; st != nil && st.recovering {
		p.endLocked(ch, st, r)
	}
}

// endLocked delivers what the recovery returned, then what was held,
// and counts the result.
func (p *positions) endLocked(ch string, st *chanPos, r history.Result) {
	st.recovering, st.ask = false, nil
	if r.Recovered && r.Position.Epoch == st.epoch {
		p.m.recoveries.WithLabelValues(recoverOK).Inc()
		for _, pub := range r.Pubs {
			if pub.Offset > st.offset {
				st.offset = pub.Offset
				p.emit(ch, pub.Data, pub.Offset, st.epoch)
			}
		}
	} else {
		reason := r.Reason
		if reason == "" || (r.Recovered && r.Position.Epoch != st.epoch) {
			reason = recoverEpoch
		}
		p.m.recoveries.WithLabelValues(reason).Inc()
	}
	held := st.held
	st.held, st.heldBytes = nil, 0
	for _, h := range held {
		p.deliverLocked(ch, st, h.data, h.offset, h.epoch)
	}
	if len(st.waiting) > 0 {
		p.waitingLocked(p.shard(ch), ch, st)
	}
}

// check asks l, the new owner of ch after a ring switch, for what
// follows the last delivered offset: publications the old owner had not
// delivered when it failed.
func (p *positions) check(l *brokerLink, ch string) {
	sh := p.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[ch]
	if st == nil || st.recovering {
		return
	}
	st.recovering = true
	p.askLocked(l, ch, st)
}

// known returns the channels with a position.
func (p *positions) known() []string {
	var out []string
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for ch := range sh.m {
			out = append(out, ch)
		}
		sh.mu.Unlock()
	}
	return out
}

// forgetUnless drops ch's position (no local subscriber left) unless
// subscribed, called under the shard's lock, says the channel was
// subscribed again meanwhile.
func (p *positions) forgetUnless(ch string, subscribed func() bool) {
	sh := p.shard(ch)
	sh.mu.Lock()
	if !subscribed() {
		delete(sh.m, ch)
	}
	sh.mu.Unlock()
}

// askAsync sends h and registers w for its reply without waiting; false
// when the link is down.
func (l *brokerLink) askAsync(h *protocol.History, w *histWait) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.l == nil || l.closed {
		return false
	}
	l.nextHist++
	h.ID = l.nextHist
	if l.hist == nil {
		l.hist = make(map[uint64]*histWait)
	}
	l.hist[h.ID] = w
	if err := l.l.Send(protocol.MsgHistory, h); err != nil {
		delete(l.hist, h.ID)
		return false
	}
	return true
}

// recoverReq is one subscriber's Recover: the owner's answer gathered
// so far, and the subscriber's attach, which runs once, under the
// channel's shard lock, at the offset this frontend last delivered.
type recoverReq struct {
	ch     string
	from   history.Position
	limit  int
	attach func(history.Result)

	// Under the shard lock.
	res     history.Result // the answer so far: from up to res.Position
	started bool
	link    *brokerLink // the link of the request in flight
	id      uint64      // its History id

	ended atomic.Bool
	once  sync.Once
	err   error
	done  chan struct{}
}

// end completes Recover with err (nil: attach ran); later calls do
// nothing.
func (rq *recoverReq) end(err error) {
	rq.once.Do(func() {
		rq.ended.Store(true)
		rq.err = err
		close(rq.done)
	})
}

// askRecover sends rq's History request for what follows from on l.
func (p *positions) askRecover(l *brokerLink, rq *recoverReq, from history.Position) bool {
	sh := p.shard(rq.ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return p.askRecoverLocked(l, rq, from)
}

func (p *positions) askRecoverLocked(l *brokerLink, rq *recoverReq, from history.Position) bool {
	h := protocol.History{Channel: rq.ch, Offset: from.Offset, Epoch: from.Epoch, Limit: rq.limit - len(rq.res.Pubs)}
	w := &histWait{done: make(chan struct{})}
	w.attach = func(r history.Result) { p.answered(rq, r) }
	// Under the link's lock: take no other lock. The link failed before
	// its answer: ask again, at the owner under the committed ring.
	w.fail = func(err error) {
		if p.b.ctx.Err() != nil {
			rq.end(err)
			return
		}
		p.retryRecover(rq)
	}
	if l == nil || !l.askAsync(&h, w) {
		return false
	}
	rq.link, rq.id = l, h.ID
	return true
}

// dropRecover forgets rq after its Recover gave up.
func (p *positions) dropRecover(rq *recoverReq) {
	sh := p.shard(rq.ch)
	sh.mu.Lock()
	l, id := rq.link, rq.id
	if st := sh.m[rq.ch]; st != nil {
		if i := slices.Index(st.waiting, rq); i >= 0 {
			st.waiting = slices.Delete(st.waiting, i, i+1)
		}
	}
	sh.mu.Unlock()
	if l != nil {
		l.mu.Lock()
		delete(l.hist, id)
		l.mu.Unlock()
	}
}

// retryRecover asks rq's question again at the channel's owner under
// the committed ring after Config.RecoverRetry, and again every
// Config.RecoverRetry while that owner's link is down, until rq ends.
func (p *positions) retryRecover(rq *recoverReq) {
	b := p.b
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTimer(b.cfg.RecoverRetry)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-rq.done:
				return
			case <-b.ctx.Done():
				rq.end(b.ctx.Err())
				return
			}
			from := rq.from
			sh := p.shard(rq.ch)
			sh.mu.Lock()
			if rq.started {
				from = rq.res.Position
			}
			sh.mu.Unlock()
			l, err := b.ownerLink(rq.ch)
			if err != nil {
				rq.end(err)
				return
			}
			if p.askRecover(l, rq, from) {
				return
			}
			t.Reset(b.cfg.RecoverRetry)
		}
	}()
}

// answered takes a History reply for rq, on the link's reader.
func (p *positions) answered(rq *recoverReq, r history.Result) {
	sh := p.shard(rq.ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rq.link = nil
	if rq.ended.Load() {
		return
	}
	if r.Reason == history.ReasonMoved {
		// Asked a broker whose ring gives the channel to another: ask
		// the owner under this frontend's ring again shortly (the rings
		// of a reshard's brokers and frontends switch a little apart).
		p.retryRecover(rq)
		return
	}
	st := sh.m[rq.ch]
	if !rq.started {
		rq.started, rq.res = true, r
	} else {
		// The rest of the run, asked from rq.res.Position.
		if !r.Recovered || r.Position.Epoch != rq.res.Position.Epoch {
			p.failRecoverLocked(rq, st, cmp.Or(r.Reason, history.ReasonEpoch))
			return
		}
		for _, pub := range r.Pubs {
			if pub.Offset > rq.res.Position.Offset {
				rq.res.Pubs = append(rq.res.Pubs, pub)
			}
		}
		rq.res.Position = r.Position
	}
	p.revealLocked(sh, rq, st)
}

// revealLocked attaches rq's subscriber at the offset last delivered to
// the channel's subscribers, st.offset, with the publications between
// rq.from and it; when the answer does not reach that far it asks for
// the rest, and when the channel has not yet got to rq.from it waits.
func (p *positions) revealLocked(sh *posShard, rq *recoverReq, st *chanPos) {
	res := rq.res
	pos := res.Position
	switch {
	case st == nil:
		// Nothing delivered yet: the channel starts where the answer
		// stands.
		if pos.Epoch != "" {
			sh.m[rq.ch] = &chanPos{epoch: pos.Epoch, offset: pos.Offset}
		}
		p.finishLocked(rq, res)
	case rq.from.Epoch == "" || !res.Recovered:
		// Nothing to replay: the subscriber starts at what the others
		// got last.
		res.Pubs, res.Position = nil, history.Position{Offset: st.offset, Epoch: st.epoch}
		p.finishLocked(rq, res)
	case pos.Epoch != st.epoch:
		p.failRecoverLocked(rq, st, history.ReasonEpoch)
	case st.offset < rq.from.Offset:
		// The subscriber saw more than this frontend delivered yet:
		// attach once the channel gets there.
		st.waiting = append(st.waiting, rq)
	case st.offset <= pos.Offset:
		k := len(res.Pubs)
		for k > 0 && res.Pubs[k-1].Offset > st.offset {
			k--
		}
		res.Pubs, res.Position.Offset = res.Pubs[:k], st.offset
		p.finishLocked(rq, res)
	case len(res.Pubs)+int(st.offset-pos.Offset) > rq.limit:
		p.failRecoverLocked(rq, st, history.ReasonLimit)
	default:
		// Delivered past the answer (by another broker link): ask the
		// link that delivered last for the rest.
		l := st.last
		if l == nil || !p.askRecoverLocked(l, rq, pos) {
			p.failRecoverLocked(rq, st, recoverLinkDown)
		}
	}
}

// waitingLocked retries the reveals waiting for the channel to get
// further.
func (p *positions) waitingLocked(sh *posShard, ch string, st *chanPos) {
	ws := st.waiting
	st.waiting = nil
	for _, rq := range ws {
		if !rq.ended.Load() {
			p.revealLocked(sh, rq, st)
		}
	}
}

// failRecoverLocked attaches rq's subscriber at st's offset, telling it
// that the recovery it asked for is not complete.
func (p *positions) failRecoverLocked(rq *recoverReq, st *chanPos, reason string) {
	res := history.Result{Reason: reason, Position: rq.res.Position}
	if st != nil {
		res.Position = history.Position{Offset: st.offset, Epoch: st.epoch}
	}
	if res.Reason == recoverLinkDown {
		res.Reason = history.ReasonGone
	}
	p.finishLocked(rq, res)
}

func (p *positions) finishLocked(rq *recoverReq, res history.Result) {
	if rq.ended.Load() {
		return
	}
	rq.attach(res)
	rq.end(nil)
}
