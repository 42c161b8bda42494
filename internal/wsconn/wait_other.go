//go:build !unix

package wsconn

import "syscall"

// waitReadable is a no-op where peeking is not available; the reader then
// parks inside the WebSocket read instead.
func waitReadable(syscall.RawConn) error { return nil }

// peekReadable always says yes: the reader then reads (and blocks).
func peekReadable(syscall.RawConn) bool { return true }
