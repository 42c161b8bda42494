package frontend

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

const subShards = 64

// subTable is the local subscription table: channel → sockets, sharded by
// the channel's hash. It calls Broker.Subscribe (outside any lock) for a
// channel's first local subscriber and Broker.Unsubscribe (non-blocking,
// under the shard lock, which orders it before any later Subscribe of the
// same channel) when the last one leaves.
type subTable struct {
	shards   [subShards]subShard
	broker   Broker
	channels atomic.Int64
	subs     atomic.Int64
	onChange func(channels, subs int64)
}

type subShard struct {
	mu sync.RWMutex
	m  map[string]*chanEntry
}

// chanEntry is one channel's local subscribers. An entry stays in the map
// while its broker subscription is pending, even when empty, so that
// Subscribe and Unsubscribe of one channel never overlap at the broker.
type chanEntry struct {
	one  *Socket              // the only subscriber, when many is nil
	many map[*Socket]struct{} // two or more subscribers
	n    int

	pending chan struct{} // closed when Broker.Subscribe returned, then dropped
	done    bool          // Broker.Subscribe returned (guarded by the shard lock)
	err     error         // Broker.Subscribe's result, set before done
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
	return true
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
		if e.n == 1 {
			for o := range e.many {
				e.one = o
			}
			e.many = nil
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

// subscribe adds s to channel and returns once the broker subscription is
// in force. It reports whether s was newly added. On error s is not
// subscribed.
func (t *subTable) subscribe(ctx context.Context, channel string, s *Socket) (bool, error) {
	sh := t.shard(channel)
	sh.mu.Lock()
	e := sh.m[channel]
	first := e == nil
	if first {
		e = &chanEntry{pending: make(chan struct{})}
		sh.m[channel] = e
		t.channels.Add(1)
	}
	added := e.add(s)
	if added {
		t.subs.Add(1)
	}
	done, err, pending := e.done, e.err, e.pending
	sh.mu.Unlock()
	t.changed()

	if first {
		err = t.broker.Subscribe(ctx, channel)
		sh.mu.Lock()
		e.err, e.done = err, true
		close(e.pending)
		e.pending = nil
		if err != nil || e.n == 0 {
			// Failed, or everyone left meanwhile: the entry goes. Waiters
			// see err and leave; a later subscriber starts afresh.
			delete(sh.m, channel)
			t.channels.Add(-1)
			t.subs.Add(-int64(e.n))
			if err == nil {
				t.broker.Unsubscribe(channel)
			}
		}
		sh.mu.Unlock()
		t.changed()
		return added && err == nil, err
	}
	if !done {
		select {
		case <-pending:
			sh.mu.RLock()
			err = e.err
			sh.mu.RUnlock()
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		t.unsubscribe(channel, s)
		return false, err
	}
	return added, nil
}

// unsubscribe removes s from channel and reports whether it was there.
func (t *subTable) unsubscribe(channel string, s *Socket) bool {
	sh := t.shard(channel)
	sh.mu.Lock()
	e := sh.m[channel]
	if e == nil || !e.remove(s) {
		sh.mu.Unlock()
		return false
	}
	t.subs.Add(-1)
	if e.n == 0 && e.done {
		delete(sh.m, channel)
		t.channels.Add(-1)
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
// returns the number of subscribers.
func (t *subTable) fanout(channel string, frame []byte) int {
	sh := t.shard(channel)
	sh.mu.RLock()
	e := sh.m[channel]
	n := 0
	if e != nil {
		n = e.n
		if e.many != nil {
			for s := range e.many {
				s.q.EnqueueCoalesced(frame)
			}
		} else if e.one != nil {
			e.one.q.EnqueueCoalesced(frame)
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
			if e.n > 0 {
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
