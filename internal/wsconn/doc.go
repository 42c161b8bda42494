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
// What a frame costs is mostly its syscalls, so the writer keeps them few:
// each frame is written between Raw.Cork and Raw.Uncork and leaves in one
// write however small the bufio buffer, and packets queued with
// EnqueueCoalesced may wait up to Engine.Coalesce (or the gap last given
// to Engine.SetCoalesce) to share a frame with the ones behind them.
// Packets queued with Enqueue (replies) end such a wait at once.
//
// Lock order: Queue.mu is a leaf; no callback runs under it. The cork
// writer's mutex is taken by the queue's writer outside Queue.mu, and by
// coder/websocket under its own write lock; it is held across the write
// syscall, so a control frame written meanwhile follows the held frame.
package wsconn
