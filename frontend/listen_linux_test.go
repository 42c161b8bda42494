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

// BenchmarkAccept: one loopback connection dialed, accepted and closed per
// op, on Go's default listener (TCP keepalive set on every accepted
// connection) and on the client port's.
func BenchmarkAccept(b *testing.B) {
	for _, c := range []struct {
		name   string
		listen func() (net.Listener, error)
	}{
		{"keepalive", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }},
		{"client-port", func() (net.Listener, error) { return Listen(context.Background(), "127.0.0.1:0") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			ln, err := c.listen()
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			for b.Loop() {
				d, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				a, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				a.Close()
				d.Close()
			}
		})
	}
}
