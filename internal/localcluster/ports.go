package localcluster

import (
	"fmt"
	"net"
	"strconv"
)

// Port layout relative to Options.BasePort (7777 by default in scc-local),
// chosen so the default base gives SCC's default ports: state 7777, brokers
// 8888, 8889, ..., frontends 8000, 8001, ..., gossip from 7946 upward. The
// admin ports (metrics, status page) are the state's 7778 (scc-state's
// default) and the service port + 100 for the others: brokers 8988, ...,
// frontends 8100, ....
const (
	brokerPortOffset   = 1111 // 7777 → 8888
	frontendPortOffset = 223  // 7777 → 8000
	gossipPortOffset   = 169  // 7777 → 7946
	stateAdminOffset   = 1    // 7777 → 7778
	adminPortOffset    = 100  // 8888 → 8988, 8000 → 8100
	// maxPortProbes bounds the search for a free gossip port.
	maxPortProbes = 1000
)

// ports hands out the ports of one cluster. With a fixed base, service
// ports are deterministic (an occupied one is an error, so the documented
// URLs are never silently different) and gossip ports are searched upward
// for a free one. With base 0 every port is a free one from the kernel.
type ports struct {
	host string
	base int
	used map[int]bool
}

func newPorts(host string, base int) *ports {
	return &ports{host: host, base: base, used: make(map[int]bool)}
}

// service returns the port for the idx-th (0-based) node of a role.
func (p *ports) service(role Role, idx int) (int, error) {
	if p.base == 0 {
		return p.free(false)
	}
	var port int
	switch role {
	case RoleState:
		port = p.base + idx
	case RoleBroker:
		port = p.base + brokerPortOffset + idx
	default:
		port = p.base + frontendPortOffset + idx
	}
	for p.used[port] {
		port++
	}
	if port > 65535 {
		return 0, fmt.Errorf("no port left for %s %d above base %d", role, idx+1, p.base)
	}
	if !p.tcpFree(port) {
		return 0, fmt.Errorf("%s port %d on %s is in use", role, port, p.host)
	}
	p.used[port] = true
	return port, nil
}

// admin returns the admin port for the node whose service port is
// service.
func (p *ports) admin(role Role, service int) (int, error) {
	if p.base == 0 {
		return p.free(false)
	}
	port := service + adminPortOffset
	if role == RoleState {
		port = service + stateAdminOffset
	}
	for p.used[port] {
		port++
	}
	if port > 65535 {
		return 0, fmt.Errorf("no admin port left for %s above %d", role, service)
	}
	if !p.tcpFree(port) {
		return 0, fmt.Errorf("%s admin port %d on %s is in use", role, port, p.host)
	}
	p.used[port] = true
	return port, nil
}

// gossip returns a port free for both TCP and UDP (memberlist uses both).
func (p *ports) gossip() (int, error) {
	if p.base == 0 {
		return p.free(true)
	}
	port := p.base + gossipPortOffset
	for i := 0; i < maxPortProbes && port <= 65535; i, port = i+1, port+1 {
		if p.used[port] || p.reservedService(port) {
			continue
		}
		if p.tcpFree(port) && p.udpFree(port) {
			p.used[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free gossip port above %d", p.base+gossipPortOffset)
}

// reservedService reports whether port falls in the first few service
// ports of a fixed layout, which gossip ports avoid so nodes added later
// still get their documented ports.
func (p *ports) reservedService(port int) bool {
	const span = 32
	for _, off := range []int{0, brokerPortOffset, frontendPortOffset,
		brokerPortOffset + adminPortOffset, frontendPortOffset + adminPortOffset} {
		if port >= p.base+off && port < p.base+off+span {
			return true
		}
	}
	return false
}

// free asks the kernel for an unused port (and, for gossip, checks that
// UDP is free on it too). The port is released before the child binds it;
// the window is short and the used set avoids handing a port out twice.
func (p *ports) free(udp bool) (int, error) {
	for range maxPortProbes {
		ln, err := net.Listen("tcp", net.JoinHostPort(p.host, "0"))
		if err != nil {
			return 0, fmt.Errorf("finding a free port on %s: %w", p.host, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p.used[port] || (udp && !p.udpFree(port)) {
			continue
		}
		p.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("finding a free port on %s: gave up after %d tries", p.host, maxPortProbes)
}

func (p *ports) tcpFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func (p *ports) udpFree(port int) bool {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(p.host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	pc.Close()
	return true
}
