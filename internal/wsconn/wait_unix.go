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
