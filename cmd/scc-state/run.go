package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sccgo/sccgo/internal/adminport"
	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/statuspage"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/state"
)

// settings is everything run reads from the environment.
type settings struct {
	cfg             state.Config
	host            string
	port            int
	admin           adminport.Settings
	logLevel        slog.Level
	shutdownTimeout time.Duration
	linkTLS         tlsconf.Config
	insecureNoAuth  bool
}

// load reads the settings from the environment.
func load(getenv config.Getenv) (settings, *config.Reader, error) {
	r := config.NewReader(getenv)
	d := state.DefaultConfig()
	var st settings
	var errs []error
	c := d
	st.port = r.Port("SCC_STATE_SERVER_PORT", 7777, "node links, /healthz and /readyz port")
	st.host = r.String("SCC_STATE_SERVER_HOST", "", "bind address (empty: all interfaces)")
	st.admin = adminport.Read(r, adminport.DefaultStatePort, "SCC_STATE_SERVER_HOST", "the status page, /status, /metrics")
	c.ServeAdmin = st.admin.OnClientPort
	c.NodeID = r.String("SCC_INSTANCE_ID", d.NodeID, "this server's node id in links and gossip")
	c.AuthKey = []byte(r.String("SCC_AUTH_KEY", "", "shared inter-node key, at least 32 bytes (every node must hold the same; required unless SCC_INSECURE_NO_AUTH=true)"))
	st.insecureNoAuth = r.Bool(config.InsecureNoAuthEnv, false, "run with an empty, short or example SCC_AUTH_KEY: anyone who reaches this node's ports controls the cluster (test networks only)")
	c.ScaleOutDelay = r.Duration("SCC_STATE_SERVER_SCALE_OUT_DELAY", d.ScaleOutDelay, "a new broker joins the ring after being up this long")
	c.ScaleBackDelay = r.Duration("SCC_STATE_SERVER_SCALE_BACK_DELAY", d.ScaleBackDelay, "a lost broker leaves the ring after being down this long")
	c.StartupDelay = r.Duration("SCC_STATE_SERVER_STARTUP_DELAY", d.StartupDelay, "members are collected this long after start before the first commit")
	c.PrepareTimeout = r.Duration("SCC_STATE_SERVER_PREPARE_TIMEOUT", d.PrepareTimeout, "a reshard commits after this long even if some frontend has not prepared")
	c.DrainWindow = r.Duration("SCC_RESHARD_DRAIN_WINDOW", d.DrainWindow, "old subscriptions are kept this long after a commit; leaving brokers are released after it")
	c.GossipPort = r.Int("SCC_GOSSIP_PORT", d.GossipPort, "gossip (memberlist) port, UDP and TCP (-1: no gossip)")
	c.GossipBind = r.String("SCC_GOSSIP_BIND", "", "gossip bind address (default: SCC_INSTANCE_IP, else all interfaces)")
	c.GossipAdvertise = r.String("SCC_INSTANCE_IP", "", "address other nodes reach this one at (gossip advertise)")
	c.GossipSeeds = r.List("SCC_GOSSIP_SEEDS", nil, "comma-separated gossip host:port to join (default: members' gossip addresses)")
	c.Conns.Max = r.Int("SCC_MAX_CONNECTIONS", d.Conns.Max, "most TCP connections open at once, links and HTTP alike; at the cap the longest idle one is closed, then HTTP 503 (0: derived from the descriptor limit)")
	c.Conns.Reserve = r.Int("SCC_ADMIN_RESERVE_CONNECTIONS", d.Conns.Reserve, "connections beyond SCC_MAX_CONNECTIONS let in for /healthz, /readyz and /metrics only")
	c.Conns.IdleTimeout = r.Duration("SCC_HTTP_IDLE_TIMEOUT", d.Conns.IdleTimeout, "an HTTP keep-alive connection idle this long is closed")
	c.MaxSeeds = r.Int("SCC_STATE_MAX_SEEDS", d.MaxSeeds, "most gossip seeds sent to a node in Welcome")
	c.Link.HandshakeTimeout = r.Duration("SCC_LINK_HANDSHAKE_TIMEOUT", d.Link.HandshakeTimeout, "bound on a link's handshake")
	c.Link.PingInterval = r.Duration("SCC_LINK_PING_INTERVAL", d.Link.PingInterval, "an idle link sends a ping this often")
	c.Link.PingTimeout = r.Duration("SCC_LINK_PING_TIMEOUT", d.Link.PingTimeout, "a link with nothing received this long is closed")
	c.Link.MaxFrameBytes = r.Int64("SCC_LINK_MAX_FRAME_BYTES", d.Link.MaxFrameBytes, "largest link frame (and message); the same on every node")
	c.Link.QueueMaxBytes = r.Int("SCC_LINK_QUEUE_MAX_BYTES", d.Link.QueueMaxBytes, "bytes queued per link before drop-and-count")
	c.Link.HelloMaxBytes = r.Int64("SCC_LINK_HELLO_MAX_BYTES", d.Link.HelloMaxBytes, "read limit of an accepted link until its hello proves the cluster key")
	c.Link.MaxPendingHandshakes = r.Int("SCC_LINK_MAX_PENDING_HANDSHAKES", d.Link.MaxPendingHandshakes, "accepted link handshakes not yet authenticated, HTTP 503 beyond")
	c.Link.MaxPendingHandshakesPerSource = r.Int("SCC_LINK_MAX_PENDING_HANDSHAKES_PER_SOURCE", d.Link.MaxPendingHandshakesPerSource, "the same bound per source IP")
	c.Link.MaxHeaderBytes = r.Int("SCC_LINK_MAX_HEADER_BYTES", d.Link.MaxHeaderBytes, "largest HTTP request header on the link port (HTTP 431 beyond)")
	st.shutdownTimeout = r.Duration("SCC_SHUTDOWN_TIMEOUT", 10*time.Second, "bound on the whole shutdown")
	st.linkTLS = tlsconf.ReadLinks(r)
	st.logLevel = r.LogLevel("info", "SCC_STATE_LOG_LEVEL", "SCC_STATE_SERVER_LOG_LEVEL", "SCC_LOG_LEVEL")
	if c.GossipBind == "" {
		c.GossipBind = c.GossipAdvertise
	}
	if c.GossipBind == "" {
		c.GossipBind = "0.0.0.0"
	}
	gl := gossip.DefaultConfig()
	gl.ReadLimits(r)
	c.Gossip = &gl
	c.MaxRingVersionStep = gl.MaxRingVersionStep
	st.cfg = c
	if err := config.CheckAuthKey(c.AuthKey, st.insecureNoAuth); err != nil {
		errs = append(errs, err)
	}
	if err := r.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := st.linkTLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return st, r, errors.Join(errs...)
}

// run starts the state server and serves until ctx is done, then shuts
// down.
func run(ctx context.Context, args []string, getenv config.Getenv, stderr io.Writer) error {
	st, r, loadErr := load(getenv)
	if err := config.ParseArgs("scc-state", "scc-state is the cluster state server.", args, r, stderr); err != nil {
		return err
	}
	if loadErr != nil {
		return loadErr
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: st.logLevel}))
	if st.insecureNoAuth {
		log.Warn(config.InsecureAuthWarning)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := st.cfg
	cfg.Logger = log
	cfg.Registry = reg
	if st.linkTLS.Enabled() {
		st.linkTLS.Logger = log
		store, err := tlsconf.New(st.linkTLS)
		if err != nil {
			return err
		}
		cfg.TLS = store.ServerConfig()
	}
	srv, err := state.New(cfg)
	if err != nil {
		return err
	}
	srv.Handle("GET /{$}", statuspage.Handler())
	srv.Handle("GET /index.html", statuspage.Handler())
	ln, err := net.Listen("tcp", config.HostPort(st.host, st.port))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	adminHost := st.admin.Host
	if adminHost == "" {
		adminHost = st.host
	}
	admin, err := adminport.Start(adminHost, st.admin.Port, st.admin.Handler(srv.AdminHandler()), adminport.Limits{Log: log})
	if err != nil {
		ln.Close()
		return err
	}
	if admin != nil {
		log.Info("admin port serving", "admin", admin.Addr().String())
	} else if !st.admin.OnClientPort {
		log.Warn("SCC_ADMIN_PORT is 0 and SCC_ADMIN_ON_CLIENT_PORT is off: the status page and /metrics are served nowhere")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		sctx, cancel := context.WithTimeout(context.Background(), st.shutdownTimeout)
		defer cancel()
		aerr := admin.Shutdown(sctx)
		if !errors.Is(err, state.ErrServerClosed) {
			return errors.Join(err, aerr)
		}
		return aerr
	case <-ctx.Done():
	}
	log.Info("shutting down")
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), st.shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-serveErr; !errors.Is(serr, state.ErrServerClosed) && err == nil {
		err = serr
	}
	if aerr := admin.Shutdown(sctx); err == nil {
		err = aerr
	}
	log.Info("stopped", "took", time.Since(start))
	return err
}
