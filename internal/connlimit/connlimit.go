package connlimit

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons: the bounded reason label of the drops counter.
const (
	// ReasonOverLimit: the connection came when the cap and the reserve
	// were full; it got HTTP 503 and was closed.
	ReasonOverLimit = "over_limit"
	// ReasonReserved: a request other than an admin path on a reserve
	// connection; it got HTTP 503.
	ReasonReserved = "reserved"
	// ReasonIdleEvicted: an idle connection closed to make room.
	ReasonIdleEvicted = "idle_evicted"
)

// Config bounds a server's connections.
type Config struct {
	// Max is the most connections open at once, counting every accepted
	// TCP connection. 0 derives it from RLIMIT_NOFILE (see DefaultMax).
	Max int
	// Reserve is how many connections beyond Max are accepted for the
	// admin paths only, when no idle connection can be closed instead.
	Reserve int
	// IdleTimeout closes a keep-alive connection idle between requests
	// for this long (http.Server.IdleTimeout).
	IdleTimeout time.Duration
}

// DefaultConfig returns the defaults: Max derived from the descriptor
// limit, a reserve of 16 and an idle timeout of 30s.
func DefaultConfig() Config {
	return Config{Reserve: 16, IdleTimeout: 30 * time.Second}
}

// Validate reports an unusable Config.
func (c Config) Validate() error {
	var errs []error
	if c.Max < 0 {
		errs = append(errs, errors.New("max connections must not be negative"))
	}
	if c.Reserve < 0 {
		errs = append(errs, errors.New("admin reserve connections must not be negative"))
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, errors.New("HTTP idle timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Metrics are a Listener's counters; one set per server role.
type Metrics struct {
	Open  prometheus.Gauge
	Drops *prometheus.CounterVec
}

// NewMetrics registers scc_<role>_tcp_connections and
// scc_<role>_tcp_drops_total on reg (nil: registered nowhere).
func NewMetrics(reg prometheus.Registerer, role string) *Metrics {
	m := &Metrics{
		Open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: fmt.Sprintf("scc_%s_tcp_connections", role),
			Help: "Accepted TCP connections open, whatever they carry (HTTP, WebSocket, link).",
		}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: fmt.Sprintf("scc_%s_tcp_drops_total", role),
			Help: "TCP connections refused or closed by the connection cap, by reason (over_limit, reserved, idle_evicted).",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonOverLimit, ReasonReserved, ReasonIdleEvicted} {
		m.Drops.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Open, m.Drops)
	}
	return m
}

// Listener is a net.Listener that counts and caps its connections. Use it
// with Install on the http.Server that serves it.
type Listener struct {
	net.Listener
	max, reserve int
	idleTimeout  time.Duration
	m            *Metrics
	log          *slog.Logger
	lastWarn     atomic.Int64 // unix nanoseconds of the last warning

	mu   sync.Mutex
	open int
	idle list.List // of *Conn: accepted and silent, or between requests; oldest first
}

// Wrap returns ln wrapped with cfg's cap (Max 0: DefaultMax()). m and log
// may be nil.
func Wrap(ln net.Listener, cfg Config, m *Metrics, log *slog.Logger) *Listener {
	if m == nil {
		m = NewMetrics(nil, "server")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	max := cfg.Max
	if max <= 0 {
		max = DefaultMax(cfg.Reserve)
	}
	return &Listener{Listener: ln, max: max, reserve: cfg.Reserve, idleTimeout: cfg.IdleTimeout, m: m, log: log}
}

// Max returns the cap in force.
func (l *Listener) Max() int { return l.max }

// Open returns the connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept returns the next connection within the cap; over the cap it makes
// room by closing the longest idle connection, or admits the connection
// to the reserve, or refuses it with HTTP 503 and waits for the next.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &Conn{Conn: nc, l: l}
		l.mu.Lock()
		var victim *Conn
		if l.open >= l.max {
			if e := l.idle.Front(); e != nil {
				victim = e.Value.(*Conn)
				l.idle.Remove(e)
				victim.elem = nil
			} else if l.open < l.max+l.reserve {
				c.reserved = true
			} else {
				l.mu.Unlock()
				l.m.Drops.WithLabelValues(ReasonOverLimit).Inc()
				l.warn(ReasonOverLimit)
				refuse(nc)
				continue
			}
		}
		l.open++
		// A new connection is idle until its first request arrives.
		c.elem = l.idle.PushBack(c)
		l.mu.Unlock()
		l.m.Open.Inc()
		if victim != nil {
			l.m.Drops.WithLabelValues(ReasonIdleEvicted).Inc()
			l.warn(ReasonIdleEvicted)
			victim.Close()
		} else if c.reserved {
			l.warn("reserve")
		}
		return c, nil
	}
}

// warnEvery spaces the warnings that the cap is reached: the counters
// say how often, the log says that it happens.
const warnEvery = time.Minute

func (l *Listener) warn(reason string) {
	now := time.Now().UnixNano()
	last := l.lastWarn.Load()
	if now-last < int64(warnEvery) || !l.lastWarn.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn("connection cap reached", "reason", reason, "max", l.max, "reserve", l.reserve)
}

// refusal is a complete HTTP response: a client, a probe or a load
// balancer sees why, instead of a bare reset.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 33\r\nConnection: close\r\nRetry-After: 1\r\n\r\nServer is at its connection limit"

// refuseWriteTimeout bounds the write of the refusal; the socket buffer
// takes it at once unless the peer is hostile.
const refuseWriteTimeout = 100 * time.Millisecond

func refuse(nc net.Conn) {
	_ = nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = nc.Write([]byte(refusal))
	// A plain close: the descriptor is freed at once either way, and a
	// reset would make the peer's kernel discard the response unread.
	_ = nc.Close()
}

// setState moves c in or out of the idle list as its HTTP state changes.
func (l *Listener) setState(c *Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	switch st {
	case http.StateIdle:
		if c.elem == nil {
			c.elem = l.idle.PushBack(c)
		}
	case http.StateActive, http.StateHijacked, http.StateClosed:
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
	}
}

func (l *Listener) release(c *Conn) {
	l.mu.Lock()
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	l.open--
	l.mu.Unlock()
	l.m.Open.Dec()
}

// Conn is a counted connection. It unwraps to the TCP connection for
// socket options and readiness polling (NetConn, SyscallConn).
type Conn struct {
	net.Conn
	l        *Listener
	reserved bool
	once     sync.Once
	closed   bool          // under l.mu
	elem     *list.Element // in l.idle; under l.mu
}

// Close closes the connection and releases its place, once.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.closed = true
		c.l.mu.Unlock()
		c.l.release(c)
	})
	return err
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the underlying socket's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("connlimit: connection has no socket")
}

// CloseWrite shuts down the writing side, as net/http does before it
// closes a connection it answered with "Connection: close".
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Reserved reports whether c was admitted to the admin reserve.
func (c *Conn) Reserved() bool { return c.reserved }

type connKey struct{}

// Install prepares hs to serve l: it sets hs.IdleTimeout, tracks idle
// connections through hs.ConnState, and wraps hs.Handler so that a
// connection of the reserve answers only requests admin accepts (nil:
// GET /healthz, /readyz and /metrics). Hooks already set on hs still run.
func (l *Listener) Install(hs *http.Server, admin func(*http.Request) bool) {
	if admin == nil {
		admin = AdminPath
	}
	hs.IdleTimeout = l.idleTimeout
	prevState := hs.ConnState
	hs.ConnState = func(nc net.Conn, st http.ConnState) {
		if c, ok := asConn(nc); ok {
			l.setState(c, st)
		}
		if prevState != nil {
			prevState(nc, st)
		}
	}
	prevCtx := hs.ConnContext
	hs.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, nc)
		}
		if c, ok := asConn(nc); ok && c.reserved {
			ctx = context.WithValue(ctx, connKey{}, c)
		}
		return ctx
	}
	next := hs.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	m := l.m
	hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, reserved := r.Context().Value(connKey{}).(*Conn); reserved {
			// A reserve connection is closed after one exchange so the
			// place is free for the next probe.
			w.Header().Set("Connection", "close")
			if !admin(r) {
				m.Drops.WithLabelValues(ReasonReserved).Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "Server is at its connection limit", http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// AdminPath accepts GET and HEAD requests for /healthz, /readyz and
// /metrics.
func AdminPath(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// asConn finds the counted connection under nc, which may be wrapped (a
// *tls.Conn serving TLS on the capped listener).
func asConn(nc net.Conn) (*Conn, bool) {
	for nc != nil {
		if c, ok := nc.(*Conn); ok {
			return c, true
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		nc = w.NetConn()
	}
	return nil, false
}
