// Package netpoll tells a server when a parked connection has bytes to
// read, so that an idle connection needs no goroutine of its own.
//
// A Go server that reads each connection on its own goroutine pays that
// goroutine's stack (2–8 KiB) for every idle client. The frontend instead
// parks an idle socket here: Arm registers the socket's descriptor with
// one epoll instance in one-shot mode, the goroutine that read it exits,
// and when bytes (or a hang-up) arrive the Poller calls the socket's
// Waker, which starts a reader again. The descriptor stays owned by the
// net.Conn (and so by Go's own poller) throughout; this package only
// watches it, always through syscall.RawConn.Control so that a descriptor
// number is never used after the connection closed it.
//
// The epoll descriptor is itself waited on through Go's poller, so the
// Poller's goroutine holds no thread while nothing is ready, and Close
// ends it at once.
//
// Event-loop libraries (gnet, nbio, evio) own their connections and
// bring their own WebSocket code; this package only watches connections
// that net/http accepted and coder/websocket reads.
//
// Only Linux has an implementation; elsewhere New returns
// ErrUnsupported and the server keeps one reader goroutine per
// connection.
package netpoll
