// Package hostile holds the hostile-input suites: tests that attack running
// servers the way a malicious or broken client or peer would, and assert that
// each attack gets a defined answer (a SocketCluster error name, a close code,
// an HTTP status, or a counted link rejection) while the server stays up and
// well-behaved clients keep receiving every message.
//
// The client-side suite attacks a frontend's /socketcluster/ endpoint,
// in-process with small limits and, once, as the built bin/scc-frontend
// process with its defaults. Its flood tests (flood_test.go) attack from
// hundreds of connections at once (publish bursts, control-frame and
// packet floods, unfinished messages, subscription storms, one address
// opening many sockets), measure the heap in-process where memory is the
// target, and log the healthy pair's round-trip p99 before and during each
// attack. The peer-side suite attacks the /sccgo/link
// endpoint of a real broker and state server with raw WebSocket connections.
//
// The package has no non-test code; run it with
//
//	go test -race ./test/hostile/
package hostile
