package nodelink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Path is the HTTP path every node serves links on.
const Path = "/sccgo/link"

// Defaults for Config.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultPingInterval     = time.Second
	DefaultPingTimeout      = 3 * time.Second
	DefaultMaxFrameBytes    = 16 << 20
	DefaultQueueMaxBytes    = 64 << 20
	DefaultRedialMin        = 50 * time.Millisecond
	DefaultRedialMax        = 500 * time.Millisecond

	DefaultHelloMaxBytes                 = 4 << 10
	DefaultMaxPendingHandshakes          = 256
	DefaultMaxPendingHandshakesPerSource = 32
	DefaultMaxHeaderBytes                = 16 << 10
)

// Config describes the local end of links. The same Config serves Accept,
// Dial and NewRedialer.
type Config struct {
	// NodeID identifies this node (a broker's SCC_INSTANCE_ID or advertised
	// host:port). Required.
	NodeID string
	// Role is this node's role: protocol.RoleState, RoleBroker or
	// RoleFrontend. Required.
	Role string
	// AuthKey is SCC_AUTH_KEY. Empty is allowed only if every node's key is
	// empty; callers should warn about it.
	AuthKey []byte
	// Addr is the advertised host:port a dialer puts in Hello (a broker's
	// link endpoint); "" otherwise.
	Addr string
	// GossipAddr is the host:port of this node's memberlist, sent in Hello.
	GossipAddr string
	// RingVersion, if set, gives the highest ring version seen, sent in
	// Hello.
	RingVersion func() uint64
	// Draining, if set, reports whether this node is leaving, sent in Hello.
	Draining func() bool
	// RulesDigest, if set, gives the digest of the channel rules this node
	// runs, sent in Hello.
	RulesDigest func() string
	// TLS, if set, makes Dial use wss:// with the configuration it
	// returns, called once per dial so that reloaded certificates take
	// effect (tlsconf.Store.ClientConfig). The accepting side is TLS by
	// its listener; see Accept. When links use TLS, every node must.
	TLS func() *tls.Config

	// HandshakeTimeout bounds the whole handshake. Default 5s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one frame write; a peer that does not take a
	// frame in time is closed. Default 10s.
	WriteTimeout time.Duration
	// PingInterval: a side that has written nothing for this long sends a
	// Ping. Default 1s.
	PingInterval time.Duration
	// PingTimeout: a link on which nothing arrived for this long is closed.
	// Default 3s.
	PingTimeout time.Duration
	// MaxFrameBytes bounds one frame in both directions (the read limit and
	// the writer's batch size); a single message larger than it is dropped.
	// It must be the same on every node. Default 16 MiB.
	MaxFrameBytes int64
	// QueueMaxBytes bounds the bytes queued for the writer per link; what
	// does not fit is dropped and counted. Default 64 MiB
	// (SCC_LINK_QUEUE_MAX_BYTES in the binaries).
	QueueMaxBytes int

	// HelloMaxBytes is the read limit of an accepted connection until its
	// Hello has verified; only then does it rise to MaxFrameBytes, so a
	// host without the key cannot make this node buffer more. Default
	// 4 KiB (SCC_LINK_HELLO_MAX_BYTES).
	HelloMaxBytes int64
	// MaxPendingHandshakes bounds the accepted handshakes whose Hello has
	// not verified yet, across all sources; more are refused with HTTP
	// 503 and counted (reason pending_total). Needs Pending. Default 256
	// (SCC_LINK_MAX_PENDING_HANDSHAKES).
	MaxPendingHandshakes int
	// MaxPendingHandshakesPerSource is the same bound per source IP
	// (reason pending_source). Default 32
	// (SCC_LINK_MAX_PENDING_HANDSHAKES_PER_SOURCE).
	MaxPendingHandshakesPerSource int
	// MaxHeaderBytes bounds the HTTP request header of the server a node
	// serves links on (its http.Server's MaxHeaderBytes): Go's default, 1
	// MiB, is what any host may make the node buffer per connection
	// before a link handshake even starts. Default 16 KiB
	// (SCC_LINK_MAX_HEADER_BYTES).
	MaxHeaderBytes int
	// Pending holds the counts the two bounds above apply to; share one
	// per listening node. Nil: Accept does not cap pending handshakes.
	Pending *Pending

	// Logger receives link events (nil = discard).
	Logger *slog.Logger
	// Metrics receives counters (nil = counted nowhere).
	Metrics *Metrics
}

// DefaultConfig returns a Config with every limit at its default; NodeID,
// Role and AuthKey are left for the caller.
func DefaultConfig() Config {
	return Config{
		HandshakeTimeout: DefaultHandshakeTimeout,
		WriteTimeout:     DefaultWriteTimeout,
		PingInterval:     DefaultPingInterval,
		PingTimeout:      DefaultPingTimeout,
		MaxFrameBytes:    DefaultMaxFrameBytes,
		QueueMaxBytes:    DefaultQueueMaxBytes,

		HelloMaxBytes:                 DefaultHelloMaxBytes,
		MaxPendingHandshakes:          DefaultMaxPendingHandshakes,
		MaxPendingHandshakesPerSource: DefaultMaxPendingHandshakesPerSource,
		MaxHeaderBytes:                DefaultMaxHeaderBytes,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is empty"))
	}
	switch c.Role {
	case protocol.RoleState, protocol.RoleBroker, protocol.RoleFrontend:
	default:
		errs = append(errs, fmt.Errorf("Role %q is not state, broker or frontend", c.Role))
	}
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	pos("HandshakeTimeout", c.HandshakeTimeout)
	pos("WriteTimeout", c.WriteTimeout)
	pos("PingInterval", c.PingInterval)
	pos("PingTimeout", c.PingTimeout)
	if c.PingTimeout > 0 && c.PingTimeout <= c.PingInterval {
		errs = append(errs, errors.New("PingTimeout must exceed PingInterval"))
	}
	if c.MaxFrameBytes < 1024 {
		errs = append(errs, errors.New("MaxFrameBytes must be at least 1024"))
	}
	if c.QueueMaxBytes < 1024 {
		errs = append(errs, errors.New("QueueMaxBytes must be at least 1024"))
	}
	// Zero takes the default (withDefaults) for the handshake bounds.
	if c.HelloMaxBytes != 0 && (c.HelloMaxBytes < 512 || c.HelloMaxBytes > c.MaxFrameBytes) {
		errs = append(errs, errors.New("HelloMaxBytes must be at least 512 and at most MaxFrameBytes"))
	}
	if c.MaxPendingHandshakes < 0 || c.MaxPendingHandshakesPerSource < 0 {
		errs = append(errs, errors.New("MaxPendingHandshakes and MaxPendingHandshakesPerSource must be positive"))
	}
	if c.MaxHeaderBytes != 0 && c.MaxHeaderBytes < 1024 {
		errs = append(errs, errors.New("MaxHeaderBytes must be at least 1024"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nodelink config: %w", err)
	}
	return nil
}

// HeaderLimit returns MaxHeaderBytes, or its default when zero: the value
// for the MaxHeaderBytes of the http.Server that serves links.
func (c Config) HeaderLimit() int {
	if c.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return c.MaxHeaderBytes
}

// MessageLimit is the most bytes one message whose size grows with data
// (a Sync, a batch of subscription changes, a presence report, a channel's
// history) may take: within a frame, and within half the queue, so that
// it always fits a link whose queue has drained. Senders split or trim
// such messages to it.
func (c Config) MessageLimit() int64 {
	c = c.withDefaults()
	return min(c.MaxFrameBytes, int64(c.QueueMaxBytes/2))
}

// WithDefaults returns c with its zero limits filled with the defaults,
// as a link uses them.
func (c Config) WithDefaults() Config { return c.withDefaults() }

// withDefaults fills zero limits, so a partly filled Config still works.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
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
	if c.HelloMaxBytes <= 0 {
		c.HelloMaxBytes = min(d.HelloMaxBytes, c.MaxFrameBytes)
	}
	if c.MaxPendingHandshakes <= 0 {
		c.MaxPendingHandshakes = d.MaxPendingHandshakes
	}
	if c.MaxPendingHandshakesPerSource <= 0 {
		c.MaxPendingHandshakesPerSource = d.MaxPendingHandshakesPerSource
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil, c.Role)
	}
	return c
}
