package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Scenario names a load shape.
type Scenario string

// Scenarios.
const (
	// Fanout: Subscribers connections over Channels channels (SubsPerConn
	// subscriptions each) and Publishers connections publishing Rate
	// messages per second in total, round-robin over the channels.
	Fanout Scenario = "fanout"
	// Broadcast: every subscriber on one channel.
	Broadcast Scenario = "broadcast"
	// Conns: open and hold Subscribers idle subscribed connections and
	// report the connect rate and failures; nothing is published.
	Conns Scenario = "conns"
	// Sweep: the fanout layout (or broadcast with Channels 1), run at
	// rising rates until the p99 latency exceeds P99Bound or a message is
	// lost; reports the highest sustainable delivered rate.
	Sweep Scenario = "sweep"
)

// Scenarios lists every scenario.
var Scenarios = []Scenario{Fanout, Broadcast, Conns, Sweep}

// Config is one run. DefaultConfig gives every default; the flag name of
// each field is in its comment.
type Config struct {
	// Scenario is the load shape. Default fanout.
	Scenario Scenario `json:"scenario"`
	// Name labels the run in reports and file names. Default the
	// scenario's name.
	Name string `json:"name"`
	// URLs are the SocketCluster endpoints (-urls, comma list);
	// connections are spread over them round-robin. Default
	// ws://127.0.0.1:8000/socketcluster/.
	URLs []string `json:"urls"`
	// Subscribers is the number of subscriber connections (-subs).
	// Default 1000.
	Subscribers int `json:"subs"`
	// Channels is the number of channels (-channels). Default 100;
	// broadcast forces 1.
	Channels int `json:"channels"`
	// SubsPerConn is the number of channels each subscriber subscribes to
	// (-k). Default 1.
	SubsPerConn int `json:"k"`
	// Publishers is the number of publisher connections (-pubs). Default 10.
	Publishers int `json:"pubs"`
	// Rate is the total publish rate in messages per second (-rate); each
	// publish reaches every subscriber of its channel. For sweep it is the
	// first step. Default 1000.
	Rate float64 `json:"rate"`
	// Size is the payload size in bytes (-size). Default 64.
	Size int `json:"size"`
	// Warmup is run before measuring (-warmup): its messages are checked
	// but are not latency samples. Default 2s.
	Warmup time.Duration `json:"warmup"`
	// Duration is the measured time (-duration), or for conns how long the
	// connections are held. Default 10s.
	Duration time.Duration `json:"duration"`
	// Drain bounds the wait for in-flight messages after the publishers
	// stop (-drain); what has not arrived then is lost. Default 5s.
	Drain time.Duration `json:"drain"`
	// MessagesPerPublisher stops each publisher after that many messages
	// per round (-count); 0 means no limit. Default 0.
	MessagesPerPublisher int64 `json:"count,omitempty"`
	// Ack publishes with invokePublish and waits for each
	// acknowledgement (-ack), one at a time per publisher, instead of
	// transmitPublish. Default false.
	Ack bool `json:"ack,omitempty"`
	// Procs spreads the connections over that many worker processes
	// (-procs). Default 1 (everything in this process).
	Procs int `json:"procs"`
	// P99Bound is the sweep's latency bound (-p99-bound). Default 50ms.
	P99Bound time.Duration `json:"p99_bound"`
	// SweepFactor multiplies the rate at each sweep step (-sweep-factor).
	// Default 2.
	SweepFactor float64 `json:"sweep_factor,omitempty"`
	// SweepSteps bounds the number of rising sweep steps (-sweep-steps).
	// Default 12.
	SweepSteps int `json:"sweep_steps,omitempty"`
	// SweepRefine is the number of bisection steps between the last
	// passing and the first failing rate (-sweep-refine). Default 2.
	SweepRefine int `json:"sweep_refine,omitempty"`
	// ConnectRate bounds new connections per second over all processes
	// (-connect-rate). Default 2000.
	ConnectRate float64 `json:"connect_rate"`
	// ConnectConcurrency bounds connections being opened at once per
	// process (-connect-concurrency). Default 64.
	ConnectConcurrency int `json:"connect_concurrency"`
	// ConnectTimeout bounds each connection's dial, upgrade and handshake,
	// and each subscribe (-connect-timeout). Default 10s.
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// SourceIPs are local addresses to bind, rotated per connection
	// (-src-ips 127.0.0.1-127.0.0.250): each gives its own ~28k ephemeral
	// ports towards one server address. Empty lets the system choose.
	SourceIPs []netip.Addr `json:"src_ips,omitempty"`
	// AuthToken is sent in every #handshake (-auth-token).
	AuthToken string `json:"-"`
	// TLSCAFile is a PEM file of CA certificates that wss:// servers are
	// verified against (-tls-ca). Default: the system roots.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
	// TLSInsecure skips verifying wss:// servers (-tls-insecure): for
	// self-signed test servers only.
	TLSInsecure bool `json:"tls_insecure,omitempty"`
	// ProtocolVersion is the SocketCluster protocol version, 1 or 2
	// (-protocol). Default 2.
	ProtocolVersion int `json:"protocol"`
	// ChannelPrefix starts every channel name (-channel-prefix). Default
	// "bench-" and a random run id, so runs never see each other's traffic.
	ChannelPrefix string `json:"channel_prefix"`
	// Reconnect lets connections reconnect and resubscribe after a drop
	// (-reconnect), as a failure test wants; the checker then reports what
	// the gap cost. Default false: a dropped connection stays dropped and
	// is counted.
	Reconnect bool `json:"reconnect,omitempty"`
	// DropEvery, when positive, cuts DropFraction of the subscriber
	// connections every DropEvery during each round, as a flaky network
	// would (-drop-every); they reconnect and resubscribe, recovering what
	// they missed on channels with history (docs/recovery.md), and the
	// check reports what was still lost. It implies Reconnect. Default 0:
	// off.
	DropEvery time.Duration `json:"drop_every,omitempty"`
	// DropFraction is the share of subscriber connections each DropEvery
	// cuts (-drop-fraction). Default 0.1.
	DropFraction float64 `json:"drop_fraction,omitempty"`
	// ServerPIDs are processes of the server under test on this machine
	// (-server-pids); their CPU use per step is reported, to show whether
	// the server or the bench was the bottleneck.
	ServerPIDs []int `json:"server_pids,omitempty"`
	// FDReserve is the number of file descriptors kept free per process
	// beyond one per connection. Default 64.
	FDReserve int `json:"-"`

	// WorkerCommand runs one worker process for Procs > 1: it must run
	// RunWorker on its stdin and stdout (scc-bench runs it for the hidden
	// "worker" argument). Default: this executable with the argument
	// "worker".
	WorkerCommand []string `json:"-"`
	// WorkerEnv is added to the worker processes' environment.
	WorkerEnv []string `json:"-"`
	// WorkerStderr receives the worker processes' standard error. Nil
	// discards it (but its last lines go into any error).
	WorkerStderr io.Writer `json:"-"`
	// Logger receives connection-level events. Nil discards.
	Logger *slog.Logger `json:"-"`
	// OnProgress, if set, is called about once a second and at each phase
	// change, from one goroutine.
	OnProgress func(Progress) `json:"-"`
}

// DefaultConfig returns the defaults: fanout, 1000 subscribers over 100
// channels, 10 publishers at 1000 msg/s in total, 64-byte payloads, 2s
// warm-up and 10s measured, against ws://127.0.0.1:8000/socketcluster/.
func DefaultConfig() Config {
	return Config{
		Scenario:           Fanout,
		URLs:               []string{"ws://127.0.0.1:8000/socketcluster/"},
		Subscribers:        1000,
		Channels:           100,
		SubsPerConn:        1,
		Publishers:         10,
		Rate:               1000,
		Size:               64,
		Warmup:             2 * time.Second,
		Duration:           10 * time.Second,
		Drain:              5 * time.Second,
		Procs:              1,
		P99Bound:           50 * time.Millisecond,
		SweepFactor:        2,
		SweepSteps:         12,
		SweepRefine:        2,
		ConnectRate:        2000,
		ConnectConcurrency: 64,
		ConnectTimeout:     10 * time.Second,
		ProtocolVersion:    2,
		FDReserve:          64,
		DropFraction:       0.1,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("bench: bad configuration")

// Validate checks the configuration and fills in what follows from the
// scenario (broadcast's single channel).
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	switch c.Scenario {
	case Fanout, Sweep, Conns:
	case Broadcast:
		c.Channels, c.SubsPerConn = 1, 1
	default:
		return bad("unknown scenario %q (want one of fanout, broadcast, conns, sweep)", c.Scenario)
	}
	if c.Name == "" {
		c.Name = string(c.Scenario)
	}
	switch {
	case c.DropEvery < 0:
		return bad("drop every %v must not be negative", c.DropEvery)
	case c.DropEvery > 0 && (c.DropFraction <= 0 || c.DropFraction > 1):
		return bad("drop fraction %v must be in (0, 1]", c.DropFraction)
	case c.DropEvery > 0:
		c.Reconnect = true
	}
	if _, err := c.clientTLS(); err != nil {
		return err
	}
	if len(c.URLs) == 0 {
		return bad("no URL (-urls)")
	}
	for _, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			return bad("URL %q: want ws://host:port/socketcluster/ or wss://…", u)
		}
	}
	switch {
	case c.Subscribers < 0:
		return bad("-subs %d is negative", c.Subscribers)
	case c.Channels < 1:
		return bad("-channels %d: need at least 1", c.Channels)
	case c.SubsPerConn < 1 || c.SubsPerConn > c.Channels:
		return bad("-k %d: need 1..%d (the number of channels)", c.SubsPerConn, c.Channels)
	case c.Scenario == Conns && c.Subscribers < 1:
		return bad("conns needs -subs of at least 1")
	case c.Scenario != Conns && c.Publishers < 1:
		return bad("-pubs %d: need at least 1", c.Publishers)
	case c.Scenario != Conns && c.Rate <= 0:
		return bad("-rate %g: need a positive rate", c.Rate)
	case c.Size < 0:
		return bad("-size %d is negative", c.Size)
	case c.Duration <= 0:
		return bad("-duration %s: need a positive duration", c.Duration)
	case c.Warmup < 0 || c.Drain < 0:
		return bad("-warmup and -drain must not be negative")
	case c.Procs < 1:
		return bad("-procs %d: need at least 1", c.Procs)
	case c.ConnectRate <= 0 || c.ConnectConcurrency < 1:
		return bad("-connect-rate and -connect-concurrency must be positive")
	case c.ConnectTimeout <= 0:
		return bad("-connect-timeout must be positive")
	case c.ProtocolVersion != 1 && c.ProtocolVersion != 2:
		return bad("-protocol %d: want 1 or 2", c.ProtocolVersion)
	case c.Scenario == Sweep && (c.SweepFactor <= 1 || c.SweepSteps < 1 || c.P99Bound <= 0):
		return bad("sweep needs -sweep-factor > 1, -sweep-steps >= 1 and a positive -p99-bound")
	case c.MessagesPerPublisher < 0:
		return bad("-count is negative")
	}
	if c.FDReserve <= 0 {
		c.FDReserve = DefaultConfig().FDReserve
	}
	if c.Scenario == Conns {
		c.Publishers = 0
	}
	return nil
}

// ParseIPRange parses "127.0.0.1-127.0.0.250", a comma list of addresses,
// or a mix of both, into the addresses in order.
func ParseIPRange(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%w: source address %q: %v", ErrConfig, lo, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("%w: source address %q: %v", ErrConfig, hi, err)
		}
		if b.Less(a) || a.Is4() != b.Is4() {
			return nil, fmt.Errorf("%w: source range %q is empty", ErrConfig, part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > 1<<16 {
				return nil, fmt.Errorf("%w: source range %q is too large", ErrConfig, part)
			}
			if x == b {
				break
			}
		}
	}
	return out, nil
}
