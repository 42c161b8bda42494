// Package cluster is the frontend's cluster mode: a frontend.Broker that
// routes publishes to the broker that owns each channel under the committed
// ring, holds one link per broker, keeps one subscription per channel per
// broker link (not per client), and takes part in reshards.
//
// Reshard (see DESIGN.md): on Prepare the frontend subscribes every locally
// subscribed channel whose owner changes at its new owner too, and answers
// once the brokers acknowledged. On Commit it fences (new publishes wait
// until every publish already sent has been acknowledged by its broker, so
// per-publisher order survives the switch), switches publishing to the new
// owners, and after the drain window unsubscribes moved channels at their
// old owners. A subscriber is thus subscribed at both owners from before any
// publisher switches until after every publisher has switched.
//
// Subscription changes go to a broker in batches, a small window of them
// in flight per link (subctl.go): the changes made while it is full wait
// and a subscribe and an unsubscribe of one channel cancel out, so a
// subscription storm puts a bounded amount of subscription work ahead of
// a publish on the link and in the broker's reader.
//
// Lock order: Broker.route (RWMutex over the routing state) before
// brokerLink.mu; a positions shard lock before brokerLink.mu, Broker.mu
// and the sink's locks (deliveries and reveals run under it), so nothing
// the sink calls under its own locks (Unsubscribe) takes a positions
// lock. Nothing holds a
// lock across network I/O; links enqueue.
package cluster
