package frontend

import (
	"context"
	"net"
	"net/http"

	"github.com/sccgo/sccgo/internal/connlimit"
)

// Listen opens the client port. Accepted connections get no TCP
// keepalive: every client connection already has a deadline of its own
// (the ping and pong timeout of a socket, the header, handshake and idle
// timeouts of HTTP), so the kernel's probes would find nothing those miss,
// and turning them on costs four setsockopt calls per accepted connection,
// which a connection storm pays in full.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// limitConns wraps ln so that every connection it accepts counts against
// MaxConnections (or the cap derived from the descriptor limit), and sets
// hs's idle timeout and admin reserve. Upgraded sockets stay counted at
// the listener until their connection is closed, including those waiting
// for the paced closer.
func (s *Server) limitConns(ln net.Listener, hs *http.Server) net.Listener {
	cl := connlimit.Wrap(ln, connlimit.Config{
		Max:         s.cfg.MaxConnections,
		Reserve:     s.cfg.AdminReserve,
		IdleTimeout: s.cfg.IdleTimeout,
	}, s.tcpMetrics, s.log)
	cl.Install(hs, func(r *http.Request) bool {
		// Probes always; /metrics only where the client port serves it.
		if r.URL.Path == "/metrics" && !s.cfg.ServeAdmin {
			return false
		}
		return connlimit.AdminPath(r)
	})
	s.log.Debug("connection cap", "max", cl.Max(), "reserve", s.cfg.AdminReserve)
	return cl
}
