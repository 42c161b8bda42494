package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// ErrNoState is returned by Leave when the agent has no state server.
var ErrNoState = errors.New("membership: no state server configured")

// ErrClosed is returned by Leave when the agent closes while waiting.
var ErrClosed = errors.New("membership: agent closed")

// Config configures an Agent.
type Config struct {
	// NodeID is this node's identity (a broker's SCC_INSTANCE_ID or its
	// advertised host:port). Required.
	NodeID string
	// Role is protocol.RoleBroker or protocol.RoleFrontend. Required.
	Role string
	// Addr is the advertised service address sent in Hello (a broker's
	// link endpoint host:port); "" for frontends.
	Addr string
	// StateAddr is the state server's host:port; "" runs without one
	// (gossip only).
	StateAddr string
	// AuthKey is SCC_AUTH_KEY.
	AuthKey []byte
	// GossipBind is the gossip listen address. Default "0.0.0.0"; env
	// SCC_GOSSIP_BIND.
	GossipBind string
	// GossipPort is the gossip port; 0 picks a free one. Default 7946; env
	// SCC_GOSSIP_PORT.
	GossipPort int
	// GossipAdvertise is the IP peers reach this node's gossip at ("" lets
	// memberlist choose). Env SCC_INSTANCE_IP.
	GossipAdvertise string
	// GossipSeeds are gossip addresses to join; if empty the seeds of the
	// state server's Welcome are used. Env SCC_GOSSIP_SEEDS.
	GossipSeeds []string
	// GossipRejoinInterval is how often a node alone in gossip retries its
	// seeds. Default 2s.
	GossipRejoinInterval time.Duration
	// UnknownBrokerGrace: while the state link is down, a broker of the
	// ring that gossip has never seen counts as dead only once this node
	// has been in gossip with others for this long (a node that just
	// joined may not have heard of every member yet). Default 3s.
	UnknownBrokerGrace time.Duration
	// Gossip, if set, is the base gossip configuration (failure detection
	// timing); NodeName, Role, Addr, the bind and advertise fields, seeds,
	// callbacks and logger are set by the agent. Nil means
	// gossip.DefaultConfig().
	Gossip *gossip.Config
	// ReconnectMin and ReconnectMax bound the jittered backoff of the
	// state link. Defaults 50ms and 500ms.
	ReconnectMin, ReconnectMax time.Duration
	// StatsInterval is how often Stats go to the state server. Default 5s.
	StatsInterval time.Duration
	// MaxRingVersionStep bounds how far a ring version from the state link
	// or gossip may jump above the committed one; a further one, or one
	// above ring.MaxVersion, is refused and counted
	// (scc_<role>_ring_rejects_total, scc_<role>_gossip_rejects_total).
	// Default ring.DefaultMaxVersionStep (1<<20; env
	// SCC_RING_MAX_VERSION_STEP).
	MaxRingVersionStep uint64
	// Link is the base link configuration (timeouts, limits); NodeID,
	// Role, AuthKey, Addr, GossipAddr, RingVersion, Draining, Logger and
	// Metrics are set by the agent. Nil means nodelink.DefaultConfig().
	Link *nodelink.Config
	// Logger receives the agent's events; nil discards.
	Logger *slog.Logger
	// Registry receives the agent's metrics (scc_<role>_state_connected,
	// scc_<role>_membership_ring_version,
	// scc_<role>_ring_changes_total{source}) and the state link's; nil
	// registers nothing.
	Registry *prometheus.Registry
	// Stats, if set, supplies the counters sent to the state server.
	Stats func() protocol.Stats
}

// DefaultConfig returns the defaults; NodeID, Role and the addresses are
// left for the caller.
func DefaultConfig() Config {
	return Config{
		GossipBind:           "0.0.0.0",
		GossipPort:           7946,
		GossipRejoinInterval: 2 * time.Second,
		UnknownBrokerGrace:   3 * time.Second,
		ReconnectMin:         nodelink.DefaultRedialMin,
		ReconnectMax:         nodelink.DefaultRedialMax,
		StatsInterval:        5 * time.Second,
		MaxRingVersionStep:   ring.DefaultMaxVersionStep,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("membership: NodeID is required")
	case c.Role != protocol.RoleBroker && c.Role != protocol.RoleFrontend:
		return fmt.Errorf("membership: Role %q is not broker or frontend", c.Role)
	case c.GossipPort < 0 || c.GossipPort > 65535:
		return fmt.Errorf("membership: GossipPort %d out of range", c.GossipPort)
	case c.GossipRejoinInterval <= 0:
		return errors.New("membership: GossipRejoinInterval must be positive")
	case c.UnknownBrokerGrace < 0:
		return errors.New("membership: UnknownBrokerGrace must not be negative")
	case c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return errors.New("membership: need 0 < ReconnectMin <= ReconnectMax")
	case c.StatsInterval <= 0:
		return errors.New("membership: StatsInterval must be positive")
	}
	return nil
}

// Handler is the node side of ring changes. The agent never calls it
// concurrently.
type Handler interface {
	// Prepare readies the node for ring r (a frontend subscribes its
	// channels at their owners under r as well); the agent answers
	// Prepared when it returns nil. ctx is cancelled if r is committed
	// meanwhile or the state link or the agent closes.
	Prepare(ctx context.Context, r protocol.Ring) error
	// Commit makes r the ring the node follows.
	Commit(r protocol.Ring)
}

// Agent is a node's membership agent.
type Agent struct {
	cfg  Config
	h    Handler
	log  *slog.Logger
	m    *metrics
	lcfg nodelink.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	gossip   *gossip.Gossip
	redialer *nodelink.Redialer

	// inbox feeds the loop goroutine.
	inboxMu sync.Mutex
	inbox   []func()
	wake    chan struct{}

	// Owned by the loop goroutine.
	cur          *nodelink.Link // the welcomed state link, nil while down
	committed    protocol.Ring  // the highest committed ring (from the state or gossip)
	hasCommitted bool
	applied      protocol.Ring // what Handler.Commit last got
	hasApplied   bool
	joinedAt     time.Time   // when gossip first had other members
	graceTimer   *time.Timer // re-applies once UnknownBrokerGrace has passed

	ringVersion atomic.Uint64 // committed.Version, for Hello
	leaving     atomic.Bool
	connected   atomic.Bool
	joinSeeds   chan []string // Welcome seeds for the joiner

	mu          sync.Mutex
	ring        protocol.Ring // copy of applied for Ring()
	hasRing     bool
	seeds       []string // Welcome seeds, for rejoins
	prepVersion uint64
	prepCancel  context.CancelFunc
	released    chan struct{}
	releasedOK  bool
	started     bool
	closed      bool
}

// New validates cfg and returns an agent; it does no I/O until Start.
func New(cfg Config, h Handler) (*Agent, error) {
	if h == nil {
		return nil, errors.New("membership: nil Handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("node", cfg.NodeID, "role", cfg.Role)
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg:       cfg,
		h:         h,
		log:       lg,
		m:         newMetrics(cfg.Registry, cfg.Role),
		ctx:       ctx,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		joinSeeds: make(chan []string, 1),
		released:  make(chan struct{}),
	}
	return a, nil
}

// Start runs gossip, the state link, the stats ticker and the loop. It
// returns once gossip is listening; it does not wait for the state.
func (a *Agent) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	if a.started || a.closed {
		a.mu.Unlock()
		return errors.New("membership: Start called twice or after Close")
	}
	a.started = true
	a.mu.Unlock()

	gc := gossip.DefaultConfig()
	if a.cfg.Gossip != nil {
		gc = *a.cfg.Gossip
	}
	gc.NodeName = a.cfg.NodeID
	gc.AuthKey = a.cfg.AuthKey
	gc.Role = a.cfg.Role
	gc.Addr = a.cfg.Addr
	gc.BindAddr = a.cfg.GossipBind
	gc.BindPort = a.cfg.GossipPort
	gc.AdvertiseAddr = a.cfg.GossipAdvertise
	gc.Seeds = nil // joined by the joiner, so Start does not block on them
	gc.Logger = a.log
	gc.MaxRingVersionStep = a.cfg.MaxRingVersionStep
	if a.cfg.Registry != nil {
		gc.Registry = a.cfg.Registry
	}
	gc.OnRing = func(r protocol.Ring) { a.enqueue(func() { a.gossipRing(r) }) }
	gc.OnMember = func(m gossip.Member) {
		if m.Role == protocol.RoleBroker {
			a.enqueue(func() { a.apply("gossip") })
		}
	}
	g, err := gossip.New(gc)
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	a.gossip = g

	a.wg.Go(a.loop)
	a.wg.Go(a.joiner)
	if a.cfg.StateAddr != "" {
		lc := nodelink.DefaultConfig()
		if a.cfg.Link != nil {
			lc = *a.cfg.Link
		}
		lc.NodeID = a.cfg.NodeID
		lc.Role = a.cfg.Role
		lc.AuthKey = a.cfg.AuthKey
		lc.Addr = a.cfg.Addr
		lc.GossipAddr = g.Addr()
		lc.RingVersion = a.ringVersion.Load
		lc.Draining = a.leaving.Load
		lc.Logger = a.log
		lc.Metrics = nodelink.NewMetrics(a.cfg.Registry, a.cfg.Role)
		a.lcfg = lc
		a.redialer = nodelink.NewRedialer(a.cfg.StateAddr, lc, a.cfg.ReconnectMin, a.cfg.ReconnectMax, a.runLink)
		a.redialer.Start()
		a.wg.Go(a.statsLoop)
	}
	return nil
}

// Ring returns the ring the node follows (the last one given to
// Handler.Commit); ok is false before the first.
func (a *Agent) Ring() (protocol.Ring, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return cloneRing(a.ring), a.hasRing
}

// StateConnected reports whether the state link is up (welcomed).
func (a *Agent) StateConnected() bool { return a.connected.Load() }

// GossipAddr returns this node's gossip address (host:port), or "" before
// Start.
func (a *Agent) GossipAddr() string {
	if a.gossip == nil {
		return ""
	}
	return a.gossip.Addr()
}

// Gossip returns the agent's gossip member (nil before Start), for status
// pages and tests.
func (a *Agent) Gossip() *gossip.Gossip { return a.gossip }

// Leave asks the state server to reshard this broker out and waits until
// it answers Released (the node may then exit) or ctx ends. Leave is
// re-sent after every reconnect until then.
func (a *Agent) Leave(ctx context.Context) error {
	if a.cfg.Role != protocol.RoleBroker {
		return errors.New("membership: only brokers leave the ring")
	}
	if a.cfg.StateAddr == "" {
		return ErrNoState
	}
	a.leaving.Store(true)
	a.enqueue(a.sendLeave)
	select {
	case <-a.released:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("membership: waiting for release: %w", ctx.Err())
	case <-a.ctx.Done():
		return ErrClosed
	}
}

// Close leaves gossip, closes the state link and waits for every goroutine.
// It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if a.prepCancel != nil {
		a.prepCancel()
	}
	a.mu.Unlock()
	a.cancel()
	if a.redialer != nil {
		a.redialer.Close()
	}
	a.wg.Wait()
	if a.gossip != nil {
		if err := a.gossip.Leave(time.Second); err != nil {
			a.log.Debug("gossip leave", "err", err)
		}
		return a.gossip.Shutdown()
	}
	return nil
}

// enqueue hands f to the loop goroutine without blocking.
func (a *Agent) enqueue(f func()) {
	a.inboxMu.Lock()
	a.inbox = append(a.inbox, f)
	a.inboxMu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) loop() {
	defer func() {
		if a.graceTimer != nil {
			a.graceTimer.Stop()
		}
	}()
	var batch []func()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.wake:
		}
		a.inboxMu.Lock()
		batch, a.inbox = a.inbox, batch[:0]
		a.inboxMu.Unlock()
		for i, f := range batch {
			if a.ctx.Err() != nil {
				return
			}
			f()
			batch[i] = nil
		}
	}
}

// runLink runs one welcomed state link (called by the Redialer).
func (a *Agent) runLink(ctx context.Context, l *nodelink.Link) {
	a.enqueue(func() { a.linkUp(l) })
	if err := l.Run(linkHandler{a}); err != nil && ctx.Err() == nil {
		a.log.Info("state link closed", "err", err)
	}
}

type linkHandler struct{ a *Agent }

func (h linkHandler) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	a := h.a
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgRing:
			var r protocol.Ring
			if err := m.Decode(&r); err != nil {
				a.log.Warn("bad message from state", "err", err)
				continue
			}
			a.enqueue(func() { a.stateRing(l, r, "ring") })
		case protocol.MsgCommit:
			var c protocol.Commit
			if err := m.Decode(&c); err != nil {
				a.log.Warn("bad message from state", "err", err)
				continue
			}
			a.cancelPrepare(c.Ring.Version)
			a.enqueue(func() { a.stateRing(l, c.Ring, "commit") })
		case protocol.MsgPrepare:
			var p protocol.Prepare
			if err := m.Decode(&p); err != nil {
				a.log.Warn("bad message from state", "err", err)
				continue
			}
			a.enqueue(func() { a.prepare(l, p.Ring) })
		case protocol.MsgReleased:
			a.enqueue(a.release)
		}
	}
}

func (h linkHandler) Closed(l *nodelink.Link, err error) {
	h.a.cancelPrepare(0)
	h.a.enqueue(func() { h.a.linkDown(l) })
}

// cancelPrepare cancels a running Prepare whose version is at most v (any
// when v is 0).
func (a *Agent) cancelPrepare(v uint64) {
	a.mu.Lock()
	if a.prepCancel != nil && (v == 0 || a.prepVersion <= v) {
		a.prepCancel()
	}
	a.mu.Unlock()
}

func (a *Agent) linkUp(l *nodelink.Link) {
	select {
	case <-l.Done():
		return // closed before the loop saw it; linkDown follows
	default:
	}
	a.cur = l
	a.connected.Store(true)
	a.m.connected.Set(1)
	a.log.Info("state link up", "peer", l.Peer().NodeID)
	if a.hasCommitted {
		a.send(protocol.MsgRing, &a.committed)
	}
	if a.leaving.Load() {
		a.sendLeave()
	}
	// Joining the Welcome's seeds even with configured seeds merges a gossip
	// pool the state server (or anyone) is outside of.
	if seeds := l.Peer().Seeds; len(seeds) > 0 {
		a.mu.Lock()
		a.seeds = slices.Clone(seeds)
		a.mu.Unlock()
		select {
		case a.joinSeeds <- slices.Clone(seeds):
		default:
		}
	}
}

func (a *Agent) linkDown(l *nodelink.Link) {
	if a.cur != l {
		return
	}
	a.cur = nil
	a.connected.Store(false)
	a.m.connected.Set(0)
	a.apply("fallback")
}

func (a *Agent) send(t protocol.MsgType, body any) {
	if a.cur == nil {
		return
	}
	if err := a.cur.Send(t, body); err != nil {
		a.log.Debug("send to state failed", "err", err)
	}
}

func (a *Agent) sendLeave() {
	a.send(protocol.MsgLeave, &protocol.Leave{NodeID: a.cfg.NodeID})
}

func (a *Agent) release() {
	if !a.leaving.Load() {
		return
	}
	a.mu.Lock()
	if !a.releasedOK {
		a.releasedOK = true
		close(a.released)
	}
	a.mu.Unlock()
}

// stateRing applies a committed ring from the state server. Its word wins
// at an equal version too: it replaces a ring derived from gossip.
func (a *Agent) stateRing(l *nodelink.Link, r protocol.Ring, kind string) {
	if l != a.cur {
		return
	}
	if a.hasCommitted && r.Version < a.committed.Version {
		a.log.Debug("ignoring older ring", "reason", kind)
		return
	}
	if !a.versionOK(r.Version, kind) {
		return
	}
	a.setCommitted(r, "state")
	a.apply("state")
}

func (a *Agent) gossipRing(r protocol.Ring) {
	if a.hasCommitted && r.Version <= a.committed.Version {
		return
	}
	if !a.versionOK(r.Version, "gossip") {
		return
	}
	a.setCommitted(r, "gossip")
	a.apply("gossip")
}

// versionOK reports whether a ring at version v may replace the committed
// one: at most ring.MaxVersion and at most MaxRingVersionStep above it.
// A refusal is counted and logged.
func (a *Agent) versionOK(v uint64, kind string) bool {
	err := ring.CheckVersion(a.committed.Version, a.hasCommitted, v, a.cfg.MaxRingVersionStep)
	if err == nil {
		return true
	}
	reason := ring.VersionReason(err)
	a.m.rejects.WithLabelValues(reason).Inc()
	a.log.Warn("ring refused", "reason", reason, "source", kind, "err", err)
	return false
}

func (a *Agent) setCommitted(r protocol.Ring, source string) {
	if a.hasCommitted && r.Version == a.committed.Version && sameBrokers(r, a.committed) {
		return
	}
	a.committed, a.hasCommitted = cloneRing(r), true
	a.ringVersion.Store(r.Version)
	a.m.ringVersion.Set(float64(r.Version))
	a.gossip.SetRing(r)
	a.log.Info("ring committed", "reason", source, "version", r.Version, "brokers", len(r.Brokers))
}

// apply gives the Handler the ring the node should follow: the committed
// ring, minus brokers gossip reports dead while the state link is down.
// source labels the change in metrics.
func (a *Agent) apply(source string) {
	if !a.hasCommitted {
		return
	}
	target := a.committed
	if a.cur == nil {
		dead := a.deadBrokers(a.committed)
		if len(dead) > 0 {
			target = ring.FromProtocol(a.committed).Without(dead...).Protocol()
			source = "fallback"
		}
		if len(target.Brokers) == 0 && len(a.committed.Brokers) > 0 {
			// Every broker looks dead: an empty ring routes nothing either,
			// and keeping the ring lets brokers that come back serve at once.
			if !a.hasApplied {
				target = a.committed
			} else {
				return
			}
		}
	}
	if a.hasApplied && target.Version == a.applied.Version && sameBrokers(target, a.applied) {
		return
	}
	a.applied, a.hasApplied = cloneRing(target), true
	a.mu.Lock()
	a.ring, a.hasRing = cloneRing(target), true
	a.mu.Unlock()
	a.m.changes.WithLabelValues(source).Inc()
	if source == "fallback" {
		a.log.Warn("state unreachable: leaving dead brokers out of the ring", "version", target.Version, "brokers", len(target.Brokers))
	}
	a.h.Commit(cloneRing(target))
}

// deadBrokers returns the brokers of r that gossip does not see alive. A
// broker gossip never heard of counts as dead only when this node has
// joined other members (a node alone in gossip knows nothing).
func (a *Agent) deadBrokers(r protocol.Ring) []string {
	g := a.gossip
	trustAbsence := false
	if g.NumAlive() > 1 {
		if a.joinedAt.IsZero() {
			a.joinedAt = time.Now()
			a.graceTimer = time.AfterFunc(a.cfg.UnknownBrokerGrace, func() {
				a.enqueue(func() { a.apply("fallback") })
			})
		}
		trustAbsence = time.Since(a.joinedAt) >= a.cfg.UnknownBrokerGrace
	}
	var dead []string
	for _, b := range r.Brokers {
		if g.IsDead(b.ID) || (trustAbsence && !g.IsAlive(b.ID)) {
			dead = append(dead, b.ID)
		}
	}
	return dead
}

func (a *Agent) prepare(l *nodelink.Link, r protocol.Ring) {
	if l != a.cur {
		return
	}
	if a.hasCommitted && r.Version <= a.committed.Version {
		a.send(protocol.MsgPrepared, &protocol.Prepared{Version: r.Version})
		return
	}
	if !a.versionOK(r.Version, "prepare") {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	a.mu.Lock()
	a.prepVersion, a.prepCancel = r.Version, cancel
	a.mu.Unlock()
	select {
	case <-l.Done():
		cancel()
	default:
	}
	start := time.Now()
	err := a.h.Prepare(ctx, cloneRing(r))
	a.mu.Lock()
	a.prepCancel = nil
	a.mu.Unlock()
	cancel()
	if err != nil {
		a.log.Info("prepare did not finish", "version", r.Version, "err", err)
		return
	}
	a.log.Debug("prepared", "version", r.Version, "took", time.Since(start))
	if l == a.cur {
		a.send(protocol.MsgPrepared, &protocol.Prepared{Version: r.Version})
	}
}

func (a *Agent) statsLoop() {
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		var s protocol.Stats
		if a.cfg.Stats != nil {
			s = a.cfg.Stats()
		}
		s.RingVersion = a.ringVersion.Load()
		if l := a.redialer.Link(); l != nil && a.connected.Load() {
			_ = l.Send(protocol.MsgStats, &s)
		}
	}
}

// joiner joins gossip seeds: the configured ones (or the Welcome's) at once
// and whenever this node is alone.
func (a *Agent) joiner() {
	t := time.NewTicker(a.cfg.GossipRejoinInterval)
	defer t.Stop()
	join := func(seeds []string) {
		if len(seeds) == 0 {
			return
		}
		if n, err := a.gossip.Join(seeds); err != nil {
			a.log.Debug("gossip join failed", "peer", strings.Join(seeds, ","), "err", err)
		} else {
			a.log.Debug("gossip joined", "peer", strings.Join(seeds, ","), "count", n)
		}
	}
	join(a.cfg.GossipSeeds)
	for {
		select {
		case <-a.ctx.Done():
			return
		case s := <-a.joinSeeds:
			join(s)
		case <-t.C:
			if a.gossip.NumAlive() > 1 {
				continue
			}
			seeds := a.cfg.GossipSeeds
			if len(seeds) == 0 {
				a.mu.Lock()
				seeds = slices.Clone(a.seeds)
				a.mu.Unlock()
			}
			join(seeds)
		}
	}
}

func cloneRing(r protocol.Ring) protocol.Ring {
	r.Brokers = slices.Clone(r.Brokers)
	return r
}

func sameBrokers(a, b protocol.Ring) bool {
	return ring.FromProtocol(a).SameBrokers(ring.FromProtocol(b))
}
