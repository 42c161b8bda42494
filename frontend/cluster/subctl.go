package cluster

// subControl is one broker link's subscription control: the subscribe
// and unsubscribe changes not yet sent to the broker, and the batches
// sent and not yet acknowledged. It does no I/O; the link holds its lock
// around every call and sends what next returns.
//
// A subscription storm (hundreds of sockets subscribing to new channels
// and leaving them) would otherwise put one Subscribe or Unsubscribe per
// channel on the link, each answered by a SubAck, in the same queues as
// the publishes and deliveries of every other client: a publish would
// wait behind thousands of them, at both ends. Instead, changes wait here
// while Config.SubscribeWindow batches are in flight, so at most that
// many batches of at most Config.SubscribeBatch channels are ever ahead
// of a publish on the link or in the broker's reader, and one
// acknowledgement wakes at most one batch's subscribers. A channel
// subscribed and unsubscribed (or the other way round) before its change
// was sent costs the broker nothing. The broker's acknowledgement of a
// batch means every earlier message on the link was applied, as before,
// so a subscriber is told it is subscribed only once the broker holds
// the channel.
type subControl struct {
	// pending maps a channel to the change not yet sent: true to
	// subscribe, false to unsubscribe.
	pending map[string]bool
	// queue holds the pending channels in arrival order; a name whose
	// change was cancelled or already sent is skipped.
	queue []string
	// taken counts the queue positions consumed since the link was made.
	taken uint64
	// marks wait for pending subscribes: each is released once every
	// queue position below its pos has been sent and acknowledged.
	marks []ctlMark

	// maxBytes bounds the channel names of one batch (0: no bound), so
	// that a batch fits in one message of the link's frame limit
	// whatever the names' lengths.
	maxBytes int64

	sentID  uint64 // id of the last batch (or Sync) sent
	ackedID uint64 // highest id acknowledged
	// waiters wait for acknowledgements, in ascending id order (ids only
	// grow), so an acknowledgement releases a prefix.
	waiters []subWaiter
}

// ctlMark is closed once every queue position below pos was sent and
// acknowledged.
type ctlMark struct {
	pos uint64
	ch  chan struct{}
}

// subWaiter is closed once the broker acknowledged subscribe id.
type subWaiter struct {
	id uint64
	ch chan struct{}
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ctlStats counts what one call did, for the metrics.
type ctlStats struct {
	coalesced int // changes cancelled by the opposite one before they were sent
}

// subscribe records chans in interest and queues the subscribes of the
// new ones; it returns a channel closed once the broker holds all of
// chans.
func (c *subControl) subscribe(interest map[string]struct{}, chans []string, st *ctlStats) <-chan struct{} {
	if c.pending == nil {
		c.pending = make(map[string]bool)
	}
	queued, sent := false, false
	for _, ch := range chans {
		if _, ok := interest[ch]; ok {
			if c.pending[ch] {
				queued = true
			} else {
				sent = true
			}
			continue
		}
		interest[ch] = struct{}{}
		if sub, ok := c.pending[ch]; ok && !sub {
			// Its unsubscribe was never sent: the broker still holds it
			// (or will, once the subscribe in flight is applied).
			delete(c.pending, ch)
			st.coalesced += 2
			sent = true
			continue
		}
		c.pending[ch] = true
		c.queue = append(c.queue, ch)
		queued = true
	}
	switch {
	case queued:
		return c.markLocked()
	case sent && c.sentID > c.ackedID: // in flight
		return c.waiter(c.sentID)
	}
	return closedCh
}

// unsubscribe drops chans from interest and queues the unsubscribes of
// those the broker holds or will hold.
func (c *subControl) unsubscribe(interest map[string]struct{}, chans []string, st *ctlStats) {
	if c.pending == nil {
		c.pending = make(map[string]bool)
	}
	for _, ch := range chans {
		if _, ok := interest[ch]; !ok {
			continue
		}
		delete(interest, ch)
		if sub, ok := c.pending[ch]; ok && sub {
			// Its subscribe was never sent.
			delete(c.pending, ch)
			st.coalesced += 2
			continue
		}
		c.pending[ch] = false
		c.queue = append(c.queue, ch)
	}
}

// markLocked returns the mark at the queue's end.
func (c *subControl) markLocked() chan struct{} {
	pos := c.taken + uint64(len(c.queue))
	if n := len(c.marks); n > 0 && c.marks[n-1].pos >= pos {
		return c.marks[n-1].ch
	}
	m := ctlMark{pos: pos, ch: make(chan struct{})}
	c.marks = append(c.marks, m)
	return m.ch
}

// waiter returns the waiter for id, which is never below the ids already
// waited for.
func (c *subControl) waiter(id uint64) chan struct{} {
	if n := len(c.waiters); n > 0 && c.waiters[n-1].id >= id {
		return c.waiters[n-1].ch
	}
	w := make(chan struct{})
	c.waiters = append(c.waiters, subWaiter{id: id, ch: w})
	return w
}

// busy reports whether window batches are in flight.
func (c *subControl) busy(window int) bool { return c.sentID-c.ackedID >= uint64(max(window, 1)) }

// next takes the next batch, at most max channels, when fewer than
// window are in flight: the channels to unsubscribe and to subscribe,
// and the id of the Subscribe that must follow them (sent even when it
// names no channel: its acknowledgement paces the next batch). ok is
// false when there is nothing to send or the window is full.
func (c *subControl) next(max, window int) (unsub, sub []string, id uint64, ok bool) {
	if c.busy(window) || len(c.queue) == 0 && len(c.marks) == 0 {
		return nil, nil, 0, false
	}
	i := 0
	size := int64(16) // the message's headers, as in splitSync
	for ; i < len(c.queue) && len(unsub)+len(sub) < max; i++ {
		ch := c.queue[i]
		s, ok := c.pending[ch]
		if !ok {
			continue
		}
		size += int64(len(ch)) + 5
		if c.maxBytes > 0 && size > c.maxBytes && len(unsub)+len(sub) > 0 {
			break
		}
		delete(c.pending, ch)
		if s {
			sub = append(sub, ch)
		} else {
			unsub = append(unsub, ch)
		}
	}
	c.taken += uint64(i)
	clear(c.queue[:i])
	c.queue = c.queue[i:] // append reallocates, and the taken head goes with it
	if len(c.queue) == 0 {
		c.queue = nil // let a storm's backing array go
		if len(c.pending) > 0 {
			clear(c.pending)
		}
		c.pending = nil
	}
	if len(unsub)+len(sub) == 0 {
		// Every change taken was cancelled: the marks they held are due.
		c.releaseMarks(closeNow)
		return nil, nil, 0, false
	}
	c.sentID++
	id = c.sentID
	c.releaseMarks(func(ch chan struct{}) {
		c.waiters = append(c.waiters, subWaiter{id: id, ch: ch})
	})
	return unsub, sub, id, true
}

func closeNow(ch chan struct{}) { close(ch) }

// take removes ch's pending subscribe, for a message about ch that the
// broker must read after it (a presence report, which the broker refuses
// for a channel the link does not hold): it returns the id of the
// Subscribe to send now, naming ch alone, or ok false when ch's subscribe
// is not pending. The subscribers waiting for ch keep waiting for the
// batch that would have carried it, which is later.
func (c *subControl) take(ch string) (id uint64, ok bool) {
	if sub, p := c.pending[ch]; !p || !sub {
		return 0, false
	}
	delete(c.pending, ch)
	c.sentID++
	return c.sentID, true
}

// releaseMarks hands every mark whose position was taken to fn.
func (c *subControl) releaseMarks(fn func(chan struct{})) {
	n := 0
	for n < len(c.marks) && c.marks[n].pos <= c.taken {
		fn(c.marks[n].ch)
		n++
	}
	clear(c.marks[:n])
	c.marks = c.marks[n:]
	if len(c.marks) == 0 {
		c.marks = nil
	}
}

// sync is the link's reconnect. The Sync it sends, with id, carries the
// interest except rest, the channels that did not fit in one message;
// those go out after it as subscribes, through the window like any
// other. Nothing else is pending any more. Every subscriber waiting
// (for a mark, or for a batch of the old connection, which will never be
// acknowledged) waits for that Sync's acknowledgement, or, with a rest,
// for the batch that carries the last of it: until then the broker may
// not hold its channel.
func (c *subControl) sync(rest []string) (id uint64) {
	c.taken += uint64(len(c.queue))
	c.queue, c.pending = nil, nil
	c.sentID++
	id = c.sentID
	if len(rest) == 0 {
		c.releaseMarks(func(ch chan struct{}) {
			c.waiters = append(c.waiters, subWaiter{id: id, ch: ch})
		})
		return id
	}
	c.pending = make(map[string]bool, len(rest))
	for _, ch := range rest {
		c.pending[ch] = true
	}
	c.queue = append([]string(nil), rest...)
	end := c.taken + uint64(len(c.queue))
	for i := range c.marks {
		c.marks[i].pos = end
	}
	for _, w := range c.waiters {
		c.marks = append(c.marks, ctlMark{pos: end, ch: w.ch})
	}
	c.waiters = nil
	return id
}

// acked releases the waiters up to id.
func (c *subControl) acked(id uint64) {
	c.ackedID = max(c.ackedID, id)
	n := 0
	for n < len(c.waiters) && c.waiters[n].id <= id {
		close(c.waiters[n].ch)
		c.waiters[n] = subWaiter{}
		n++
	}
	c.waiters = c.waiters[n:]
	if len(c.waiters) == 0 {
		c.waiters = nil
	}
}

// pendingLen returns the changes waiting to be sent.
func (c *subControl) pendingLen() int { return len(c.pending) }

// close releases every waiter: the link is gone.
func (c *subControl) close() {
	for _, w := range c.waiters {
		close(w.ch)
	}
	c.waiters = nil
	c.taken += uint64(len(c.queue))
	c.queue, c.pending = nil, nil
	c.releaseMarks(closeNow)
}
