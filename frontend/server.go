package frontend

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/sccgo/sccgo/internal/chanrate"
	"github.com/sccgo/sccgo/internal/coalesce"
	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/netpoll"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/internal/wsconn"
	"github.com/sccgo/sccgo/protocol"
)

// Server is a SocketCluster-compatible WebSocket frontend.
type Server struct {
	cfg    Config
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics
	broker Broker

	auth  *authenticator
	rules channelRules
	hist  *historyState
	subs  *subTable
	api   *api
	pres  *presLocal // presence.go
	ids   socketIDs
	eng   wsconn.Engine
	ping  []byte
	start time.Time

	ctx    context.Context // canceled when Shutdown has closed every socket
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the server starts

	regMu    sync.RWMutex // draining vs. new sockets
	draining bool
	sockets  [socketShards]socketShard
	nconns   atomic.Int64
	// shortWaiters counts upgrades waiting for their address's pace
	// (ShortConnectionsPerIP), bounded by RefusalHoldMax.
	shortWaiters atomic.Int64
	// coalesceEngaged is the time (ns) a coalescing gap was in force.
	coalesceEngaged atomic.Int64
	drainStarted    chan struct{} // closed when Shutdown begins

	readHeld atomic.Int64 // bytes of message buffers charged to ReadBudget
	subTotal atomic.Int64 // subscriptions charged to MaxSubscriptions
	ips      ipTable      // per-address counts, with per-address limits only

	acceptLim       *rate.Limiter  // paces Serve's accepts; nil without pacing
	listeners       []net.Listener // Serve's paced listeners, under httpMu
	handshakeMu     sync.Mutex
	handshakeTokens float64
	handshakeAt     time.Time

	handlersMu  sync.RWMutex
	rpcs        map[string]RPCHandler
	events      map[string]EventHandler
	rpcFallback FallbackRPCHandler

	stat struct {
		messagesIn  atomic.Uint64
		messagesOut atomic.Uint64
		bytesOut    atomic.Uint64
		framesOut   atomic.Uint64
	}

	addr         atomic.Pointer[addrBox]
	poller       atomic.Pointer[netpoll.Poller] // watches parked sockets; nil: none park
	parkedN      atomic.Int64                   // sockets in readerParked
	detachedN    atomic.Int64                   // sockets without their WebSocket state (detach.go)
	accepted     atomic.Uint64                  // connections the paced listener handed out
	acceptPace   atomic.Uint64                  // acceptControl's pace (float64 bits), 0 for none
	pingFrame    []byte                         // the ping as a whole server frame, for detached sockets
	startOnce    sync.Once
	closeMu      sync.Mutex
	closeQ       []*Socket // connections whose peer is gone, for the closer
	closerOn     bool
	closePending atomic.Int64 // queued for the closer or being closed by it
	closerSlice  time.Duration
	closeWake    chan struct{}
	startErr     error
	ready        chan struct{}
	serving      atomic.Bool
	httpMu       sync.Mutex
	httpSrvs     []*http.Server
	chanRate     *chanrate.Limiter
	chanDeliv    *chanrate.Limiter // ChannelDeliveryRate
	sources      *sourceTable      // per-address rates
	refusals     refusalHolds      // refused connections held before their 503
	subLim       subscribeBucket   // SubscribeRate
	tcpMetrics   *connlimit.Metrics
	done         chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error

	// deliveryBudgets: ChannelDeliveryRate or a rule's delivery_rate is set.
	deliveryBudgets bool
}

const socketShards = 16

type socketShard struct {
	mu   sync.RWMutex
	m    map[string]*Socket
	peak int // largest len(m) since m was made; the map is rebuilt far below it
}

// RPCHandler answers a client invoke of a custom procedure. It runs on a
// goroutine of its own with a ctx bounded by AckTimeout. The result is
// marshalled with encoding/json (json.RawMessage is sent as is); a
// *protocol.Error is sent as that SocketCluster error, other errors as
// {"message": err.Error()}.
type RPCHandler func(ctx context.Context, s *Socket, data json.RawMessage) (any, error)

// FallbackRPCHandler answers a client invoke of a procedure that no
// RPCHandler claims, for example by forwarding it to the application
// backend. It runs like an RPCHandler and gets the procedure's name too.
type FallbackRPCHandler func(ctx context.Context, s *Socket, procedure string, data json.RawMessage) (any, error)

// EventHandler handles a client transmit of a custom event. It runs on the
// socket's reader goroutine and must not block.
type EventHandler func(s *Socket, data json.RawMessage)

// New returns a Server for cfg. It validates cfg and allocates; it does no
// I/O and starts no goroutine.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.derived()
	if cfg.AuthPublicKey == nil && len(cfg.AuthKey) == 0 {
		// SocketCluster's behaviour: a random key per process, so tokens
		// only verify on the node that signed them.
		var k [32]byte
		randRead(k[:])
		cfg.AuthKey = []byte(fmt.Sprintf("%x", k))
	}
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		reg:          cfg.Registry,
		broker:       cfg.Broker,
		auth:         auth,
		ping:         cfg.ProtocolVersion.PingFrame(),
		start:        time.Now(),
		ready:        make(chan struct{}),
		drainStarted: make(chan struct{}),
		done:         make(chan struct{}),
		rpcs:         map[string]RPCHandler{},
		events:       map[string]EventHandler{},
	}
	// A server's text frame: FIN, opcode 1, the unmasked length (a ping
	// is at most 2 bytes), the payload.
	s.pingFrame = append([]byte{0x81, byte(len(s.ping))}, s.ping...)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("role", "frontend")
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if s.broker == nil {
		s.broker = NewLocalBroker()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.subs = newSubTable(s.broker)
	for i := range s.sockets {
		s.sockets[i].m = make(map[string]*Socket)
	}
	s.m = newMetrics(s.reg)
	s.initChannelRules()
	s.initHistory()
	s.chanRate = chanrate.New(cfg.channelRate())
	s.chanDeliv = chanrate.New(cfg.channelDeliveries())
	s.deliveryBudgets = cfg.deliveryBudgets()
	s.sources = newSourceTable(&s.cfg, s.clock)
	s.subLim.b.tokens = float64(cfg.SubscribeBurst)
	s.tcpMetrics = connlimit.NewMetrics(s.reg, "frontend")
	s.api = newAPI(s)
	s.initPresence()
	s.subs.pres = s.pres
	s.initHookMetrics()
	s.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "connections", Help: "Open client WebSocket connections."},
			func() float64 { return float64(s.nconns.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "subscriptions", Help: "Socket-channel subscriptions."},
			func() float64 { return float64(s.subs.subs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "channels", Help: "Channels with at least one local subscriber."},
			func() float64 { return float64(s.subs.channels.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "close_backlog", Help: "Connections whose peer is gone waiting for the paced closer (SCC_CLOSER_SHARE); they still count as open."},
			func() float64 { return float64(s.closePending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "listen_queue", Help: "Connections waiting in the listen queue for their turn under SCC_MAX_HANDSHAKES_PER_SECOND (Linux)."},
			s.listenQueue),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "scc", Subsystem: "frontend", Name: "listen_overflows_total", Help: "Connections the kernel dropped because a listen queue was full, over the network namespace (TcpExt ListenOverflows, Linux)."},
			listenOverflows),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "refusals_held", Help: "Refused connections held unanswered now (SCC_REFUSAL_HOLD, at most SCC_REFUSAL_HOLD_MAX)."},
			func() float64 { return float64(s.heldRefusals()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "write_coalesce_seconds", Help: "Gap currently enforced between two frames of publishes to a busy socket: 0 while frames wait less than SCC_WRITE_COALESCE_WAIT for their writer, up to SCC_WRITE_COALESCE."},
			func() float64 { return s.eng.CurrentCoalesce().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "scc", Subsystem: "frontend", Name: "write_coalesce_engaged_seconds_total", Help: "Time a coalescing gap was in force (scc_frontend_write_coalesce_seconds above 0): while it does not grow, no frame was held back."},
			func() float64 { return time.Duration(s.coalesceEngaged.Load()).Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "scc", Subsystem: "frontend", Name: "write_wait_seconds_total", Help: "Time the data frames written to clients waited for their writer to run, from their oldest message's queueing (or the end of its coalescing gap) to the write; divided by the frames it is the wait SCC_WRITE_COALESCE_WAIT bounds."},
			func() float64 { return s.eng.Totals().Wait.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "scc", Subsystem: "frontend", Name: "write_busy_seconds_total", Help: "Time spent joining and writing the data frames to clients (wall clock); its rate over GOMAXPROCS is the share SCC_WRITE_COALESCE_BUSY compares."},
			func() float64 { return s.eng.Totals().Busy.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "read_held_bytes", Help: "Bytes of inbound message buffers charged to SCC_READ_BUDGET."},
			func() float64 { return float64(s.readHeld.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "pending_subscribes", Help: "Channels whose broker subscription is in flight (SCC_MAX_PENDING_SUBSCRIBES)."},
			func() float64 { return float64(s.subs.pending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "parked_sockets", Help: "Open sockets holding no reader goroutine, waiting in the poller for bytes (SCC_PARK_IDLE_SOCKETS)."},
			func() float64 { return float64(s.parkedN.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "accept_pace", Help: "Accepts per second SCC_ACCEPT_LATENCY_TARGET allows now; 0 when it does not pace."},
			func() float64 { return s.acceptPaceNow() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "scc", Subsystem: "frontend", Name: "detached_sockets", Help: "Parked sockets that also dropped their WebSocket state after SCC_IDLE_DETACH without traffic other than pings and pongs."},
			func() float64 { return float64(s.detachedN.Load()) }),
	)
	s.handshakeTokens = float64(cfg.HandshakeBurst)
	s.closerSlice = defaultCloserSlice
	if cfg.MaxHandshakesPerSecond > 0 && cfg.HandshakeQueue > 0 {
		s.acceptLim = rate.NewLimiter(rate.Limit(cfg.MaxHandshakesPerSecond), cfg.HandshakeBurst)
	} else if cfg.AcceptLatencyTarget > 0 && cfg.HandshakeQueue > 0 {
		s.acceptLim = rate.NewLimiter(rate.Inf, cfg.HandshakeBurst) // paced by acceptControl
	}
	s.eng = wsconn.Engine{
		MaxBytes:     cfg.QueueMaxBytes,
		MaxMessages:  cfg.QueueMaxMessages,
		WriteTimeout: cfg.WriteTimeout,
		MessageType:  websocket.MessageText,
		Batch:        protocol.AppendBatch,
		WG:           &s.wg,
		Linger:       cfg.WriterLinger,
		Coalesce:     cfg.WriteCoalesce,
		// With a wait target the gap follows the writers' wait.
		CoalesceDynamic: cfg.WriteCoalesce > 0 && cfg.WriteCoalesceWait > 0,
		OnFrame: func(packets, bytes int) {
			s.stat.framesOut.Add(1)
			s.stat.bytesOut.Add(uint64(bytes))
			s.m.framesOut.Inc()
			s.m.bytesOut.Add(float64(bytes))
		},
	}
	return s, nil
}

// clock returns monotonic nanoseconds since the server was created.
func (s *Server) clock() int64 { return int64(time.Since(s.start)) }

func randRead(b []byte) {
	if _, err := crand.Read(b); err != nil {
		panic("frontend: crypto/rand failed: " + err.Error())
	}
}

// HandleRPC registers the handler for client invokes of procedure name.
// Invokes of procedures with no handler go to the HandleRPCFallback
// handler, or get NoMatchingProcedureError without one.
func (s *Server) HandleRPC(name string, h RPCHandler) {
	s.handlersMu.Lock()
	s.rpcs[name] = h
	s.handlersMu.Unlock()
}

// HandleEvent registers the handler for client transmits of event name.
// Transmits of events with no handler are ignored.
func (s *Server) HandleEvent(name string, h EventHandler) {
	s.handlersMu.Lock()
	s.events[name] = h
	s.handlersMu.Unlock()
}

// HandleRPCFallback registers the handler for client invokes of
// procedures with no handler of their own: a procedure registered with
// HandleRPC always wins. Names starting with '#' are SocketCluster's and
// never reach it.
func (s *Server) HandleRPCFallback(h FallbackRPCHandler) {
	s.handlersMu.Lock()
	s.rpcFallback = h
	s.handlersMu.Unlock()
}

func (s *Server) rpcHandler(name string) RPCHandler {
	s.handlersMu.RLock()
	defer s.handlersMu.RUnlock()
	if h := s.rpcs[name]; h != nil {
		return h
	}
	if f := s.rpcFallback; f != nil && !strings.HasPrefix(name, "#") {
		return func(ctx context.Context, so *Socket, data json.RawMessage) (any, error) {
			return f(ctx, so, name, data)
		}
	}
	return nil
}

func (s *Server) eventHandler(name string) EventHandler {
	s.handlersMu.RLock()
	defer s.handlersMu.RUnlock()
	return s.events[name]
}

// Registry returns the registry the server's metrics are on.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Serve accepts connections on ln until Shutdown. The first call starts
// the broker and the liveness sweeper. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.begin(); err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	s.httpMu.Lock()
	if s.isDraining() {
		s.httpMu.Unlock()
		return nil
	}
	s.httpSrvs = append(s.httpSrvs, hs)
	s.httpMu.Unlock()
	s.addr.Store(&addrBox{ln.Addr()})
	s.serving.Store(true)
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "path", s.cfg.Path)
	if s.cfg.refusesAtAccept() {
		// Before pacing: a refused connection costs no handshake token.
		ln = &sourceListener{Listener: ln, srv: s}
	}
	if s.acceptLim != nil {
		defer s.track(ln)()
		ln = s.pace(ln)
		hs.ConnContext = prepaidContext
	}
	ln = s.quiet(ln)
	ln = s.limitConns(ln, hs)
	if s.cfg.TLS != nil {
		// After pacing, so a storm waits in the listen queue before it
		// costs a handshake; http.Server bounds the handshake by
		// ReadHeaderTimeout.
		ln = tls.NewListener(ln, s.cfg.TLS)
		hs.ErrorLog = tlsconf.ErrorLog(tlsconf.HandshakeFailures(s.reg, protocol.RoleFrontend), nil)
	}
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

type addrBox struct{ a net.Addr }

// begin starts the broker and the sweeper once.
func (s *Server) begin() error {
	s.startOnce.Do(func() {
		if err := s.broker.Start(s.ctx, s); err != nil {
			s.startErr = fmt.Errorf("starting broker: %w", err)
			return
		}
		if err := s.api.start(); err != nil {
			s.startErr = fmt.Errorf("starting server API: %w", err)
			return
		}
		s.wg.Go(s.sweep)
		s.startPoller()
		if s.cfg.AcceptLatencyTarget > 0 && s.acceptLim != nil {
			s.wg.Go(s.acceptControl)
		}
		s.startHistory()
		s.closeMu.Lock()
		s.closeWake = make(chan struct{}, 1)
		s.closerOn = true
		s.closeMu.Unlock()
		s.wg.Go(s.closer)
		if s.eng.CoalesceDynamic {
			s.wg.Go(s.adaptCoalesce)
		}
	})
	return s.startErr
}

// startPoller starts the poller that parked sockets wait on, when
// ParkIdleSockets is on and the platform has one.
func (s *Server) startPoller() {
	if !s.cfg.ParkIdleSockets {
		return
	}
	p, err := netpoll.New()
	if err != nil {
		if !errors.Is(err, netpoll.ErrUnsupported) {
			s.log.Warn("idle sockets keep a reader goroutine each", "err", err)
		}
		return
	}
	s.poller.Store(p)
	s.wg.Go(p.Run)
}

// Addr returns the address of the listener Serve was last given, or nil.
func (s *Server) Addr() net.Addr {
	if b := s.addr.Load(); b != nil {
		return b.a
	}
	return nil
}

// Ready returns a channel closed once Serve is accepting connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

func (s *Server) isDraining() bool {
	s.regMu.RLock()
	defer s.regMu.RUnlock()
	return s.draining
}

// Handler returns the HTTP handler of the client port: the WebSocket
// endpoint at Config.Path, /healthz and /readyz (load balancers probe the
// port they send clients to), Config.Pages, and /metrics only with
// Config.ServeAdmin. Any other path gets HTTP 400, like SocketCluster.
func (s *Server) Handler() http.Handler {
	admin := s.AdminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == s.cfg.Path {
			s.upgrade(w, r)
			return
		}
		switch r.URL.Path {
		case "/healthz", "/readyz":
			admin.ServeHTTP(w, r)
			return
		case "/metrics":
			if s.cfg.ServeAdmin {
				admin.ServeHTTP(w, r)
				return
			}
		}
		// The server API shares the client port only when the admin
		// endpoints do (no separate admin port).
		if (s.cfg.ServeAdmin || s.cfg.API.OnClientPort) && s.api.on && strings.HasPrefix(r.URL.Path, "/api/") {
			admin.ServeHTTP(w, r)
			return
		}
		for prefix, h := range s.cfg.Pages {
			if strings.HasPrefix(r.URL.Path, prefix) {
				h.ServeHTTP(w, r)
				return
			}
		}
		s.m.rejected.WithLabelValues(rejectPath).Inc()
		http.Error(w, "Bad Request", http.StatusBadRequest)
	})
}

// AdminHandler serves /healthz (200 while the process is up), /readyz (200
// once serving with a ready broker, 503 while draining) and /metrics; the
// binary serves it on the admin port (SCC_ADMIN_PORT).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.IsReady() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	if h := s.APIHandler(); h != nil {
		mux.Handle("/api/", h)
	}
	return mux
}

// IsReady reports what /readyz reports: serving, not draining, and the
// broker can route.
func (s *Server) IsReady() bool {
	return s.serving.Load() && !s.isDraining() && s.broker.Ready()
}

func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		s.reject(w, rejectDraining, http.StatusServiceUnavailable, "Server is shutting down")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !originAllowed(s.cfg.Origins, origin) {
		s.reject(w, rejectOrigin, http.StatusForbidden, "Failed to authorize socket handshake - Invalid origin: "+origin)
		return
	}
	if !s.waitShortPace(w, r) {
		return
	}
	if !s.admitHandshake(r.Context()) {
		s.reject(w, rejectHandshakeRate, http.StatusServiceUnavailable, "Too many handshakes; retry later")
		return
	}
	if n := s.nconns.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
		s.nconns.Add(-1)
		s.reject(w, rejectMaxConns, http.StatusServiceUnavailable, "Server is at its connection limit")
		return
	}
	now := s.clock()
	sock := &Socket{srv: s, opened: now, ip: s.remoteIP(r.RemoteAddr)}
	if s.countsIPs() && sock.ip.IsValid() && !s.ips.adjust(sock.ip, 1, 0, s.cfg.MaxConnectionsPerIP, 0) {
		s.nconns.Add(-1)
		s.reject(w, rejectMaxConnsPerIP, http.StatusServiceUnavailable, "Too many connections from this address")
		return
	}
	sock.msgs = bucket{tokens: float64(s.cfg.InboundBurst), at: now}
	sock.bytes = bucket{tokens: float64(s.cfg.InboundByteBurst), at: now}
	sock.refused = bucket{tokens: float64(s.cfg.PublishRefusalBurst), at: now}
	ws, nc, err := wsconn.Accept(w, r, wsconn.AcceptOptions{
		ReadBufferSize:  s.cfg.ReadBufferSize,
		WriteBufferSize: s.cfg.WriteBufferSize,
		WebSocket:       acceptOptions, // origins are checked above, SocketCluster's way
		Meter:           sock,
	})
	if err != nil {
		s.release(sock)
		s.m.rejected.WithLabelValues(rejectUpgrade).Inc()
		return
	}
	ws.SetReadLimit(s.cfg.MaxPayload)
	sock.id, sock.ws, sock.nc = s.ids.next(), ws, nc
	sock.lastSeen.Store(now)
	sock.lastUse = now
	// The first ping comes at a random point of the first interval, so
	// sockets that connect together (a reconnect storm) do not all get
	// their pings in the same sweep ever after.
	sock.lastPing.Store(now - mrand.Int64N(int64(s.cfg.PingInterval)))
	sock.q.Init(&s.eng, nil, nc, sock)
	sock.q.SetLender((*socketLender)(sock))
	sock.initHooks(r)

	s.regMu.RLock()
	if s.draining {
		s.regMu.RUnlock()
		s.release(sock)
		ws.Close(websocket.StatusGoingAway, protocol.CloseReason(protocol.CloseGoingAway))
		return
	}
	sh := s.socketShard(sock.id)
	sh.mu.Lock()
	sh.m[sock.id] = sock
	sh.peak = max(sh.peak, len(sh.m))
	sh.mu.Unlock()
	s.m.connectionsTotal.Inc()
	// The reader gets a goroutine of its own so this handler returns and
	// net/http's per-request state (about 10 KiB) is freed. The socket
	// counts in wg from here until its teardown, whether a reader
	// goroutine runs or it is parked.
	s.wg.Add(1)
	sock.rstate.Store(readerRunning)
	go sock.serve()
	s.regMu.RUnlock()
}

func (s *Server) reject(w http.ResponseWriter, reason string, code int, body string) {
	s.m.rejected.WithLabelValues(reason).Inc()
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, body, code)
}

func (s *Server) allowHandshake() bool {
	rate := s.cfg.MaxHandshakesPerSecond
	if rate <= 0 {
		return true
	}
	s.handshakeMu.Lock()
	defer s.handshakeMu.Unlock()
	now := time.Now()
	if !s.handshakeAt.IsZero() {
		s.handshakeTokens += now.Sub(s.handshakeAt).Seconds() * rate
	}
	s.handshakeAt = now
	if burst := float64(s.cfg.HandshakeBurst); s.handshakeTokens > burst {
		s.handshakeTokens = burst
	}
	if s.handshakeTokens < 1 {
		return false
	}
	s.handshakeTokens--
	return true
}

// originAllowed applies SocketCluster's origins option: patterns
// host:port, either part "*".
func originAllowed(origins, origin string) bool {
	pats := strings.FieldsFunc(origins, func(r rune) bool { return r == ' ' || r == ',' })
	host, port := "", ""
	if i := strings.Index(origin, "://"); i >= 0 {
		scheme, hp := origin[:i], origin[i+3:]
		if j := strings.IndexAny(hp, "/?#"); j >= 0 {
			hp = hp[:j]
		}
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			h = hp
			p = "80"
			if scheme == "https" || scheme == "wss" {
				p = "443"
			}
		}
		host, port = strings.Trim(h, "[]"), p
	}
	for _, pat := range pats {
		ph, pp := pat, "*"
		if i := strings.LastIndex(pat, ":"); i >= 0 {
			ph, pp = pat[:i], pat[i+1:]
		}
		if (ph == "*" || strings.EqualFold(ph, host)) && (pp == "*" || pp == port) {
			return true
		}
	}
	return false
}

func (s *Server) socketShard(id string) *socketShard {
	var h uint32
	for i := 0; i < len(id); i++ {
		h = h*31 + uint32(id[i])
	}
	return &s.sockets[h%socketShards]
}

func (s *Server) unregister(sock *Socket) {
	sh := s.socketShard(sock.id)
	sh.mu.Lock()
	if sh.m[sock.id] == sock {
		delete(sh.m, sock.id)
		if sh.peak >= shardShrinkFloor && len(sh.m) < sh.peak/4 {
			m := make(map[string]*Socket, len(sh.m))
			for k, v := range sh.m {
				m[k] = v
			}
			sh.m, sh.peak = m, len(m)
		}
	}
	sh.mu.Unlock()
	if !sock.closeDeferred.Load() {
		s.release(sock)
	}
}

// release gives up sock's place in the connection count, once.
func (s *Server) release(sock *Socket) {
	if sock.released.CompareAndSwap(false, true) {
		s.nconns.Add(-1)
		if s.countsIPs() && sock.ip.IsValid() {
			s.ips.adjust(sock.ip, -1, 0, 0, 0)
		}
	}
}

// SocketByID returns the open socket with id, or nil.
func (s *Server) SocketByID(id string) *Socket {
	sh := s.socketShard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[id]
}

// eachSocket calls fn for every open socket, under a shard read lock.
func (s *Server) eachSocket(fn func(*Socket)) {
	for i := range s.sockets {
		sh := &s.sockets[i]
		sh.mu.RLock()
		for _, sock := range sh.m {
			fn(sock)
		}
		sh.mu.RUnlock()
	}
}

// KickOut sends #kickOut {channel, message} to socket socketID and
// unsubscribes it from channel.
func (s *Server) KickOut(socketID, channel, message string) error {
	sock := s.SocketByID(socketID)
	if sock == nil {
		return ErrNoSocket
	}
	return sock.KickOut(channel, message)
}

// Publish publishes data (raw JSON; empty means no data) to channel
// through the broker, as if a client had published it.
func (s *Server) Publish(ctx context.Context, channel string, data json.RawMessage) error {
	if channel == "" || len(channel) > s.cfg.MaxChannelLength {
		return fmt.Errorf("frontend: publish: channel name %q is empty or too long", channel)
	}
	if len(data) > 0 && !json.Valid(data) {
		return errors.New("frontend: publish: data is not valid JSON")
	}
	if err := s.begin(); err != nil {
		return err
	}
	return s.broker.Publish(ctx, channel, data)
}

// publish routes a client publish.
//
// Broker.Publish returns once the message is accepted for routing and
// never waits on the network (the cluster broker queues or holds it), so
// no per-publish deadline is needed on this hot path.
func (s *Server) publish(channel string, data []byte) error {
	return s.broker.Publish(s.ctx, channel, data)
}

// Deliver implements Sink: it encodes the #publish frame once and queues
// the same bytes to every local subscriber of channel. It never blocks on
// a subscriber; one that overflows its queue is closed with 4010.
func (s *Server) Deliver(channel string, data []byte) {
	if isReserved(channel) {
		s.api.control(channel, data)
		return
	}
	frame := protocol.AppendPublish(make([]byte, 0, len(channel)+len(data)+48), channel, data)
	n := s.subs.fanout(channel, frame)
	if n > 0 {
		s.stat.messagesOut.Add(uint64(n))
		s.m.messagesOut.Add(float64(n))
	}
	if strings.HasPrefix(channel, protocol.PresenceChannelPrefix) {
		s.pres.delivered(data, n)
	}
}

// LocalChannels returns every channel that has local subscribers, for a
// cluster broker that re-subscribes after reconnecting.
func (s *Server) LocalChannels() []string { return s.subs.localChannels() }

// verify checks a raw JSON token value and counts failures.
func (s *Server) verify(raw json.RawMessage) (*tokenInfo, *protocol.Error) {
	var info *tokenInfo
	var perr *protocol.Error
	if tok, ok := protocol.DecodeString(raw); ok {
		info, perr = s.auth.verifyToken(tok)
	} else if len(raw) == 0 || string(raw) == "null" {
		perr = badToken(protocol.ErrNameAuthTokenInvalid, "jwt must be provided")
	} else {
		perr = badToken(protocol.ErrNameAuthTokenInvalid, "jwt must be a string")
	}
	if perr != nil {
		s.m.authFailures.WithLabelValues(perr.Name).Inc()
	}
	return info, perr
}

// Stats is a snapshot of the server's counters, for status pages.
type Stats struct {
	Connections   int64
	Subscriptions int64
	Channels      int64
	MessagesIn    uint64
	MessagesOut   uint64
	BytesOut      uint64
	FramesOut     uint64
}

// Stats returns current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:   s.nconns.Load(),
		Subscriptions: s.subs.subs.Load(),
		Channels:      s.subs.channels.Load(),
		MessagesIn:    s.stat.messagesIn.Load(),
		MessagesOut:   s.stat.messagesOut.Load(),
		BytesOut:      s.stat.bytesOut.Load(),
		FramesOut:     s.stat.framesOut.Load(),
	}
}

// Shutdown turns the server not-ready, stops accepting, closes every
// socket with 1001 paced over DrainDuration (faster if ctx ends sooner),
// stops the broker and waits for every goroutine. When ctx ends first the
// remaining connections are cut. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.regMu.Lock()
	s.draining = true
	s.regMu.Unlock()
	close(s.drainStarted) // upgrades waiting for their turn give up

	s.httpMu.Lock()
	srvs := s.httpSrvs
	s.httpMu.Unlock()
	var errs []error
	for _, hs := range srvs {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping http server: %w", err))
		}
	}

	var socks []*Socket
	s.eachSocket(func(sock *Socket) { socks = append(socks, sock) })
	s.log.Info("draining", "sockets", len(socks), "window", s.cfg.DrainDuration.String())
	begin := time.Now()
	t := time.NewTimer(0)
	<-t.C
	for i, sock := range socks {
		due := begin.Add(s.cfg.DrainDuration * time.Duration(i) / time.Duration(len(socks)))
		if d := time.Until(due); d > time.Millisecond && ctx.Err() == nil {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		sock.closeWith(protocol.CloseGoingAway, reasonGoingAway, false)
	}
	t.Stop()

	close(s.done)
	s.cancel()
	s.closeRefusals()
	// Every socket is closing and none parks any more (a closing socket
	// is woken by its close, not by the poller).
	if p := s.poller.Load(); p != nil {
		p.Close()
	}
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("shutdown: %w; cutting connections", ctx.Err()))
		s.eachSocket(func(sock *Socket) {
			sock.nc.Close()
			sock.wake()
		})
		<-waited
	}
	if err := s.broker.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing broker: %w", err))
	}
	return errors.Join(errs...)
}

// adaptCoalesce keeps the write-coalescing gap at what the frontend needs
// to keep up with its writes, up to WriteCoalesce, from what its clients
// experience: how long frames wait for their writers
// (wsconn.WriterTotals.Wait) against WriteCoalesceWait, and the share of
// the CPUs the process may use (GOMAXPROCS, or its cgroup's CPU limit
// when lower) that writing them takes
// (WriterTotals.Busy) against WriteCoalesceBusy, and the share of them
// the whole process uses against WriteCoalesceCPU. The control law is
// internal/coalesce's: 0 while the frontend keeps up, however high the
// message rate.
func (s *Server) adaptCoalesce() {
	ctl := coalesce.Controller{Budget: s.cfg.WriteCoalesce, Target: s.cfg.WriteCoalesceWait,
		MinBusy: s.cfg.WriteCoalesceBusy, MinCPU: s.cfg.WriteCoalesceCPU}
	t := time.NewTicker(coalesce.Sample)
	defer t.Stop()
	last, lastAt := s.eng.Totals(), time.Now()
	lastCPU, cpuKnown := coalesce.ProcessCPU()
	lastCPUAt, cpu := lastAt, 1.0
	quota, hasQuota := coalesce.CPUQuota()
	for i := 1; ; i++ {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		// The clock is read with the totals, not taken from the tick: a
		// tick delivered late on a busy CPU would otherwise divide a
		// longer stretch of CPU time by a shorter one.
		cur, now := s.eng.Totals(), time.Now()
		used, usedOK := coalesce.ProcessCPU()
		var mean time.Duration
		if n := cur.Frames - last.Frames; n > 0 {
			mean = (cur.Wait - last.Wait) / time.Duration(n)
		}
		if i%cpuQuotaEvery == 0 {
			quota, hasQuota = coalesce.CPUQuota()
		}
		// The CPUs the process may use: GOMAXPROCS follows its affinity
		// and rounds a cgroup limit up (to at least 2), so the limit
		// itself bounds it too. Read at every sample: both can change.
		cpus := float64(runtime.GOMAXPROCS(0))
		if hasQuota {
			cpus = min(cpus, quota)
		}
		busy := 0.0
		if el := now.Sub(lastAt); el > 0 && cpus > 0 {
			busy = float64(cur.Busy-last.Busy) / float64(el) / cpus
		}
		// A failed read keeps the last share, and the next good one
		// spans the time since the last good one.
		if el := now.Sub(lastCPUAt); cpuKnown && usedOK && el > 0 && cpus > 0 {
			cpu = float64(used-lastCPU) / float64(el) / cpus
			lastCPU, lastCPUAt = used, now
		}
		gap := ctl.Next(mean, busy, cpu)
		s.eng.SetCoalesce(gap)
		if gap > 0 {
			s.coalesceEngaged.Add(int64(coalesce.Sample))
		}
		last, lastAt = cur, now
	}
}

// cpuQuotaEvery is how many coalescing samples pass between two reads of
// the cgroup's CPU limit (about a second).
const cpuQuotaEvery = 40
