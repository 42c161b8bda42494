package frontend

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
)

// A client whose socket is closed for breaking a limit can dial again at
// once, and each new connection costs the frontend an accept, an HTTP
// upgrade and a SocketCluster handshake before any limit can bite again.
// A few hundred sockets doing that take a core (packet floods and
// partial messages, measured: 13,000–16,000 handshakes in 10 s), and a
// global handshake rate would make every other client wait for them. So
// the frontend keeps a small record per client address: how many of its
// sockets were closed for a limit lately (LimitClosesPerIP), how many of
// its connections ended soon after they opened (ShortConnectionsPerIP),
// and, when set, how fast it opens connections (MaxHandshakesPerIP). An
// address over any of them is refused right after the TCP accept, with a
// bare HTTP 503 and before any request is read, which is the cheapest
// refusal there is. A clean reconnect storm, from any number of
// addresses, never breaks a limit and its clients stay connected, so it
// is never refused by the first two.

// Refusal reasons of the source table (rejected_connections_total).
const (
	rejectLimitClosesPerIP = "limit_closes_per_ip"
	rejectHandshakesPerIP  = "handshake_rate_per_ip"
	rejectShortConnsPerIP  = "short_connections_per_ip"
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

// shortConnectionReasons are the ends that charge a socket's address a
// short connection when it ends within ShortConnectionTime of its
// upgrade: the client left, never finished its handshake, or was refused
// by the handshake. The server's own closes (a kick, a slow consumer, a
// connect hook's answer or outage, a drain) do not; limit closes are
// charged apart.
var shortConnectionReasons = map[string]bool{
	reasonReadError:         true,
	reasonWriteError:        true,
	reasonNormal:            true,
	reasonGoingAway:         true,
	reasonClientClose:       true,
	reasonHandshakeTimeout:  true,
	reasonHandshakeRejected: true,
	reasonPongTimeout:       true,
}

const sourceShards = 16

// sourceTable holds the per-address buckets, bounded in size: beyond
// SourceTableSize entries, addresses whose buckets are full (nothing to
// remember) go first, then the one with the most credit left.
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
	short  bucket // ShortConnectionsPerIP: the same
	// shortPace spaces the address's upgrades while short is not full
	// (ShortConnectionsPerIP, burst 1; may go into debt by the waits
	// handed out).
	shortPace bucket
	conns     bucket // MaxHandshakesPerIP
	subs      bucket // SubscribeRatePerIP
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
	return c.LimitClosesPerIP > 0 || c.ShortConnectionsPerIP > 0 || c.MaxHandshakesPerIP > 0 || c.SubscribeRatePerIP > 0
}

// refusesAtAccept reports whether any per-address rate refuses
// connections right after the TCP accept.
func (c *Config) refusesAtAccept() bool {
	return c.LimitClosesPerIP > 0 || c.ShortConnectionsPerIP > 0 || c.MaxHandshakesPerIP > 0
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
			short:  bucket{tokens: float64(c.ShortConnectionBurstPerIP), at: now},
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
		sc := e.short.peek(now, c.ShortConnectionsPerIP, float64(c.ShortConnectionBurstPerIP))
		// Credit: the share of both charges' buckets left.
		credit := cl/float64(max(1, c.LimitCloseBurstPerIP)) + sc/float64(max(1, c.ShortConnectionBurstPerIP))
		if cl >= float64(c.LimitCloseBurstPerIP) &&
			sc >= float64(c.ShortConnectionBurstPerIP) &&
			e.conns.peek(now, c.MaxHandshakesPerIP, float64(c.HandshakeBurstPerIP)) >= float64(c.HandshakeBurstPerIP) &&
			e.subs.peek(now, c.SubscribeRatePerIP, float64(c.SubscribeBurstPerIP)) >= float64(c.SubscribeBurstPerIP) {
			delete(sh.m, ip)
			removed = true
		} else if credit > most {
			victim, most = ip, credit
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
		if c.ShortConnectionsPerIP > 0 {
			// In debt, or with its turns handed out for longer than
			// ShortConnectionTime ahead (shortPaceWait would refuse
			// after reading the request).
			burst := float64(c.ShortConnectionBurstPerIP)
			tokens := e.short.peek(now, c.ShortConnectionsPerIP, burst)
			if tokens < 1 || shortPaced(tokens, burst) &&
				shortTurn(e.shortPace.peek(now, c.ShortConnectionsPerIP, 1)-1, tokens, burst, c.ShortConnectionsPerIP) > c.ShortConnectionTime {
				reason = rejectShortConnsPerIP
				return
			}
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
		e.closes.chargeBounded(now, 1, c.LimitClosesPerIP, float64(c.LimitCloseBurstPerIP))
	})
}

// shortConnection charges ip one connection that ended within
// ShortConnectionTime of its upgrade, with the same bounded debt as
// limitClosed.
func (t *sourceTable) shortConnection(ip netip.Addr) {
	c := t.cfg
	if c.ShortConnectionsPerIP <= 0 {
		return
	}
	t.with(ip, true, func(now int64, e *source) {
		burst := float64(c.ShortConnectionBurstPerIP)
		was := shortPaced(e.short.peek(now, c.ShortConnectionsPerIP, burst), burst)
		e.short.chargeBounded(now, 1, c.ShortConnectionsPerIP, burst)
		if !was && shortPaced(e.short.tokens, burst) {
			// The pace starts with one upgrade free.
			e.shortPace = bucket{tokens: 1, at: now}
		}
	})
}

// shortPaceFree is how many short connections an address may have
// unpaid before its upgrades take turns: a client's quick reconnect or
// two make nobody wait.
const shortPaceFree = 2

// shortPaced reports whether an address with tokens of its short
// connection bucket left takes turns to upgrade.
func shortPaced(tokens, burst float64) bool { return tokens < burst-shortPaceFree }

// shortTurn is the wait for a turn with pace tokens left (negative:
// turns handed out ahead), and no later than the pacing ends by itself
// if no more short connections come: the clients behind an address
// that churned a moment ago (a NAT) wait only that moment.
func shortTurn(pace, tokens, burst, rate float64) time.Duration {
	if pace >= 0 {
		return 0
	}
	return time.Duration(min(-pace, burst-shortPaceFree-tokens) / rate * 1e9)
}

// shortPaceWait reserves ip's next upgrade while more than
// shortPaceFree of its short connections are unpaid: how long to wait
// for it, 0 for at once; ok is false when the wait would exceed maxWait
// (the caller refuses, and nothing is reserved).
func (t *sourceTable) shortPaceWait(ip netip.Addr, maxWait time.Duration) (wait time.Duration, ok bool) {
	c := t.cfg
	if c.ShortConnectionsPerIP <= 0 || !ip.IsValid() {
		return 0, true
	}
	ok = true
	t.with(ip, false, func(now int64, e *source) {
		burst := float64(c.ShortConnectionBurstPerIP)
		tokens := e.short.peek(now, c.ShortConnectionsPerIP, burst)
		if !shortPaced(tokens, burst) {
			return
		}
		e.shortPace.take(now, 1, c.ShortConnectionsPerIP, 1)
		wait = shortTurn(e.shortPace.tokens, tokens, burst, c.ShortConnectionsPerIP)
		if wait > maxWait {
			e.shortPace.tokens++
			wait, ok = 0, false
		}
	})
	return wait, ok
}

// shortPaceAbandon gives back a turn that shortPaceWait reserved for ip
// and that its client did not use (it left while it waited), so the next
// upgrade from ip may take it, and charges ip a short connection: an
// address whose clients keep leaving while they wait goes on towards
// refusal at accept, as if each had connected.
func (t *sourceTable) shortPaceAbandon(ip netip.Addr) {
	if t.cfg.ShortConnectionsPerIP <= 0 || !ip.IsValid() {
		return
	}
	t.with(ip, false, func(now int64, e *source) {
		e.shortPace.take(now, 0, t.cfg.ShortConnectionsPerIP, 1)
		e.shortPace.tokens = min(e.shortPace.tokens+1, 1)
	})
	t.shortConnection(ip)
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

// waitShortPace holds an upgrade from an address whose short
// connections are not paid back until its turn (one upgrade per
// 1/ShortConnectionsPerIP), so a client that reconnects a few times in
// a row only waits a moment while a churn from the address gets its
// rate and no more. It answers 503 and returns false when the turn is
// further off than ShortConnectionTime, when RefusalHoldMax upgrades
// wait already, or when the client leaves meanwhile.
func (s *Server) waitShortPace(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.ShortConnectionsPerIP <= 0 {
		return true
	}
	// Counted before the turn is reserved, so the bound holds however
	// many upgrades arrive at once (one that needs no wait leaves at
	// once).
	maxWait := s.cfg.ShortConnectionTime
	if s.shortWaiters.Add(1) > int64(s.cfg.RefusalHoldMax) {
		maxWait = 0
	}
	ip := s.remoteIP(r.RemoteAddr)
	wait, ok := s.sources.shortPaceWait(ip, maxWait)
	if ok && wait > 0 {
		s.m.shortWaits.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.Context().Done():
			ok = false
			s.sources.shortPaceAbandon(ip)
		case <-s.drainStarted:
			ok = false
		}
		t.Stop()
	}
	s.shortWaiters.Add(-1)
	if !ok {
		// Held like a refusal at accept, so that a client that redials
		// at once makes one attempt per hold.
		s.holdHTTPRefusal(r.Context())
		s.reject(w, rejectShortConnsPerIP, http.StatusServiceUnavailable, "Too many short connections from this address")
	}
	return ok
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
		if reason != rejectHandshakesPerIP && l.srv.holdRefusal(nc) {
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
