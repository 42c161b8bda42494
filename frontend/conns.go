package frontend

import (
	"net"
	"net/http"

	"github.com/sccgo/sccgo/internal/connlimit"
)

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
