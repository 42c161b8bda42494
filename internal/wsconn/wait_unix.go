//go:build unix

package wsconn

import "syscall"

// waitReadable parks on the runtime's netpoller until the socket is
// readable, peeking one byte so that bytes already in the kernel buffer
// (which produce no new readiness edge) are seen.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
}

// peekReadable reports, without blocking, whether the socket has bytes
// to read or has failed or been closed by its peer (a read would not
// block).
func peekReadable(rc syscall.RawConn) bool {
	var b [1]byte
	ready := true
	err := rc.Control(func(fd uintptr) {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	})
	return ready || err != nil
}
