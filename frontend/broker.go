package frontend

import "context"

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

// Sink receives messages routed to this frontend. Deliver encodes the
// client frame once and fans it out to every local subscriber of channel.
// data must not be retained by the caller's buffer after Deliver returns:
// Deliver copies what it keeps.
type Sink interface {
	Deliver(channel string, data []byte)
}
