package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Defaults for Options fields left at their zero value.
const (
	DefaultAckTimeout         = 10 * time.Second
	DefaultConnectTimeout     = 10 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultCloseTimeout       = time.Second
	DefaultBackoffInitial     = 500 * time.Millisecond
	DefaultBackoffMax         = 30 * time.Second
	DefaultBackoffMultiplier  = 2.0
	DefaultImmediateJitter    = 100 * time.Millisecond
	DefaultSubscriptionBuffer = 1024
	DefaultSendQueueBytes     = 8 << 20
	DefaultMaxFrameBytes      = 256 << 10
	DefaultMaxFramePackets    = 500
	DefaultMaxMessageBytes    = 16 << 20
)

// OverflowPolicy says what a Subscription does with a message that arrives
// while its buffer is full. Either way the message lost is counted in
// Subscription.Dropped; the connection is never blocked by a slow reader.
type OverflowPolicy int

// Overflow policies.
const (
	// DropOldest discards the oldest buffered message to make room: a slow
	// reader sees the latest data. It is the default.
	DropOldest OverflowPolicy = iota
	// DropNewest discards the message that does not fit.
	DropNewest
)

func (p OverflowPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case DropNewest:
		return "drop-newest"
	}
	return "unknown"
}

// Backoff is the reconnect delay schedule. Attempt n (from 0) waits a
// uniformly random duration in [0, min(Max, Initial·Multiplier^n)): "full
// jitter", so a crowd of clients dropped at once does not come back at once.
type Backoff struct {
	// Initial is the ceiling of the first delay. Default 500ms.
	Initial time.Duration
	// Max caps every delay. Default 30s.
	Max time.Duration
	// Multiplier grows the ceiling per failed attempt. Default 2.
	Multiplier float64
}

// ConnectInfo describes a completed handshake.
type ConnectInfo struct {
	// ID is the socket id the server assigned.
	ID string
	// PingTimeout is the server's advertised ping timeout.
	PingTimeout time.Duration
	// IsAuthenticated reports whether the handshake token was accepted.
	IsAuthenticated bool
	// AuthError is the server's reason for refusing the handshake token,
	// or nil. Its Name is one of the protocol.ErrNameAuthToken* names.
	AuthError *Error
	// Reconnect is false for the connection made by Dial, true after.
	Reconnect bool
}

// AuthState is whether the server considers the connection authenticated.
type AuthState int

// Auth states.
const (
	Unauthenticated AuthState = iota
	Authenticated
)

func (s AuthState) String() string {
	if s == Authenticated {
		return "authenticated"
	}
	return "unauthenticated"
}

// Options configure a Client. The zero value is usable: every zero field
// takes the documented default.
type Options struct {
	// AuthToken is a signed token sent in the first #handshake. Tokens
	// set later by the server or by Authenticate replace it.
	AuthToken string
	// ProtocolVersion selects the ping/pong frames: protocol.V2 (the
	// default) answers "" with "", protocol.V1 answers "#1" with "#2". It
	// must match the server's setting; it is not negotiated.
	ProtocolVersion protocol.Version
	// AckTimeout bounds calls whose ctx has no deadline, and Transmit's
	// wait for queue space. Default 10s.
	AckTimeout time.Duration
	// ConnectTimeout bounds each connection attempt: dial, upgrade and
	// #handshake. Default 10s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each frame write; a write that takes longer
	// drops the connection. Default 10s.
	WriteTimeout time.Duration
	// CloseTimeout bounds the WebSocket closing handshake before the TCP
	// connection is cut. It applies only when HTTPClient is nil (the
	// Client must own the dialer to cut the connection). Default 1s.
	CloseTimeout time.Duration
	// DisableReconnect turns automatic reconnection off: the Client stops
	// for good at the first close. Reconnection is on by default.
	DisableReconnect bool
	// Backoff is the reconnect schedule; see Backoff for the defaults.
	Backoff Backoff
	// Header is sent with the WebSocket upgrade request.
	Header http.Header
	// HTTPClient, if set, makes the upgrade request; LocalAddr and
	// TLSConfig are then ignored. It must not use HTTP/2.
	HTTPClient *http.Client
	// TLSConfig, if set, is used for wss:// URLs (a private CA in RootCAs,
	// a client certificate, or InsecureSkipVerify for tests). Default: the
	// system roots. It applies only when HTTPClient is nil.
	TLSConfig *tls.Config
	// LocalAddr, if set, is the local address outgoing TCP connections
	// bind to; a load generator uses several 127.0.0.x source addresses to
	// open more connections than one address has ports.
	LocalAddr *net.TCPAddr
	// SubscriptionBuffer is the capacity of each Subscription's channel.
	// Default 1024.
	SubscriptionBuffer int
	// OverflowPolicy is what a full Subscription buffer does. Default
	// DropOldest.
	OverflowPolicy OverflowPolicy
	// SendQueueBytes bounds the bytes queued for the writer. Default 8 MiB.
	// Control packets (pongs, subscribes, acks) are never refused.
	SendQueueBytes int
	// MaxFrameBytes is the size above which the writer starts a new frame
	// instead of adding packets to the current batch. Default 256 KiB; a
	// single larger packet is written alone.
	MaxFrameBytes int
	// MaxFramePackets is the most packets the writer puts in one frame.
	// Default 500, below the frontend's SCC_MAX_BATCH_PACKETS (1000),
	// which closes a socket that sends a larger batch.
	MaxFramePackets int
	// MaxMessageBytes is the largest inbound message accepted; a larger
	// one drops the connection (close 1009). Default 16 MiB.
	MaxMessageBytes int64
	// Logger receives connection-level events (never one per message).
	// Nil discards.
	Logger *slog.Logger

	// OnEvent is called for each server transmit other than the
	// protocol's own (#publish, #setAuthToken, #removeAuthToken,
	// #kickOut). It runs on the reader: see the package doc.
	OnEvent func(event string, data json.RawMessage)
	// OnRPC answers a server invoke. It runs in its own goroutine with a
	// ctx that ends when the connection does or after AckTimeout. A
	// returned *Error goes to the server as is; another error becomes an
	// error object with its text. When OnRPC is nil the server gets a
	// NoMatchingProcedureError.
	OnRPC func(ctx context.Context, event string, data json.RawMessage) (any, error)
	// OnConnect is called after each successful handshake.
	OnConnect func(info ConnectInfo)
	// OnDisconnect is called when an open connection closes, with the
	// close code and reason (1006 when the connection was lost without a
	// close frame).
	OnDisconnect func(code int, reason string)
	// OnAuthStateChange is called when the auth state or token changes.
	OnAuthStateChange func(state AuthState, token string)
}

func (o Options) withDefaults() Options {
	if o.ProtocolVersion != protocol.V1 {
		o.ProtocolVersion = protocol.V2
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = DefaultBackoffInitial
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultBackoffMax
	}
	if o.Backoff.Multiplier < 1 {
		o.Backoff.Multiplier = DefaultBackoffMultiplier
	}
	if o.SubscriptionBuffer <= 0 {
		o.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = DefaultSendQueueBytes
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.MaxFramePackets <= 0 {
		o.MaxFramePackets = DefaultMaxFramePackets
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
