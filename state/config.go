package state

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
)

// Config configures a state Server.
type Config struct {
	// NodeID is the state server's identity in links and gossip.
	// Default "scc-state".
	NodeID string
	// AuthKey is SCC_AUTH_KEY; every node must hold the same. Empty is
	// allowed (then every node's must be empty) and logged as a warning.
	AuthKey []byte
	// ScaleOutDelay is how long a new broker must stay healthy before it
	// is resharded in. Default 5s; env SCC_STATE_SERVER_SCALE_OUT_DELAY.
	ScaleOutDelay time.Duration
	// ScaleBackDelay is how long a broker of the ring may be unhealthy
	// before it is resharded out. Default 1s; env
	// SCC_STATE_SERVER_SCALE_BACK_DELAY.
	ScaleBackDelay time.Duration
	// StartupDelay is how long after start members are collected before
	// the first commit. Default 5s; env SCC_STATE_SERVER_STARTUP_DELAY.
	StartupDelay time.Duration
	// PrepareTimeout bounds the prepare phase; after it the ring is
	// committed anyway (logged and counted). Default 5s; env
	// SCC_STATE_SERVER_PREPARE_TIMEOUT.
	PrepareTimeout time.Duration
	// DrainWindow is how long after a commit frontends keep the old
	// subscriptions; leaving brokers are released after it and the next
	// reshard starts after it. Default 2s; env SCC_RESHARD_DRAIN_WINDOW.
	DrainWindow time.Duration
	// MaxSeeds bounds the gossip seeds sent in Welcome. Default 16.
	MaxSeeds int
	// MaxRingVersionStep bounds how far above the highest version known a
	// ring version a member reports (in its Hello, a Ring or Stats) may
	// be; a further one, or one above ring.MaxVersion, is ignored and
	// counted (scc_state_ring_rejects_total), so the next version never
	// wraps. Default ring.DefaultMaxVersionStep (1<<20; env
	// SCC_RING_MAX_VERSION_STEP).
	MaxRingVersionStep uint64

	// GossipBind, GossipPort, GossipAdvertise and GossipSeeds place the
	// state server in gossip (env SCC_GOSSIP_BIND, SCC_GOSSIP_PORT,
	// SCC_INSTANCE_IP, SCC_GOSSIP_SEEDS). Defaults "0.0.0.0", 7946.
	// GossipPort -1 runs without gossip (broker health then comes from
	// links only).
	GossipBind      string
	GossipPort      int
	GossipAdvertise string
	GossipSeeds     []string
	// Gossip, if set, is the base gossip configuration (timing); the
	// fields above and the callbacks override it.
	Gossip *gossip.Config
	// Link is the base link configuration (timeouts and limits; zero
	// fields take nodelink's defaults); NodeID, Role, AuthKey, Logger and
	// Metrics are set by the server.
	Link nodelink.Config
	// TLS, if set, serves the port (links, status, /healthz, /metrics)
	// over TLS with this configuration (tlsconf.Store.ServerConfig); links
	// then need a verified client certificate. Default nil: plain TCP.
	TLS *tls.Config
	// ShutdownTimeout bounds how long Shutdown waits for gossip to
	// announce the leave. Default 1s.
	ShutdownTimeout time.Duration

	// ServeAdmin serves /metrics, /status and the Handle()d pages on the
	// link port as well as from AdminHandler (SCC_ADMIN_ON_CLIENT_PORT).
	// Only nodes need the link port, so by default they are only on the
	// admin port (SCC_ADMIN_PORT); /healthz and /readyz are on both.
	// Default false.
	ServeAdmin bool
	// Conns caps the TCP connections Serve accepts, links and HTTP alike
	// (SCC_MAX_CONNECTIONS, default derived from RLIMIT_NOFILE), keeps
	// SCC_ADMIN_RESERVE_CONNECTIONS (default 16) more for /healthz,
	// /readyz and /metrics, and closes HTTP keep-alive connections idle
	// for SCC_HTTP_IDLE_TIMEOUT (default 30s).
	Conns connlimit.Config

	// Logger receives events; nil discards.
	Logger *slog.Logger
	// Registry receives the scc_state_* metrics; nil registers nothing.
	Registry *prometheus.Registry
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		NodeID:             "scc-state",
		ScaleOutDelay:      5 * time.Second,
		ScaleBackDelay:     time.Second,
		StartupDelay:       5 * time.Second,
		PrepareTimeout:     5 * time.Second,
		DrainWindow:        2 * time.Second,
		MaxSeeds:           16,
		MaxRingVersionStep: ring.DefaultMaxVersionStep,
		GossipBind:         "0.0.0.0",
		GossipPort:         7946,
		Link:               nodelink.DefaultConfig(),
		ShutdownTimeout:    time.Second,
		Conns:              connlimit.DefaultConfig(),
	}
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is empty"))
	}
	nonNeg := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	nonNeg("ScaleOutDelay", c.ScaleOutDelay)
	nonNeg("ScaleBackDelay", c.ScaleBackDelay)
	nonNeg("StartupDelay", c.StartupDelay)
	nonNeg("DrainWindow", c.DrainWindow)
	if c.PrepareTimeout <= 0 {
		errs = append(errs, errors.New("PrepareTimeout must be positive"))
	}
	if c.MaxSeeds < 0 {
		errs = append(errs, errors.New("MaxSeeds must not be negative"))
	}
	if c.GossipPort < -1 || c.GossipPort > 65535 {
		errs = append(errs, fmt.Errorf("GossipPort %d out of range", c.GossipPort))
	}
	if err := c.Conns.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("ShutdownTimeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("state config: %w", err)
	}
	return nil
}
