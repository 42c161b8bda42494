// Package nodelink is the authenticated, batched connection between two
// sccgo nodes: frontend to broker, and every node to the state server.
//
// A link is a WebSocket at Path on the accepting node's port. The acceptor
// opens with a Challenge carrying a fresh nonce; the dialer answers Hello
// with an HMAC (SCC_AUTH_KEY) over that nonce and its identity; the acceptor
// verifies it and answers Welcome, whose own HMAC over the dialer's nonce
// proves to the dialer that the acceptor holds the key too. Anything else
// first, or nothing within Config.HandshakeTimeout, is rejected and counted;
// no message reaches a Handler before Welcome. Because every Challenge nonce
// is fresh, a captured Hello is worthless on another connection.
//
// After the handshake each side has one reader and one writer goroutine.
// Send and SendRaw enqueue without blocking on the network: the queue is
// bounded in bytes (Config.QueueMaxBytes) and what does not fit is dropped
// and counted. The writer takes everything queued when it wakes and writes
// it as one WebSocket message (up to Config.MaxFrameBytes), so batching
// adds no timer latency. SendRaw enqueues caller-owned bytes without copying,
// so one encoded Deliver can be shared by every link it goes to.
//
// Liveness: a side that has written nothing for Config.PingInterval sends a
// Ping (answered with a Pong); a link on which nothing has arrived for
// Config.PingTimeout is closed.
//
// Redialer keeps a dialed link up with jittered backoff.
//
// Goroutines: Run owns the link's writer goroutine and returns only after it
// has exited; a Redialer owns its dial loop and Close waits for it.
//
// Lock order: Link.mu is a leaf; it is never held across I/O or a callback.
package nodelink
