package frontend

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestListenNoKeepalive: connections accepted on the client port have no
// TCP keepalive, where Go's default listener turns it on for each.
func TestListenNoKeepalive(t *testing.T) {
	keepalive := func(ln net.Listener) int {
		t.Helper()
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ac, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer ac.Close()
		rc, err := ac.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		v, gerr := -1, error(nil)
		if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return v
	}
	def, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if v := keepalive(def); v == 0 {
		t.Fatalf("Go's default listener: SO_KEEPALIVE %d, want it on (the control case)", v)
	}
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if v := keepalive(ln); v != 0 {
		t.Fatalf("client port: SO_KEEPALIVE %d, want 0", v)
	}
}
