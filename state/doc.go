// Package state is the cluster state server (scc-state): it knows the
// brokers and frontends, assigns ring versions, coordinates reshards and
// serves the cluster status.
//
// Every broker and frontend keeps a nodelink link to it. The coordinator is
// a state machine driven by one goroutine: link events, messages, gossip
// events and timers all become events in its inbox, so it needs no locks
// and sends to each node in order.
//
// Ring versions only grow: the coordinator keeps the highest version any
// node reported (in Hello, in a Ring report after Welcome, or in Stats) and
// every commit is one above it, so a restarted state server resumes above
// every ring in use.
//
// Membership rules (see the cluster contract):
//   - After Serve starts, StartupDelay collects members. Then the first ring
//     is the connected, non-draining brokers; if they are exactly the ring
//     nodes already hold, it is committed directly at a new version (nothing
//     moves), otherwise it is resharded to.
//   - Each broker has its own timers: a join timer (ScaleOutDelay) when it is
//     healthy and not in the ring, a leave timer (ScaleBackDelay) when it is
//     in the ring and unhealthy. A broker is healthy while its link is up and
//     gossip has not declared it dead since that link came up. A broker that
//     recovers before its leave timer fires stays in the ring with no
//     reshard. When a leave timer fires, the other unhealthy brokers of the
//     ring whose leave timers fire within half of ScaleBackDelay leave with
//     it, in one reshard (brokers that fail together); no other timer
//     affects another broker.
//   - A broker that sends Leave (or says Draining in Hello) is resharded out
//     at once and gets Released after the commit and the drain window.
//   - Reshards are serialized: prepare (every connected frontend answers
//     Prepared, or PrepareTimeout passes), commit (to every frontend and
//     broker), then the drain window; changes that come meanwhile are
//     merged into the next reshard.
//
// Lock order: Server.mu, then coordinator.mu (the published snapshot); both
// are leaves with respect to I/O.
package state
