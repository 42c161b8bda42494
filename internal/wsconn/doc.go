// Package wsconn is the WebSocket connection engine shared by sccgo's
// servers: an upgrade that keeps per-connection buffers small, and an
// outbound queue bounded in bytes and messages that is drained by a writer
// goroutine started on demand.
//
// Memory per idle connection is what decides how many clients a frontend
// holds, so neither part keeps anything large alive while a connection is
// quiet: Accept hands coder/websocket small bufio buffers instead of
// net/http's 4 KiB ones, and a Queue holds no goroutine while it is empty.
//
// Lock order: Queue.mu is a leaf; no callback runs under it.
package wsconn
