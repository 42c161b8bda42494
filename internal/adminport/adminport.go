package adminport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/connlimit"
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
	// Pprof serves Go's profiles and execution traces under
	// /debug/pprof/ on the admin port only (SCC_ADMIN_PPROF).
	Pprof bool
}

// Read reads the admin settings of a binary whose admin port defaults to
// defPort; mainHost names its main bind address variable and pages lists
// what only its admin port serves, for the -h table.
func Read(r *config.Reader, defPort int, mainHost string, pages string) Settings {
	var s Settings
	s.Port = r.Port("SCC_ADMIN_PORT", defPort, "admin port for "+pages+", /healthz and /readyz (0: no admin port)")
	s.Host = r.String("SCC_ADMIN_HOST", "", "admin bind address (default: the main bind address, "+mainHost+"; 127.0.0.1 keeps the admin endpoints to this machine)")
	s.OnClientPort = r.Bool("SCC_ADMIN_ON_CLIENT_PORT", false, "also serve "+pages+" on the main port, which clients or nodes reach (off: the main port has only /healthz and /readyz)")
	s.Pprof = r.Bool("SCC_ADMIN_PPROF", false, "serve Go's CPU, heap and goroutine profiles and execution traces at /debug/pprof/ on the admin port (never on the main port)")
	return s
}

// Handler returns h, with Go's profiles under /debug/pprof/ when
// s.Pprof is set.
func (s Settings) Handler(h http.Handler) http.Handler {
	if !s.Pprof {
		return h
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// Server is a running admin listener.
type Server struct {
	hs   *http.Server
	ln   net.Listener
	done chan error
}

// Limits bound the admin port's connections: it serves probes and
// scrapes, so a few suffice, and the one idle longest is closed for a new
// one (internal/connlimit). Metrics may be nil.
type Limits struct {
	// Max is the most connections open at once. Default 64.
	Max int
	// IdleTimeout closes keep-alive connections idle for this long.
	// Default 30s.
	IdleTimeout time.Duration
	Metrics     *connlimit.Metrics
	Log         *slog.Logger
}

// Start listens on host:port and serves h there until Shutdown, with
// ReadHeaderTimeout and the connection Limits. Port 0 starts nothing and
// returns a nil *Server, whose methods are no-ops.
func Start(host string, port int, h http.Handler, lim Limits) (*Server, error) {
	if port == 0 {
		return nil, nil
	}
	ln, err := net.Listen("tcp", config.HostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("listening on the admin port: %w", err)
	}
	if lim.Max <= 0 {
		lim.Max = 64
	}
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = 30 * time.Second
	}
	s := &Server{
		hs:   &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout},
		ln:   ln,
		done: make(chan error, 1),
	}
	cl := connlimit.Wrap(ln, connlimit.Config{Max: lim.Max, IdleTimeout: lim.IdleTimeout}, lim.Metrics, lim.Log)
	cl.Install(s.hs, nil)
	go func() {
		err := s.hs.Serve(cl)
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
