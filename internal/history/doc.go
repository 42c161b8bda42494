// Package history keeps the recent publications of channels with history
// on: the owning broker (and a standalone frontend's in-process broker)
// appends every publication of such a channel, and a subscriber that comes
// back asks for what it missed.
//
// # Offsets and epochs
//
// Each channel is a stream. Every publication appended to it gets the
// next **offset**: 1 for the first, then strictly increasing by one, with
// no gaps. A stream also has an **epoch**, a short random string chosen
// when the stream is created. The pair (offset, epoch) is a Position. The
// epoch changes only when the stream's history is truly lost (the stream
// was evicted for the memory budget, expired after MetaTTL without a
// publication, or never existed on this node): a new stream starts again
// at offset 1 under a new epoch, so a Position taken under the old epoch
// can never be mistaken for one under the new.
//
// A stream's offset and epoch outlive its publications: the publications
// are dropped TTL (the channel rule's history.ttl) after the stream's last
// publication, or one by one when more than Size (history.size) are held,
// or oldest channel first when the Store's memory budget is exceeded; the
// stream itself (its epoch and last offset, some hundred bytes) stays
// until MetaTTL after its last publication. So a subscriber that missed
// nothing recovers even after its channel's publications expired, and one
// that missed expired publications is told so.
//
// # Recovering
//
// Since(channel, opts, from, limit) answers "everything after from": when
// from's epoch is the stream's and the stream still holds every
// publication after from.Offset, and there are at most limit of them, the
// Result holds them in offset order with Recovered true. Otherwise Result
// is Recovered false with no publications and a Reason; never a partial
// range. Either way Result.Position is the stream's current position, from
// which the caller continues live.
//
// # Ordering with live delivery
//
// Offsets must reach subscribers in offset order, and a recovering
// subscriber must get each publication exactly once: either from Since or
// live. Append and Since take an optional callback that runs under the
// stream's lock, after the append or the read: fan a publication out from
// Append's callback, and attach a recovering subscriber (queue Result's
// publications to it, then register it for live delivery) from Since's
// callback. Then no publication can be appended between the read and the
// attach, and publications of one channel are fanned out in offset order.
// Callbacks must not block and must not call the Store.
//
// # Replication and moves
//
// A standby or a new owner gets a stream with the same epoch and offsets:
// Put appends a publication with an offset chosen elsewhere (the owner's),
// Snapshot copies a stream, Restore installs a copy, Remove forgets one.
//
// # Memory
//
// Channels with history off never reach the Store and cost nothing. The
// Store's bytes (publication data plus a fixed overhead per publication
// and per stream, see PubOverhead and StreamOverhead) are bounded by
// Config.MaxBytes, split evenly across its shards; over it, the least
// recently published stream of the shard loses its oldest publications
// first, then, when only empty streams remain, whole streams (their
// epoch is lost). Every eviction is counted in Stats by reason.
//
// # Locking
//
// The Store is sharded by channel hash; one mutex per shard guards its
// streams, its memory account and its least-recently-published list. No
// other lock is taken under it, except by callbacks, which must not take
// locks that are held while calling into the Store.
package history
