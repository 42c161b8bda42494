package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// NodeConfig configures a frontend's membership in a cluster.
type NodeConfig struct {
	// NodeID identifies the frontend; default a random id.
	NodeID string
	// AuthKey is SCC_AUTH_KEY, shared by every node.
	AuthKey []byte
	// InsecureNoAuth is SCC_INSECURE_NO_AUTH: the binary then accepts an
	// empty, short or example AuthKey (see config.CheckAuthKey).
	InsecureNoAuth bool
	// StateAddr is the state server's host:port; "" runs on gossip alone.
	StateAddr string
	// GossipBind, GossipPort, GossipAdvertise and GossipSeeds configure
	// memberlist (SCC_GOSSIP_BIND, SCC_GOSSIP_PORT, SCC_INSTANCE_IP,
	// SCC_GOSSIP_SEEDS).
	GossipBind      string
	GossipPort      int
	GossipAdvertise string
	GossipSeeds     []string
	// Gossip, if set, is the base gossip configuration: its stream bounds
	// and MaxRingVersionStep (SCC_GOSSIP_MAX_STREAM*,
	// SCC_RING_MAX_VERSION_STEP) apply.
	Gossip *gossip.Config
	// Broker configures routing and reshards.
	Broker Config
	// Link is the base configuration of every inter-node link.
	Link nodelink.Config
	// Logger and Registry receive logs and metrics.
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Stats supplies the counters reported to the state server.
	Stats func() protocol.Stats
}

// Enabled reports whether the configuration asks for cluster mode.
func (c NodeConfig) Enabled() bool { return c.StateAddr != "" || len(c.GossipSeeds) > 0 }

// PublicationOverhead bounds what a link message that carries one
// publication (Publish, Deliver, Replicate, an entry of a history reply or
// snapshot) adds to its data and channel name: sequence numbers, offset,
// epoch, time, the publisher's id, an idempotency key of at most
// frontend.MaxIdempotencyKeyBytes, the message tag and the frame header.
const PublicationOverhead = 1024

// CheckPublicationFits reports an error when a publication of data bytes
// on a channel of channel bytes would not fit the link's message limit
// with room to spare: half of Link.MessageLimit, the share the brokers
// keep for one publication in a history reply or a replication snapshot.
// A frontend whose publishes can be larger than that would have them
// refused by its links at run time, so it refuses to start instead.
func (c NodeConfig) CheckPublicationFits(data int64, channel int) error {
	limit := c.Link.MessageLimit() / 2
	// Compared without adding, so that no setting can overflow the sum.
	if data >= 0 && data <= limit-int64(channel)-PublicationOverhead {
		return nil
	}
	lc := c.Link.WithDefaults()
	return fmt.Errorf("a publication of up to %d bytes on a channel name of up to %d bytes needs link messages of at least twice %d bytes, "+
		"and SCC_LINK_MAX_FRAME_BYTES %d with SCC_LINK_QUEUE_MAX_BYTES %d allow messages of %d (the smaller of the frame and half the queue): "+
		"raise those, or lower SCC_MAX_PUBLISH_BYTES, SCC_API_MAX_BODY_BYTES or SCC_MAX_CHANNEL_LENGTH",
		data, channel, data+int64(channel)+PublicationOverhead, lc.MaxFrameBytes, lc.QueueMaxBytes, c.Link.MessageLimit())
}

// Env is what ReadNodeConfig reads typed settings from, each with its
// default and help text. The stock binaries pass their flag-and-environment
// reader; a program that embeds the frontend can use NodeConfigFromEnv
// instead, or implement Env over its own configuration source.
type Env interface {
	String(name, def, help string) string
	Int(name string, def int, help string) int
	Port(name string, def int, help string) int
	Duration(name string, def time.Duration, help string) time.Duration
	List(name string, def []string, help string) []string
	Bool(name string, def bool, help string) bool
	Int64(name string, def int64, help string) int64
	// Fail records a malformed setting (nil is ignored).
	Fail(err error)
}

var _ Env = (*config.Reader)(nil)

// NodeConfigFromEnv reads the cluster settings from environment variables
// through getenv (os.Getenv in a main; nil reads nothing), with the same
// names and defaults as scc-frontend. The error names every malformed
// variable.
func NodeConfigFromEnv(getenv func(string) string) (NodeConfig, error) {
	r := config.NewReader(getenv)
	c := ReadNodeConfig(r)
	return c, r.Err()
}

// ReadNodeConfig reads the cluster settings from env. Cluster mode is on
// when SCC_STATE_SERVER_HOST or SCC_GOSSIP_SEEDS is set.
func ReadNodeConfig(r Env) NodeConfig {
	mdef := membership.DefaultConfig()
	bdef := DefaultConfig()
	ldef := nodelink.DefaultConfig()
	c := NodeConfig{Link: ldef}
	host := r.String("SCC_STATE_SERVER_HOST", "", "state server host; setting it (or SCC_GOSSIP_SEEDS) turns on cluster mode")
	port := r.Port("SCC_STATE_SERVER_PORT", 7777, "state server port")
	if host != "" {
		c.StateAddr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	c.AuthKey = []byte(r.String("SCC_AUTH_KEY", "", "shared secret that authenticates every inter-node link (never sent on the wire), at least 32 bytes; required in cluster mode unless SCC_INSECURE_NO_AUTH=true"))
	c.InsecureNoAuth = r.Bool(config.InsecureNoAuthEnv, false, "cluster mode with an empty, short or example SCC_AUTH_KEY: anyone who reaches this node's ports controls the cluster (test networks only)")
	c.NodeID = r.String("SCC_INSTANCE_ID", "", "this frontend's node id (default: random)")
	c.GossipAdvertise = r.String("SCC_INSTANCE_IP", "", "IP other nodes reach this node at (gossip advertise address)")
	c.GossipBind = r.String("SCC_GOSSIP_BIND", "", "gossip (memberlist) bind address (default: SCC_INSTANCE_IP if set, else all interfaces)")
	if c.GossipBind == "" {
		// Like the broker and the state server: a node told the one
		// address it is reached at does not listen on every interface.
		c.GossipBind = c.GossipAdvertise
	}
	if c.GossipBind == "" {
		c.GossipBind = mdef.GossipBind
	}
	c.GossipPort = r.Port("SCC_GOSSIP_PORT", mdef.GossipPort, "gossip (memberlist) port; 0 picks a free one")
	c.GossipSeeds = r.List("SCC_GOSSIP_SEEDS", nil, "gossip seeds host:port, comma-separated (default: learned from the state server)")
	gl := gossip.DefaultConfig()
	gl.ReadLimits(r)
	c.Gossip = &gl
	c.Broker = bdef
	c.Broker.DrainWindow = r.Duration("SCC_RESHARD_DRAIN_WINDOW", bdef.DrainWindow, "how long moved channels stay subscribed at their old broker after a reshard")
	c.Broker.SubscribeTimeout = r.Duration("SCC_RESHARD_SUBSCRIBE_TIMEOUT", bdef.SubscribeTimeout, "how long a reshard waits for brokers to acknowledge subscriptions")
	c.Broker.FenceTimeout = r.Duration("SCC_RESHARD_FENCE_TIMEOUT", bdef.FenceTimeout, "how long a ring switch waits for brokers to acknowledge earlier publishes")
	c.Broker.BacklogMaxBytes = r.Int("SCC_BROKER_BACKLOG_MAX_BYTES", bdef.BacklogMaxBytes, "publishes held per broker while its link is down, in bytes")
	c.Broker.BacklogMaxAge = r.Duration("SCC_BROKER_BACKLOG_MAX_AGE", bdef.BacklogMaxAge, "how long a publish may wait for its broker link before it is dropped")
	c.Broker.RecoverLimit = r.Int("SCC_GAP_RECOVERY_LIMIT", bdef.RecoverLimit, "most publications one request asks the owner for when a channel with history skipped offsets (after a broker failure or a reshard)")
	c.Broker.RecoverTimeout = r.Duration("SCC_GAP_RECOVERY_TIMEOUT", bdef.RecoverTimeout, "how long filling such a gap may wait for the owner's reply before it is given up (counted)")
	c.Broker.RecoverRetry = r.Duration("SCC_RECOVERY_RETRY", bdef.RecoverRetry, "how long a subscriber's history request waits before it asks the channel's owner again, when the broker asked said another owns the channel (during a reshard) or the link to the owner is down (until a ring without a dead broker is committed)")
	c.Broker.RecoverHeldMaxBytes = r.Int("SCC_GAP_RECOVERY_HELD_MAX_BYTES", bdef.RecoverHeldMaxBytes, "publications of one channel held while its gap is filled, in bytes; over it the gap is given up (counted)")
	c.Broker.SubscribeBatch = r.Int("SCC_LINK_SUBSCRIBE_BATCH", bdef.SubscribeBatch, "most channels one batch of subscription changes to a broker names")
	c.Broker.SubscribeWindow = r.Int("SCC_LINK_SUBSCRIBE_WINDOW", bdef.SubscribeWindow, "most batches of subscription changes in flight per broker link; changes made while it is full wait, and are coalesced")
	c.Link.MaxFrameBytes = r.Int64("SCC_LINK_MAX_FRAME_BYTES", ldef.MaxFrameBytes, "largest link frame (and message); the same on every node")
	c.Link.QueueMaxBytes = r.Int("SCC_LINK_QUEUE_MAX_BYTES", ldef.QueueMaxBytes, "bytes queued per inter-node link before messages are dropped")
	return c
}

// Node is a frontend's cluster membership: the routing Broker plus the
// agent that follows the state server and gossip.
type Node struct {
	broker *Broker
	agent  *membership.Agent
	rules  *rulesDigest
}

// rulesDigest holds the digest of the frontend's channel rules, sent in
// the Hello of every link the node dials (the state server shows it).
type rulesDigest struct{ p atomic.Pointer[string] }

func (r *rulesDigest) get() string {
	if d := r.p.Load(); d != nil {
		return *d
	}
	return ""
}

// NewNode builds the broker and the agent; nothing starts until Start.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.NodeID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.NodeID = "frontend-" + hex.EncodeToString(b[:])
	}
	link := cfg.Link
	if link.HandshakeTimeout == 0 {
		tlsc := link.TLS
		link = nodelink.DefaultConfig()
		link.TLS = tlsc
	}
	link.NodeID = cfg.NodeID
	link.Role = protocol.RoleFrontend
	link.AuthKey = cfg.AuthKey
	link.Logger = cfg.Logger
	rd := new(rulesDigest)
	link.RulesDigest = rd.get
	if cfg.Registry != nil && link.Metrics == nil {
		link.Metrics = nodelink.NewMetrics(cfg.Registry, protocol.RoleFrontend)
	}
	bc := cfg.Broker
	bc.Link = link
	bc.Logger = cfg.Logger
	if cfg.Registry != nil {
		bc.Registry = cfg.Registry
	}
	n := &Node{broker: New(bc), rules: rd}

	mc := membership.DefaultConfig()
	mc.NodeID = cfg.NodeID
	mc.Role = protocol.RoleFrontend
	mc.StateAddr = cfg.StateAddr
	mc.AuthKey = cfg.AuthKey
	if cfg.GossipBind != "" {
		mc.GossipBind = cfg.GossipBind
	}
	mc.GossipPort = cfg.GossipPort
	mc.GossipAdvertise = cfg.GossipAdvertise
	mc.GossipSeeds = cfg.GossipSeeds
	if cfg.Gossip != nil {
		gc := *cfg.Gossip
		mc.Gossip = &gc
		mc.MaxRingVersionStep = gc.MaxRingVersionStep
	}
	mc.Link = &link
	mc.Logger = cfg.Logger
	mc.Registry = cfg.Registry
	mc.Stats = cfg.Stats
	a, err := membership.New(mc, n.broker)
	if err != nil {
		return nil, fmt.Errorf("creating membership agent: %w", err)
	}
	n.agent = a
	return n, nil
}

// Broker returns the frontend.Broker to give the frontend server.
func (n *Node) Broker() frontend.Broker { return nodeBroker{n} }

// Agent returns the membership agent.
func (n *Node) Agent() *membership.Agent { return n.agent }

// Router returns the routing broker (for tests and metrics).
func (n *Node) Router() *Broker { return n.broker }

// nodeBroker starts and stops the agent with the broker, so the frontend
// server owns the whole cluster membership through its Broker.
type nodeBroker struct{ n *Node }

func (b nodeBroker) Start(ctx context.Context, sink frontend.Sink) error {
	if err := b.n.broker.Start(ctx, sink); err != nil {
		return err
	}
	if err := b.n.agent.Start(ctx); err != nil {
		b.n.broker.Close()
		return fmt.Errorf("starting membership agent: %w", err)
	}
	return nil
}

func (b nodeBroker) Subscribe(ctx context.Context, ch string) error {
	return b.n.broker.Subscribe(ctx, ch)
}
func (b nodeBroker) Unsubscribe(ch string) { b.n.broker.Unsubscribe(ch) }
func (b nodeBroker) Publish(ctx context.Context, ch string, data []byte) error {
	return b.n.broker.Publish(ctx, ch, data)
}
func (b nodeBroker) PublishIdempotent(ctx context.Context, ch string, data []byte, key string) error {
	return b.n.broker.PublishIdempotent(ctx, ch, data, key)
}
func (b nodeBroker) PublishAcked(ch string, data []byte, key string) (<-chan error, error) {
	return b.n.broker.PublishAcked(ch, data, key)
}

// AliveFrontends implements frontend.FrontendCounter: the frontends gossip
// knows alive (at least this one).
func (b nodeBroker) AliveFrontends() int {
	g := b.n.agent.Gossip()
	if g == nil {
		return 1
	}
	n := 0
	for _, m := range g.Members() {
		if m.Alive && m.Role == protocol.RoleFrontend {
			n++
		}
	}
	return max(n, 1)
}

func (b nodeBroker) Ready() bool { return b.n.broker.Ready() }

// ReportRulesDigest implements frontend.RulesReporter: the links the node
// dials from now on carry digest in their Hello.
func (b nodeBroker) ReportRulesDigest(digest string) { b.n.rules.p.Store(&digest) }

// UseChannelRules implements frontend.RulesUser: publishes of channels
// with history are re-sent after a broker failure (Config.Resend).
func (b nodeBroker) UseChannelRules(set *rules.Set) {
	b.n.broker.cfg.Resend = func(ch string) bool { return set.Options(ch).History.Size > 0 }
}

func (b nodeBroker) Close() error {
	err := b.n.agent.Close()
	b.n.broker.Close()
	return err
}
