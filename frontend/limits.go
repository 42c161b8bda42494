package frontend

import (
	"net"
	"net/netip"
	"sync"

	"github.com/sccgo/sccgo/protocol"
)

// limitError is an inbound limit that closes a socket: the read that hit
// it fails with it, and the reader closes the socket with its code.
type limitError struct {
	code   int
	reason string
	text   string // the close reason sent; "" for the code's usual text
}

func (e *limitError) Error() string { return "frontend: inbound limit reached: " + e.reason }

var (
	errFrameRate  = &limitError{protocol.CloseRateLimited, reasonRateLimited, ""}
	errByteRate   = &limitError{protocol.CloseRateLimited, reasonByteRateLimited, "Client exceeded the inbound byte rate"}
	errFragments  = &limitError{protocol.CloseMessageTooBig, reasonTooManyFragments, "Message has too many fragments"}
	errReadBudget = &limitError{protocol.CloseServerOverloaded, reasonReadBudget, "Server has no room for the message now; retry later"}
	// errReadsCut fails the reads of a socket closed for a limit, so its
	// close handshake does not read (byte by byte, in the WebSocket
	// library) whatever the client still sends.
	errReadsCut     = &limitError{protocol.CloseAbnormal, reasonReadError, ""}
	errBatchTooLong = &limitError{protocol.CloseMessageTooBig, reasonBatchTooLarge, "Batch has too many packets"}
)

// WebSocket opcodes the meter tells apart.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
)

// bucket is a token bucket on the server clock. It is smaller than a
// rate.Limiter (which also keeps wall-clock times), and every socket has
// two.
type bucket struct {
	tokens float64
	at     int64 // server clock of the last refill, ns
}

func (b *bucket) take(now int64, n, rate, burst float64) bool {
	b.tokens += float64(now-b.at) * rate / 1e9
	b.at = now
	if b.tokens > burst {
		b.tokens = burst
	}
	b.tokens -= n
	return b.tokens >= 0
}

// chargeBounded takes n tokens of b, going into debt no further than
// -burst; a debt already deeper (turns that waiting sockets reserved)
// stays as it is: a charge never forgives it. It charges what has
// happened (a closed socket's subscriptions, a short connection, a limit
// close), where take reserves what is to come.
func (b *bucket) chargeBounded(now int64, n, rate, burst float64) {
	before := b.tokens + float64(now-b.at)*rate/1e9
	b.take(now, n, rate, burst)
	b.tokens = max(b.tokens, min(before, -burst))
}

// InboundBytes implements wsconn.Meter: the byte rate, charged as bytes
// arrive.
func (s *Socket) InboundBytes(n int) error {
	if s.readsCut.Load() {
		return errReadsCut
	}
	cfg := &s.srv.cfg
	if cfg.InboundByteRate <= 0 {
		return nil
	}
	s.limMu.Lock()
	ok := s.bytes.take(s.srv.clock(), float64(n), cfg.InboundByteRate, float64(cfg.InboundByteBurst))
	s.limMu.Unlock()
	if !ok {
		return errByteRate
	}
	return nil
}

// InboundFrame implements wsconn.Meter: every frame costs a message token
// as its header arrives, and a message may span only so many frames.
func (s *Socket) InboundFrame(opcode byte, fin bool) error {
	cfg := &s.srv.cfg
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if cfg.InboundRate > 0 && !s.msgs.take(s.srv.clock(), 1, cfg.InboundRate, float64(cfg.InboundBurst)) {
		return errFrameRate
	}
	switch opcode {
	case opText, opBinary:
		s.fragments = 1
	case opContinuation:
		s.fragments++
	default:
		return nil // control frames sit between fragments
	}
	if int(s.fragments) > cfg.MaxMessageFragments {
		return errFragments
	}
	if fin {
		s.fragments = 0
	}
	return nil
}

// allow charges n packets to the inbound message bucket.
func (s *Socket) allow(now int64, n int) bool {
	rate := s.srv.cfg.InboundRate
	if rate <= 0 || n <= 0 {
		return true
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	return s.msgs.take(now, float64(n), rate, float64(s.srv.cfg.InboundBurst))
}

// takeRead charges n bytes of message buffers to the read budget.
func (s *Server) takeRead(n int64) bool {
	if s.readHeld.Add(n) > s.cfg.ReadBudget {
		s.readHeld.Add(-n)
		return false
	}
	return true
}

// reserveSub charges one subscription of sock to the frontend's and its
// address's budgets, or says which one is spent.
func (s *Server) reserveSub(sock *Socket) (ok bool, reason string) {
	if s.subTotal.Add(1) > int64(s.cfg.MaxSubscriptions) {
		s.subTotal.Add(-1)
		return false, subRejectMax
	}
	if s.countsIPs() && sock.ip.IsValid() && !s.ips.adjust(sock.ip, 0, 1, 0, s.cfg.MaxSubscriptionsPerIP) {
		s.subTotal.Add(-1)
		return false, subRejectMaxPerIP
	}
	return true, ""
}

// releaseSubs gives back n subscriptions of sock.
func (s *Server) releaseSubs(sock *Socket, n int) {
	if n == 0 {
		return
	}
	s.subTotal.Add(-int64(n))
	if s.countsIPs() && sock.ip.IsValid() {
		s.ips.adjust(sock.ip, 0, -n, 0, 0)
	}
}

// remoteIP returns the address a per-address limit applies to, or the zero
// Addr when no such limit is set.
func (s *Server) remoteIP(remoteAddr string) netip.Addr {
	if s.cfg.MaxConnectionsPerIP == 0 && s.cfg.MaxSubscriptionsPerIP == 0 && !s.cfg.sourceLimits() {
		return netip.Addr{}
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// ipTable counts connections and subscriptions per client address. An
// address's entry goes when both reach zero, and the map is rebuilt when
// it falls far below its peak size (Go maps never shrink).
type ipTable struct {
	mu   sync.Mutex
	m    map[netip.Addr]*ipCount
	peak int
}

type ipCount struct{ conns, subs int }

// shrinkFloor is the smallest peak size from which a map that fell to a
// quarter of it is rebuilt.
const shrinkFloor = 256

// adjust adds dconns and dsubs to ip's counts. An increase beyond a
// positive max is refused and changes nothing.
func (t *ipTable) adjust(ip netip.Addr, dconns, dsubs, maxConns, maxSubs int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ip]
	if e == nil {
		if dconns <= 0 && dsubs <= 0 {
			return true
		}
		e = &ipCount{}
		if t.m == nil {
			t.m = make(map[netip.Addr]*ipCount)
		}
		t.m[ip] = e
		t.peak = max(t.peak, len(t.m))
	}
	if dconns > 0 && maxConns > 0 && e.conns+dconns > maxConns ||
		dsubs > 0 && maxSubs > 0 && e.subs+dsubs > maxSubs {
		if e.conns == 0 && e.subs == 0 {
			delete(t.m, ip)
		}
		return false
	}
	e.conns += dconns
	e.subs += dsubs
	if e.conns <= 0 && e.subs <= 0 {
		delete(t.m, ip)
		if t.peak >= shrinkFloor && len(t.m) < t.peak/4 {
			m := make(map[netip.Addr]*ipCount, len(t.m))
			for k, v := range t.m {
				m[k] = v
			}
			t.m, t.peak = m, len(m)
		}
	}
	return true
}

// countsIPs reports whether connections and subscriptions are counted
// per address (ipTable); the per-address rates (sources.go) need the
// address but not the counts, which would cost a table entry per
// connected address.
func (s *Server) countsIPs() bool {
	return s.cfg.MaxConnectionsPerIP > 0 || s.cfg.MaxSubscriptionsPerIP > 0
}
