// Package protocol holds sccgo's wire formats and nothing else: no I/O and no
// goroutines.
//
// The SocketCluster client protocol (sc.go, codes.go, errors.go) is what
// browsers and apps speak to a frontend: JSON text frames, each one packet
// object or an array of packets, plus the raw ping and pong frames of
// protocol v1 ("#1"/"#2") and v2 (empty frames). A publish's data passes
// through as raw JSON bytes: it is never decoded and re-encoded.
//
// The inter-node protocol (node.go) is what frontends, brokers and the state
// server speak to each other: WebSocket binary frames, each a batch of
// messages, each message a 1-byte type followed by one msgpack value.
package protocol
