// Package membership is the node agent that brokers and frontends run to
// take part in the cluster: it keeps a link to the state server, runs
// gossip, and tells the node (through Handler) which ring to follow.
//
// The agent keeps a nodelink Redialer to the state server. After every
// Welcome it reports its committed ring (a Ring message) so a restarted
// state server resumes above every version in use, re-sends Leave if the
// node is draining, and joins gossip through the Welcome's seeds (which
// also merges pools that configured seeds left apart; a node alone in
// gossip retries its configured seeds, else the Welcome's, every
// GossipRejoinInterval). It answers Prepare with Prepared once
// Handler.Prepare returns, applies Ring and Commit, and sends Stats every
// StatsInterval.
//
// Rings come from two sources. The state server's word wins: its Ring or
// Commit is applied when its version is at least the one held. Gossip
// carries the last committed ring between nodes; a higher version from
// gossip is applied too, so a node started while the state server is down
// still learns the ring. While the state link is down, brokers of the
// committed ring that gossip reports dead are left out: the node applies
// the committed ring minus them, at the same version, which every node
// derives identically. A broker gossip has never heard of counts as dead
// too, once this node has been in gossip with others for
// UnknownBrokerGrace (a node started after the broker died never hears of
// it). An empty result is never applied. When the state is back, its ring
// replaces that.
//
// Every call into Handler runs on the agent's one loop goroutine, so
// Prepare and Commit never overlap. A Commit (or the state link closing)
// that arrives while Prepare runs cancels Prepare's context.
//
// Goroutines: the loop, the Redialer's dial loop (and the link it runs),
// the stats ticker and the gossip joiner; Close stops and waits for all of
// them. Lock order: Agent.mu is a leaf; it is never held while calling the
// Handler, gossip or a link.
package membership
