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
// opening many sockets, refused publishes paced on three hundred sockets
// at once), measure the heap in-process where memory is the
// target, and log the healthy pair's round-trip p99 before and during each
// attack. The peer-side suite attacks the /sccgo/link
// endpoint of a real broker and state server with raw WebSocket connections.
// The exposure suite runs the built binaries as a cluster and checks what an
// outsider on a client or link port can read, and that a web page cannot
// drive scc-local's control endpoint.
// The resource suites hold a thousand idle connections against each port
// (and against the built frontend under a 1024-descriptor limit), flood one
// channel from one anonymous publisher, and forward malformed publications
// from a rogue broker. The subscription-storm suite (substorm_test.go)
// records what a frontend's broker link carries while hundreds of
// sockets subscribe and leave, and checks the subscription traffic a
// legitimate publish waits behind stays within one batch.
//
// The package has no non-test code; run it with
//
//	go test -race ./test/hostile/
package hostile
