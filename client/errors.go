package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Error is a SocketCluster error object returned by the server: an RPC or
// subscribe failure, or a refused auth token. Name is the sc-errors name
// (for example "AuthTokenInvalidError"), Message its text, and Fields any
// other properties such as isBadToken. It is protocol.Error, so
// errors.As(err, new(*client.Error)) and errors.As(err, new(*protocol.Error))
// both work.
type Error = protocol.Error

// Sentinel errors.
var (
	// ErrClosed is returned by calls on a Client after Close, and is the
	// reason a Subscription ends when its Client is closed.
	ErrClosed = errors.New("client: closed")
	// ErrNotConnected means there was no open connection for the call.
	ErrNotConnected = errors.New("client: not connected")
	// ErrDisconnected means the connection closed while the call waited
	// for its reply. The concrete error is a *CloseError.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrQueueFull means the outbound queue stayed full for AckTimeout.
	ErrQueueFull = errors.New("client: send queue full")
	// ErrAlreadySubscribed is returned by Subscribe for a channel the
	// Client already has a Subscription for.
	ErrAlreadySubscribed = errors.New("client: already subscribed")
	// ErrNotSubscribed is returned by Unsubscribe for an unknown channel.
	ErrNotSubscribed = errors.New("client: not subscribed")
	// ErrUnsubscribed is the reason a Subscription ends after Unsubscribe.
	ErrUnsubscribed = errors.New("client: unsubscribed")
	// ErrKickedOut matches a *KickOutError.
	ErrKickedOut = errors.New("client: kicked out of channel")
	// ErrBadResponse means the server's reply could not be decoded.
	ErrBadResponse = errors.New("client: malformed response")
)

// CloseError is a WebSocket close: the reason a connection ended. It
// matches ErrDisconnected with errors.Is.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	r := e.Reason
	if r == "" {
		r = protocol.CloseReason(e.Code)
	}
	return fmt.Sprintf("client: connection closed: %d %s", e.Code, r)
}

// Is reports whether target is ErrDisconnected.
func (e *CloseError) Is(target error) bool { return target == ErrDisconnected }

// Permanent reports whether the code stops reconnection: 1000 (a normal
// close) or protocol.ClosePermanentMin and above.
func (e *CloseError) Permanent() bool { return permanentCode(e.Code) }

func permanentCode(code int) bool {
	return code == protocol.CloseNormal || code >= protocol.ClosePermanentMin
}

// KickOutError ends a Subscription the server kicked out (#kickOut). It
// matches ErrKickedOut with errors.Is.
type KickOutError struct {
	Channel string
	Message string
}

func (e *KickOutError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("client: kicked out of channel %q", e.Channel)
	}
	return fmt.Sprintf("client: kicked out of channel %q: %s", e.Channel, e.Message)
}

// Is reports whether target is ErrKickedOut.
func (e *KickOutError) Is(target error) bool { return target == ErrKickedOut }

// UpgradeError is a refused WebSocket upgrade: the server answered the HTTP
// request with StatusCode (for example 400 for a wrong path, 401 or 403 for
// a blocked handshake) instead of 101.
type UpgradeError struct {
	StatusCode int
	// Body is the start of the response body.
	Body string
	// RetryAfter is the response's Retry-After (seconds or an HTTP date),
	// at most MaxRetryAfter; 0 without one. Reconnects wait at least this
	// long, plus up to as much again of jitter.
	RetryAfter time.Duration
	Err        error
}

// MaxRetryAfter bounds the Retry-After a client honours.
const MaxRetryAfter = 5 * time.Minute

// parseRetryAfter reads a Retry-After header value: delay-seconds or an
// HTTP date. It returns 0 for none or an unreadable value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		d = MaxRetryAfter
		if err == nil && n < uint64(MaxRetryAfter/time.Second) {
			d = time.Duration(n) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

func (e *UpgradeError) Error() string {
	if e.Body != "" {
		return fmt.Sprintf("client: upgrade refused: HTTP %d: %s", e.StatusCode, e.Body)
	}
	return fmt.Sprintf("client: upgrade refused: HTTP %d", e.StatusCode)
}

// Unwrap returns the underlying dial error.
func (e *UpgradeError) Unwrap() error { return e.Err }
