package clustertest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// SwitchProxy forwards TCP connections to one target address, as a load
// balancer in front of frontends does. Switch changes the target for the
// connections that follow: clients of a frontend that died reconnect
// through it to another one.
type SwitchProxy struct {
	ln     net.Listener
	target atomic.Pointer[string]
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
	wg     sync.WaitGroup
}

// StartSwitchProxy listens on a loopback port, forwards to target
// (host:port) and closes, with every connection through it, when t ends.
func StartSwitchProxy(t testing.TB, target string) *SwitchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &SwitchProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.target.Store(&target)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

func (p *SwitchProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.pipe(c) })
	}
}

// track records c so Close can cut it; false once the proxy is closed.
func (p *SwitchProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *SwitchProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// pipe copies both ways until either side ends, then closes both: a
// target that dies drops its clients' connections, as a balancer does.
func (p *SwitchProxy) pipe(c net.Conn) {
	defer p.untrack(c)
	u, err := net.Dial("tcp", *p.target.Load())
	if err != nil {
		return
	}
	if !p.track(u) {
		u.Close()
		return
	}
	defer p.untrack(u)
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }() // ends when pipe closes c and u
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

// Switch sends the connections that follow to target (host:port).
func (p *SwitchProxy) Switch(target string) { p.target.Store(&target) }

// URL returns the client WebSocket URL through the proxy.
func (p *SwitchProxy) URL() string { return "ws://" + p.ln.Addr().String() + "/socketcluster/" }

// Close stops accepting, cuts every connection and waits for the copies
// to end. It is idempotent.
func (p *SwitchProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
