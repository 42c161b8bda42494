// Package ring maps a channel name to the broker that owns it.
//
// Every frontend computes the same owner for a channel from the committed
// broker set alone, so no node has to ask anyone where a channel lives. The
// mapping is rendezvous (highest random weight) hashing: each broker's score
// for a channel is a 64-bit mix of the channel's xxhash and a per-broker seed
// (the xxhash of the broker ID), and the highest score wins. This gives the
// properties the cluster relies on:
//
//   - deterministic: the owner depends only on the channel and the broker set,
//     never on the order the brokers were listed in;
//   - balanced: each broker owns about 1/N of the channels;
//   - minimal movement: adding a broker moves only the channels it wins;
//     removing one moves only the channels it owned;
//   - cheap: one xxhash of the channel plus one multiply-xorshift per broker.
//
// A Ring is immutable and safe for concurrent use. A lookup with 10 brokers
// costs about 17ns (BenchmarkOwner), as much as a cache hit, so callers need
// Cache only for rings of many dozens of brokers.
package ring
