package adminport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sccgo/sccgo/internal/config"
)

// Default admin ports: the main port's default plus one.
const (
	DefaultFrontendPort = 8001
	DefaultBrokerPort   = 8889
	DefaultStatePort    = 7778
)

// ReadHeaderTimeout bounds how long a client may take to send a request's
// headers to the admin port.
const ReadHeaderTimeout = 10 * time.Second

// Settings is where the admin endpoints are served.
type Settings struct {
	// Host is the admin bind address (SCC_ADMIN_HOST); "" means the main
	// bind address.
	Host string
	// Port is the admin port (SCC_ADMIN_PORT); 0 opens none.
	Port int
	// OnClientPort serves the admin endpoints on the main port as well
	// (SCC_ADMIN_ON_CLIENT_PORT).
	OnClientPort bool
}

// Read reads the admin settings of a binary whose admin port defaults to
// defPort; mainHost names its main bind address variable and pages lists
// what only its admin port serves, for the -h table.
func Read(r *config.Reader, defPort int, mainHost string, pages string) Settings {
	var s Settings
	s.Port = r.Port("SCC_ADMIN_PORT", defPort, "admin port for "+pages+", /healthz and /readyz (0: no admin port)")
	s.Host = r.String("SCC_ADMIN_HOST", "", "admin bind address (default: the main bind address, "+mainHost+"; 127.0.0.1 keeps the admin endpoints to this machine)")
	s.OnClientPort = r.Bool("SCC_ADMIN_ON_CLIENT_PORT", false, "also serve "+pages+" on the main port, which clients or nodes reach (off: the main port has only /healthz and /readyz)")
	return s
}

// Server is a running admin listener.
type Server struct {
	hs   *http.Server
	ln   net.Listener
	done chan error
}

// Start listens on host:port and serves h until Shutdown. It returns a
// nil Server (whose methods do nothing) when port is 0.
func Start(host string, port int, h http.Handler) (*Server, error) {
	if port == 0 {
		return nil, nil
	}
	ln, err := net.Listen("tcp", config.HostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("listening on the admin port: %w", err)
	}
	s := &Server{
		hs:   &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() {
		err := s.hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the listener's address, nil for a nil Server.
func (s *Server) Addr() net.Addr {
	if s == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops the listener, waits for requests in flight (bounded by
// ctx) and for the serving goroutine, and returns what Serve failed with.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.hs.Shutdown(ctx); err != nil {
		s.hs.Close()
	}
	return <-s.done
}
