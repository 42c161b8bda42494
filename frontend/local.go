package frontend

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/sccgo/sccgo/internal/dedupe"
	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/presence"
)

// LocalBroker is the standalone Broker: every publish is handed straight
// back to the Sink of the same frontend, so the frontend is a complete
// single-node server.
type LocalBroker struct {
	sink  atomic.Pointer[Sink]
	dedup *dedupe.Set   // set by the server before Start; nil delivers every retry
	pres  *presence.Hub // set by the server before Start (presence.go)

	// hist keeps the history of channels whose rule keeps one; set by
	// the server before Start (nil: no history), with histOpts.
	hist     *history.Store
	histOpts func(channel string) history.Options
}

// NewLocalBroker returns a LocalBroker.
func NewLocalBroker() *LocalBroker { return &LocalBroker{} }

// errNotStarted is returned by Publish before Start.
var errNotStarted = errors.New("frontend: broker not started")

// Start implements Broker.
func (b *LocalBroker) Start(_ context.Context, sink Sink) error {
	b.sink.Store(&sink)
	if b.pres != nil {
		b.pres.Start()
	}
	return nil
}

// Subscribe implements Broker; local subscriptions need nothing, so it
// never blocks and a socket's subscribe is answered inline.
func (b *LocalBroker) Subscribe(ctx context.Context, _ string) error { return ctx.Err() }

// Unsubscribe implements Broker.
func (b *LocalBroker) Unsubscribe(string) {}

// Publish implements Broker: it delivers to the local subscribers before
// returning.
func (b *LocalBroker) Publish(_ context.Context, channel string, data []byte) error {
	s := b.sink.Load()
	if s == nil {
		return errNotStarted
	}
	if b.hist != nil {
		if o := b.histOpts(channel); o.Enabled() {
			if ps, ok := (*s).(PositionSink); ok {
				// Delivered under the stream's lock: in offset order, and
				// never between a recovering subscriber's read and attach.
				b.hist.Append(channel, o, data, func(pos history.Position) {
					ps.DeliverPos(channel, data, pos.Offset, pos.Epoch)
				})
				return nil
			}
		}
	}
	(*s).Deliver(channel, data)
	return nil
}

// Recover implements Recoverer: attach runs under the stream's lock,
// before Recover returns.
func (b *LocalBroker) Recover(ctx context.Context, channel string, from history.Position, limit int, attach func(history.Result)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.hist == nil {
		attach(history.Result{Reason: history.ReasonDisabled})
		return nil
	}
	b.hist.Since(channel, b.histOpts(channel), from, limit, attach)
	return nil
}

// History implements Recoverer.
func (b *LocalBroker) History(ctx context.Context, channel string, limit int) ([]history.Pub, history.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, history.Position{}, err
	}
	if b.hist == nil {
		return nil, history.Position{}, nil
	}
	pubs, pos, _ := b.hist.Latest(channel, limit)
	return pubs, pos, nil
}

// PublishIdempotent implements IdempotentPublisher: a (channel, key) pair
// seen within the dedupe window is accepted and not delivered again.
func (b *LocalBroker) PublishIdempotent(ctx context.Context, channel string, data []byte, key string) error {
	if b.dedup != nil && !b.dedup.FirstSeen(channel+"\x00"+key) {
		return nil
	}
	return b.Publish(ctx, channel, data)
}

// Ready implements Broker: a started LocalBroker is always ready.
func (b *LocalBroker) Ready() bool { return b.sink.Load() != nil }

// Close implements Broker.
func (b *LocalBroker) Close() error {
	if b.pres != nil {
		b.pres.Close()
	}
	return nil
}
