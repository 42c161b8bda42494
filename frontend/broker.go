package frontend

import (
	"context"

	"github.com/sccgo/sccgo/internal/history"
)

// Broker is the seam between client sessions and message routing. The
// frontend's subscription table calls it; it never sees client connections.
//
// Standalone, the frontend uses LocalBroker, which hands every publish
// straight back to the Sink. In a cluster, the remote implementation
// subscribes at and publishes to the brokers that own each channel.
//
// Implementations must be safe for concurrent use and must not block on
// slow subscribers: Deliver enqueues and returns.
type Broker interface {
	// Start begins routing; deliveries for subscribed channels go to sink.
	// It is called once, before any other method.
	Start(ctx context.Context, sink Sink) error
	// Subscribe is called when the first local subscriber of channel
	// arrives. It returns once messages published to channel anywhere in
	// the cluster will reach sink, or with ctx's error.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe is called when the last local subscriber of channel
	// leaves. It does not block.
	Unsubscribe(channel string)
	// Publish routes one message. data is raw JSON; the broker copies it if
	// it keeps it after returning. It returns once the message is accepted
	// for routing, or with an error that the client receives.
	Publish(ctx context.Context, channel string, data []byte) error
	// Ready reports whether the broker can route (for /readyz).
	Ready() bool
	// Close stops routing and waits for the broker's goroutines.
	Close() error
}

// IdempotentPublisher is implemented by a Broker that can drop repeated
// publishes: PublishIdempotent is Publish with an idempotency key, and a
// publish whose (channel, key) pair was already published within the
// broker's dedupe window is accepted but not delivered again. The server
// API uses it; a Broker without it delivers retries again.
type IdempotentPublisher interface {
	PublishIdempotent(ctx context.Context, channel string, data []byte, key string) error
}

// AckedPublisher is a Broker whose acceptance of a publish is known only
// after Publish returns (the cluster's: the channel's owning broker
// acknowledges it over its link). PublishAcked routes a publish like
// PublishIdempotent (key may be "") and returns a channel that yields
// nil once the owner acknowledged it, or why it was lost. The server
// API waits on it, so that its 200 means the publish was accepted; a
// Broker without it has accepted a publish when Publish returns.
type AckedPublisher interface {
	PublishAcked(channel string, data []byte, key string) (<-chan error, error)
}

// Sink receives messages routed to this frontend. Deliver encodes the
// client frame once and fans it out to every local subscriber of channel.
// data must not be retained by the caller's buffer after Deliver returns:
// Deliver copies what it keeps.
type Sink interface {
	Deliver(channel string, data []byte)
}

// Recoverer is implemented by a Broker that keeps, or reaches, the
// history of channels whose rule keeps one (internal/history).
type Recoverer interface {
	// Recover asks for channel's stream position and, when from.Epoch is
	// set, for the publications after from (at most limit). attach runs
	// at most once, at the point of the channel's delivery order between
	// the returned position and the next publication (under the stream's
	// lock standalone, on the link reader that delivers the channel in a
	// cluster), so a subscriber it registers misses nothing and gets
	// nothing twice. attach must not block. The channel must already be
	// subscribed (Broker.Subscribe returned). Recover returns once attach
	// ran, or with ctx's error; attach may still run after an error, and
	// must then do nothing (the caller decides which came first).
	Recover(ctx context.Context, channel string, from history.Position, limit int, attach func(history.Result)) error
	// History returns up to limit of channel's most recent publications
	// and its position; an empty Epoch means the channel has no history.
	History(ctx context.Context, channel string, limit int) ([]history.Pub, history.Position, error)
}

// PositionSink is implemented by a Sink that delivers publications of
// channels with history with their stream position: DeliverPos is
// Deliver for a publication at offset under epoch. The frontend's Server
// implements it; a Broker calls it for every publication that has an
// offset, in offset order per channel.
type PositionSink interface {
	DeliverPos(channel string, data []byte, offset uint64, epoch string)
}
