package frontend

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/cespare/xxhash/v2"
)

// A client whose socket is closed for breaking a limit can dial again at
// once, and each new connection costs the frontend an accept, an HTTP
// upgrade and a SocketCluster handshake before any limit can bite again.
// A few hundred sockets doing that take a core (packet floods and
// partial messages, measured: 13,000–16,000 handshakes in 10 s), and a
// global handshake rate would make every other client wait for them. So
// the frontend keeps a small record per client address: how many of its
// sockets were closed for a limit lately (LimitClosesPerIP), and, when
// set, how fast it opens connections (MaxHandshakesPerIP). An address
// over either is refused right after the TCP accept, with a bare HTTP 503
// and before any request is read, which is the cheapest refusal there is.
// A clean reconnect storm, from any number of addresses, never breaks a
// limit and is never refused by the first.

// Refusal reasons of the source table (rejected_connections_total).
const (
	rejectLimitClosesPerIP = "limit_closes_per_ip"
	rejectHandshakesPerIP  = "handshake_rate_per_ip"
)

// sourceRefusal is the whole HTTP response to a refused connection.
const sourceRefusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 42\r\nConnection: close\r\nRetry-After: 5\r\n\r\nToo many connections from this address now"

// limitCloseReasons are the close reasons that charge the socket's
// address a limit close: the client broke an inbound limit or the
// protocol. A lost network connection does not.
var limitCloseReasons = map[string]bool{
	reasonMessageTooBig:    true,
	reasonRateLimited:      true,
	reasonByteRateLimited:  true,
	reasonTooManyFragments: true,
	reasonBatchTooLarge:    true,
	reasonReadBudget:       true,
	reasonInvalidPayload:   true,
	reasonUnsupportedData:  true,
	reasonBeforeHandshake:  true,
}

const sourceShards = 16

// sourceTable holds the per-address buckets, bounded in size: beyond
// SourceTableSize entries, addresses whose buckets are full (nothing to
// remember) go first, then the one with the most connection credit.
type sourceTable struct {
	cfg      *Config
	clock    func() int64
	perShard int
	shards   [sourceShards]sourceShard
}

type sourceShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*source
}

// source is one address's record. Buckets start full.
type source struct {
	closes bucket // LimitClosesPerIP: may go into debt, down to -burst
	conns  bucket // MaxHandshakesPerIP
	subs   bucket // SubscribeRatePerIP
}

func newSourceTable(cfg *Config, clock func() int64) *sourceTable {
	t := &sourceTable{cfg: cfg, clock: clock, perShard: max(1, (cfg.SourceTableSize+sourceShards-1)/sourceShards)}
	for i := range t.shards {
		t.shards[i].m = make(map[netip.Addr]*source)
	}
	return t
}

// sourceLimits reports whether any per-address rate is set.
func (c *Config) sourceLimits() bool {
	return c.LimitClosesPerIP > 0 || c.MaxHandshakesPerIP > 0 || c.SubscribeRatePerIP > 0
}

func (t *sourceTable) shard(ip netip.Addr) *sourceShard {
	b := ip.As16()
	return &t.shards[xxhash.Sum64(b[:])%sourceShards]
}

// with calls fn with ip's record under its shard's lock, creating it
// (full) when create is set; fn is not called for an unknown address
// otherwise.
func (t *sourceTable) with(ip netip.Addr, create bool, fn func(now int64, e *source)) {
	sh := t.shard(ip)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := t.clock() // under the lock: time never goes back for a bucket
	e := sh.m[ip]
	if e == nil {
		if !create {
			return
		}
		if len(sh.m) >= t.perShard {
			t.evictLocked(sh, now)
		}
		c := t.cfg
		e = &source{
			closes: bucket{tokens: float64(c.LimitCloseBurstPerIP), at: now},
			conns:  bucket{tokens: float64(c.HandshakeBurstPerIP), at: now},
			subs:   bucket{tokens: float64(c.SubscribeBurstPerIP), at: now},
		}
		sh.m[ip] = e
	}
	fn(now, e)
}

// evictScanSources bounds the entries examined to make room for one.
const evictScanSources = 32

func (t *sourceTable) evictLocked(sh *sourceShard, now int64) {
	c := t.cfg
	n := 0
	var victim netip.Addr
	most := -1e300
	removed := false
	for ip, e := range sh.m { // random order
		cl := e.closes.peek(now, c.LimitClosesPerIP, float64(c.LimitCloseBurstPerIP))
		if cl >= float64(c.LimitCloseBurstPerIP) &&
			e.conns.peek(now, c.MaxHandshakesPerIP, float64(c.HandshakeBurstPerIP)) >= float64(c.HandshakeBurstPerIP) &&
			e.subs.peek(now, c.SubscribeRatePerIP, float64(c.SubscribeBurstPerIP)) >= float64(c.SubscribeBurstPerIP) {
			delete(sh.m, ip)
			removed = true
		} else if cl > most {
			victim, most = ip, cl
		}
		if n++; n >= evictScanSources {
			break
		}
	}
	if !removed && victim.IsValid() {
		delete(sh.m, victim)
	}
}

// admit decides a new connection from ip: "" admits it, otherwise the
// refusal reason.
func (t *sourceTable) admit(ip netip.Addr) (reason string) {
	c := t.cfg
	t.with(ip, c.MaxHandshakesPerIP > 0, func(now int64, e *source) {
		if c.LimitClosesPerIP > 0 && e.closes.peek(now, c.LimitClosesPerIP, float64(c.LimitCloseBurstPerIP)) < 1 {
			reason = rejectLimitClosesPerIP
			return
		}
		if c.MaxHandshakesPerIP > 0 && !e.conns.take(now, 1, c.MaxHandshakesPerIP, float64(c.HandshakeBurstPerIP)) {
			e.conns.tokens++ // a refusal costs nothing
			reason = rejectHandshakesPerIP
		}
	})
	return reason
}

// limitClosed charges ip one socket closed for breaking a limit. The
// debt is bounded by the burst, so an address is let in again at most
// 2 × burst / rate after it stopped.
func (t *sourceTable) limitClosed(ip netip.Addr) {
	c := t.cfg
	if c.LimitClosesPerIP <= 0 {
		return
	}
	t.with(ip, true, func(now int64, e *source) {
		burst := float64(c.LimitCloseBurstPerIP)
		e.closes.take(now, 1, c.LimitClosesPerIP, burst)
		e.closes.tokens = max(e.closes.tokens, -burst)
	})
}

// len returns the number of addresses tracked.
func (t *sourceTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// peek returns b's tokens at now without taking any.
func (b *bucket) peek(now int64, rate, burst float64) float64 {
	return min(burst, b.tokens+float64(now-b.at)*rate/1e9)
}

// sourceListener refuses, right after the accept, the connections of
// addresses over their per-source limits.
type sourceListener struct {
	net.Listener
	srv *Server
}

// SyscallConn gives pacing the listening socket (backlog, queue length).
func (l *sourceListener) SyscallConn() (syscall.RawConn, error) {
	sc, ok := l.Listener.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (l *sourceListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(nc.RemoteAddr())
		if !ip.IsValid() {
			return nc, nil
		}
		reason := l.srv.sources.admit(ip)
		if reason == "" {
			return nc, nil
		}
		l.srv.m.rejected.WithLabelValues(reason).Inc()
		if reason == rejectLimitClosesPerIP && l.srv.holdRefusal(nc) {
			continue
		}
		refuseNow(nc)
	}
}

// addrOf returns a TCP peer's IP address (IPv4-mapped ones unmapped), or
// the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
