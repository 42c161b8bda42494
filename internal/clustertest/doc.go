// Package clustertest runs a whole sccgo cluster inside one test process:
// one state server, N brokers and M frontends, each on its own
// 127.0.0.1:0 listener with real sockets, real inter-node links and real
// gossip. Every node can be stopped gracefully, killed abruptly and
// restarted at the same address, and Traffic drives sequence-checked
// publish/subscribe load through the frontends, counting lost, duplicated
// and out-of-order messages per publisher and channel.
package clustertest
