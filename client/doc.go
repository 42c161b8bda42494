// Package client is sccgo's Go client for the SocketCluster protocol. The
// bench tool and the tests use it, and applications may too: it speaks to an
// sccgo frontend or to a Node socketcluster-server alike.
//
// A Client holds one WebSocket connection at a time. Dial connects and
// completes #handshake; after that the Client reconnects by itself when the
// connection drops (exponential backoff with full jitter), re-sends its auth
// token in the new #handshake and resubscribes every channel in one frame.
//
// # Calls while disconnected
//
// Publish, Invoke, Subscribe and Authenticate wait for the connection to come
// back, up to their ctx deadline (or Options.AckTimeout when ctx has none),
// then fail with an error that wraps ErrNotConnected. A call whose request
// was written but whose reply was lost with the connection fails with a
// *CloseError (errors.Is(err, ErrDisconnected)); it is not retried, so
// delivery is at most once. Transmit and TransmitPublish return
// ErrNotConnected at once when there is no connection. A Subscribe made while
// disconnected stays pending and is sent after the next handshake.
//
// # Writing
//
// Each connection has one writer. Callers append encoded packets to a queue
// bounded in bytes (Options.SendQueueBytes); whatever is queued when the
// writer wakes goes out as one frame, a JSON array of packets, which
// SocketCluster servers accept. Publish and Invoke wait for queue space (ctx
// bounded); Transmit waits at most AckTimeout and then returns ErrQueueFull.
//
// # Goroutines
//
// A connected Client runs two goroutines: the connection's reader, and a
// loop that writes, watches for stale connections and reconnects. Handlers
// for server RPCs (Options.OnRPC) run in their own goroutines. Close waits
// for all of them, so OnRPC handlers must return when their ctx ends.
//
// Handlers OnEvent, OnConnect, OnDisconnect and OnAuthStateChange run on the
// reader, the connection loop, or (OnConnect for the first connection) the
// goroutine calling Dial: they must return quickly and must not call
// blocking Client methods (Publish, Invoke, Subscribe, Authenticate), which
// would wait for a reply that the blocked goroutine has to read. Start a
// goroutine for such work.
//
// # Lock order
//
// Client.mu, then Subscription.mu or conn.callsMu or conn.qmu. No lock is
// held while calling a handler, writing to the socket, or running a call's
// completion function.
package client
