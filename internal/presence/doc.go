// Package presence keeps who is in a channel and turns the changes into
// bounded join and leave events.
//
// The broker that owns a channel (the standalone frontend's in-process
// broker when there is no cluster) holds the channel's members in a Table,
// keyed by the reporting source (a frontend link) and the client id, so a
// source's members can be dropped at once when its link goes. A Hub adds
// what a channel's owner needs on top: join and leave events, coalesced
// per channel per interval (a join and a leave of one client in the same
// interval cancel out) and capped per event, with every change left out
// counted.
//
// Stats are O(1): each channel keeps its client count and a count per
// user id. Member lists are read a page at a time.
//
// Lock order: Hub.mu is taken alone; Table shard locks are leaves, and
// Table.srcMu is taken after a shard lock, never before.
package presence
