//go:build !unix

package wsconn

import "syscall"

// waitReadable is a no-op where peeking is not available; the reader then
// parks inside the WebSocket read instead.
func waitReadable(syscall.RawConn) error { return nil }
