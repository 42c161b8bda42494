package state

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/protocol"
)

// ErrServerClosed is returned by Serve after Shutdown, and by Serve when
// called twice.
var ErrServerClosed = errors.New("state: server closed")

// gossipRejoinInterval is how often a state server alone in gossip retries
// its seeds (configured ones, else its members' gossip addresses).
const gossipRejoinInterval = 2 * time.Second

// Server is the cluster state server.
type Server struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	m    *metrics
	lcfg nodelink.Config
	co   *coordinator
	hs   *http.Server
	// admin serves /healthz, /readyz, /metrics, /status and the pages
	// added by Handle: AdminHandler, and the link port's fallback with
	// ServeAdmin.
	admin *http.ServeMux
	tcp   *connlimit.Metrics

	ready  chan struct{}
	done   chan struct{}  // closed by Shutdown
	wg     sync.WaitGroup // coordinator and gossip joiner
	linkWG sync.WaitGroup // link handlers

	mu       sync.Mutex
	ln       net.Listener
	links    map[*nodelink.Link]struct{}
	gossip   *gossip.Gossip
	serving  bool
	closing  bool
	shutdown chan struct{} // closed when Shutdown has finished
}

// New validates cfg and builds a server; it does no I/O.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("node", cfg.NodeID, "role", protocol.RoleState)
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	lc := linkConfig(cfg.Link)
	lc.NodeID = cfg.NodeID
	lc.Role = protocol.RoleState
	lc.AuthKey = cfg.AuthKey
	lc.Logger = lg
	lc.Metrics = nodelink.NewMetrics(reg, protocol.RoleState)
	lc.Pending = nodelink.NewPending()
	if err := lc.Validate(); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	m := newMetrics(reg)
	s := &Server{
		cfg:      cfg,
		log:      lg,
		reg:      reg,
		m:        m,
		lcfg:     lc,
		co:       newCoordinator(cfg, lg, m),
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		links:    make(map[*nodelink.Link]struct{}),
		shutdown: make(chan struct{}),
	}
	healthz := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }
	s.admin = http.NewServeMux()
	s.admin.HandleFunc("GET /status", s.handleStatus)
	s.admin.HandleFunc("GET /healthz", healthz)
	s.admin.HandleFunc("GET /readyz", s.handleReady)
	s.admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, s.handleLink)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.tcp = connlimit.NewMetrics(reg, protocol.RoleState)
	if cfg.ServeAdmin {
		mux.Handle("/", s.admin)
	}
	s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: lc.HandshakeTimeout, ErrorLog: slog.NewLogLogger(lg.Handler(), slog.LevelDebug)}
	s.hs.MaxHeaderBytes = lc.HeaderLimit() // before any key is proved
	return s, nil
}

// linkConfig fills the zero limits of c with nodelink's defaults.
func linkConfig(c nodelink.Config) nodelink.Config {
	d := nodelink.DefaultConfig()
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = d.PingTimeout
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = d.MaxFrameBytes
	}
	if c.QueueMaxBytes <= 0 {
		c.QueueMaxBytes = d.QueueMaxBytes
	}
	return c
}

// Handle registers an extra HTTP handler (a status page, say) on the
// admin handler before Serve.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.admin.Handle(pattern, h)
}

// AdminHandler serves /healthz, /readyz, /metrics, /status and the pages
// added by Handle, for the admin port (SCC_ADMIN_PORT). The link port
// serves only links, /healthz and /readyz, unless Config.ServeAdmin.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Serve starts gossip and the coordinator and serves links and HTTP on ln
// until Shutdown. It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.serving || s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.serving = true
	s.ln = ln
	if len(s.cfg.AuthKey) == 0 {
		s.log.Warn("SCC_AUTH_KEY is empty: inter-node links are authenticated with an empty key")
	}
	if s.cfg.GossipPort >= 0 {
		g, err := s.startGossip()
		if err != nil {
			s.closing = true
			s.mu.Unlock()
			ln.Close()
			return err
		}
		s.gossip = g
		s.co.onCommit = g.SetRing
		s.wg.Go(s.gossipJoiner)
	}
	s.wg.Go(s.co.run)
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("state server listening", "addr", ln.Addr().String())
	cl := connlimit.Wrap(ln, s.cfg.Conns, s.tcp, s.log)
	cl.Install(s.hs, nil)
	ln = cl
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
		s.hs.ErrorLog = tlsconf.ErrorLog(tlsconf.HandshakeFailures(s.reg, protocol.RoleState), s.log)
	}
	err := s.hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

func (s *Server) startGossip() (*gossip.Gossip, error) {
	gc := gossip.DefaultConfig()
	if s.cfg.Gossip != nil {
		gc = *s.cfg.Gossip
	}
	gc.NodeName = s.cfg.NodeID
	gc.AuthKey = s.cfg.AuthKey
	gc.Role = protocol.RoleState
	gc.BindAddr = s.cfg.GossipBind
	gc.BindPort = s.cfg.GossipPort
	gc.AdvertiseAddr = s.cfg.GossipAdvertise
	gc.Seeds = nil // joined by gossipJoiner, so Serve does not block on them
	gc.Logger = s.log
	gc.MaxRingVersionStep = s.cfg.MaxRingVersionStep
	gc.Registry = s.reg
	gc.OnMember = func(m gossip.Member) {
		if m.Role == protocol.RoleBroker {
			s.co.gossipMember(m.ID, m.Alive)
		}
	}
	gc.OnRing = func(r protocol.Ring) { s.co.gossipRing(r) }
	g, err := gossip.New(gc)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return g, nil
}

// gossipJoiner joins the configured seeds at start, and whenever the state
// server is alone in gossip retries them (or its members' addresses).
func (s *Server) gossipJoiner() {
	g := s.gossip
	join := func(seeds []string) {
		if len(seeds) == 0 {
			return
		}
		if _, err := g.Join(seeds); err != nil {
			s.log.Debug("gossip join failed", "err", err)
		}
	}
	join(s.cfg.GossipSeeds)
	t := time.NewTicker(gossipRejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if g.NumAlive() > 1 {
			continue
		}
		seeds := s.cfg.GossipSeeds
		if len(seeds) == 0 {
			seeds = s.co.Seeds()
		}
		join(seeds)
	}
}

// Addr returns the listener's address (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// GossipAddr returns the state server's gossip address, or "" without
// gossip.
func (s *Server) GossipAddr() string {
	s.mu.Lock()
	g := s.gossip
	s.mu.Unlock()
	if g == nil {
		return ""
	}
	return g.Addr()
}

// Ready is closed once Serve is accepting.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Status returns the cluster view.
func (s *Server) Status(ctx context.Context) (Status, error) {
	var st Status
	select {
	case <-s.ready:
	default:
		return st, errors.New("state: not serving")
	}
	err := s.co.call(ctx, func() { st = s.co.status() })
	return st, err
}

// Shutdown stops accepting, closes every link, stops the coordinator and
// leaves gossip. It waits for every goroutine, bounded by ctx, and is
// idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.shutdown:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.closing = true
	serving := s.serving
	links := make([]*nodelink.Link, 0, len(s.links))
	for l := range s.links {
		links = append(links, l)
	}
	g := s.gossip
	s.mu.Unlock()
	defer close(s.shutdown)

	close(s.done)
	err := s.hs.Shutdown(ctx)
	for _, l := range links {
		l.Close(nodelink.ReasonShutdown)
	}
	if err := waitCtx(ctx, &s.linkWG); err != nil {
		return err
	}
	if serving {
		s.co.stop()
	}
	if err := waitCtx(ctx, &s.wg); err != nil {
		return err
	}
	if g != nil {
		if lerr := g.Leave(s.cfg.ShutdownTimeout); lerr != nil {
			s.log.Debug("gossip leave", "err", lerr)
		}
		if serr := g.Shutdown(); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// waitCtx waits for wg or ctx.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) allow(p nodelink.Peer) error {
	switch p.Role {
	case protocol.RoleBroker, protocol.RoleFrontend:
	default:
		return &nodelink.RejectError{Reason: protocol.RejectRole, Message: "only brokers and frontends join the state server"}
	}
	if p.NodeID == "" {
		return &nodelink.RejectError{Reason: protocol.RejectMalformed, Message: "empty node id"}
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return &nodelink.RejectError{Reason: protocol.RejectState, Message: "shutting down"}
	}
	return nil
}

func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.linkWG.Add(1)
	g := s.gossip
	s.mu.Unlock()
	defer s.linkWG.Done()

	seeds := s.co.Seeds()
	if g != nil {
		seeds = append([]string{g.Addr()}, seeds...)
	}
	l, err := nodelink.Accept(w, r, s.lcfg, s.allow, seeds)
	if err != nil {
		return // logged and counted by nodelink
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close(nodelink.ReasonShutdown)
		return
	}
	s.links[l] = struct{}{}
	s.mu.Unlock()
	s.co.connect(l, l.Peer())
	_ = l.Run(linkHandler{s})
	s.mu.Lock()
	delete(s.links, l)
	s.mu.Unlock()
}

// linkHandler feeds a link's messages to the coordinator. Bodies alias the
// read buffer, so they are decoded here.
type linkHandler struct{ s *Server }

func (h linkHandler) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	co := h.s.co
	for _, m := range msgs {
		var err error
		switch m.Type {
		case protocol.MsgRing:
			var r protocol.Ring
			if err = m.Decode(&r); err == nil {
				co.reportRing(l, r)
			}
		case protocol.MsgPrepared:
			var p protocol.Prepared
			if err = m.Decode(&p); err == nil {
				co.prepared(l, p.Version)
			}
		case protocol.MsgLeave:
			var lv protocol.Leave
			if err = m.Decode(&lv); err == nil {
				co.leave(l)
			}
		case protocol.MsgStats:
			var st protocol.Stats
			if err = m.Decode(&st); err == nil {
				co.stats(l, st)
			}
		}
		if err != nil {
			h.s.log.Warn("bad message", "peer", l.Peer().NodeID, "err", err)
		}
	}
}

func (h linkHandler) Closed(l *nodelink.Link, err error) {
	h.s.co.disconnect(l)
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	st, err := s.Status(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if g := s.gossipOrNil(); g != nil {
		for i := range st.Members {
			if st.Members[i].Role == protocol.RoleBroker && g.IsDead(st.Members[i].ID) {
				st.Members[i].GossipDead = true
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

func (s *Server) gossipOrNil() *gossip.Gossip {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gossip
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ok := s.serving && !s.closing
	s.mu.Unlock()
	if !ok {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}
