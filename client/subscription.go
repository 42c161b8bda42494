package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sccgo/sccgo/protocol"
)

// Message is one publish received on a subscribed channel. Data is the
// raw JSON the publisher sent (nil when it sent none).
type Message struct {
	Channel string
	Data    json.RawMessage
	// Offset and Epoch are the publication's place in the channel's
	// history, on channels whose rule keeps one (0 and "" otherwise).
	Offset uint64
	Epoch  string
}

// SubscribeOptions are the options of one subscription.
type SubscribeOptions struct {
	// WaitForAuth holds the #subscribe back until the client is
	// authenticated, on this and every later connection.
	WaitForAuth bool
	// Data is sent with the #subscribe (the server's middleware sees it);
	// it is encoded as for Invoke. Nil sends none.
	Data any
	// Handler, if set, receives every message instead of C and Next: it
	// is called on the connection's read goroutine, in order, with no
	// buffer in between, so nothing is ever dropped and no goroutine
	// hand-off is paid per message. It must return quickly (the
	// connection reads nothing else meanwhile) and may keep m. C then
	// delivers nothing and is closed when the Subscription ends.
	Handler func(m Message)
	// OnRecovery, if set, is called with the outcome of every #subscribe
	// of a channel with history, on the connection's read goroutine
	// before the recovered messages: whether the messages missed while
	// disconnected follow (see Recovery). Use it to reload state from
	// the application when recovery failed.
	OnRecovery func(r Recovery)
	// NoRecover turns automatic recovery off: resubscribes after a
	// reconnect do not ask for the messages missed meanwhile.
	NoRecover bool
}

// Subscription receives the messages published to one channel. It ends
// (its channel closes) after Unsubscribe, a #kickOut, a server error on
// resubscribe, or when the Client stops; Err then says why. Across
// reconnects it stays the same: the Client resubscribes it.
type Subscription struct {
	c       *Client
	channel string
	opts    SubscribeOptions
	data    []byte
	sentOn  *conn // connection the #subscribe went out on; guarded by c.mu

	ch      chan Message
	acked   chan struct{}
	ackOnce sync.Once
	done    chan struct{}
	dropped atomic.Uint64
	hist    subHistory // stream position, for recovery (recovery.go)

	mu     sync.Mutex
	closed bool
	err    error
}

// Subscribe subscribes to channel and returns once the server acknowledged
// it. A refusal comes back as *Error (for example SubscribeBlockedError).
// While disconnected, or while a WaitForAuth subscription waits for
// authentication, the subscription is pending and Subscribe waits, up to
// ctx's deadline or AckTimeout; if that passes, the subscription is
// dropped and the error wraps the context's.
func (c *Client) Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (*Subscription, error) {
	data, err := encodeData(opts.Data)
	if err != nil {
		return nil, err
	}
	s := &Subscription{
		c:       c,
		channel: channel,
		opts:    opts,
		data:    data,
		ch:      make(chan Message, bufferFor(opts, c.opts.SubscriptionBuffer)),
		acked:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, ErrClosed
	case c.termErr != nil:
		err := c.termErr
		c.mu.Unlock()
		return nil, err
	}
	if _, ok := c.subs[channel]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("client: subscribing to %q: %w", channel, ErrAlreadySubscribed)
	}
	c.subs[channel] = s
	if cn := c.cur.Load(); cn != nil && (!opts.WaitForAuth || c.authed) {
		if pkt := c.subscribePacketLocked(cn, s); pkt != nil {
			cn.enqueueCtl(pkt)
		}
	}
	c.mu.Unlock()

	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	select {
	case <-s.acked:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("client: subscribing to %q: %w", channel, s.Err())
	case <-ctx.Done():
	}
	select {
	case <-s.acked:
		return s, nil
	default:
	}
	c.remove(s, ctx.Err())
	if c.cur.Load() == nil {
		return nil, fmt.Errorf("client: subscribing to %q: %w: %w", channel, ErrNotConnected, ctx.Err())
	}
	return nil, fmt.Errorf("client: subscribing to %q: %w", channel, ctx.Err())
}

// subscribePacketLocked builds the #subscribe for s on cn and registers its
// acknowledgement, or returns nil if it already went out on cn. The caller
// holds c.mu.
func (c *Client) subscribePacketLocked(cn *conn, s *Subscription) []byte {
	if s.sentOn == cn {
		return nil
	}
	id := c.cid.Add(1)
	if !cn.register(id, func(r callResult) { c.subscribeAcked(cn, s, r) }) {
		return nil
	}
	s.sentOn = cn
	data := append([]byte(`{"channel":`), protocol.AppendString(nil, s.channel)...)
	if s.opts.WaitForAuth {
		data = append(data, `,"waitForAuth":true`...)
	}
	if d := s.subscribeData(); len(d) > 0 {
		data = append(data, `,"data":`...)
		data = append(data, d...)
	}
	data = append(data, '}')
	return protocol.AppendEvent(nil, protocol.EventSubscribe, data, id)
}

// resubscribeLocked builds the #subscribe packets for every subscription
// not yet sent on cn that may be sent now. The caller holds c.mu.
func (c *Client) resubscribeLocked(cn *conn) [][]byte {
	var pkts [][]byte
	for _, s := range c.subs {
		if s.opts.WaitForAuth && !c.authed {
			continue
		}
		if pkt := c.subscribePacketLocked(cn, s); pkt != nil {
			pkts = append(pkts, pkt)
		}
	}
	return pkts
}

// subscribeAcked handles the reply to a #subscribe sent on cn. A lost
// connection leaves the subscription pending; a server error ends it.
func (c *Client) subscribeAcked(cn *conn, s *Subscription, r callResult) {
	c.mu.Lock()
	if c.subs[s.channel] != s || s.sentOn != cn {
		c.mu.Unlock()
		return
	}
	if r.err == nil {
		c.mu.Unlock()
		s.noteAck(r.data)
		s.ackOnce.Do(func() { close(s.acked) })
		return
	}
	if _, lost := r.err.(*CloseError); lost {
		c.mu.Unlock()
		return
	}
	delete(c.subs, s.channel)
	c.mu.Unlock()
	c.log.Debug("subscription refused", "channel", s.channel, "err", r.err)
	s.end(r.err)
}

// remove drops s, tells the server if it was subscribed on the open
// connection, and ends s with why. It reports whether s was current.
func (c *Client) remove(s *Subscription, why error) bool {
	c.mu.Lock()
	if c.subs[s.channel] != s {
		c.mu.Unlock()
		return false
	}
	delete(c.subs, s.channel)
	if cn := c.cur.Load(); cn != nil && s.sentOn == cn {
		cn.enqueueCtl(protocol.AppendEvent(nil, protocol.EventUnsubscribe, protocol.AppendString(nil, s.channel), 0))
	}
	c.mu.Unlock()
	s.end(why)
	return true
}

// Unsubscribe ends the Subscription for channel and sends #unsubscribe.
func (c *Client) Unsubscribe(channel string) error {
	c.mu.RLock()
	s := c.subs[channel]
	c.mu.RUnlock()
	if s == nil || !c.remove(s, ErrUnsubscribed) {
		return fmt.Errorf("client: unsubscribing from %q: %w", channel, ErrNotSubscribed)
	}
	return nil
}

// Channel returns the channel name.
func (s *Subscription) Channel() string { return s.channel }

// C returns the channel messages arrive on. It is closed when the
// Subscription ends.
func (s *Subscription) C() <-chan Message { return s.ch }

// Next returns the next message, or Err once the Subscription has ended
// and its buffer is drained, or ctx's error.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-s.ch:
		if !ok {
			return Message{}, s.Err()
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Unsubscribe ends the Subscription and sends #unsubscribe. It is a no-op
// if the Subscription already ended.
func (s *Subscription) Unsubscribe() error {
	s.c.remove(s, ErrUnsubscribed)
	return nil
}

// Dropped returns how many messages were discarded because the buffer was
// full (see Options.OverflowPolicy).
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Done is closed when the Subscription ends.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the Subscription ended: ErrUnsubscribed, a
// *KickOutError, the server's *Error, ErrClosed or the Client's Err; nil
// while it is active.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// deliver hands m to the reader without ever blocking the connection.
func (s *Subscription) deliver(m Message) {
	if h := s.opts.Handler; h != nil {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			h(m)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- m:
		return
	default:
	}
	s.dropped.Add(1)
	if s.c.opts.OverflowPolicy == DropNewest {
		return
	}
	select {
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- m:
	default:
	}
}

// end closes the Subscription with why, once.
func (s *Subscription) end(why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.err = why
	close(s.ch)
	close(s.done)
}

// Subscriptions returns the channels the Client has a Subscription for,
// pending ones included.
func (c *Client) Subscriptions() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.subs))
	for ch := range c.subs {
		out = append(out, ch)
	}
	return out
}

// bufferFor is the capacity of a Subscription's channel: none when a
// Handler takes the messages.
func bufferFor(opts SubscribeOptions, n int) int {
	if opts.Handler != nil {
		return 0
	}
	return n
}
