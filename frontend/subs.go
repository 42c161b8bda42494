package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/sccgo/sccgo/internal/wsconn"
)

const subShards = 64

// shardShrinkFloor is shrinkFloor for the maps of sharded tables, each of
// which holds a share of the entries.
const shardShrinkFloor = 32

// subTable is the local subscription table: channel → sockets, sharded by
// the channel's hash. It calls Broker.Subscribe (outside any lock, on a
// goroutine of its own, so no socket's reader waits for a broker) for a
// channel's first local subscriber and Broker.Unsubscribe (non-blocking,
// under the shard lock, which orders it before any later Subscribe of the
// same channel) when the last one leaves.
//
// Its maps are rebuilt when they fall far below their peak size: Go maps
// never shrink, and a subscription storm would otherwise leave its memory
// behind.
type subTable struct {
	shards   [subShards]subShard
	broker   Broker
	channels atomic.Int64
	subs     atomic.Int64
	pending  atomic.Int64 // entries whose Broker.Subscribe is in flight
	onChange func(channels, subs int64)
	pres     *presLocal // reports members of presence channels; nil for none
}

type subShard struct {
	mu   sync.RWMutex
	m    map[string]*chanEntry
	peak int // largest len(m) since m was made

	// hidden are the subscribers of channels with history that wait for
	// their recovery (joinHidden): they hold the channel's broker
	// subscription but get no deliveries until reveal. Kept here, not in
	// chanEntry, so channels without history pay nothing for it.
	hidden map[string]map[*Socket]struct{}
}

// held reports whether channel's entry e has subscribers, shown or
// hidden. The caller holds sh.mu.
func (sh *subShard) held(channel string, e *chanEntry) bool {
	return e.n > 0 || len(sh.hidden[channel]) > 0
}

// unhide removes s from channel's hidden subscribers; it reports whether
// s was one. The caller holds sh.mu for writing.
func (sh *subShard) unhide(channel string, s *Socket) bool {
	h := sh.hidden[channel]
	if _, ok := h[s]; !ok {
		return false
	}
	delete(h, s)
	if len(h) == 0 {
		delete(sh.hidden, channel)
		if len(sh.hidden) == 0 {
			sh.hidden = nil
		}
	}
	return true
}

// errTooManyPending refuses a subscription that would need one more
// broker subscription in flight than allowed.
var errTooManyPending = errors.New("too many subscriptions are pending at the broker; retry later")

// subWaiter is a socket's #subscribe waiting for its channel's broker
// subscription; complete answers it.
type subWaiter struct {
	s   *Socket
	cid json.RawMessage
	// done, if set, receives the broker's answer instead of the answer
	// func passed to complete (subscribeWait). Buffered, so a caller
	// that gave up is never waited for.
	done chan error
}

// joinState is what join did.
type joinState int

const (
	// joinReady: the broker subscription is in force.
	joinReady joinState = iota
	// joinStart: the caller must run complete for the new entry.
	joinStart
	// joinQueued: the waiter is answered by the running complete.
	joinQueued
)

// chanEntry is one channel's local subscribers. An entry stays in the map
// while its broker subscription is pending, even when empty, so that
// Subscribe and Unsubscribe of one channel never overlap at the broker.
type chanEntry struct {
	one  *Socket              // the only subscriber, when many is nil
	many map[*Socket]struct{} // two or more subscribers
	n    int

	done    bool        // Broker.Subscribe returned (guarded by the shard lock)
	err     error       // Broker.Subscribe's result, set before done
	waiters []subWaiter // answered when Broker.Subscribe returns
	peak    int         // largest len(many) since many was made
}

func (e *chanEntry) add(s *Socket) bool {
	if e.has(s) {
		return false
	}
	switch {
	case e.n == 0:
		e.one = s
	case e.many == nil:
		e.many = map[*Socket]struct{}{e.one: {}, s: {}}
		e.one = nil
	default:
		e.many[s] = struct{}{}
	}
	e.n++
	if e.many != nil {
		e.peak = max(e.peak, len(e.many))
	}
	return true
}

// each calls fn for every subscriber.
func (e *chanEntry) each(fn func(*Socket)) {
	if e.many != nil {
		for s := range e.many {
			fn(s)
		}
	} else if e.one != nil {
		fn(e.one)
	}
}

func (e *chanEntry) has(s *Socket) bool {
	if e.many != nil {
		_, ok := e.many[s]
		return ok
	}
	return e.n == 1 && e.one == s
}

func (e *chanEntry) remove(s *Socket) bool {
	if !e.has(s) {
		return false
	}
	e.n--
	if e.many != nil {
		delete(e.many, s)
		switch {
		case e.n == 1:
			for o := range e.many {
				e.one = o
			}
			e.many, e.peak = nil, 0
		case e.peak >= shrinkFloor && len(e.many) < e.peak/4:
			m := make(map[*Socket]struct{}, len(e.many))
			for o := range e.many {
				m[o] = struct{}{}
			}
			e.many, e.peak = m, len(m)
		}
	} else {
		e.one = nil
	}
	return true
}

func newSubTable(b Broker) *subTable {
	t := &subTable{broker: b}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*chanEntry)
	}
	return t
}

func (t *subTable) shard(channel string) *subShard {
	return &t.shards[xxhash.Sum64String(channel)%subShards]
}

// entryLocked returns channel's entry in sh, made if new (joinStart, the
// caller then runs complete), and whether its broker subscription is in
// force (joinReady) or still on its way (joinQueued). A new entry beyond
// maxPending in flight fails with errTooManyPending. sh.mu is held.
func (t *subTable) entryLocked(sh *subShard, channel string, maxPending int) (*chanEntry, joinState, error) {
	e := sh.m[channel]
	switch {
	case e == nil:
		if t.pending.Add(1) > int64(maxPending) {
			t.pending.Add(-1)
			return nil, 0, errTooManyPending
		}
		e = &chanEntry{}
		sh.m[channel] = e
		sh.peak = max(sh.peak, len(sh.m))
		t.channels.Add(1)
		return e, joinStart, nil
	case e.done:
		return e, joinReady, nil
	}
	return e, joinQueued, nil
}

// join adds s to channel at once, so deliveries reach it from now on, and
// says whether the broker subscription is in force. If not, w is queued on
// the channel's entry, and complete answers it once the broker has; for a
// new entry (joinStart) the caller must run complete. A new entry beyond
// maxPending in flight fails with errTooManyPending and adds nothing.
func (t *subTable) join(channel string, s *Socket, w subWaiter, maxPending int) (joinState, error) {
	sh := t.shard(channel)
	sh.mu.Lock()
	e, st, err := t.entryLocked(sh, channel, maxPending)
	if err != nil {
		sh.mu.Unlock()
		return 0, err
	}
	if e.add(s) {
		t.subs.Add(1)
		if t.pres != nil {
			t.pres.join(channel, s)
		}
	}
	if st != joinReady {
		e.waiters = append(e.waiters, w)
	}
	sh.mu.Unlock()
	t.changed()
	return st, nil
}

// subscribeWait adds s to channel and returns once the broker
// subscription is in force, for subscribes made off a socket's reader
// (hook grants, the server API's user channels). answer serves the other
// waiters when this call starts the broker subscription. On error s is not
// left in the table.
func (t *subTable) subscribeWait(ctx context.Context, channel string, s *Socket, answer func(subWaiter, error)) error {
	done := make(chan error, 1)
	st, err := t.join(channel, s, subWaiter{s: s, done: done}, math.MaxInt32)
	if err != nil {
		return err
	}
	switch st {
	case joinReady:
		return nil
	case joinStart:
		t.complete(ctx, channel, answer)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
		t.unsubscribe(channel, s)
	}
	return err
}

// complete subscribes channel at the broker for the entry join created
// and answers every waiter. On error the entry goes, with every socket in
// it; a later subscriber starts afresh.
func (t *subTable) complete(ctx context.Context, channel string, answer func(subWaiter, error)) {
	err := t.broker.Subscribe(ctx, channel)
	t.pending.Add(-1)
	sh := t.shard(channel)
	sh.mu.Lock()
	e := sh.m[channel]
	e.err, e.done = err, true
	ws := e.waiters
	e.waiters = nil
	if err != nil || !sh.held(channel, e) {
		// Failed, or everyone left meanwhile.
		if t.pres != nil {
			e.each(func(s *Socket) { t.pres.leave(channel, s) })
		}
		hidden := len(sh.hidden[channel])
		delete(sh.hidden, channel)
		t.drop(sh, channel)
		t.subs.Add(-int64(e.n + hidden))
		if err == nil {
			t.broker.Unsubscribe(channel)
		}
	}
	sh.mu.Unlock()
	t.changed()
	for _, w := range ws {
		if w.done != nil {
			w.done <- err
			continue
		}
		answer(w, err)
	}
}

// drop deletes channel's entry, rebuilding the shard's map when it has
// fallen far below its peak. The caller holds sh.mu.
func (t *subTable) drop(sh *subShard, channel string) {
	delete(sh.m, channel)
	t.channels.Add(-1)
	if sh.peak >= shardShrinkFloor && len(sh.m) < sh.peak/4 {
		m := make(map[string]*chanEntry, len(sh.m))
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m, sh.peak = m, len(m)
	}
}

// unsubscribe removes s from channel and reports whether it was there.
func (t *subTable) unsubscribe(channel string, s *Socket) bool {
	sh := t.shard(channel)
	sh.mu.Lock()
	e := sh.m[channel]
	if e == nil || !(e.remove(s) || sh.unhide(channel, s)) {
		sh.mu.Unlock()
		return false
	}
	t.subs.Add(-1)
	if t.pres != nil {
		t.pres.leave(channel, s)
	}
	if !sh.held(channel, e) && e.done {
		t.drop(sh, channel)
		if e.err == nil {
			t.broker.Unsubscribe(channel)
		}
	}
	sh.mu.Unlock()
	t.changed()
	return true
}

// fanout queues frame to every local subscriber of channel, under the
// shard's read lock (queueing never blocks and takes no table lock). It
// returns the number of subscribers. The clock is read once: the writers
// measure how long each frame waited from it.
func (t *subTable) fanout(channel string, frame []byte) int {
	sh := t.shard(channel)
	sh.mu.RLock()
	e := sh.m[channel]
	n := 0
	if e != nil {
		n = e.n
		now := wsconn.Now()
		if e.many != nil {
			for s := range e.many {
				s.q.EnqueueCoalescedAt(frame, now)
			}
		} else if e.one != nil {
			e.one.q.EnqueueCoalescedAt(frame, now)
		}
	}
	sh.mu.RUnlock()
	return n
}

// has reports whether s is subscribed to channel.
func (t *subTable) has(channel string, s *Socket) bool {
	sh := t.shard(channel)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.m[channel]
	return e != nil && e.has(s)
}

// localChannels returns every channel with local subscribers (for a
// cluster broker resyncing after a reconnect).
func (t *subTable) localChannels() []string {
	var out []string
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for ch, e := range sh.m {
			if sh.held(ch, e) {
				out = append(out, ch)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

func (t *subTable) changed() {
	if t.onChange != nil {
		t.onChange(t.channels.Load(), t.subs.Load())
	}
}

// sockets returns channel's local subscribers.
func (t *subTable) sockets(channel string) []*Socket {
	sh := t.shard(channel)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.m[channel]
	if e == nil {
		return nil
	}
	if e.many == nil {
		if e.one == nil {
			return nil
		}
		return []*Socket{e.one}
	}
	out := make([]*Socket, 0, len(e.many))
	for s := range e.many {
		out = append(out, s)
	}
	return out
}

// counts returns the subscriber count of up to max channels that match,
// and whether more matched.
func (t *subTable) counts(match func(string) bool, max int) (map[string]int, bool) {
	out := map[string]int{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for ch, e := range sh.m {
			if e.n == 0 || !match(ch) {
				continue
			}
			if len(out) == max {
				sh.mu.RUnlock()
				return out, true
			}
			out[ch] = e.n
		}
		sh.mu.RUnlock()
	}
	return out, false
}

// joinHidden is join for a subscriber of a channel with history: s holds
// the channel's broker subscription at once but gets no deliveries until
// reveal, which the channel's recovery calls at the right point of its
// delivery order.
func (t *subTable) joinHidden(channel string, s *Socket, w subWaiter, maxPending int) (joinState, error) {
	sh := t.shard(channel)
	sh.mu.Lock()
	e, st, err := t.entryLocked(sh, channel, maxPending)
	if err != nil {
		sh.mu.Unlock()
		return 0, err
	}
	if !e.has(s) {
		if sh.hidden == nil {
			sh.hidden = make(map[string]map[*Socket]struct{})
		}
		h := sh.hidden[channel]
		if h == nil {
			h = make(map[*Socket]struct{}, 1)
			sh.hidden[channel] = h
		}
		if _, ok := h[s]; !ok {
			h[s] = struct{}{}
			t.subs.Add(1)
		}
	}
	if st != joinReady {
		e.waiters = append(e.waiters, w)
	}
	sh.mu.Unlock()
	t.changed()
	return st, nil
}

// reveal makes hidden subscriber s of channel a live one. first runs
// under the shard lock before s is added, so what it queues to s (the
// subscribe acknowledgement, the recovered publications) precedes every
// later delivery. It reports false, running nothing, when s is no longer
// hidden there (it unsubscribed or was torn down meanwhile).
func (t *subTable) reveal(channel string, s *Socket, first func()) bool {
	sh := t.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[channel]
	if e == nil || !sh.unhide(channel, s) {
		return false
	}
	first()
	e.add(s)
	return true
}
