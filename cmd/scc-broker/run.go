package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/internal/adminport"
	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/internal/tlsconf"
)

// settings is everything run reads from the environment.
type settings struct {
	cfg             broker.Config
	host            string // bind address, "" = all interfaces
	port            int
	admin           adminport.Settings
	instanceIP      string // advertised IP, "" = derive from the bind address
	logLevel        slog.Level
	shutdownTimeout time.Duration
	closeTimeout    time.Duration
	linkTLS         tlsconf.Config
	insecureNoAuth  bool
	rulesFile       string // SCC_CHANNELS_FILE, for the log
}

// load reads the settings from the environment.
func load(getenv config.Getenv) (settings, *config.Reader, error) {
	r := config.NewReader(getenv)
	d := broker.DefaultConfig()
	c := d
	var st settings
	var errs []error
	st.port = r.Port("SCC_BROKER_SERVER_PORT", 8888, "frontend links, /healthz and /readyz port")
	st.host = r.String("SCC_BROKER_HOST", "", "bind address (empty: all interfaces)")
	st.admin = adminport.Read(r, adminport.DefaultBrokerPort, "SCC_BROKER_HOST", "/metrics")
	c.ServeAdmin = st.admin.OnClientPort
	st.instanceIP = r.String("SCC_INSTANCE_IP", "", "IP other nodes reach this broker at (default: 127.0.0.1 if bound to loopback, else the first non-loopback address)")
	c.NodeID = r.String("SCC_INSTANCE_ID", "", "ring identity (default: the advertised SCC_INSTANCE_IP:SCC_BROKER_SERVER_PORT, so a restart at the same address keeps the ring place)")
	c.AuthKey = []byte(r.String("SCC_AUTH_KEY", "", "shared inter-node key, at least 32 bytes (every node must hold the same; required unless SCC_INSECURE_NO_AUTH=true)"))
	st.insecureNoAuth = r.Bool(config.InsecureNoAuthEnv, false, "run with an empty, short or example SCC_AUTH_KEY: anyone who reaches this node's ports controls the cluster (test networks only)")
	stateHost := r.String("SCC_STATE_SERVER_HOST", "", "state server host (empty: standalone, no cluster)")
	statePort := r.Port("SCC_STATE_SERVER_PORT", 7777, "state server port")
	if stateHost != "" {
		c.StateAddr = config.HostPort(stateHost, statePort)
	}
	c.GossipPort = r.Int("SCC_GOSSIP_PORT", d.GossipPort, "gossip (memberlist) port, UDP and TCP (-1: no gossip, standalone only)")
	c.GossipBind = r.String("SCC_GOSSIP_BIND", "", "gossip bind address (default: SCC_INSTANCE_IP if set, else all interfaces)")
	c.GossipSeeds = r.List("SCC_GOSSIP_SEEDS", nil, "comma-separated gossip host:port to join (default: the state server's seeds)")
	c.Link.HandshakeTimeout = r.Duration("SCC_LINK_HANDSHAKE_TIMEOUT", d.Link.HandshakeTimeout, "bound on a link's handshake")
	c.Link.WriteTimeout = r.Duration("SCC_LINK_WRITE_TIMEOUT", d.Link.WriteTimeout, "a link that does not take a frame in this long is closed")
	c.Link.PingInterval = r.Duration("SCC_LINK_PING_INTERVAL", d.Link.PingInterval, "an idle link sends a ping this often")
	c.Link.PingTimeout = r.Duration("SCC_LINK_PING_TIMEOUT", d.Link.PingTimeout, "a link with nothing received this long is closed")
	c.Link.MaxFrameBytes = r.Int64("SCC_LINK_MAX_FRAME_BYTES", d.Link.MaxFrameBytes, "largest link frame (and message); the same on every node")
	c.Link.QueueMaxBytes = r.Int("SCC_LINK_QUEUE_MAX_BYTES", d.Link.QueueMaxBytes, "bytes queued per frontend link before drop-and-count")
	c.Conns.Max = r.Int("SCC_MAX_CONNECTIONS", d.Conns.Max, "most TCP connections open at once, links and HTTP alike; at the cap the longest idle one is closed, then HTTP 503 (0: derived from the descriptor limit)")
	c.Conns.Reserve = r.Int("SCC_ADMIN_RESERVE_CONNECTIONS", d.Conns.Reserve, "connections beyond SCC_MAX_CONNECTIONS let in for /healthz, /readyz and /metrics only")
	c.Conns.IdleTimeout = r.Duration("SCC_HTTP_IDLE_TIMEOUT", d.Conns.IdleTimeout, "an HTTP keep-alive connection idle this long is closed")
	c.Link.HelloMaxBytes = r.Int64("SCC_LINK_HELLO_MAX_BYTES", d.Link.HelloMaxBytes, "read limit of an accepted link until its hello proves the cluster key")
	c.Link.MaxPendingHandshakes = r.Int("SCC_LINK_MAX_PENDING_HANDSHAKES", d.Link.MaxPendingHandshakes, "accepted link handshakes not yet authenticated, HTTP 503 beyond")
	c.Link.MaxPendingHandshakesPerSource = r.Int("SCC_LINK_MAX_PENDING_HANDSHAKES_PER_SOURCE", d.Link.MaxPendingHandshakesPerSource, "the same bound per source IP")
	c.Link.MaxHeaderBytes = r.Int("SCC_LINK_MAX_HEADER_BYTES", d.Link.MaxHeaderBytes, "largest HTTP request header on the link port (HTTP 431 beyond)")
	c.InterestShards = r.Int("SCC_BROKER_INTEREST_SHARDS", d.InterestShards, "shards of the channel interest table")
	c.WarmUp = r.Duration("SCC_BROKER_WARMUP", d.WarmUp, "how long a freshly started broker holds publishes while frontends re-sync their channels (0: off)")
	c.IdempotencyKeys = r.Int("SCC_IDEMPOTENCY_KEYS", d.IdempotencyKeys, "recent (channel, idempotency key) pairs of server API publishes remembered to drop retries (0: off)")
	c.IdempotencyTTL = r.Duration("SCC_IDEMPOTENCY_TTL", d.IdempotencyTTL, "how long an idempotency key is remembered")
	c.PresenceEventInterval = r.Duration("SCC_PRESENCE_EVENT_INTERVAL", d.PresenceEventInterval, "how long join/leave changes of a presence channel are gathered into one event")
	c.PresenceEventMaxMembers = r.Int("SCC_PRESENCE_EVENT_MAX_MEMBERS", d.PresenceEventMaxMembers, "most joins and leaves listed in one presence event (the rest are counted as omitted)")
	c.PresencePageMax = r.Int("SCC_PRESENCE_PAGE_MAX", d.PresencePageMax, "most members one presence query returns")
	st.shutdownTimeout = r.Duration("SCC_SHUTDOWN_TIMEOUT", 30*time.Second, "bound on the drain after SIGTERM (waiting for the state server to reshard this broker out)")
	st.closeTimeout = r.Duration("SCC_CLOSE_TIMEOUT", 5*time.Second, "bound on closing links and servers after the drain")
	st.logLevel = r.LogLevel("info", "SCC_BROKER_SERVER_LOG_LEVEL", "SCC_LOG_LEVEL")
	st.linkTLS = tlsconf.ReadLinks(r)
	rulesFile := r.String("SCC_CHANNELS_FILE", "", "channel rules file, YAML or JSON (.json), the same as the frontends' (empty: the built-in default); the broker reports its digest and keeps its channel options")
	if rulesFile != "" {
		set, err := rules.Load(rulesFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_CHANNELS_FILE: %w", err))
		}
		c.Rules = set
	}
	histSize := r.Int("SCC_HISTORY_SIZE", 0, "without SCC_CHANNELS_FILE: publications kept per channel for recovery (0: no history); the same on every node")
	histTTL := r.Duration("SCC_HISTORY_TTL", 5*time.Minute, "without SCC_CHANNELS_FILE: how long a channel's publications are kept after its last one")
	if rulesFile == "" && histSize != 0 {
		set, err := rules.Default().WithDefaultHistory(histSize, histTTL)
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_HISTORY_SIZE, SCC_HISTORY_TTL: %w", err))
		}
		c.Rules = set
	}
	c.History.MaxBytes = r.Int64("SCC_HISTORY_MAX_BYTES", d.History.MaxBytes, "memory budget of all channel histories; over it the least recently published channels lose their oldest publications (counted)")
	c.History.MetaTTL = r.Duration("SCC_HISTORY_META_TTL", d.History.MetaTTL, "how long a channel's offset and epoch outlive its last publication")
	c.Replication = r.Bool("SCC_REPLICATION", d.Replication, "copy every publication of a channel with history to the channel's standby broker before delivering it, so a broker crash loses none (false: no copy, no wait)")
	c.HandoffTimeout = r.Duration("SCC_REPLICATION_HANDOFF_TIMEOUT", d.HandoffTimeout, "after a ring change: how long publishes of channels gained from a broker still in the ring wait for their history to be handed over, and how long handing ours over may take")
	st.rulesFile = rulesFile
	if c.GossipBind == "" {
		c.GossipBind = st.instanceIP
	}
	if c.GossipBind == "" {
		c.GossipBind = "0.0.0.0"
	}
	gl := gossip.DefaultConfig()
	gl.ReadLimits(r)
	ac := membership.DefaultConfig()
	ac.Gossip = &gl
	ac.MaxRingVersionStep = gl.MaxRingVersionStep
	c.Agent = &ac
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

// advertisedIP is the IP other nodes should dial: the configured one, else
// loopback for a loopback bind, else the bind address itself, else the
// first non-loopback interface address.
func advertisedIP(configured, bind string, addrs func() ([]net.Addr, error)) string {
	if configured != "" {
		return configured
	}
	if bind == "localhost" {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(bind); ip != nil {
		if ip.IsLoopback() {
			return "127.0.0.1"
		}
		if !ip.IsUnspecified() {
			return bind
		}
	}
	as, err := addrs()
	if err == nil {
		var v6 string
		for _, a := range as {
			n, ok := a.(*net.IPNet)
			if !ok || n.IP.IsLoopback() || !n.IP.IsGlobalUnicast() {
				continue
			}
			if n.IP.To4() != nil {
				return n.IP.String()
			}
			if v6 == "" {
				v6 = n.IP.String()
			}
		}
		if v6 != "" {
			return v6
		}
	}
	return "127.0.0.1"
}

// run starts the broker and serves until ctx is done; it then drains (asks
// the state server to reshard it out and waits for the release, bounded by
// SCC_SHUTDOWN_TIMEOUT) and shuts down.
func run(ctx context.Context, args []string, getenv config.Getenv, stderr io.Writer) error {
	st, r, loadErr := load(getenv)
	if err := config.ParseArgs("scc-broker", "scc-broker routes publishes between frontends.", args, r, stderr); err != nil {
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

	ln, err := net.Listen("tcp", config.HostPort(st.host, st.port))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	ip := advertisedIP(st.instanceIP, st.host, net.InterfaceAddrs)
	cfg := st.cfg
	cfg.Addr = net.JoinHostPort(ip, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	if cfg.GossipAdvertise == "" {
		cfg.GossipAdvertise = ip
	}
	cfg.Logger = log
	cfg.Registry = reg
	if st.linkTLS.Enabled() {
		st.linkTLS.Logger = log
		store, err := tlsconf.New(st.linkTLS)
		if err != nil {
			ln.Close()
			return err
		}
		cfg.TLS, cfg.Link.TLS = store.ServerConfig(), store.ClientConfig
	}
	srv, err := broker.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info("channel rules", "file", st.rulesFile, "digest", srv.RulesDigest())
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
		log.Warn("SCC_ADMIN_PORT is 0 and SCC_ADMIN_ON_CLIENT_PORT is off: /metrics is served nowhere")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		cctx, cancel := context.WithTimeout(context.Background(), st.closeTimeout)
		defer cancel()
		_ = srv.Shutdown(cctx)
		aerr := admin.Shutdown(cctx)
		if errors.Is(err, broker.ErrServerClosed) {
			return aerr
		}
		return errors.Join(err, aerr)
	case <-ctx.Done():
	}

	start := time.Now()
	log.Info("draining", "timeout", st.shutdownTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), st.shutdownTimeout)
	if err := srv.Leave(dctx); err != nil {
		log.Warn("drain incomplete; shutting down anyway", "err", err)
	}
	cancel()
	cctx, cancel := context.WithTimeout(context.Background(), st.closeTimeout)
	defer cancel()
	err = srv.Shutdown(cctx)
	if serr := <-serveErr; !errors.Is(serr, broker.ErrServerClosed) && err == nil {
		err = serr
	}
	// The admin port goes last: /readyz and /metrics answer through the
	// drain.
	if aerr := admin.Shutdown(cctx); err == nil {
		err = aerr
	}
	log.Info("stopped", "took", time.Since(start))
	return err
}
