package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/internal/adminport"
	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/demopage"
	"github.com/sccgo/sccgo/internal/gctune"
	"github.com/sccgo/sccgo/internal/hooks"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/protocol"
)

// settings is everything run reads from the environment.
type settings struct {
	cfg             frontend.Config
	cluster         cluster.NodeConfig
	host            string
	port            int
	admin           adminport.Settings
	logLevel        slog.Level
	shutdownTimeout time.Duration
	idleGCPercent   int  // GC percent while the process is idle (0: off)
	idleMemLimit    bool // a soft memory limit while idle (gctune.Config.IdleLimit)
	hooks           hooks.Config
	linkTLS         tlsconf.Config // links to brokers and the state server
	clientTLS       tlsconf.Config // wss:// on the client port
}

// scOptions is the part of SOCKETCLUSTER_OPTIONS (JSON) that is read.
type scOptions struct {
	AuthKey            *string  `json:"authKey"`
	PingInterval       *int64   `json:"pingInterval"`
	PingTimeout        *int64   `json:"pingTimeout"`
	HandshakeTimeout   *int64   `json:"handshakeTimeout"`
	SocketChannelLimit *int     `json:"socketChannelLimit"`
	MaxPayload         *int64   `json:"maxPayload"`
	AllowClientPublish *bool    `json:"allowClientPublish"`
	Origins            *string  `json:"origins"`
	ProtocolVersion    *int     `json:"protocolVersion"`
	AuthDefaultExpiry  *float64 `json:"authDefaultExpiry"`
	AckTimeout         *int64   `json:"ackTimeout"`
	Path               *string  `json:"path"`
}

// load reads the settings. Precedence: an explicit SCC_* (or
// SOCKETCLUSTER_PORT/PATH) variable wins over the same option in
// SOCKETCLUSTER_OPTIONS, which wins over the default.
func load(getenv config.Getenv) (settings, *config.Reader, error) {
	r := config.NewReader(getenv)
	d := frontend.DefaultConfig()
	var errs []error

	var opts scOptions
	if raw := r.String("SOCKETCLUSTER_OPTIONS", "", "SocketCluster server options as JSON (authKey, pingInterval, pingTimeout, handshakeTimeout, socketChannelLimit, maxPayload, allowClientPublish, origins, protocolVersion, authDefaultExpiry, ackTimeout, path); explicit SCC_* variables win"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &opts); err != nil {
			errs = append(errs, fmt.Errorf("SOCKETCLUSTER_OPTIONS: %v", err))
		}
	}
	ms := func(p *int64, def time.Duration) time.Duration {
		if p != nil {
			return time.Duration(*p) * time.Millisecond
		}
		return def
	}
	if opts.AuthKey != nil {
		d.AuthKey = []byte(*opts.AuthKey)
	}
	d.PingInterval = ms(opts.PingInterval, d.PingInterval)
	d.PingTimeout = ms(opts.PingTimeout, d.PingTimeout)
	d.HandshakeTimeout = ms(opts.HandshakeTimeout, d.HandshakeTimeout)
	d.AckTimeout = ms(opts.AckTimeout, d.AckTimeout)
	if opts.SocketChannelLimit != nil {
		d.SocketChannelLimit = *opts.SocketChannelLimit
	}
	if opts.MaxPayload != nil {
		d.MaxPayload = *opts.MaxPayload
	}
	if opts.AllowClientPublish != nil {
		d.AllowClientPublish = *opts.AllowClientPublish
	}
	if opts.Origins != nil {
		d.Origins = *opts.Origins
	}
	if opts.ProtocolVersion != nil {
		d.ProtocolVersion = protocol.Version(*opts.ProtocolVersion)
	}
	if opts.AuthDefaultExpiry != nil {
		d.AuthDefaultExpiry = time.Duration(*opts.AuthDefaultExpiry * float64(time.Second))
	}
	if opts.Path != nil {
		d.Path = *opts.Path
	}

	var st settings
	c := d
	st.port = r.Port("SOCKETCLUSTER_PORT", 8000, "client WebSocket and HTTP port")
	st.host = r.String("SCC_FRONTEND_HOST", "", "bind address (empty: all interfaces)")
	c.Path = r.String("SOCKETCLUSTER_PATH", d.Path, "WebSocket endpoint path")
	st.admin = adminport.Read(r, adminport.DefaultFrontendPort, "SCC_FRONTEND_HOST", "/metrics")
	c.AuthKey = []byte(r.String("SCC_CLIENT_AUTH_KEY", string(d.AuthKey), "HMAC key for client auth tokens (SocketCluster authKey; empty: random per process)"))
	pubFile := r.String("SCC_CLIENT_AUTH_PUBLIC_KEY_FILE", "", "PEM public key for RS*/PS*/ES* client tokens")
	privFile := r.String("SCC_CLIENT_AUTH_PRIVATE_KEY_FILE", "", "PEM private key for signing RS*/PS*/ES* client tokens")
	c.AuthAlgorithm = r.String("SCC_CLIENT_AUTH_ALGORITHM", d.AuthAlgorithm, "token algorithm (default HS256, or RS256/ES256 by key type)")
	c.AuthDefaultExpiry = r.Duration("SCC_AUTH_DEFAULT_EXPIRY", d.AuthDefaultExpiry, "lifetime of tokens the server signs (bare numbers are ms)")
	c.AuthRequireExp = r.Bool("SCC_AUTH_REQUIRE_EXP", d.AuthRequireExp, "reject client tokens without an exp claim")
	c.AuthMaxTokenAge = r.Duration("SCC_AUTH_MAX_TOKEN_AGE", d.AuthMaxTokenAge, "reject client tokens issued (iat) longer ago than this, and tokens without iat (0: no limit)")
	c.AuthAudience = r.String("SCC_AUTH_AUDIENCE", d.AuthAudience, "aud client tokens must carry, added to tokens the server signs (empty: not checked)")
	c.AuthIssuer = r.String("SCC_AUTH_ISSUER", d.AuthIssuer, "iss client tokens must carry, added to tokens the server signs (empty: not checked)")
	c.AuthMaxTokenBytes = r.Int("SCC_AUTH_MAX_TOKEN_BYTES", d.AuthMaxTokenBytes, "longest client token accepted, in bytes")
	c.AuthMinKeyBytes = r.Int("SCC_AUTH_MIN_KEY_BYTES", d.AuthMinKeyBytes, "shortest SCC_CLIENT_AUTH_KEY accepted; startup fails below it (0: any length)")
	c.ProtocolVersion = protocol.Version(r.Int("SCC_PROTOCOL_VERSION", int(d.ProtocolVersion), "SocketCluster protocol version: 1 (#1/#2 pings) or 2 (empty frames)"))
	c.PingInterval = r.Duration("SCC_PING_INTERVAL", d.PingInterval, "server ping interval (ms or Go duration)")
	c.PingTimeout = r.Duration("SCC_PING_TIMEOUT", d.PingTimeout, "close with 4001 after this long without a pong")
	c.HandshakeTimeout = r.Duration("SCC_HANDSHAKE_TIMEOUT", d.HandshakeTimeout, "close with 4005 without a #handshake in time")
	c.AckTimeout = r.Duration("SCC_ACK_TIMEOUT", d.AckTimeout, "server-to-client invoke timeout")
	c.SocketChannelLimit = r.Int("SCC_SOCKET_CHANNEL_LIMIT", d.SocketChannelLimit, "most channels per socket")
	c.MaxChannelLength = r.Int("SCC_MAX_CHANNEL_LENGTH", d.MaxChannelLength, "longest channel name in bytes")
	c.MaxPayload = r.Int64("SCC_MAX_PAYLOAD", d.MaxPayload, "largest inbound message in bytes (close 1009 above)")
	c.AllowClientPublish = r.Bool("SCC_ALLOW_CLIENT_PUBLISH", d.AllowClientPublish, "let clients publish")
	c.Origins = r.String("SCC_ORIGINS", d.Origins, "allowed origins, host:port patterns with *")
	c.MaxConnections = r.Int("SCC_MAX_CONNECTIONS", d.MaxConnections, "most TCP connections open at once, sockets included; at the cap the longest idle one is closed, then HTTP 503 (0: derived from the descriptor limit, sockets uncapped below it)")
	c.AdminReserve = r.Int("SCC_ADMIN_RESERVE_CONNECTIONS", d.AdminReserve, "connections beyond SCC_MAX_CONNECTIONS let in for /healthz, /readyz and /metrics only")
	c.IdleTimeout = r.Duration("SCC_HTTP_IDLE_TIMEOUT", d.IdleTimeout, "an HTTP keep-alive connection idle this long is closed")
	c.MaxHandshakesPerSecond = float64(r.Int("SCC_MAX_HANDSHAKES_PER_SECOND", int(d.MaxHandshakesPerSecond), "WebSocket upgrades per second; accepts are paced to it (0: no limit)"))
	c.HandshakeBurst = r.Int("SCC_HANDSHAKE_BURST", d.HandshakeBurst, "burst for SCC_MAX_HANDSHAKES_PER_SECOND")
	c.AcceptLatencyTarget = r.Duration("SCC_ACCEPT_LATENCY_TARGET", d.AcceptLatencyTarget, "pace accepts while goroutines wait longer than this to run (scheduler latency p99; 0: off)")
	c.AcceptRateFloor = float64(r.Int("SCC_ACCEPT_RATE_FLOOR", int(d.AcceptRateFloor), "slowest accept pace SCC_ACCEPT_LATENCY_TARGET sets, per second"))
	c.AcceptRunnableMax = r.Int("SCC_ACCEPT_RUNNABLE_MAX", d.AcceptRunnableMax, "hold each accepted connection while more goroutines than this are ready to run (0: never)")
	c.AcceptHoldMax = r.Duration("SCC_ACCEPT_HOLD_MAX", d.AcceptHoldMax, "longest SCC_ACCEPT_RUNNABLE_MAX holds one accepted connection")
	c.CloserShare = r.Float("SCC_CLOSER_SHARE", d.CloserShare, "most of one CPU that closing connections whose peer vanished may take (1: no pacing)")
	c.HandshakeQueue = r.Duration("SCC_HANDSHAKE_QUEUE", d.HandshakeQueue, "longest wait in the listen queue under SCC_MAX_HANDSHAKES_PER_SECOND; sets the backlog (0: no pacing, HTTP 503 beyond the rate)")
	c.InboundRate = float64(r.Int("SCC_INBOUND_RATE", int(d.InboundRate), "inbound messages per second per socket, close 4011 beyond (0: no limit)"))
	c.InboundBurst = r.Int("SCC_INBOUND_BURST", d.InboundBurst, "burst for SCC_INBOUND_RATE")
	c.ChannelPublishRate = r.Float("SCC_CHANNEL_PUBLISH_RATE", d.ChannelPublishRate, "client publishes per second to any one channel on this frontend, ResourceLimitError beyond (0: no limit)")
	c.ChannelPublishBurst = r.Int("SCC_CHANNEL_PUBLISH_BURST", d.ChannelPublishBurst, "burst for SCC_CHANNEL_PUBLISH_RATE")
	c.ChannelRateTableSize = r.Int("SCC_CHANNEL_RATE_TABLE_SIZE", d.ChannelRateTableSize, "most channels whose publish rate is tracked at once (idle ones are forgotten first)")
	c.QueueMaxBytes = r.Int("SCC_QUEUE_MAX_BYTES", d.QueueMaxBytes, "outbound queue bound per socket in bytes (close 4010 beyond)")
	c.QueueMaxMessages = r.Int("SCC_QUEUE_MAX_MESSAGES", d.QueueMaxMessages, "outbound queue bound per socket in packets")
	c.MaxPublishBytes = r.Int("SCC_MAX_PUBLISH_BYTES", d.MaxPublishBytes, "largest data of one client publish in bytes, refused with InvalidActionError beyond (0: SCC_QUEUE_MAX_BYTES/16, at most SCC_MAX_PAYLOAD)")
	c.InboundByteRate = r.Float("SCC_INBOUND_BYTE_RATE", d.InboundByteRate, "inbound bytes per second per socket, charged before parsing, close 4011 beyond (0: no limit)")
	c.InboundByteBurst = r.Int("SCC_INBOUND_BYTE_BURST", d.InboundByteBurst, "burst for SCC_INBOUND_BYTE_RATE in bytes, at least SCC_MAX_PAYLOAD (0: one second of the rate, at least 2 x SCC_MAX_PAYLOAD)")
	c.MaxBatchPackets = r.Int("SCC_MAX_BATCH_PACKETS", d.MaxBatchPackets, "most packets in one inbound batch, close 1009 beyond (before decoding any)")
	c.MaxMessageFragments = r.Int("SCC_MAX_MESSAGE_FRAGMENTS", d.MaxMessageFragments, "most frames one inbound message may span, close 1009 beyond")
	c.ReadBudget = r.Int64("SCC_READ_BUDGET", d.ReadBudget, "bytes all sockets together may hold in messages being read beyond 4 KiB each, close 4012 beyond (at least 2 x SCC_MAX_PAYLOAD)")
	c.MaxConnectionsPerIP = r.Int("SCC_MAX_CONNECTIONS_PER_IP", d.MaxConnectionsPerIP, "most open sockets per client IP address, HTTP 503 beyond (0: no limit, for a frontend behind a proxy)")
	c.MaxSubscriptions = r.Int("SCC_MAX_SUBSCRIPTIONS", d.MaxSubscriptions, "most socket-channel subscriptions on this frontend, pending ones included")
	c.MaxSubscriptionsPerIP = r.Int("SCC_MAX_SUBSCRIPTIONS_PER_IP", d.MaxSubscriptionsPerIP, "most subscriptions of the sockets of one client IP address (0: no limit)")
	c.MaxPendingSubscribes = r.Int("SCC_MAX_PENDING_SUBSCRIBES", d.MaxPendingSubscribes, "most channels whose broker subscription is in flight; subscribes are answered when the broker is, while the socket keeps reading")
	c.SubscribeRate = r.Float("SCC_SUBSCRIBE_RATE", d.SubscribeRate, "client subscribes and unsubscribes per second on this frontend, and the subscriptions closing sockets release; beyond it a socket's reader waits for its turn (0: no limit)")
	c.SubscribeBurst = r.Int("SCC_SUBSCRIBE_BURST", d.SubscribeBurst, "burst for SCC_SUBSCRIBE_RATE")
	c.SubscribeRatePerIP = r.Float("SCC_SUBSCRIBE_RATE_PER_IP", d.SubscribeRatePerIP, "client subscribes per second of one client IP address, paced like SCC_SUBSCRIBE_RATE (0: no limit)")
	c.SubscribeBurstPerIP = r.Int("SCC_SUBSCRIBE_BURST_PER_IP", d.SubscribeBurstPerIP, "burst for SCC_SUBSCRIBE_RATE_PER_IP")
	c.PublishRefusalRate = r.Float("SCC_PUBLISH_REFUSAL_RATE", d.PublishRefusalRate, "refused publishes per second one socket gets answered before its reader waits for the next (0: no pacing)")
	c.PublishRefusalBurst = r.Int("SCC_PUBLISH_REFUSAL_BURST", d.PublishRefusalBurst, "burst for SCC_PUBLISH_REFUSAL_RATE")
	c.LimitClosesPerIP = r.Float("SCC_LIMIT_CLOSES_PER_IP", d.LimitClosesPerIP, "sockets of one client IP address closed per second for breaking a limit; beyond it the address's new connections get a bare HTTP 503 at accept (0: off)")
	c.LimitCloseBurstPerIP = r.Int("SCC_LIMIT_CLOSE_BURST_PER_IP", d.LimitCloseBurstPerIP, "burst for SCC_LIMIT_CLOSES_PER_IP")
	c.ShortConnectionsPerIP = r.Float("SCC_SHORT_CONNECTIONS_PER_IP", d.ShortConnectionsPerIP, "connections of one client IP address that may end per second within SCC_SHORT_CONNECTION_TIME of their upgrade; beyond it the address's new connections get a bare HTTP 503 at accept (0: off)")
	c.ShortConnectionBurstPerIP = r.Int("SCC_SHORT_CONNECTION_BURST_PER_IP", d.ShortConnectionBurstPerIP, "burst for SCC_SHORT_CONNECTIONS_PER_IP")
	c.ShortConnectionTime = r.Duration("SCC_SHORT_CONNECTION_TIME", d.ShortConnectionTime, "how soon after its upgrade a connection must end to count for SCC_SHORT_CONNECTIONS_PER_IP")
	c.RefusalHold = r.Duration("SCC_REFUSAL_HOLD", d.RefusalHold, "how long a connection refused for SCC_LIMIT_CLOSES_PER_IP is held unanswered before its 503, so a client that redials at once makes one attempt per hold (0: answer at once)")
	c.RefusalHoldMax = r.Int("SCC_REFUSAL_HOLD_MAX", d.RefusalHoldMax, "refused connections held at once, each a descriptor outside SCC_MAX_CONNECTIONS; beyond it refusals are answered at once (0: a quarter of the descriptors SCC_MAX_CONNECTIONS's default leaves, at most 4096)")
	c.MaxHandshakesPerIP = r.Float("SCC_MAX_HANDSHAKES_PER_IP", d.MaxHandshakesPerIP, "connections accepted per second from one client IP address, bare HTTP 503 at accept beyond (0: no limit, for a frontend behind a proxy)")
	c.HandshakeBurstPerIP = r.Int("SCC_HANDSHAKE_BURST_PER_IP", d.HandshakeBurstPerIP, "burst for SCC_MAX_HANDSHAKES_PER_IP")
	c.SourceTableSize = r.Int("SCC_SOURCE_TABLE_SIZE", d.SourceTableSize, "most client IP addresses whose per-address rates are tracked at once")
	c.ChannelDeliveryRate = r.Float("SCC_CHANNEL_DELIVERY_RATE", d.ChannelDeliveryRate, "deliveries per second client publishes to one channel may cause on this frontend, a publish costs one per local subscriber, times one plus its data's whole KiB; ResourceLimitError beyond (0: no limit)")
	c.ChannelDeliveryBurst = r.Int("SCC_CHANNEL_DELIVERY_BURST", d.ChannelDeliveryBurst, "burst for SCC_CHANNEL_DELIVERY_RATE")
	c.WriteTimeout = r.Duration("SCC_WRITE_TIMEOUT", d.WriteTimeout, "bound on each frame write")
	c.CloseTimeout = r.Duration("SCC_CLOSE_TIMEOUT", d.CloseTimeout, "bound on the WebSocket close handshake")
	c.ParkIdleSockets = r.Bool("SCC_PARK_IDLE_SOCKETS", d.ParkIdleSockets, "idle sockets hold no goroutine: a reader starts when bytes arrive (Linux, not TLS)")
	c.IdleDetach = r.Duration("SCC_IDLE_DETACH", d.IdleDetach, "a parked socket idle this long (pings and pongs aside) also drops its WebSocket state until it is used again (0: keep it)")
	c.ReadBufferSize = r.Int("SCC_READ_BUFFER_SIZE", d.ReadBufferSize, "per-socket read buffer in bytes")
	c.WriteBufferSize = r.Int("SCC_WRITE_BUFFER_SIZE", d.WriteBufferSize, "per-socket write buffer in bytes")
	c.WriterLinger = r.Duration("SCC_WRITER_LINGER", d.WriterLinger, "how long an idle socket's writer goroutine waits for more messages before it exits")
	c.WriteCoalesce = r.Duration("SCC_WRITE_COALESCE", d.WriteCoalesce, "latency budget of write coalescing: longest gap between two frames of publishes to one socket, applied only while frames wait longer than SCC_WRITE_COALESCE_WAIT (0: batching only, never held)")
	c.WriteCoalesceWait = r.Duration("SCC_WRITE_COALESCE_WAIT", d.WriteCoalesceWait, "mean wait of a frame for its writer above which the frontend is behind and coalesces, up to SCC_WRITE_COALESCE (0: always the whole gap)")
	c.WriteCoalesceBusy = r.Float("SCC_WRITE_COALESCE_BUSY", d.WriteCoalesceBusy, "share (0-1) of the process's CPUs spent writing frames from which a wait above SCC_WRITE_COALESCE_WAIT counts as behind")
	c.WriteCoalesceCPU = r.Float("SCC_WRITE_COALESCE_CPU", d.WriteCoalesceCPU, "share (0-1) of its CPUs the process must use for a wait above SCC_WRITE_COALESCE_WAIT to count as behind: below it the process can afford its frames (0: any)")
	rulesFile := r.String("SCC_CHANNELS_FILE", "", "channel rules file, YAML or JSON (.json) (empty: anyone may subscribe and publish, as in SocketCluster)")
	histSize := r.Int("SCC_HISTORY_SIZE", 0, "without SCC_CHANNELS_FILE: publications kept per channel for recovery (0: no history)")
	histTTL := r.Duration("SCC_HISTORY_TTL", 5*time.Minute, "without SCC_CHANNELS_FILE: how long a channel's publications are kept after its last one")
	c.History.MaxBytes = r.Int64("SCC_HISTORY_MAX_BYTES", d.History.MaxBytes, "standalone: memory budget of all channel histories; over it the least recently published channels lose their oldest publications (counted)")
	c.History.MetaTTL = r.Duration("SCC_HISTORY_META_TTL", d.History.MetaTTL, "standalone: how long a channel's offset and epoch outlive its last publication")
	c.RecoveryMaxPublications = r.Int("SCC_RECOVERY_MAX_PUBLICATIONS", d.RecoveryMaxPublications, "most publications one #subscribe may recover; more missed answers recovered false")
	c.RecoveryConcurrency = r.Int("SCC_RECOVERY_CONCURRENCY", d.RecoveryConcurrency, "subscribes of channels with history reading their history at once")
	c.DrainDuration = r.Duration("SCC_DRAIN_DURATION", d.DrainDuration, "window over which shutdown closes sockets with 1001")
	c.API.Key = r.String("SCC_API_KEY", d.API.Key, "server API key; setting it turns on the HTTP server API under /api/ (on SCC_ADMIN_PORT when set, else the client port)")
	c.API.MaxBodyBytes = r.Int64("SCC_API_MAX_BODY_BYTES", d.API.MaxBodyBytes, "largest server API request body in bytes (HTTP 413 above)")
	c.API.ReadTimeout = r.Duration("SCC_API_READ_TIMEOUT", d.API.ReadTimeout, "bound on reading one server API request body (HTTP 408 beyond)")
	c.API.MaxBroadcastChannels = r.Int("SCC_API_MAX_BROADCAST_CHANNELS", d.API.MaxBroadcastChannels, "most channels in one server API broadcast")
	c.API.QueryTimeout = r.Duration("SCC_API_QUERY_TIMEOUT", d.API.QueryTimeout, "how long the channels and info API methods wait for other frontends' answers")
	c.API.MaxQueryChannels = r.Int("SCC_API_MAX_QUERY_CHANNELS", d.API.MaxQueryChannels, "most channels one frontend reports to a channels API call")
	c.API.IdempotencyKeys = r.Int("SCC_IDEMPOTENCY_KEYS", d.API.IdempotencyKeys, "standalone: recent (channel, idempotency key) pairs remembered to drop retried API publishes (0: off)")
	c.API.IdempotencyTTL = r.Duration("SCC_IDEMPOTENCY_TTL", d.API.IdempotencyTTL, "standalone: how long an idempotency key is remembered")
	c.Presence.EventInterval = r.Duration("SCC_PRESENCE_EVENT_INTERVAL", d.Presence.EventInterval, "standalone: how long join/leave changes of a presence channel are gathered into one event")
	c.Presence.EventMaxMembers = r.Int("SCC_PRESENCE_EVENT_MAX_MEMBERS", d.Presence.EventMaxMembers, "standalone: most joins and leaves listed in one presence event (the rest are counted as omitted)")
	c.Presence.PageMax = r.Int("SCC_PRESENCE_PAGE_MAX", d.Presence.PageMax, "most members one presence query returns")
	c.Presence.InfoMaxBytes = r.Int("SCC_PRESENCE_INFO_MAX_BYTES", d.Presence.InfoMaxBytes, "largest connection info (the auth token's info claim, as JSON) a presence member carries; larger info is left out")
	st.shutdownTimeout = r.Duration("SCC_SHUTDOWN_TIMEOUT", 30*time.Second, "bound on the whole shutdown")
	// An explicit GOGC is the operator's choice: the tuner stays off.
	idleGC := 10
	if getenv("GOGC") != "" {
		idleGC = 0
	}
	st.idleGCPercent = r.Int("SCC_IDLE_GC_PERCENT", idleGC, "GC percent while the process allocates under 1/64 of its live heap a second, so idle connections keep close to their live memory (0: off; off by default when GOGC is set)")
	st.idleMemLimit = r.Bool("SCC_IDLE_MEMORY_LIMIT", false, "while idle, also hold the process to a soft memory limit just above the memory it uses, so free heap pages go back to the system as they free up (about 0.7 KB less RSS per idle socket at 10,000, for about a twentieth of a CPU)")
	if st.idleGCPercent < 0 {
		errs = append(errs, errors.New("SCC_IDLE_GC_PERCENT must not be negative"))
	}
	if st.idleMemLimit && st.idleGCPercent == 0 {
		errs = append(errs, errors.New("SCC_IDLE_MEMORY_LIMIT needs the idle tuner: SCC_IDLE_GC_PERCENT above 0 (and GOGC unset, or SCC_IDLE_GC_PERCENT set explicitly)"))
	}
	st.logLevel = r.LogLevel("info", "SOCKETCLUSTER_LOG_LEVEL", "SCC_LOG_LEVEL")

	if pubFile != "" {
		pem, err := os.ReadFile(pubFile)
		if err == nil {
			c.AuthPublicKey, err = parsePublicKey(pem)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_CLIENT_AUTH_PUBLIC_KEY_FILE: %w", err))
		}
	}
	if privFile != "" {
		pem, err := os.ReadFile(privFile)
		if err == nil {
			c.AuthPrivateKey, err = parsePrivateKey(pem)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_CLIENT_AUTH_PRIVATE_KEY_FILE: %w", err))
		}
	}
	if rulesFile != "" {
		set, err := frontend.LoadChannelRules(rulesFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_CHANNELS_FILE: %w", err))
		}
		c.Rules = set
	}
	if rulesFile == "" && histSize != 0 {
		set, err := rules.Default().WithDefaultHistory(histSize, histTTL)
		if err != nil {
			errs = append(errs, fmt.Errorf("SCC_HISTORY_SIZE, SCC_HISTORY_TTL: %w", err))
		}
		c.Rules = set
	}
	c.ServeAdmin = st.admin.OnClientPort
	c.API.OnClientPort = st.admin.Port == 0 || st.admin.OnClientPort
	c.Pages = map[string]http.Handler{"/demo/": demopage.Handler()}
	st.cfg = c
	st.cluster = cluster.ReadNodeConfig(r)
	st.hooks = readHooks(r)
	st.cfg.HookCallsPerSocket = r.Int("SCC_PROXY_SOCKET_CONCURRENCY", st.cfg.HookCallsPerSocket, "subscribe and publish hook calls one socket may have in flight; beyond it they are refused at once")
	if err := st.hooks.Validate(); err != nil {
		errs = append(errs, err)
	}
	st.linkTLS = tlsconf.ReadLinks(r)
	st.clientTLS = tlsconf.ReadClients(r, st.linkTLS.ReloadInterval)
	for _, tc := range []tlsconf.Config{st.linkTLS, st.clientTLS} {
		if err := tc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if st.cluster.Enabled() {
		if err := config.CheckAuthKey(st.cluster.AuthKey, st.cluster.InsecureNoAuth); err != nil {
			errs = append(errs, err)
		}
		if err := st.cluster.CheckPublicationFits(st.cfg.LargestPublication(), st.cfg.MaxChannelLength); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.Err(); err != nil {
		errs = append(errs, err)
	}
	return st, r, errors.Join(errs...)
}

func parsePublicKey(pem []byte) (any, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, nil
	}
	k, err := jwt.ParseECPublicKeyFromPEM(pem)
	if err != nil {
		return nil, errors.New("not a PEM RSA or EC public key")
	}
	return k, nil
}

func parsePrivateKey(pem []byte) (any, error) {
	if k, err := jwt.ParseRSAPrivateKeyFromPEM(pem); err == nil {
		return k, nil
	}
	k, err := jwt.ParseECPrivateKeyFromPEM(pem)
	if err != nil {
		return nil, errors.New("not a PEM RSA or EC private key")
	}
	return k, nil
}

// run starts the frontend and serves until ctx is done, then shuts down.
// A cluster broker plugs in by setting st.cfg.Broker before New.
func run(ctx context.Context, args []string, getenv config.Getenv, stderr io.Writer) error {
	st, r, loadErr := load(getenv)
	if err := config.ParseArgs("scc-frontend", "scc-frontend serves SocketCluster clients.", args, r, stderr); err != nil {
		return err
	}
	if loadErr != nil {
		return loadErr
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: st.logLevel}))
	st.cfg.Logger = logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st.cfg.Registry = reg
	hc, herr := startHooks(st.hooks, reg, logger)
	if herr != nil {
		return herr
	}
	if hc != nil {
		defer hc.Close()
	}
	if st.clientTLS.Enabled() {
		st.clientTLS.Logger = logger
		store, err := tlsconf.New(st.clientTLS)
		if err != nil {
			return err
		}
		st.cfg.TLS = store.ServerConfig()
	}
	if st.linkTLS.Enabled() {
		if !st.cluster.Enabled() {
			logger.Warn("SCC_TLS_* set but there is no cluster (no SCC_STATE_SERVER_HOST or SCC_GOSSIP_SEEDS): no links to secure")
		}
		st.linkTLS.Logger = logger
		store, err := tlsconf.New(st.linkTLS)
		if err != nil {
			return err
		}
		st.cluster.Link.TLS = store.ClientConfig
	}
	wireHooks(&st.cfg, hc)
	var srv *frontend.Server
	if st.cluster.Enabled() {
		// Cluster mode: publishes route through the brokers the state
		// server (or gossip) names; the frontend owns the node through
		// its Broker and closes it on shutdown.
		if st.cluster.InsecureNoAuth {
			logger.Warn(config.InsecureAuthWarning)
		}
		st.cluster.Logger = logger
		st.cluster.Registry = reg
		st.cluster.Stats = func() protocol.Stats {
			if srv == nil {
				return protocol.Stats{}
			}
			fs := srv.Stats()
			return protocol.Stats{Connections: fs.Connections, Subscriptions: fs.Subscriptions, MessagesIn: fs.MessagesIn, MessagesOut: fs.MessagesOut}
		}
		node, err := cluster.NewNode(st.cluster)
		if err != nil {
			return err
		}
		st.cfg.Broker = node.Broker()
		logger.Info("cluster mode", "state", st.cluster.StateAddr, "gossip_port", st.cluster.GossipPort)
	}
	srv, err := frontend.New(st.cfg)
	if err != nil {
		return err
	}
	if hc.Enabled(hooks.RPC) {
		srv.HandleRPCFallback(rpcFallback(hc))
	}
	logger.Info("channel rules", "file", getenv("SCC_CHANNELS_FILE"), "digest", srv.RulesDigest())
	if st.cfg.MaxHandshakesPerSecond > 0 && st.cfg.HandshakeQueue > 0 && st.admin.Port == 0 {
		logger.Warn("accepts on the main port are paced by SCC_MAX_HANDSHAKES_PER_SECOND: during a reconnect storm, /healthz and /readyz wait in the listen queue too; set SCC_ADMIN_PORT to serve them apart")
	}
	if st.admin.Port == 0 && !st.admin.OnClientPort {
		logger.Warn("SCC_ADMIN_PORT is 0 and SCC_ADMIN_ON_CLIENT_PORT is off: /metrics is served nowhere")
	}
	ln, err := frontend.Listen(context.Background(), config.HostPort(st.host, st.port))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	adminHost := st.admin.Host
	if adminHost == "" {
		adminHost = st.host
	}
	admin, err := adminport.Start(adminHost, st.admin.Port, st.admin.Handler(srv.AdminHandler()), adminport.Limits{
		Max: 4 * max(1, st.cfg.AdminReserve), IdleTimeout: st.cfg.IdleTimeout,
		Metrics: connlimit.NewMetrics(reg, "frontend_admin"), Log: logger,
	})
	if err != nil {
		ln.Close()
		return err
	}
	if admin != nil {
		logger.Info("admin port serving", "admin", admin.Addr().String())
	}
	gcCtx, stopGC := context.WithCancel(context.Background())
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		gctune.Run(gcCtx, gctune.Config{IdlePercent: st.idleGCPercent, IdleLimit: st.idleMemLimit})
	}()
	defer func() { stopGC(); <-gcDone }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), st.shutdownTimeout)
	defer cancel()
	aerr := admin.Shutdown(sctx)
	err = srv.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-errc
	}
	return errors.Join(serveErr, err, aerr)
}
