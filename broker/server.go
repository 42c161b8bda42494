package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/dedupe"
	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/protocol"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("broker: server closed")

// Server is a broker.
type Server struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	m     *metrics
	lm    *nodelink.Metrics
	table *interest
	rules *rules.Set      // channel rules; options only, frontends enforce them
	dedup *dedupe.Set     // recent (channel, idempotency key) pairs
	pres  *brokerPresence // members of the presence channels this broker owns
	hist  *history.Store  // history of the channels whose rule keeps it
	repl  *replicator     // nil with replication off
	http  *http.Server
	tcp   *connlimit.Metrics
	ready chan struct{}

	readyOnce sync.Once
	nextConn  atomic.Uint64

	mu      sync.Mutex
	ln      net.Listener
	lcfg    nodelink.Config // set by Serve
	agent   *membership.Agent
	links   map[*link]struct{}
	replIn  map[*nodelink.Link]struct{} // links from brokers replicating here
	serving bool
	shut    bool
	wg      sync.WaitGroup // link handlers and the readiness watcher
	stop    chan struct{}  // closed by Shutdown
	warm    chan struct{}  // closed WarmUp after Serve starts
}

// New validates cfg and returns a Server; it does no I/O.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	hist, err := history.New(cfg.History)
	if err != nil {
		return nil, fmt.Errorf("broker config: %w", err)
	}
	s := &Server{
		hist:  hist,
		cfg:   cfg,
		log:   log.With("role", protocol.RoleBroker),
		reg:   reg,
		table: newInterest(cfg.InterestShards),
		rules: rulesOf(cfg),
		dedup: dedupe.New(cfg.IdempotencyKeys, cfg.IdempotencyTTL),
		ready: make(chan struct{}),
		links: make(map[*link]struct{}),

		replIn: make(map[*nodelink.Link]struct{}),
		stop:   make(chan struct{}),
		warm:   make(chan struct{}),
	}
	s.m = newMetrics(reg, s.table)
	if cfg.Replication {
		s.repl = newReplicator(s, hist, reg, cfg.InterestShards)
	}
	s.lm = nodelink.NewMetrics(reg, protocol.RoleBroker)
	s.tcp = connlimit.NewMetrics(reg, protocol.RoleBroker)
	s.registerRules()
	if err := s.initPresence(); err != nil {
		return nil, err
	}
	history.Register(reg, protocol.RoleBroker, hist)
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, s.serveLink)
	s.handleProbes(mux)
	if cfg.ServeAdmin {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: cfg.Link.HandshakeTimeout}
	s.http.MaxHeaderBytes = cfg.Link.HeaderLimit() // before any key is proved
	// Failed TLS handshakes (a stranger, a wrong certificate) go to the
	// log at debug level, not to stderr once per attempt.
	s.http.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	return s, nil
}

func (s *Server) handleProbes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.serveReady)
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}

// AdminHandler serves /healthz, /readyz and /metrics for the admin port
// (SCC_ADMIN_PORT); the link port serves /metrics only with
// Config.ServeAdmin.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	s.handleProbes(mux)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

// Serve accepts frontend links and HTTP requests on ln until Shutdown; it
// then returns ErrServerClosed. In a cluster it first starts the
// membership agent.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("broker: Serve called twice")
	}
	s.serving = true
	s.ln = ln
	s.pres.Start()
	s.wg.Go(func() { s.hist.Run(s.stop) })
	if s.repl != nil {
		s.wg.Go(func() { s.repl.run(s.stop, s.cfg.History.SweepInterval) })
	}
	if s.cfg.WarmUp > 0 {
		t := time.AfterFunc(s.cfg.WarmUp, func() { close(s.warm) })
		s.wg.Go(func() {
			<-s.stop
			if t.Stop() {
				close(s.warm)
			}
		})
	} else {
		close(s.warm)
	}
	addr := s.cfg.Addr
	if addr == "" {
		addr = ln.Addr().String()
	}
	id := s.cfg.NodeID
	if id == "" {
		id = addr
	}
	s.log = s.log.With("node", id)
	lc := s.cfg.Link
	lc.NodeID, lc.Role, lc.AuthKey = id, protocol.RoleBroker, s.cfg.AuthKey
	lc.Addr = addr
	lc.Logger, lc.Metrics = s.log, s.lm
	lc.Pending = nodelink.NewPending()
	s.lcfg = lc
	if s.repl != nil {
		s.repl.mu.Lock()
		s.repl.self, s.repl.lcfg = id, lc
		s.repl.mu.Unlock()
	}
	if len(s.cfg.AuthKey) == 0 {
		s.log.Warn("SCC_AUTH_KEY is empty: inter-node links are not authenticated")
	}
	var agent *membership.Agent
	if s.cfg.agentEnabled() {
		ac := s.cfg.agentConfig(id, addr)
		ac.Logger = s.log
		ac.Registry = s.reg
		ac.Stats = s.stats
		a, err := membership.New(ac, agentHandler{s})
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("broker: %w", err)
		}
		if err := a.Start(context.Background()); err != nil {
			s.mu.Unlock()
			_ = a.Close()
			return fmt.Errorf("broker: starting membership: %w", err)
		}
		agent = a
		s.agent = a
	}
	if agent == nil || s.cfg.StateAddr == "" {
		s.setReady()
	} else {
		s.wg.Go(func() { s.watchReady(agent) })
	}
	s.mu.Unlock()
	s.log.Info("broker serving", "addr", ln.Addr().String(), "advertised", addr, "state", s.cfg.StateAddr)

	cl := connlimit.Wrap(ln, s.cfg.Conns, s.tcp, s.log)
	cl.Install(s.http, nil)
	ln = cl
	if s.cfg.TLS != nil {
		// Inside the cap: a stranger's TLS handshake holds a counted
		// descriptor.
		ln = tls.NewListener(ln, s.cfg.TLS)
		s.http.ErrorLog = tlsconf.ErrorLog(tlsconf.HandshakeFailures(s.reg, protocol.RoleBroker), s.log)
	}
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Addr returns the listener's address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// NodeID returns the broker's ring identity ("" before Serve).
func (s *Server) NodeID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lcfg.NodeID
}

// GossipAddr returns the broker's gossip address (host:port), or "" before
// Serve or without gossip.
func (s *Server) GossipAddr() string {
	s.mu.Lock()
	a := s.agent
	s.mu.Unlock()
	if a == nil {
		return ""
	}
	return a.GossipAddr()
}

// Ready is closed once the broker has joined the cluster (its state link
// was welcomed), or at Serve when it has no state server.
func (s *Server) Ready() <-chan struct{} { return s.ready }

func (s *Server) setReady() { s.readyOnce.Do(func() { close(s.ready) }) }

func (s *Server) watchReady(a *membership.Agent) {
	t := time.NewTicker(s.cfg.ReadyPoll)
	defer t.Stop()
	for {
		if a.StateConnected() {
			s.setReady()
			s.log.Info("broker joined the cluster")
			return
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
		s.mu.Lock()
		shut := s.shut
		s.mu.Unlock()
		if !shut {
			fmt.Fprintln(w, "ready")
			return
		}
	default:
	}
	http.Error(w, "not ready", http.StatusServiceUnavailable)
}

// Leave drains the broker out of the cluster: it asks the state server to
// reshard it out and waits, still serving every link, until the state
// releases it or ctx ends. Without a state server it returns at once.
func (s *Server) Leave(ctx context.Context) error {
	s.mu.Lock()
	a := s.agent
	s.mu.Unlock()
	if a == nil || s.cfg.StateAddr == "" {
		return nil
	}
	if s.repl != nil {
		s.repl.leave()
	}
	s.log.Info("leaving the cluster")
	if err := a.Leave(ctx); err != nil {
		return fmt.Errorf("broker: leaving: %w", err)
	}
	s.log.Info("released by the state server")
	return nil
}

// Shutdown stops accepting, closes every link, stops the membership agent
// and waits for every goroutine. It is idempotent. It does not drain:
// call Leave first for a planned exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.shut = true
	close(s.stop)
	links := make([]*link, 0, len(s.links))
	for l := range s.links {
		links = append(links, l)
	}
	replIn := make([]*nodelink.Link, 0, len(s.replIn))
	for nl := range s.replIn {
		replIn = append(replIn, nl)
	}
	agent := s.agent
	s.mu.Unlock()

	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	for _, l := range links {
		_ = l.nl.Close(nodelink.ReasonShutdown)
	}
	for _, nl := range replIn {
		_ = nl.Close(nodelink.ReasonShutdown)
	}
	if s.repl != nil {
		s.repl.close()
	}
	if agent != nil {
		if aerr := agent.Close(); aerr != nil && err == nil {
			err = aerr
		}
	}
	s.wg.Wait()
	s.pres.Close()
	return err
}

// RingVersion is the version of the committed ring this broker last
// heard of.
func (s *Server) RingVersion() uint64 { return uint64(gaugeValue(s.m.ringVersion)) }

// stats feeds the state server's status page.
func (s *Server) stats() protocol.Stats {
	s.mu.Lock()
	n := len(s.links)
	s.mu.Unlock()
	return protocol.Stats{
		Connections:   int64(n),
		Subscriptions: s.table.pairs.Load(),
		MessagesIn:    uint64(counterValue(s.m.publishesIn)),
		MessagesOut:   uint64(counterValue(s.m.deliveriesOut)),
		RingVersion:   uint64(gaugeValue(s.m.ringVersion)),
	}
}

// agentHandler applies ring changes; a broker routes whatever its links
// ask for, so it only records the version.
type agentHandler struct{ s *Server }

func (h agentHandler) Prepare(ctx context.Context, r protocol.Ring) error { return nil }

func (h agentHandler) Commit(r protocol.Ring) {
	if h.s.repl != nil {
		h.s.repl.setRing(ring.FromProtocol(r))
	}
	h.s.m.ringVersion.Set(float64(r.Version))
	h.s.pres.ring.Store(ring.FromProtocol(r))
	h.s.log.Info("ring committed", "version", r.Version, "brokers", len(r.Brokers))
}

// allowPeer admits frontends, and brokers that replicate to this one.
func (s *Server) allowPeer(p nodelink.Peer) error {
	if p.Role == protocol.RoleBroker && s.repl != nil {
		return nil
	}
	if p.Role != protocol.RoleFrontend {
		return &nodelink.RejectError{Reason: protocol.RejectRole, Message: "brokers accept frontend links only"}
	}
	return nil
}

// serveLink accepts one frontend link and runs it in this goroutine.
func (s *Server) serveLink(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	lcfg := s.lcfg
	s.mu.Unlock()
	defer s.wg.Done()

	nl, err := nodelink.Accept(w, r, lcfg, s.allowPeer, nil)
	if err != nil {
		return // counted and logged by nodelink
	}
	if nl.Peer().Role == protocol.RoleBroker {
		s.serveReplica(nl)
		return
	}
	l := &link{s: s, nl: nl, id: s.nextConn.Add(1), chans: make(map[string]struct{})}
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		_ = nl.Close(nodelink.ReasonShutdown)
		return
	}
	s.links[l] = struct{}{}
	s.mu.Unlock()
	s.m.links.Inc()
	s.log.Info("frontend link up", "peer", nl.Peer().NodeID, "conn", l.id)
	s.checkPeerRules(nl.Peer())
	err = nl.Run(l)
	s.log.Info("frontend link down", "peer", nl.Peer().NodeID, "conn", l.id, "err", err)
}
