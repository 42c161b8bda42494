package frontend

import (
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/chanrate"
	"github.com/sccgo/sccgo/internal/connlimit"
	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// Config configures a Server. DefaultConfig is the one source of defaults;
// each field names the environment variable cmd/scc-frontend reads it from.
type Config struct {
	// Path is the WebSocket endpoint; other paths get HTTP 400 (except
	// /healthz, /readyz, Pages, and /metrics with ServeAdmin). Env
	// SOCKETCLUSTER_PATH. Default "/socketcluster/".
	Path string
	// ServeAdmin serves /metrics from Handler, on the client port, as
	// well as from AdminHandler. Clients need none of it, so by default
	// metrics are only on the admin port (SCC_ADMIN_PORT); /healthz and
	// /readyz, which reveal nothing, are on both. Env
	// SCC_ADMIN_ON_CLIENT_PORT. Default false.
	ServeAdmin bool
	// TLS, if set, makes Serve serve wss:// (and HTTPS) with this
	// configuration (tlsconf.Store.ServerConfig, which reloads
	// SCC_CLIENT_TLS_CERT_FILE and SCC_CLIENT_TLS_KEY_FILE on change).
	// The TLS handshake happens after accept pacing and is bounded by
	// HandshakeTimeout. Default nil: ws://, TLS left to an ingress.
	TLS *tls.Config

	// ProtocolVersion selects the ping/pong frames (1: "#1"/"#2", 2: empty
	// frames). Env SCC_PROTOCOL_VERSION. Default 2.
	ProtocolVersion protocol.Version
	// PingInterval is how often the server pings each socket, from the
	// moment it opens. It must be below PingTimeout. Env SCC_PING_INTERVAL.
	// Default 8s.
	PingInterval time.Duration
	// PingTimeout closes a socket with 4001 when nothing (pong or any
	// message) arrived for this long; it is also advertised in the
	// handshake. Env SCC_PING_TIMEOUT. Default 30s.
	PingTimeout time.Duration
	// HandshakeTimeout closes a socket with 4005 when no #handshake arrived
	// in time. Env SCC_HANDSHAKE_TIMEOUT. Default 10s.
	HandshakeTimeout time.Duration
	// AckTimeout bounds server-to-client invokes (TimeoutError) and the wait
	// for a broker subscription. Env SCC_ACK_TIMEOUT. Default 10s.
	AckTimeout time.Duration

	// SocketChannelLimit is the most channels one socket may subscribe to.
	// Env SCC_SOCKET_CHANNEL_LIMIT. Default 1000.
	SocketChannelLimit int
	// MaxChannelLength is the longest channel name accepted, in bytes. Env
	// SCC_MAX_CHANNEL_LENGTH. Default 256.
	MaxChannelLength int
	// MaxPayload is the largest inbound message, in bytes; larger ones close
	// the socket with 1009. Env SCC_MAX_PAYLOAD. Default 1 MiB.
	MaxPayload int64
	// AllowClientPublish lets clients #publish. Env SCC_ALLOW_CLIENT_PUBLISH.
	// Default true.
	AllowClientPublish bool
	// Origins is SocketCluster's origin allow-list: space or comma
	// separated host:port patterns where either part may be "*". "*:*"
	// allows every origin. Requests without an Origin header (non-browser
	// clients) are allowed. Env SCC_ORIGINS. Default "*:*".
	Origins string

	// MaxConnections caps open sockets; upgrades beyond it get HTTP 503.
	// Serve also caps every TCP connection it accepts (idle keep-alive
	// and silent ones included) at this number: at the cap the longest
	// idle connection is closed to make room, then AdminReserve more are
	// let in for /healthz, /readyz and /metrics only, and the rest get a
	// bare HTTP 503. 0 derives the TCP cap from the descriptor limit
	// (RLIMIT_NOFILE less a tenth, at least 64, and AdminReserve) and
	// leaves sockets uncapped below it. Env SCC_MAX_CONNECTIONS. Default 0.
	MaxConnections int
	// AdminReserve is how many connections beyond MaxConnections Serve
	// accepts for the admin paths only, so probes and scrapes are answered
	// by a full server. Env SCC_ADMIN_RESERVE_CONNECTIONS. Default 16.
	AdminReserve int
	// IdleTimeout closes an HTTP keep-alive connection that is idle
	// between requests for this long (a connection that never sends a
	// request is closed after HandshakeTimeout). Env SCC_HTTP_IDLE_TIMEOUT.
	// Default 30s.
	IdleTimeout time.Duration
	// MaxHandshakesPerSecond caps WebSocket upgrades per second (token
	// bucket, burst HandshakeBurst). 0 means no limit. Env
	// SCC_MAX_HANDSHAKES_PER_SECOND. Default 0.
	//
	// Serve also paces its listener's accepts to this rate when
	// HandshakeQueue is positive: connections beyond the rate wait,
	// unaccepted and free, in the kernel's listen queue. Upgrades that
	// still exceed the rate (several on one keep-alive connection, or a
	// Handler mounted on another server) get HTTP 503 with Retry-After.
	MaxHandshakesPerSecond float64
	// HandshakeBurst is the bucket size for MaxHandshakesPerSecond. Env
	// SCC_HANDSHAKE_BURST. Default 100.
	HandshakeBurst int
	// AcceptLatencyTarget paces Serve's accepts while the process's
	// goroutines wait longer than this to run (the p99 of the Go
	// scheduler's latency over each quarter second): the pace halves
	// after each quarter over the target, grows by a tenth after each
	// under half of it, and is lifted when far above demand
	// (acceptpace.go). The excess waits in
	// the listen queue as under MaxHandshakesPerSecond, which still caps
	// the pace. It protects the sockets already open from a churn of new
	// ones, and slows reconnects while the process is loaded. 0 turns it
	// off. Needs HandshakeQueue. Env SCC_ACCEPT_LATENCY_TARGET. Default 0.
	AcceptLatencyTarget time.Duration
	// AcceptRunnableMax holds each accepted connection while more than
	// this many goroutines are ready to run, at most AcceptHoldMax, so
	// that the sockets already open are served ahead of a burst of new
	// ones (quietaccept.go). 0 turns it off. Env
	// SCC_ACCEPT_RUNNABLE_MAX. Default 0.
	AcceptRunnableMax int
	// AcceptHoldMax bounds how long AcceptRunnableMax holds one accepted
	// connection. Env SCC_ACCEPT_HOLD_MAX. Default 100ms.
	AcceptHoldMax time.Duration
	// AcceptRateFloor is the slowest pace AcceptLatencyTarget sets, in
	// accepts per second. Env SCC_ACCEPT_RATE_FLOOR. Default 50.
	AcceptRateFloor float64
	// CloserShare is the most of one CPU that closing connections whose
	// peer vanished (EOF or reset, no close frame) may take. They are closed
	// on one goroutine that rests between slices of work, so ten thousand
	// clients dropping at once do not starve the sockets still in use. At
	// 0.25, about 6,000 closes a second. 1 (or 0) closes them as fast as
	// it can. Env SCC_CLOSER_SHARE. Default 0.25.
	CloserShare float64
	// HandshakeQueue is how long a connection may wait in the listen queue
	// for its turn under MaxHandshakesPerSecond: Serve sets the listen
	// backlog to rate × HandshakeQueue (at least HandshakeBurst; Linux caps
	// it at net.core.somaxconn). When the queue is full the kernel drops
	// new SYNs and the clients' TCP retries them with exponential backoff,
	// so a reconnect storm's excess costs the frontend no CPU. 0 turns
	// pacing off: every connection is accepted and the excess gets 503.
	// Env SCC_HANDSHAKE_QUEUE. Default 5s.
	HandshakeQueue time.Duration
	// InboundRate caps inbound messages per second per socket (token
	// bucket, burst InboundBurst); beyond it the socket is closed with
	// 4011. Every frame costs a token as its header arrives, before it is
	// parsed (pongs, other control frames and fragments included), and
	// every packet of a batch beyond its first costs one more. 0 means no limit. Env SCC_INBOUND_RATE. Default 10000: enough
	// for a busy publisher, low enough that a flood is cut off.
	InboundRate float64
	// InboundBurst is the bucket size for InboundRate. Env
	// SCC_INBOUND_BURST. Default 20000.
	InboundBurst int

	// ChannelPublishRate caps client publishes per second to any one
	// channel on this frontend (token bucket, burst ChannelPublishBurst);
	// publishes beyond it are refused with a ResourceLimitError and
	// counted. Every publish costs one delivery per subscriber, so this
	// bounds what one flooded channel costs the cluster. 0 means no limit.
	// ChannelPublishRule, then a channel rule's publish_rate (Rules), can
	// set the rate per channel. Env SCC_CHANNEL_PUBLISH_RATE. Default 1000.
	ChannelPublishRate float64
	// ChannelPublishBurst is the bucket size for ChannelPublishRate. Env
	// SCC_CHANNEL_PUBLISH_BURST. Default 2000.
	ChannelPublishBurst int
	// ChannelDeliveryRate caps the deliveries per second that client
	// publishes to any one channel may cause on this frontend (token
	// bucket, burst ChannelDeliveryBurst). A publish costs one unit per
	// local subscriber of the channel (at least one), times one plus its
	// data's size in KiB; beyond the rate it is refused with a
	// ResourceLimitError and counted. It bounds what one channel's readers
	// and one publisher's large messages together cost the frontend, which
	// the publish rate alone does not: 1000 publishes a second to 200
	// readers are 200,000 writes. The application's own publishes (the
	// server API, Server.Publish) are not charged, and subscribers on other
	// frontends are not counted. 0 means no limit. Env
	// SCC_CHANNEL_DELIVERY_RATE. Default 10000: one flooded channel stays
	// below half of WriteCoalesceRate, from which a busy CPU makes the
	// frontend coalesce writes to busy sockets, so it does not delay the
	// deliveries of other channels' readers (measured: at 50000 it did).
	ChannelDeliveryRate float64
	// ChannelDeliveryBurst is the bucket size for ChannelDeliveryRate; a
	// publish that costs more takes a whole full bucket. Env
	// SCC_CHANNEL_DELIVERY_BURST. Default 20000.
	ChannelDeliveryBurst int
	// ChannelRateTableSize bounds the channels whose publish rate is
	// tracked at once; beyond it idle channels are forgotten first. Env
	// SCC_CHANNEL_RATE_TABLE_SIZE. Default 65536.
	ChannelRateTableSize int
	// ChannelPublishRule, if set, gives a channel its own publish rule
	// (ok false: ChannelPublishRate and ChannelPublishBurst). It is called
	// on every client publish and must be cheap and safe for concurrent
	// use.
	ChannelPublishRule func(channel string) (r chanrate.Rule, ok bool)

	// QueueMaxBytes bounds each socket's outbound queue in bytes; overflow
	// closes it with 4010. Env SCC_QUEUE_MAX_BYTES. Default 1 MiB.
	QueueMaxBytes int
	// QueueMaxMessages bounds each socket's outbound queue in packets. Env
	// SCC_QUEUE_MAX_MESSAGES. Default 4096.
	QueueMaxMessages int
	// WriteTimeout bounds each frame write; a socket that cannot take a
	// frame in time is closed. Env SCC_WRITE_TIMEOUT. Default 10s.
	WriteTimeout time.Duration
	// CloseTimeout bounds the WebSocket close handshake before the TCP
	// connection is dropped. Env SCC_CLOSE_TIMEOUT. Default 2s.
	CloseTimeout time.Duration
	// ParkIdleSockets lets a socket with nothing to read hold no
	// goroutine: its descriptor is watched by one epoll instance and a
	// reader starts when bytes arrive, instead of a reader goroutine
	// (and its stack) per idle socket. Linux only, and not for TLS
	// sockets, which keep a reader goroutine each. Env
	// SCC_PARK_IDLE_SOCKETS. Default true.
	ParkIdleSockets bool
	// IdleDetach is how long a parked socket goes without a message other
	// than a ping or pong before it also drops its WebSocket state (about
	// 1.4 KiB of coder/websocket's per-connection structs); pings and
	// pongs are then written and read raw, and the state is rebuilt when
	// anything else is read or written. 0 keeps it. Only parked sockets
	// detach. Env SCC_IDLE_DETACH. Default 10s.
	IdleDetach time.Duration
	// ReadBufferSize is the per-socket bufio read buffer in bytes; message
	// bodies larger than it are read around it. Env SCC_READ_BUFFER_SIZE.
	// Default 256.
	ReadBufferSize int
	// WriteBufferSize is the per-socket bufio write buffer in bytes. Data
	// frames are corked and leave in one write whatever their size, so it
	// only matters for the library's own control frames (a close frame
	// larger than it leaves in two writes). Env SCC_WRITE_BUFFER_SIZE.
	// Default 128.
	WriteBufferSize int
	// WriterLinger is how long a socket's writer goroutine waits for more
	// messages after draining its queue before it exits: a busy socket
	// keeps its writer instead of starting (and growing the stack of) a
	// new goroutine per burst, and an idle socket holds none once it has
	// passed. Env SCC_WRITER_LINGER. Default 20ms; 0 exits at once.
	WriterLinger time.Duration
	// WriteCoalesce is the latency budget of write coalescing: the
	// longest gap enforced between two frames of publishes to one socket.
	// Deliveries for a socket that was written to less than the gap in
	// force ago wait out the rest of it and leave together in one frame,
	// trading that much latency, only on busy sockets, for far fewer
	// write syscalls on the server and read syscalls on the client.
	// Replies are never held, and a socket that receives less often than
	// once per gap sees no delay. The gap in force follows
	// WriteCoalesceWait: 0 while the frontend keeps up. Env
	// SCC_WRITE_COALESCE. Default 25ms; 0 writes at once (batching only:
	// whatever is queued when the writer runs leaves in one frame).
	WriteCoalesce time.Duration
	// WriteCoalesceWait is how long, on average, a frame may wait for its
	// writer to run (from when its oldest message was queued, or its gap
	// ended, to the write) before the frontend counts itself behind. While
	// it is behind (this, WriteCoalesceBusy and WriteCoalesceCPU, for
	// 100ms of samples in a row, then two in a row once frames are held)
	// the gap grows in proportion to the excess wait, up to
	// WriteCoalesce; once the wait is below half of it (or the frames are
	// cheap, or the process under half its CPU share) for a calm period
	// (0.5s at first, shorter after each shrink that holds) it shrinks by
	// an eighth (internal/coalesce). The wait is what clients see
	// of a frontend that cannot afford the frames it is asked for, whatever
	// the message rate. Measured every 25ms. Env SCC_WRITE_COALESCE_WAIT.
	// Default 10ms: a frontend near its CPU's end that still keeps up with
	// one frame per delivery has its frames wait a few milliseconds, and
	// holding them then adds more than it saves. 0 always applies all of
	// WriteCoalesce.
	WriteCoalesceWait time.Duration
	// WriteCoalesceBusy is the share (0-1) of the CPUs the process may use
	// (GOMAXPROCS, or the cgroup's CPU limit when lower) that writing
	// frames must take for a wait above
	// WriteCoalesceWait to count as behind: then the frames are what the
	// frontend cannot afford, and fewer, larger ones shorten the wait. A
	// wait with cheap frames (a fan-out burst, a neighbour on a shared
	// CPU) is not shortened by holding frames. Env SCC_WRITE_COALESCE_BUSY.
	// Default 0.2.
	WriteCoalesceBusy float64
	// WriteCoalesceCPU is the share (0-1) of the CPUs the process may use
	// (GOMAXPROCS, or the cgroup's CPU limit when lower) that the whole
	// process must use for a wait above
	// WriteCoalesceWait to count as behind. Below it the process can
	// afford its frames: waits then come from a fan-out burst's writers
	// queued behind each other or from a neighbour on a shared CPU, and
	// holding frames would add its gap to every message without
	// shortening them. Env SCC_WRITE_COALESCE_CPU. Default 0.7; 0: any.
	WriteCoalesceCPU float64

	// MaxPublishBytes is the largest data of one client #publish, in
	// bytes. A larger one is refused with InvalidActionError and the
	// socket stays open. It is what keeps one client's burst of publishes
	// from overflowing other clients' queues, so QueueMaxBytes must hold
	// at least 8 of them. 0 derives it: QueueMaxBytes/16, at most
	// MaxPayload (64 KiB with the defaults). Env SCC_MAX_PUBLISH_BYTES.
	// Default 0 (derived).
	MaxPublishBytes int
	// InboundByteRate caps the bytes per second one socket may send
	// (token bucket, burst InboundByteBurst), charged as they arrive from
	// the network, before they are parsed; beyond it the socket is closed
	// with 4011. 0 means no limit. Env SCC_INBOUND_BYTE_RATE. Default
	// 2 MiB/s.
	InboundByteRate float64
	// InboundByteBurst is the bucket size for InboundByteRate, in bytes.
	// It must be at least MaxPayload, so that a largest message can pass.
	// 0 derives it: one second of InboundByteRate, and at least
	// 2 × MaxPayload (2 MiB with the defaults). Env SCC_INBOUND_BYTE_BURST.
	// Default 0 (derived).
	InboundByteBurst int
	// MaxBatchPackets is the most packets one inbound message (a batch)
	// may hold. A longer batch closes the socket with 1009 before any of
	// its packets is decoded. Env SCC_MAX_BATCH_PACKETS. Default 1000.
	MaxBatchPackets int
	// MaxMessageFragments is the most frames one inbound message may
	// span; one more closes the socket with 1009. Env
	// SCC_MAX_MESSAGE_FRAGMENTS. Default 128.
	MaxMessageFragments int
	// ReadBudget bounds the bytes all sockets together may hold in
	// messages being read (partly received messages, and the buffers that
	// grow to hold them) beyond the first 4 KiB of each, so small
	// messages never depend on it. A socket whose
	// message would take more is closed with 4012. It must be at least
	// 2 × MaxPayload (a buffer that grows is copied, and both count
	// meanwhile). Env SCC_READ_BUDGET. Default 64 MiB.
	ReadBudget int64
	// MaxConnectionsPerIP caps the open sockets of one client IP address;
	// upgrades beyond it get HTTP 503. 0 means no limit, which suits a
	// frontend behind a proxy or load balancer that does not keep client
	// addresses (every client then shares its address). Env
	// SCC_MAX_CONNECTIONS_PER_IP. Default 0.
	MaxConnectionsPerIP int
	// MaxSubscriptions caps socket-channel subscriptions on this frontend,
	// pending ones included; beyond it #subscribe fails with BrokerError.
	// Env SCC_MAX_SUBSCRIPTIONS. Default 1000000.
	MaxSubscriptions int
	// MaxSubscriptionsPerIP caps the subscriptions of the sockets of one
	// client IP address. 0 means no limit (see MaxConnectionsPerIP). Env
	// SCC_MAX_SUBSCRIPTIONS_PER_IP. Default 0.
	MaxSubscriptionsPerIP int
	// MaxPendingSubscribes caps the channels whose broker subscription is
	// in flight on this frontend. A #subscribe that waits for its broker
	// is acknowledged when the broker answers, while the socket's reader
	// goes on reading (pongs included); a socket's pending subscribes
	// count against SocketChannelLimit. Beyond the cap #subscribe fails
	// with BrokerError. Env SCC_MAX_PENDING_SUBSCRIBES. Default 10000.
	MaxPendingSubscribes int
	// SubscribeRate caps the client #subscribe requests this frontend
	// takes per second, all sockets together (token bucket, burst
	// SubscribeBurst), so a subscription storm cannot take the CPU that
	// delivery needs. #unsubscribe requests take from the same bucket,
	// and so do the subscriptions a closing socket releases (without
	// waiting, down to -SubscribeBurst): a storm of sockets that
	// subscribe and leave gets the rate for both halves together. A
	// subscribe beyond it is not refused: its socket's
	// reader waits for its turn (the client's later packets wait with it,
	// and the socket is not closed for the silence). 0 means no limit. Env
	// SCC_SUBSCRIBE_RATE. Default 5000: about what one core shared with a
	// broker subscribes and unsubscribes while delivering, measured. A
	// reconnect storm of N clients with C channels each is resubscribed
	// in about N×C/rate seconds; a client whose subscribe waits longer
	// than its own ack timeout (10s in socketcluster-client) sees it fail,
	// so raise the rate on a frontend with cores to spare.
	SubscribeRate float64
	// SubscribeBurst is the bucket size for SubscribeRate. Env
	// SCC_SUBSCRIBE_BURST. Default 10000.
	SubscribeBurst int
	// SubscribeRatePerIP caps the #subscribe requests per second of the
	// sockets of one client address (token bucket, burst
	// SubscribeBurstPerIP), paced like SubscribeRate. 0 means no limit.
	// Env SCC_SUBSCRIBE_RATE_PER_IP. Default 0.
	SubscribeRatePerIP float64
	// SubscribeBurstPerIP is the bucket size for SubscribeRatePerIP. Env
	// SCC_SUBSCRIBE_BURST_PER_IP. Default 2000.
	SubscribeBurstPerIP int
	// PublishRefusalRate is how many refused #publish requests one socket
	// gets answered per second before its reader waits for the next
	// (token bucket, burst PublishRefusalBurst). Each refusal is still
	// answered; a client that keeps publishing into a full channel, or
	// somewhere it may not, then costs the frontend the rate, not its
	// inbound rate, and its later packets wait unread (the socket counts
	// as alive meanwhile). Env SCC_PUBLISH_REFUSAL_RATE. Default 100; 0:
	// no pacing.
	PublishRefusalRate float64
	// PublishRefusalBurst is the bucket size for PublishRefusalRate. Env
	// SCC_PUBLISH_REFUSAL_BURST. Default 100.
	PublishRefusalBurst int
	// LimitClosesPerIP is how many of its sockets a client address may
	// have closed per second for breaking an inbound limit or the
	// protocol (token bucket, burst LimitCloseBurstPerIP; the close
	// reasons are listed in docs/operations.md). While the address is
	// over it, Serve refuses its new connections right after the TCP
	// accept with a bare HTTP 503: a client that breaks limits and dials
	// again at once would otherwise cost a handshake per attempt. Clients
	// that break no limit are never refused by it, however fast they
	// connect. Behind a proxy that does not keep client addresses, a
	// client that keeps breaking limits slows new connections through the
	// proxy while it does; 0 turns it off. Env SCC_LIMIT_CLOSES_PER_IP.
	// Default 1.
	LimitClosesPerIP float64
	// LimitCloseBurstPerIP is the bucket size for LimitClosesPerIP. Env
	// SCC_LIMIT_CLOSE_BURST_PER_IP. Default 10.
	LimitCloseBurstPerIP int
	// ShortConnectionsPerIP is how many of its connections a client
	// address may have end per second within ShortConnectionTime of
	// their upgrade (token bucket, burst ShortConnectionBurstPerIP): a
	// client that leaves, times out its handshake or is refused by it,
	// not the server's own closes. Every connection costs the frontend an
	// accept, an upgrade, a handshake and a teardown, and a churn of them
	// from a few hundred sockets delays the messages of every other
	// client. With more than two unpaid, the address's upgrades take
	// turns at this rate (waiting, unread, no later than the pacing would
	// end by itself); in debt, or with its turns handed out further ahead
	// than ShortConnectionTime, its new connections are refused at accept
	// like LimitClosesPerIP's. Clients that connect and stay are never
	// paced, so a reconnect storm is not, however fast it comes. Clients
	// that share an address (a NAT, a carrier-grade NAT, a proxy) and
	// reconnect often make short connections legitimately, so it is off
	// by default: set it (2 suits) where clients connect directly and an
	// address is one client or a few. 0 turns it off. Env
	// SCC_SHORT_CONNECTIONS_PER_IP. Default 0.
	ShortConnectionsPerIP float64
	// ShortConnectionBurstPerIP is the bucket size for
	// ShortConnectionsPerIP. Env SCC_SHORT_CONNECTION_BURST_PER_IP.
	// Default 20.
	ShortConnectionBurstPerIP int
	// ShortConnectionTime is how soon after its upgrade a connection must
	// end to count for ShortConnectionsPerIP. Env
	// SCC_SHORT_CONNECTION_TIME. Default 5s.
	ShortConnectionTime time.Duration
	// RefusalHold is how long a connection refused for LimitClosesPerIP is
	// held, unanswered and unread, before it gets its HTTP 503 and is
	// closed: a client that redials once answered then makes one attempt
	// per hold instead of hundreds a second, each of which cost the
	// frontend an accept, a refusal and a close. Env SCC_REFUSAL_HOLD.
	// Default 5s (the 503's Retry-After); 0 answers at once.
	RefusalHold time.Duration
	// RefusalHoldMax bounds the refused connections held at once (each a
	// descriptor and a timer, outside MaxConnections); beyond it a
	// refusal is answered at once. Env SCC_REFUSAL_HOLD_MAX. Default 0:
	// a quarter of the descriptors MaxConnections's default leaves for
	// everything else (a tenth of RLIMIT_NOFILE, at least 64), at most
	// 4096.
	RefusalHoldMax int
	// MaxHandshakesPerIP caps the connections Serve accepts per second
	// from one client address (token bucket, burst HandshakeBurstPerIP);
	// beyond it they are refused right after the accept with a bare
	// HTTP 503. 0 means no limit, which suits a frontend behind a proxy or
	// an Ingress (every client then shares its address). Env
	// SCC_MAX_HANDSHAKES_PER_IP. Default 0.
	MaxHandshakesPerIP float64
	// HandshakeBurstPerIP is the bucket size for MaxHandshakesPerIP. Env
	// SCC_HANDSHAKE_BURST_PER_IP. Default 20.
	HandshakeBurstPerIP int
	// SourceTableSize bounds the client addresses whose per-address rates
	// (LimitClosesPerIP, MaxHandshakesPerIP, SubscribeRatePerIP) are
	// tracked at once; beyond it addresses with nothing to remember are
	// forgotten first. Env SCC_SOURCE_TABLE_SIZE. Default 65536.
	SourceTableSize int

	// History bounds the standalone frontend's channel history (its
	// in-process broker keeps it; in a cluster the brokers do): memory
	// budget SCC_HISTORY_MAX_BYTES (default 256 MiB), offsets and epochs
	// kept SCC_HISTORY_META_TTL after a channel's last publication
	// (default 24h). Default history.DefaultConfig().
	History history.Config
	// RecoveryMaxPublications is the most publications one #subscribe
	// may recover; a client that missed more gets recovered false.
	// Env SCC_RECOVERY_MAX_PUBLICATIONS. Default 1000.
	RecoveryMaxPublications int
	// RecoveryConcurrency caps the #subscribes of channels with history
	// that are reading their history at once on this frontend, so a
	// storm of recovering subscribers takes turns with live delivery.
	// Env SCC_RECOVERY_CONCURRENCY. Default 64.
	RecoveryConcurrency int

	// DrainDuration spreads the 1001 closes of Shutdown over this window so
	// clients do not reconnect elsewhere all at once. Env
	// SCC_DRAIN_DURATION. Default 2s.
	DrainDuration time.Duration

	// AuthKey is the HMAC key for HS256/384/512 tokens (SocketCluster's
	// authKey). When neither it nor AuthPublicKey is set, New generates a
	// random key, as SocketCluster does. Env SCC_CLIENT_AUTH_KEY.
	AuthKey []byte
	// AuthPublicKey verifies RS*/PS*/ES* tokens (*rsa.PublicKey or
	// *ecdsa.PublicKey). Env SCC_CLIENT_AUTH_PUBLIC_KEY_FILE (PEM).
	AuthPublicKey crypto.PublicKey
	// AuthPrivateKey signs tokens when AuthPublicKey is set; without it
	// SetAuthToken fails. Env SCC_CLIENT_AUTH_PRIVATE_KEY_FILE (PEM).
	AuthPrivateKey crypto.PrivateKey
	// AuthAlgorithm is the signing algorithm and the only one accepted
	// when set. Default "": HS256 (verify HS256/384/512) with AuthKey,
	// RS256/ES256 by key type with a public key (verify that family).
	// Env SCC_CLIENT_AUTH_ALGORITHM.
	AuthAlgorithm string
	// AuthDefaultExpiry is the lifetime of tokens signed by SetAuthToken
	// when the claims have no exp. Env SCC_AUTH_DEFAULT_EXPIRY. Default
	// 86400s.
	AuthDefaultExpiry time.Duration
	// AuthRequireExp rejects client tokens without an exp claim, which
	// would otherwise stay valid forever. Env SCC_AUTH_REQUIRE_EXP.
	// Default false (SocketCluster accepts them).
	AuthRequireExp bool
	// AuthMaxTokenAge rejects client tokens whose iat is older than this
	// (and tokens without iat), whatever their exp says; a socket whose
	// token passes the age while connected is deauthenticated. Env
	// SCC_AUTH_MAX_TOKEN_AGE. Default 0: no limit.
	AuthMaxTokenAge time.Duration
	// AuthAudience, when set, is the aud a client token must carry; the
	// server adds it to tokens it signs. Env SCC_AUTH_AUDIENCE. Default ""
	// (aud not checked).
	AuthAudience string
	// AuthIssuer, when set, is the iss a client token must carry; the
	// server adds it to tokens it signs. Env SCC_AUTH_ISSUER. Default ""
	// (iss not checked).
	AuthIssuer string
	// AuthMaxTokenBytes is the longest client token accepted, in bytes;
	// longer ones are rejected before they are parsed. Env
	// SCC_AUTH_MAX_TOKEN_BYTES. Default 8192.
	AuthMaxTokenBytes int
	// AuthMinKeyBytes is the shortest AuthKey accepted: New refuses a
	// shorter HMAC key, which could be brute-forced from one token. 0
	// accepts any length. Env SCC_AUTH_MIN_KEY_BYTES. Default 32.
	AuthMinKeyBytes int

	// Rules are the channel rules that client subscribes and publishes
	// must pass (docs/channels.md; load them with LoadChannelRules). nil
	// means SocketCluster's default: anyone may subscribe and publish,
	// except to reserved "#" channels. Env SCC_CHANNELS_FILE.
	Rules *rules.Set

	// ConnectHook, if set, decides each socket's first #handshake
	// (docs/hooks.md): it may reject it with an error and close code, or
	// accept it and give the socket auth token claims (signed and sent
	// with #setAuthToken), a token of its own, and channels to subscribe
	// the socket to. The handshake is answered once it has decided; it
	// runs off the socket's reader, bounded by HandshakeTimeout. Env
	// SCC_PROXY_CONNECT_URL (scc-frontend).
	ConnectHook ConnectHook
	// SubscribeHook, if set, decides #subscribe to channels whose rule
	// says hook; without it such subscribes are refused. Env
	// SCC_PROXY_SUBSCRIBE_URL (scc-frontend).
	SubscribeHook SubscribeHook
	// PublishHook, if set, decides, and may replace the data of, client
	// publishes to channels whose rule says hook; without it they are
	// refused. Env SCC_PROXY_PUBLISH_URL (scc-frontend).
	PublishHook PublishHook
	// HookCallsPerSocket bounds the subscribe and publish hook calls one
	// socket may have in flight; beyond it a subscribe or publish is
	// refused at once with a BackendError, so a client cannot queue
	// unbounded work. Env SCC_PROXY_SOCKET_CONCURRENCY. Default 16.
	HookCallsPerSocket int

	// Broker routes publishes; nil means a new LocalBroker (standalone).
	Broker Broker
	// Pages maps path prefixes (for example "/demo/") to extra HTTP
	// handlers served on the main port, such as the demo page.
	Pages map[string]http.Handler
	// Registry receives the metrics; nil means a private registry.
	Registry *prometheus.Registry
	// Logger receives logs; nil means discard.
	Logger *slog.Logger
	// OnConnect, if set, is called on the socket's reader goroutine once
	// its handshake succeeded, before any further packet is processed.
	// With a ConnectHook it is called on the hook's goroutine instead,
	// right after the handshake answer was queued.
	OnConnect func(*Socket)
	// OnDisconnect, if set, is called once a socket has closed, with the
	// close code sent or received.
	OnDisconnect func(s *Socket, code int)

	// API configures the server API (see APIConfig; off by default).
	API APIConfig
	// Presence configures presence (see PresenceConfig, docs/presence.md).
	Presence PresenceConfig
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Path:                      "/socketcluster/",
		ServeAdmin:                false,
		ProtocolVersion:           protocol.V2,
		PingInterval:              8 * time.Second,
		PingTimeout:               30 * time.Second,
		HandshakeTimeout:          10 * time.Second,
		AckTimeout:                10 * time.Second,
		SocketChannelLimit:        1000,
		MaxChannelLength:          256,
		MaxPayload:                1 << 20,
		AllowClientPublish:        true,
		Origins:                   "*:*",
		HandshakeBurst:            100,
		AdminReserve:              16,
		IdleTimeout:               30 * time.Second,
		HandshakeQueue:            5 * time.Second,
		AcceptRateFloor:           50,
		AcceptHoldMax:             100 * time.Millisecond,
		CloserShare:               0.25,
		InboundRate:               10000,
		InboundBurst:              20000,
		ChannelPublishRate:        1000,
		ChannelPublishBurst:       2000,
		ChannelRateTableSize:      65536,
		ChannelDeliveryRate:       10000,
		ChannelDeliveryBurst:      20000,
		QueueMaxBytes:             1 << 20,
		QueueMaxMessages:          4096,
		WriteTimeout:              10 * time.Second,
		CloseTimeout:              2 * time.Second,
		ReadBufferSize:            256,
		ParkIdleSockets:           true,
		IdleDetach:                10 * time.Second,
		WriteBufferSize:           128,
		WriterLinger:              20 * time.Millisecond,
		WriteCoalesce:             25 * time.Millisecond,
		WriteCoalesceWait:         10 * time.Millisecond,
		WriteCoalesceBusy:         0.2,
		WriteCoalesceCPU:          0.7,
		DrainDuration:             2 * time.Second,
		AuthDefaultExpiry:         86400 * time.Second,
		AuthMaxTokenBytes:         8192,
		AuthMinKeyBytes:           32,
		HookCallsPerSocket:        16,
		MaxHandshakesPerSecond:    0,
		API:                       DefaultAPIConfig(),
		Presence:                  DefaultPresenceConfig(),
		InboundByteRate:           2 << 20,
		MaxBatchPackets:           1000,
		MaxMessageFragments:       128,
		ReadBudget:                64 << 20,
		MaxSubscriptions:          1000000,
		MaxPendingSubscribes:      10000,
		SubscribeRate:             5000,
		SubscribeBurst:            10000,
		SubscribeBurstPerIP:       2000,
		PublishRefusalRate:        100,
		PublishRefusalBurst:       100,
		LimitClosesPerIP:          1,
		LimitCloseBurstPerIP:      10,
		RefusalHold:               5 * time.Second,
		ShortConnectionsPerIP:     0,
		ShortConnectionBurstPerIP: 20,
		ShortConnectionTime:       5 * time.Second,
		HandshakeBurstPerIP:       20,
		SourceTableSize:           65536,

		History:                 history.DefaultConfig(),
		RecoveryMaxPublications: 1000,
		RecoveryConcurrency:     64,
	}
}

// publishQueueRatio is how many largest publishes an outbound queue must
// hold: a burst of a few never cuts off a subscriber that reads at a
// normal pace.
const publishQueueRatio = 8

// derived returns c with the settings whose default follows others
// filled in (see MaxPublishBytes and InboundByteBurst).
func (c Config) derived() Config {
	if c.MaxPublishBytes == 0 {
		c.MaxPublishBytes = int(min(int64(c.QueueMaxBytes/(2*publishQueueRatio)), c.MaxPayload))
	}
	if c.InboundByteBurst == 0 {
		c.InboundByteBurst = int(max(2*c.MaxPayload, int64(c.InboundByteRate)))
	}
	if c.RefusalHoldMax == 0 {
		c.RefusalHoldMax = min(4096, connlimit.Headroom()/4)
	}
	return c
}

// LargestPublication is the most data bytes one publication from this
// frontend can carry: a client's #publish (MaxPublishBytes, derived when
// 0) or, when the server API is on (API.Key set), an API request, whose
// data fits its body (API.MaxBodyBytes).
func (c Config) LargestPublication() int64 {
	n := int64(c.derived().MaxPublishBytes)
	if c.API.Key != "" {
		n = max(n, c.API.MaxBodyBytes)
	}
	return n
}

// Validate reports the first inconsistent or out-of-range setting.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.Path) > 0 && c.Path[0] == '/', "path %q must start with /", c.Path)
	check(c.ProtocolVersion == protocol.V1 || c.ProtocolVersion == protocol.V2, "protocol version %d must be 1 or 2", c.ProtocolVersion)
	check(c.PingInterval > 0, "ping interval must be positive")
	check(c.PingTimeout > 0, "ping timeout must be positive")
	check(c.PingInterval < c.PingTimeout, "ping interval %v must be below ping timeout %v", c.PingInterval, c.PingTimeout)
	check(c.HandshakeTimeout > 0, "handshake timeout must be positive")
	check(c.AckTimeout > 0, "ack timeout must be positive")
	check(c.SocketChannelLimit > 0, "socket channel limit must be positive")
	check(c.MaxChannelLength > 0, "max channel length must be positive")
	check(c.MaxPayload >= 256, "max payload %d must be at least 256 bytes", c.MaxPayload)
	check(c.MaxConnections >= 0, "max connections must not be negative")
	check(c.AdminReserve >= 0, "admin reserve connections must not be negative")
	check(c.IdleTimeout > 0, "HTTP idle timeout must be positive")
	check(c.MaxHandshakesPerSecond >= 0, "max handshakes per second must not be negative")
	check(c.MaxHandshakesPerSecond == 0 || c.HandshakeBurst > 0, "handshake burst must be positive")
	check(c.HandshakeQueue >= 0, "handshake queue must not be negative")
	check(c.CloserShare >= 0 && c.CloserShare <= 1, "closer share %v must be within [0, 1]", c.CloserShare)
	check(c.InboundRate >= 0, "inbound rate must not be negative")
	check(c.InboundRate == 0 || c.InboundBurst > 0, "inbound burst must be positive")
	if err := c.channelRate().Validate(); err != nil {
		errs = append(errs, err)
	}
	check(c.ChannelDeliveryRate >= 0, "channel delivery rate must not be negative")
	check(c.ChannelDeliveryRate == 0 || c.ChannelDeliveryBurst > 0, "channel delivery burst must be positive")
	check(c.QueueMaxBytes > 0, "queue max bytes must be positive")
	check(c.QueueMaxMessages > 0, "queue max messages must be positive")
	check(c.WriteTimeout > 0, "write timeout must be positive")
	check(c.CloseTimeout > 0, "close timeout must be positive")
	check(c.ReadBufferSize >= 0 && c.WriteBufferSize >= 0, "buffer sizes must not be negative")
	check(c.DrainDuration >= 0, "drain duration must not be negative")
	check(c.WriteCoalesce >= 0 && c.WriterLinger >= 0, "writer linger and write coalescing must not be negative")
	check(c.WriteCoalesceWait >= 0, "write coalescing wait must not be negative")
	check(c.WriteCoalesceBusy >= 0 && c.WriteCoalesceBusy <= 1, "write coalescing busy share must be between 0 and 1")
	check(c.WriteCoalesceCPU >= 0 && c.WriteCoalesceCPU <= 1, "write coalescing CPU share must be between 0 and 1")
	check(c.AuthDefaultExpiry > 0, "auth default expiry must be positive")
	check(c.AuthMaxTokenAge >= 0, "auth max token age must not be negative")
	check(c.AuthMaxTokenBytes >= 64, "auth max token bytes %d must be at least 64", c.AuthMaxTokenBytes)
	check(c.AuthMinKeyBytes >= 0, "auth min key bytes must not be negative")
	check(len(c.AuthKey) == 0 || len(c.AuthKey) >= c.AuthMinKeyBytes, "auth key is %d bytes, shorter than the minimum %d (SCC_AUTH_MIN_KEY_BYTES)", len(c.AuthKey), c.AuthMinKeyBytes)
	check(c.HookCallsPerSocket > 0, "hook calls per socket must be positive")
	d := c.derived()
	check(c.MaxPublishBytes >= 0 && d.MaxPublishBytes > 0, "max publish bytes %d must be positive", d.MaxPublishBytes)
	check(int64(d.MaxPublishBytes) <= c.MaxPayload, "max publish bytes %d must not exceed max payload %d", d.MaxPublishBytes, c.MaxPayload)
	check(c.QueueMaxBytes >= publishQueueRatio*d.MaxPublishBytes, "queue max bytes %d must hold at least %d publishes of max publish bytes %d", c.QueueMaxBytes, publishQueueRatio, d.MaxPublishBytes)
	check(c.InboundByteRate >= 0, "inbound byte rate must not be negative")
	check(c.InboundByteBurst >= 0 && int64(d.InboundByteBurst) >= c.MaxPayload, "inbound byte burst %d must be at least max payload %d", d.InboundByteBurst, c.MaxPayload)
	check(c.MaxBatchPackets > 0, "max batch packets must be positive")
	check(c.MaxMessageFragments > 0, "max message fragments must be positive")
	check(c.ReadBudget >= 2*c.MaxPayload, "read budget %d must be at least twice max payload %d (a growing buffer is copied)", c.ReadBudget, c.MaxPayload)
	check(c.MaxConnectionsPerIP >= 0, "max connections per IP must not be negative")
	check(c.MaxSubscriptions > 0, "max subscriptions must be positive")
	check(c.MaxSubscriptionsPerIP >= 0, "max subscriptions per IP must not be negative")
	check(c.MaxPendingSubscribes > 0, "max pending subscribes must be positive")
	check(c.SubscribeRate >= 0 && c.SubscribeRatePerIP >= 0, "subscribe rates must not be negative")
	check(c.SubscribeRate == 0 || c.SubscribeBurst > 0, "subscribe burst must be positive")
	check(c.SubscribeRatePerIP == 0 || c.SubscribeBurstPerIP > 0, "subscribe burst per IP must be positive")
	check(c.LimitClosesPerIP >= 0, "limit closes per IP must not be negative")
	check(c.LimitClosesPerIP == 0 || c.LimitCloseBurstPerIP > 0, "limit close burst per IP must be positive")
	check(c.RefusalHold >= 0, "refusal hold must not be negative")
	check(c.ShortConnectionsPerIP >= 0, "short connections per IP must not be negative")
	check(c.ShortConnectionsPerIP == 0 || c.ShortConnectionBurstPerIP > 0, "short connection burst per IP must be positive")
	check(c.ShortConnectionsPerIP == 0 || c.ShortConnectionTime > 0, "short connection time must be positive")
	check(c.PublishRefusalRate >= 0, "publish refusal rate must not be negative")
	check(c.PublishRefusalRate == 0 || c.PublishRefusalBurst > 0, "publish refusal burst must be positive")
	check(c.RefusalHoldMax >= 0, "refusal hold max must not be negative")
	check(c.MaxHandshakesPerIP >= 0, "max handshakes per IP must not be negative")
	check(c.AcceptLatencyTarget >= 0, "accept latency target must not be negative")
	check(c.AcceptLatencyTarget == 0 || c.AcceptRateFloor > 0, "accept rate floor must be positive")
	check(c.AcceptRunnableMax >= 0, "accept runnable max must not be negative")
	check(c.AcceptRunnableMax == 0 || c.AcceptHoldMax > 0, "accept hold max must be positive")
	check(c.MaxHandshakesPerIP == 0 || c.HandshakeBurstPerIP > 0, "handshake burst per IP must be positive")
	check(c.SourceTableSize > 0, "source table size must be positive")
	check(c.RecoveryMaxPublications >= 0, "recovery max publications must not be negative")
	check(c.RecoveryConcurrency > 0, "recovery concurrency must be positive")
	if err := c.History.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.AuthPrivateKey != nil && c.AuthPublicKey == nil {
		errs = append(errs, errors.New("auth private key needs the matching public key"))
	}
	if err := c.API.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Presence.validate(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := authAlgorithms(c); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("frontend config: %w", errors.Join(errs...))
}
