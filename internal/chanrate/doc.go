// Package chanrate limits publishes per channel: one token bucket per
// channel, so that a flood on one channel, which every subscriber of that
// channel pays for, is cut off without touching any other channel.
//
// The frontend asks it before it routes a client's publish. The buckets
// live in a sharded map that is bounded in size: a channel whose bucket is
// full again is idle and may be forgotten at no cost (a new bucket starts
// full), and when a shard is full of busy channels the one evicted is
// picked at random, so a publisher spreading over many channels cannot grow
// memory and gains at most one burst per eviction.
//
// The rate of each channel comes from a hook, so channel rules can give
// channels their own rates; without it every channel gets the default.
package chanrate
