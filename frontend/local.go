package frontend

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/sccgo/sccgo/internal/dedupe"
	"github.com/sccgo/sccgo/internal/presence"
)

// LocalBroker is the standalone Broker: every publish is handed straight
// back to the Sink of the same frontend, so the frontend is a complete
// single-node server.
type LocalBroker struct {
	sink  atomic.Pointer[Sink]
	dedup *dedupe.Set   // set by the server before Start; nil delivers every retry
	pres  *presence.Hub // set by the server before Start (presence.go)
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
	(*s).Deliver(channel, data)
	return nil
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
