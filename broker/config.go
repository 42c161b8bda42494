package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/membership"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// Defaults for Config.
const (
	DefaultInterestShards = 64
	DefaultGossipPort     = 7946
	DefaultReadyPoll      = 50 * time.Millisecond
	DefaultWarmUp         = time.Second

	DefaultIdempotencyKeys = 100000
	DefaultIdempotencyTTL  = 2 * time.Minute

	DefaultPresenceEventInterval   = 500 * time.Millisecond
	DefaultPresenceEventMaxMembers = 100
	DefaultPresencePageMax         = 1000
)

// Config configures a broker Server.
type Config struct {
	// NodeID is the broker's identity in the ring (SCC_INSTANCE_ID).
	// Default: Addr, so a broker restarted at the same address keeps its
	// ring place.
	NodeID string
	// Addr is the host:port frontends reach this broker's links at
	// (SCC_INSTANCE_IP:SCC_BROKER_SERVER_PORT). Default: the listener's
	// address.
	Addr string
	// AuthKey is SCC_AUTH_KEY, shared by every node. Empty is allowed only
	// if every node's is empty (a warning is logged).
	AuthKey []byte

	// StateAddr is the state server's host:port (SCC_STATE_SERVER_HOST,
	// SCC_STATE_SERVER_PORT); "" runs without one.
	StateAddr string
	// GossipBind is the gossip listen address (SCC_GOSSIP_BIND). Default
	// "0.0.0.0".
	GossipBind string
	// GossipPort is the gossip port (SCC_GOSSIP_PORT); 0 picks a free one;
	// -1 runs no gossip and no agent at all, which needs StateAddr "".
	// Default 7946.
	GossipPort int
	// GossipAdvertise is the IP peers reach this node's gossip at
	// (SCC_INSTANCE_IP); "" lets memberlist choose.
	GossipAdvertise string
	// GossipSeeds are gossip host:ports to join (SCC_GOSSIP_SEEDS); empty:
	// the state server's Welcome seeds.
	GossipSeeds []string
	// Agent, if set, is the base membership configuration (reconnect and
	// gossip timing, stats interval); identity, addresses, key, logger,
	// registry and stats are set by the broker.
	Agent *membership.Config

	// Link holds the limits of frontend links (timeouts, MaxFrameBytes,
	// QueueMaxBytes = SCC_LINK_QUEUE_MAX_BYTES); identity, key, logger and
	// metrics are set by the broker. Default nodelink.DefaultConfig().
	Link nodelink.Config
	// TLS, if set, serves the port (links, /healthz, /readyz, /metrics)
	// over TLS with this configuration (tlsconf.Store.ServerConfig); links
	// then need a verified client certificate. Link.TLS must be set with
	// it, so the broker dials the state server over TLS too. Default nil:
	// plain TCP.
	TLS *tls.Config
	// InterestShards is the number of shards of the channel interest
	// table. Default 64.
	InterestShards int
	// WarmUp is how long a freshly started broker holds publishes before
	// forwarding them (SCC_BROKER_WARMUP). A broker restarted at the same
	// address keeps its ring place, and frontends' links come back over a
	// few hundred milliseconds: holding publishes until every subscriber
	// frontend has re-synced its channels keeps what publishers sent
	// meanwhile from reaching nobody. Publishes are held, never dropped.
	// Default 1s; 0 turns it off.
	WarmUp time.Duration
	// IdempotencyKeys bounds how many (channel, idempotency key) pairs of
	// recent server API publishes the broker remembers to drop retries
	// (SCC_IDEMPOTENCY_KEYS). Default 100000; 0 turns deduplication off.
	IdempotencyKeys int
	// IdempotencyTTL is how long such a pair is remembered
	// (SCC_IDEMPOTENCY_TTL). Default 2m.
	IdempotencyTTL time.Duration
	// PresenceEventInterval is how long join and leave changes of a
	// presence channel are gathered into one event
	// (SCC_PRESENCE_EVENT_INTERVAL, docs/presence.md). Default 500ms.
	PresenceEventInterval time.Duration
	// PresenceEventMaxMembers caps the joins and leaves one event lists;
	// the rest are counted in its omitted field
	// (SCC_PRESENCE_EVENT_MAX_MEMBERS). Default 100.
	PresenceEventMaxMembers int
	// PresencePageMax caps the members one presence query returns
	// (SCC_PRESENCE_PAGE_MAX). Default 1000.
	PresencePageMax int
	// Rules are the channel rules (SCC_CHANNELS_FILE, docs/channels.md;
	// load them with rules.Load). Brokers do not check client permissions,
	// frontends do: a broker reports the rules' digest to the state server
	// and keeps the channel options for the features it carries. Default
	// nil: the built-in default rules.
	Rules *rules.Set
	// Replication keeps a copy of every channel with history at the
	// channel's standby broker, which acknowledges each publication before
	// the owner delivers it, so a broker crash loses none of it
	// (SCC_REPLICATION; docs/guarantees.md). Channels without history are
	// not replicated. Default true.
	Replication bool
	// HandoffTimeout bounds how long, after a ring change, this broker
	// holds publishes of channels it gains from another broker (one still
	// in the ring, or one that said it is leaving) until that broker has
	// handed their history over, how long it tries to hand over the
	// channels it gives, and how long a frontend link's publishes wait for
	// this broker to commit the ring the frontend routed them by. The
	// waits of one frame of a link end together, at most this long and at
	// most two thirds of the link's ping timeout
	// (SCC_REPLICATION_HANDOFF_TIMEOUT). Default 2s.
	HandoffTimeout time.Duration
	// ReadyPoll is how often readiness is checked while waiting for the
	// state server's Welcome. Default 50ms.
	ReadyPoll time.Duration

	// History bounds the history of the channels whose rule keeps it
	// (docs/recovery.md): MaxBytes is the memory budget of every channel's
	// history together (SCC_HISTORY_MAX_BYTES, default 256 MiB; over it
	// the least recently published channels lose their oldest
	// publications, counted), MetaTTL how long a channel's offset and
	// epoch outlive its last publication (SCC_HISTORY_META_TTL, default
	// 24h). Default history.DefaultConfig().
	History history.Config

	// ServeAdmin serves /metrics on the link port as well as from
	// AdminHandler (SCC_ADMIN_ON_CLIENT_PORT). Only nodes need the link
	// port, so by default metrics are only on the admin port
	// (SCC_ADMIN_PORT); /healthz and /readyz are on both. Default false.
	ServeAdmin bool

	// Logger receives the broker's events (nil = discard).
	Logger *slog.Logger
	// Conns caps the TCP connections Serve accepts, links and HTTP alike
	// (SCC_MAX_CONNECTIONS, default derived from RLIMIT_NOFILE), keeps
	// SCC_ADMIN_RESERVE_CONNECTIONS (default 16) more for /healthz,
	// /readyz and /metrics, and closes HTTP keep-alive connections idle
	// for SCC_HTTP_IDLE_TIMEOUT (default 30s).
	Conns connlimit.Config

	// Registry receives the broker's metrics (scc_broker_*); nil creates a
	// private one, still served by AdminHandler.
	Registry *prometheus.Registry
}

// DefaultConfig returns a Config with every default set.
func DefaultConfig() Config {
	return Config{
		GossipBind:     "0.0.0.0",
		GossipPort:     DefaultGossipPort,
		Link:           nodelink.DefaultConfig(),
		InterestShards: DefaultInterestShards,
		ReadyPoll:      DefaultReadyPoll,
		WarmUp:         DefaultWarmUp,
		Conns:          connlimit.DefaultConfig(),

		IdempotencyKeys: DefaultIdempotencyKeys,
		IdempotencyTTL:  DefaultIdempotencyTTL,

		PresenceEventInterval:   DefaultPresenceEventInterval,
		PresenceEventMaxMembers: DefaultPresenceEventMaxMembers,
		PresencePageMax:         DefaultPresencePageMax,
		History:                 history.DefaultConfig(),
		Replication:             true,
		HandoffTimeout:          2 * time.Second,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if err := c.Conns.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.InterestShards <= 0 {
		errs = append(errs, errors.New("InterestShards must be positive"))
	}
	if c.WarmUp < 0 {
		errs = append(errs, errors.New("WarmUp must not be negative"))
	}
	if c.IdempotencyKeys < 0 || c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("IdempotencyKeys and IdempotencyTTL must not be negative"))
	}
	if c.PresenceEventInterval <= 0 || c.PresenceEventMaxMembers < 1 || c.PresencePageMax < 1 {
		errs = append(errs, errors.New("PresenceEventInterval, PresenceEventMaxMembers and PresencePageMax must be positive"))
	}
	if c.Replication && c.HandoffTimeout <= 0 {
		errs = append(errs, errors.New("HandoffTimeout must be positive"))
	}
	if c.ReadyPoll <= 0 {
		errs = append(errs, errors.New("ReadyPoll must be positive"))
	}
	if err := c.History.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.GossipPort < -1 || c.GossipPort > 65535 {
		errs = append(errs, fmt.Errorf("GossipPort %d out of range", c.GossipPort))
	}
	if c.GossipPort < 0 && c.StateAddr != "" {
		errs = append(errs, errors.New("a broker with a state server needs gossip (GossipPort >= 0)"))
	}
	if (c.TLS == nil) != (c.Link.TLS == nil) {
		errs = append(errs, errors.New("TLS and Link.TLS go together: when links use TLS, every link does"))
	}
	lc := c.Link
	lc.NodeID, lc.Role = "x", protocol.RoleBroker
	if err := lc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.agentEnabled() {
		if err := c.agentConfig("x", "x:1").Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("broker config: %w", err)
	}
	return nil
}

func (c Config) agentEnabled() bool { return c.GossipPort >= 0 }

// agentConfig returns the membership configuration for id at addr.
func (c Config) agentConfig(id, addr string) membership.Config {
	ac := membership.DefaultConfig()
	if c.Agent != nil {
		ac = *c.Agent
	}
	ac.NodeID = id
	ac.Role = protocol.RoleBroker
	ac.Addr = addr
	ac.StateAddr = c.StateAddr
	ac.AuthKey = c.AuthKey
	if c.GossipBind != "" {
		ac.GossipBind = c.GossipBind
	}
	ac.GossipPort = c.GossipPort
	ac.GossipAdvertise = c.GossipAdvertise
	ac.GossipSeeds = c.GossipSeeds
	lc := c.Link
	digest := rulesOf(c).Digest()
	lc.RulesDigest = func() string { return digest }
	ac.Link = &lc
	return ac
}
