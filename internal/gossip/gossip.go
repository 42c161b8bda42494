package gossip

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Config configures a gossip member.
type Config struct {
	// NodeName is the node's ID; it is its memberlist name and must be
	// unique in the cluster.
	NodeName string
	// Role is the node's role (protocol.RoleBroker, ...).
	Role string
	// Addr is the node's advertised service address (a broker's
	// host:port), carried in the node meta. May be empty.
	Addr string
	// BindAddr is the address memberlist listens on (UDP and TCP).
	// Default "0.0.0.0"; env SCC_GOSSIP_BIND.
	BindAddr string
	// BindPort is the gossip port; 0 picks a free one. Default 7946; env
	// SCC_GOSSIP_PORT.
	BindPort int
	// AdvertiseAddr is the IP other nodes reach this one at; "" lets
	// memberlist choose (BindAddr if it is specific, else a private IP).
	// Env SCC_INSTANCE_IP.
	AdvertiseAddr string
	// Seeds are gossip addresses (host:port) to join at Start. Env
	// SCC_GOSSIP_SEEDS. A failed join is not an error: the caller may Join
	// later.
	Seeds []string
	// ProbeInterval is how often each node probes a random peer.
	// Default 200ms.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before
	// indirect probes start. Default 100ms.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspected node has to refute before
	// it is declared dead (SuspicionMult × ProbeInterval × log10(n), at
	// least ×1). Default 2.
	SuspicionMult int
	// SuspicionMaxTimeoutMult caps the suspicion timeout when too few
	// peers confirm a suspicion, as a multiple of the base timeout.
	// Default 3.
	SuspicionMaxTimeoutMult int
	// GossipInterval is how often gossip messages are sent. Default 100ms.
	GossipInterval time.Duration
	// PushPullInterval is how often a full state exchange (members and
	// ring) runs with a random peer. Default 2s.
	PushPullInterval time.Duration
	// DeadNodeReclaimTime is how long after a node is declared dead its
	// name may be reused from another address (a restarted node on a new
	// port). Default 1s.
	DeadNodeReclaimTime time.Duration
	// TCPTimeout bounds push/pull and join connections. Default 2s.
	TCPTimeout time.Duration
	// AuthKey, when set, encrypts and authenticates every gossip packet
	// (AES-GCM with a key derived from it): a host without SCC_AUTH_KEY
	// can neither read the ring nor inject one. Every node must use the
	// same key.
	AuthKey []byte
	// MaxStreamBytes bounds what one inbound TCP stream (push/pull, join)
	// may send; memberlist buffers a stream whole before it decrypts it, so
	// this is what a host without the key can make it hold per stream.
	// Default 1 MiB (SCC_GOSSIP_MAX_STREAM_BYTES): a push/pull of about
	// 5000 members.
	MaxStreamBytes int64
	// MaxStreams bounds the inbound TCP streams open at once; more are
	// closed at once. Default 32 (SCC_GOSSIP_MAX_STREAMS).
	MaxStreams int
	// MaxStreamsPerSource is the same bound per source IP. Default 16:
	// nodes sharing one address (a development machine, a test) still
	// get push/pull and TCP probe streams through while others run
	// (SCC_GOSSIP_MAX_STREAMS_PER_SOURCE).
	MaxStreamsPerSource int
	// MaxRingVersionStep bounds how far a ring version from a peer may
	// jump above the one held; a further one is refused and counted.
	// Default ring.DefaultMaxVersionStep (1<<20). Versions above
	// ring.MaxVersion are always refused.
	MaxRingVersionStep uint64
	// Registry receives scc_<Role>_gossip_rejects_total{reason}; nil
	// counts nowhere.
	Registry prometheus.Registerer
	// OnRing is called when a ring with a higher version than any seen so
	// far arrives from a peer. It must not block.
	OnRing func(protocol.Ring)
	// OnMember is called when a member joins, is updated, or is declared
	// dead or left. It must not block.
	OnMember func(Member)
	// Logger receives memberlist's log lines and the wrapper's own; nil
	// discards. Callers tag it with node and role.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, tuned for fast failure detection on a
// LAN.
func DefaultConfig() Config {
	return Config{
		BindAddr:                "0.0.0.0",
		BindPort:                7946,
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          100 * time.Millisecond,
		PushPullInterval:        2 * time.Second,
		DeadNodeReclaimTime:     time.Second,
		TCPTimeout:              2 * time.Second,
		MaxStreamBytes:          1 << 20,
		MaxStreams:              32,
		MaxStreamsPerSource:     16,
		MaxRingVersionStep:      ring.DefaultMaxVersionStep,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("gossip: NodeName is required")
	case c.BindPort < 0 || c.BindPort > 65535:
		return fmt.Errorf("gossip: BindPort %d out of range", c.BindPort)
	case c.ProbeInterval <= 0, c.ProbeTimeout <= 0, c.GossipInterval <= 0,
		c.PushPullInterval <= 0, c.TCPTimeout <= 0:
		return errors.New("gossip: intervals and timeouts must be positive")
	case c.ProbeTimeout >= c.ProbeInterval:
		return errors.New("gossip: ProbeTimeout must be shorter than ProbeInterval")
	case c.SuspicionMult < 1 || c.SuspicionMaxTimeoutMult < 1:
		return errors.New("gossip: SuspicionMult and SuspicionMaxTimeoutMult must be at least 1")
	case c.DeadNodeReclaimTime < 0:
		return errors.New("gossip: DeadNodeReclaimTime must not be negative")
	case c.MaxStreamBytes < 0 || c.MaxStreams < 0 || c.MaxStreamsPerSource < 0:
		return errors.New("gossip: MaxStreamBytes, MaxStreams and MaxStreamsPerSource must not be negative")
	}
	return nil
}

// Member is one node as gossip sees it.
type Member struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Addr is the node's advertised service address (meta).
	Addr string `json:"addr,omitempty"`
	// GossipAddr is the host:port of its memberlist.
	GossipAddr string `json:"gossip_addr"`
	// Alive is false once memberlist has declared it dead or it left.
	Alive bool `json:"alive"`
}

// meta is the node meta carried by memberlist (JSON, well under the 512
// byte limit).
type meta struct {
	Role string `json:"r"`
	ID   string `json:"i"`
	Addr string `json:"a,omitempty"`
}

// Gossip is a running memberlist member.
type Gossip struct {
	cfg    Config
	log    *slog.Logger
	ml     *memberlist.Memberlist
	bcasts *memberlist.TransmitLimitedQueue
	meta   []byte
	logW   *io.PipeWriter
	logWG  sync.WaitGroup

	rejects *prometheus.CounterVec
	ringKey []byte // HMAC key of gossiped rings

	mu       sync.Mutex
	ring     protocol.Ring
	hasRing  bool
	members  map[string]Member // by ID, including dead ones
	watchers map[chan struct{}]struct{}
	closed   bool
}

// New starts memberlist (it listens at once) and joins cfg.Seeds if any.
// A failed join is logged, not returned.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	if cfg.MaxStreamBytes == 0 {
		cfg.MaxStreamBytes = d.MaxStreamBytes
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = d.MaxStreams
	}
	if cfg.MaxStreamsPerSource == 0 {
		cfg.MaxStreamsPerSource = d.MaxStreamsPerSource
	}
	if cfg.MaxRingVersionStep == 0 {
		cfg.MaxRingVersionStep = d.MaxRingVersionStep
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m, err := json.Marshal(meta{Role: cfg.Role, ID: cfg.NodeName, Addr: cfg.Addr})
	if err != nil {
		return nil, fmt.Errorf("gossip: encoding meta: %w", err)
	}
	if len(m) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: node meta is %d bytes, over %d", len(m), memberlist.MetaMaxSize)
	}
	g := &Gossip{
		cfg:      cfg,
		log:      lg,
		meta:     m,
		members:  make(map[string]Member),
		watchers: make(map[chan struct{}]struct{}),
		rejects:  newRejects(cfg.Registry, cfg.Role),
		ringKey:  deriveKey("sccgo-gossip-ring\x00", cfg.AuthKey),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.SuspicionMaxTimeoutMult = cfg.SuspicionMaxTimeoutMult
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	mc.TCPTimeout = cfg.TCPTimeout
	if len(cfg.AuthKey) > 0 {
		// memberlist takes a 16, 24 or 32-byte AES key; derive one so any
		// SCC_AUTH_KEY works. The label keeps it distinct from the MACs
		// of node links, which use the same secret.
		mc.SecretKey = deriveKey("sccgo-gossip\x00", cfg.AuthKey)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.LogOutput = nil
	mc.Logger = g.memberlistLogger()

	nt, err := newNetTransport(mc)
	if err != nil {
		g.closeLog()
		return nil, fmt.Errorf("gossip: starting memberlist: %w", err)
	}
	mc.Transport = newGuardedTransport(nt, cfg, func(reason string) { g.rejects.WithLabelValues(reason).Inc() })
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		g.closeLog()
		return nil, fmt.Errorf("gossip: starting memberlist: %w", err)
	}
	g.ml = ml
	g.bcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       ml.NumMembers,
		RetransmitMult: mc.RetransmitMult,
	}
	if len(cfg.Seeds) > 0 {
		if _, err := g.Join(cfg.Seeds); err != nil {
			g.log.Warn("gossip join failed", "peer", strings.Join(cfg.Seeds, ","), "err", err)
		}
	}
	return g, nil
}

// memberlistLogger routes memberlist's "[LEVEL] memberlist: ..." lines to
// slog through a pipe read by one goroutine (closed in Shutdown).
func (g *Gossip) memberlistLogger() *log.Logger {
	if !g.log.Enabled(context.Background(), slog.LevelError) {
		return log.New(io.Discard, "", 0)
	}
	r, w := io.Pipe()
	g.logW = w
	g.logWG.Add(1)
	go func() {
		defer g.logWG.Done()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			lvl := slog.LevelInfo
			switch {
			case strings.Contains(line, "[DEBUG]"):
				lvl = slog.LevelDebug
			case strings.Contains(line, "[WARN]"):
				lvl = slog.LevelWarn
			case strings.Contains(line, "[ERR]"):
				lvl = slog.LevelError
			}
			g.log.Log(context.Background(), lvl, "memberlist", "msg", line)
		}
		io.Copy(io.Discard, r)
	}()
	return log.New(w, "", 0)
}

func (g *Gossip) closeLog() {
	if g.logW != nil {
		g.logW.Close()
		g.logWG.Wait()
	}
}

// Join contacts the given gossip addresses and returns how many answered.
// An error means none did.
func (g *Gossip) Join(seeds []string) (int, error) {
	n, err := g.ml.Join(seeds)
	if err != nil {
		return n, fmt.Errorf("gossip: joining %v: %w", seeds, err)
	}
	return n, nil
}

// Addr returns this node's advertised gossip address, host:port.
func (g *Gossip) Addr() string {
	return g.ml.LocalNode().Address()
}

// NumAlive returns how many members are alive, this node included.
func (g *Gossip) NumAlive() int {
	return g.ml.NumMembers()
}

// Members returns every member gossip knows, alive or dead, this node
// included, sorted by ID.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// IsDead reports whether memberlist has declared the node dead (or it
// left) and it has not come back. An unknown node is not dead.
func (g *Gossip) IsDead(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[id]
	return ok && !m.Alive
}

// IsAlive reports whether the node is a live member.
func (g *Gossip) IsAlive(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.members[id].Alive
}

// DeadBrokers returns the IDs of brokers that are known and not alive,
// sorted.
func (g *Gossip) DeadBrokers() []string {
	g.mu.Lock()
	var out []string
	for id, m := range g.members {
		if m.Role == protocol.RoleBroker && !m.Alive {
			out = append(out, id)
		}
	}
	g.mu.Unlock()
	slices.Sort(out)
	return out
}

// Watch returns a channel that receives a value (coalesced: capacity 1)
// after any member change or newer ring, and a function that stops the
// watch. It is for callers that cannot set Config.OnMember.
func (g *Gossip) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	g.mu.Lock()
	g.watchers[ch] = struct{}{}
	g.mu.Unlock()
	return ch, func() {
		g.mu.Lock()
		delete(g.watchers, ch)
		g.mu.Unlock()
	}
}

// notifyLocked wakes every watcher; g.mu is held.
func (g *Gossip) notifyLocked() {
	for ch := range g.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Ring returns the highest-version ring this node has seen or set.
func (g *Gossip) Ring() (protocol.Ring, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ring, g.hasRing
}

// SetRing records r as this node's committed ring if its version is higher
// than the one held, and broadcasts it. It does not call OnRing.
func (g *Gossip) SetRing(r protocol.Ring) {
	g.mu.Lock()
	if g.hasRing && r.Version <= g.ring.Version {
		g.mu.Unlock()
		return
	}
	g.ring, g.hasRing = cloneRing(r), true
	g.mu.Unlock()
	b, err := g.encodeRing(r)
	if err != nil {
		g.log.Error("gossip: encoding ring", "err", err)
		return
	}
	if len(b) > maxRingBroadcast {
		return // too big for one UDP packet: push/pull carries it
	}
	g.bcasts.QueueBroadcast(&ringBroadcast{msg: b})
}

// Leave announces that this node leaves, waiting up to timeout for the
// broadcast to go out. Call Shutdown afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return nil
	}
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leaving: %w", err)
	}
	return nil
}

// Shutdown stops memberlist without announcing a leave (peers declare this
// node dead). It is idempotent.
func (g *Gossip) Shutdown() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	err := g.ml.Shutdown()
	g.closeLog()
	if err != nil {
		return fmt.Errorf("gossip: shutting down: %w", err)
	}
	return nil
}

// mergeRing adopts r if it is newer, signed with the cluster key, and not
// too far ahead, and calls OnRing.
func (g *Gossip) mergeRing(buf []byte) {
	if len(buf) == 0 {
		return
	}
	r, err := g.decodeRing(buf)
	if err != nil {
		g.rejects.WithLabelValues(ReasonRingMAC).Inc()
		g.log.Warn("gossip: ring refused", "reason", ReasonRingMAC, "err", err)
		return
	}
	g.mu.Lock()
	if g.hasRing && r.Version <= g.ring.Version {
		g.mu.Unlock()
		return
	}
	if err := ring.CheckVersion(g.ring.Version, g.hasRing, r.Version, g.cfg.MaxRingVersionStep); err != nil {
		g.mu.Unlock()
		reason := ring.VersionReason(err)
		g.rejects.WithLabelValues(reason).Inc()
		g.log.Warn("gossip: ring refused", "reason", reason, "err", err)
		return
	}
	g.ring, g.hasRing = r, true
	g.notifyLocked()
	g.mu.Unlock()
	if g.cfg.OnRing != nil {
		g.cfg.OnRing(cloneRing(r))
	}
}

func (g *Gossip) nodeEvent(n *memberlist.Node, alive bool) {
	var md meta
	if len(n.Meta) > 0 {
		if err := json.Unmarshal(n.Meta, &md); err != nil {
			g.log.Warn("gossip: bad node meta", "peer", n.Name, "err", err)
		}
	}
	m := Member{
		ID:         n.Name,
		Role:       md.Role,
		Addr:       md.Addr,
		GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Alive:      alive,
	}
	g.mu.Lock()
	old, had := g.members[m.ID]
	if m.Role == "" && had { // a dead notice may come without meta
		m.Role, m.Addr = old.Role, old.Addr
	}
	g.members[m.ID] = m
	if !had || old != m {
		g.notifyLocked()
	}
	g.mu.Unlock()
	if !alive && m.ID != g.cfg.NodeName {
		g.log.Info("gossip member dead", "peer", m.ID)
	}
	if g.cfg.OnMember != nil && (!had || old != m) {
		g.cfg.OnMember(m)
	}
}

func cloneRing(r protocol.Ring) protocol.Ring {
	r.Brokers = slices.Clone(r.Brokers)
	return r
}

// delegate implements memberlist.Delegate.
type delegate Gossip

func (d *delegate) NodeMeta(limit int) []byte { return d.meta }

func (d *delegate) NotifyMsg(b []byte) {
	(*Gossip)(d).mergeRing(b)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bcasts.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	g := (*Gossip)(d)
	g.mu.Lock()
	r, ok := g.ring, g.hasRing
	g.mu.Unlock()
	if !ok {
		return nil
	}
	b, err := g.encodeRing(r)
	if err != nil {
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	(*Gossip)(d).mergeRing(buf)
}

// events implements memberlist.EventDelegate.
type events Gossip

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).nodeEvent(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Gossip)(e).nodeEvent(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).nodeEvent(n, true) }

// maxRingBroadcast is the largest encoded ring sent as a UDP broadcast;
// memberlist's packets are 1400 bytes with some overhead.
const maxRingBroadcast = 1200

// ringBroadcast is a ring update; a newer one replaces an older one still
// queued.
type ringBroadcast struct{ msg []byte }

func (b *ringBroadcast) Invalidates(other memberlist.Broadcast) bool {
	_, ok := other.(*ringBroadcast)
	return ok
}
func (b *ringBroadcast) Message() []byte { return b.msg }
func (b *ringBroadcast) Finished()       {}
