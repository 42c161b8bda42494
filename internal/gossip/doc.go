// Package gossip wraps hashicorp/memberlist for every sccgo node.
//
// Gossip gives the cluster two things the state server cannot give while it
// is down: fast failure detection of brokers (SWIM, tuned for a LAN so a dead
// broker is declared dead well under two seconds), and the last committed
// ring, carried in memberlist's push/pull state and in broadcasts and merged
// by the highest version. The state server remains the only writer of ring
// versions; gossip only carries and detects.
//
// Each node's memberlist name is its NodeID; its meta is {role, id, addr}.
//
// Callbacks (Config.OnRing, Config.OnMember) run on memberlist's goroutines
// and must not block. Lock order: Gossip.mu is a leaf lock; no callback and
// no memberlist call runs while it is held.
package gossip
