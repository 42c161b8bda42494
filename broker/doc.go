// Package broker is sccgo's channel router between frontends.
//
// Frontends dial a broker over nodelink (role frontend only) and declare,
// per link, the channels they hold local subscribers for: Sync replaces the
// whole set after every (re)connect, Subscribe and Unsubscribe change it,
// and SubAck{ID} answers once a Sync or Subscribe is in force. The broker
// keeps one interest entry per frontend link and channel, not per client.
// A Publish is encoded once as a Deliver and the same bytes are queued to
// every link interested in the channel, the origin included; then one
// cumulative PubAck with the highest Seq of the frame goes back to the
// publisher. Message payloads are never decoded. Brokers do not check ring
// ownership: they serve whatever interest links declare, which is what
// lets frontends move channels between brokers without losing messages.
//
// In a cluster the broker runs a membership agent: it joins gossip, keeps
// a link to the state server (which puts it in the ring) and, on Leave,
// asks to be resharded out and waits for Released while still serving.
//
// Goroutines: each accepted link runs in its HTTP handler's goroutine
// (which Run turns into the link's reader) plus the link's writer; a
// readiness watcher; the agent's own. Shutdown closes every link and waits
// for all of them.
//
// Lock order: Server.mu, then an interest shard's lock; Server.mu, then
// the replicator's mu (which never takes Server.mu: it keeps its own copy
// of the link settings); nodelink's link lock is a leaf below all. No lock is held across I/O: fan-out enqueues
// (SendRaw) under no lock except a shard's read lock snapshot, which is
// released before enqueueing.
package broker
