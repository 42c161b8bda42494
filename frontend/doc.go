// Package frontend is sccgo's client-facing server: a SocketCluster
// protocol endpoint that the stock socketcluster-client libraries connect
// to unchanged. It keeps the local subscription table and hands publishes
// to a Broker: LocalBroker when standalone, a cluster broker (package
// frontend/cluster) in a cluster.
//
// # Goroutines
//
// Per socket, at most one reader goroutine (started by the upgrade
// handler, which then returns so net/http's request state is freed) reads,
// dispatches packets in order and tears the socket down. When nothing is
// left to read it parks the socket (ParkIdleSockets): the socket's
// descriptor is armed, one-shot, in the server's poller (internal/netpoll)
// and the goroutine returns, so an idle socket holds no goroutine. The
// poller starts a reader again when bytes or a hang-up arrive; whoever
// closes a socket's connection (a close handshake, the closer, a write
// failure, Shutdown) wakes it too, because a closed descriptor leaves the
// poller without an event. Socket.rstate makes sure one reader runs at a
// time. Outbound packets go to a bounded wsconn.Queue whose writer
// goroutine exists only while it has something to write. One sweeper
// goroutine walks all sockets to send pings and enforce the handshake and
// pong timeouts and token expiry. RPC handlers run on goroutines of their
// own. The Server's WaitGroup owns all of them, and counts each socket
// from its upgrade to its teardown whether or not a goroutine runs for it;
// Shutdown waits for it.
//
// # Lock order
//
// Server.regMu → socketShard.mu; subShard.mu → wsconn.Queue.mu (fan-out
// enqueues under the shard read lock). Socket.mu is never held while
// taking another lock, and no lock is held across network I/O or a broker
// Subscribe. Broker.Unsubscribe is called under the shard lock, so that it
// is ordered before any later Subscribe of the same channel; it must not
// block. Socket.rmu (the reader's look at its read buffer versus a close
// handshake) is a leaf, and so are Socket.limMu (the inbound token
// buckets, which the WebSocket library's reads charge), ipTable.mu (the
// per-address counts), sourceShard.mu (the per-address rates) and
// subscribeBucket.mu (SubscribeRate).
//
// # Limits against hostile clients
//
// Every resource a client can make the frontend hold has a per-socket and
// a frontend-wide bound: inbound frames and bytes are charged to token
// buckets as they arrive from the network (wsconn.Meter), before the
// WebSocket library or the JSON decoder spends anything on them; batches
// and fragmented messages have caps; the bytes of partly read messages
// are charged to ReadBudget; a publish's size is a limit of its own, well
// below the outbound queue bound, so one client's burst cannot overflow
// another's queue; and subscriptions count against SocketChannelLimit,
// MaxSubscriptions and the per-address caps. Waiting for a broker never
// blocks a socket's reader: the broker subscription of a new channel runs
// on a goroutine of its own and the acks follow it, while the reader goes
// on answering pings. Only the subscribe rates (SubscribeRate,
// SubscribeRatePerIP) hold a reader, on purpose, so that a storm slows
// itself; the socket counts as alive while it waits.
//
// What clients can make the frontend do per second is bounded as well, so
// that one client's load does not become other clients' latency: an
// address whose sockets keep being closed for breaking limits is refused
// right after the TCP accept (LimitClosesPerIP, sources.go), and client
// publishes are charged to their channel's publish rate and to its
// delivery budget, which weighs each publish by the channel's local
// subscribers and its size (ChannelDeliveryRate). Tables that a storm fills are rebuilt small once it
// has gone, since Go maps never shrink.
//
// Presence (presence.go) reports a channel's members under the channel's
// subscription shard lock and then its presence stripe lock, in that
// order: subShard.mu → presLocal.locks[i] → the Broker's own locks
// (PresenceJoin and PresenceLeave must not block). A PresenceBroker's
// re-reports take the stripe lock through ReportPresence and hold none of
// the table's locks.
//
// The server API (api.go, docs/api.md) keeps a second subscription table
// for its internal per-user channels, with the same lock order; its
// waiter map lock is a leaf.
//
// # Memory per idle socket
//
// About 3.4 KiB RSS per idle subscribed socket after a forced GC
// (TestIdleMemory, 10,000 sockets; docs/operations.md has the binary's
// figures). Four choices keep it there: the upgrade handler returns at
// once so net/http's per-request buffers are freed, and wsconn.Accept
// gives the WebSocket 256 B + 128 B buffers instead of 4 KiB ones; an
// idle socket parks in the poller with no goroutine and lends its read
// buffer to a pool (ParkIdleSockets); an idle queue has no writer
// goroutine; and a socket parked for IdleDetach with nothing but pings
// and pongs drops coder/websocket's Conn too (detach.go), which is
// rebuilt over the same connection when it is needed again.
//
// # Wire behaviour worth knowing
//
//   - A subscribe with waitForAuth on an unauthenticated socket fails with
//     AuthError (SocketCluster clients never send one before they are
//     authenticated).
//   - Invokes of procedures with no handler get NoMatchingProcedureError;
//     transmits of unknown events are ignored.
//   - Binary frames close the socket with 1003 (JSON codec only), text
//     frames that are not valid UTF-8 with 1007, messages above MaxPayload
//     with 1009, an overflowing outbound queue with 4010,
//     and a client above InboundRate or InboundByteRate with 4011.
//     Batches above MaxBatchPackets and messages of more than
//     MaxMessageFragments frames close with 1009, a message that would
//     exceed ReadBudget with 4012. A publish above MaxPublishBytes gets
//     InvalidActionError and the socket stays open.
package frontend
