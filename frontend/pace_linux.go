package frontend

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// setBacklog calls listen(2) again on ln's socket, which on Linux only
// changes its backlog (the kernel caps it at net.core.somaxconn).
func setBacklog(ln net.Listener, n int) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("listener has no socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), n) }); err != nil {
		return err
	}
	return lerr
}

// listenQueueLen is the number of established connections waiting in ln's
// accept queue: for a listening socket, TCP_INFO reports it as unacked.
func listenQueueLen(ln net.Listener) int {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int(ti.Unacked)
		}
	})
	return n
}

// listenOverflows reads TcpExt ListenOverflows from /proc/net/netstat:
// connections the kernel dropped because a listen queue was full, counted
// over the network namespace (a pod's own in Kubernetes).
func listenOverflows() float64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	return parseNetstat(b, "TcpExt:", "ListenOverflows")
}

// parseNetstat finds field in the section whose header and value lines
// both start with prefix.
func parseNetstat(b []byte, prefix, field string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var names []string
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)[1:]
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == field && i < len(f) {
				v, _ := strconv.ParseFloat(f[i], 64)
				return v
			}
		}
		return 0
	}
	return 0
}
