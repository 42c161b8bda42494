package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sccgo/sccgo/protocol"
)

// ConnectRequest is what the connect hook receives at a socket's
// #handshake.
type ConnectRequest struct {
	// SocketID is the id the socket gets in the handshake reply.
	SocketID string `json:"socketId"`
	// RemoteAddress is the client's IP address.
	RemoteAddress string `json:"remoteAddress"`
	// Headers holds the upgrade request's headers named by
	// Config.ConnectHeaders that were present; the Client fills it from
	// Header.
	Headers map[string]string `json:"headers,omitempty"`
	// AuthToken is the signed token the client sent in #handshake, if any,
	// whether or not it verified.
	AuthToken string `json:"authToken,omitempty"`
	// Claims are AuthToken's claims if it verified.
	Claims map[string]any `json:"claims,omitempty"`
	// Header is the upgrade request's header; it is not sent as is.
	Header http.Header `json:"-"`
}

// ConnectResult is an accepted connect.
type ConnectResult struct {
	// Claims, if not nil, become the socket's auth token claims: the
	// frontend signs them and sends #setAuthToken.
	Claims map[string]any `json:"claims,omitempty"`
	// Token, if not empty, is a signed token the backend made itself (for
	// example a refreshed one), for the frontend to verify and set.
	Token string `json:"token,omitempty"`
	// Channels are server-side subscriptions to make for the socket.
	Channels []string `json:"channels,omitempty"`
	// FailedOpen reports that the call failed and FailOpen accepted it.
	FailedOpen bool `json:"-"`
}

// SubscribeRequest is what the subscribe hook receives for a #subscribe.
type SubscribeRequest struct {
	SocketID string `json:"socketId"`
	Channel  string `json:"channel"`
	// Claims are the socket's auth token claims; absent when it has none.
	Claims map[string]any `json:"claims,omitempty"`
	// Data is the #subscribe packet's data, as the client sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// PublishRequest is what the publish hook receives for a #publish.
type PublishRequest struct {
	SocketID string          `json:"socketId"`
	Channel  string          `json:"channel"`
	Claims   map[string]any  `json:"claims,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// PublishResult is an allowed publish.
type PublishResult struct {
	// Data, if not nil, replaces the publication's data (any JSON value,
	// including null).
	Data json.RawMessage
	// FailedOpen reports that the call failed and FailOpen allowed it.
	FailedOpen bool
}

// RPCRequest is what the rpc hook receives for an invoke no Go handler
// claims.
type RPCRequest struct {
	SocketID string `json:"socketId"`
	// Procedure is the invoke's event name.
	Procedure string          `json:"procedure"`
	Claims    map[string]any  `json:"claims,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// ConnectHook decides a socket's handshake.
type ConnectHook interface {
	Connect(ctx context.Context, req *ConnectRequest) (*ConnectResult, error)
}

// SubscribeHook decides a subscription.
type SubscribeHook interface {
	Subscribe(ctx context.Context, req *SubscribeRequest) error
}

// PublishHook decides a client publish.
type PublishHook interface {
	Publish(ctx context.Context, req *PublishRequest) (*PublishResult, error)
}

// RPCHook answers an invoke.
type RPCHook interface {
	RPC(ctx context.Context, req *RPCRequest) (json.RawMessage, error)
}

// Sentinel errors of a failed call (the backend did not decide). A denial
// is a *Rejection instead.
var (
	// ErrDisabled: the hook has no URL.
	ErrDisabled = errors.New("hook not configured")
	// ErrOverloaded: the hook's Concurrency calls were in flight.
	ErrOverloaded = errors.New("too many hook calls in flight")
	// ErrTimeout: no answer within the hook's Timeout.
	ErrTimeout = errors.New("hook timed out")
	// ErrUnavailable: the backend could not be reached, or the connection
	// failed.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrBadStatus: the backend answered with a status other than 200.
	ErrBadStatus = errors.New("backend answered with a bad status")
	// ErrBadResponse: the answer was not the documented JSON (wrong
	// content type, too large, malformed, neither result nor error).
	ErrBadResponse = errors.New("bad hook response")
	// ErrRejected matches every *Rejection with errors.Is.
	ErrRejected = errors.New("rejected by the backend")
)

// DefaultRejectCode closes a socket whose connect the backend rejected
// without a valid code, or that a failed connect hook refuses:
// SocketCluster's code for a rejected handshake, after which the stock
// client reconnects with backoff.
const DefaultRejectCode = 4008

// ErrNameBackend names the error a client gets when a hook failed
// fail-closed (TimeoutError when it timed out).
const ErrNameBackend = "BackendError"

// Rejection is the backend's denial: an error object for the client and,
// for connect, the close code.
type Rejection struct {
	Hook Kind
	// Err is the backend's error object, as the client receives it.
	Err *protocol.Error
	// Code is the close code of a rejected connect: 4000-4999 or 1008.
	Code int
}

// Error implements error.
func (r *Rejection) Error() string {
	return fmt.Sprintf("%s hook: rejected: %v", r.Hook, r.Err)
}

// Is makes errors.Is(err, ErrRejected) true.
func (r *Rejection) Is(target error) bool { return target == ErrRejected }

// ClientError returns the SocketCluster error a client should get for a
// hook error: the backend's own error object for a rejection, else a
// generic one that names no internals.
func ClientError(err error) *protocol.Error {
	var r *Rejection
	switch {
	case errors.As(err, &r):
		return r.Err
	case errors.Is(err, ErrTimeout):
		return protocol.NewError(protocol.ErrNameTimeout, "The application backend did not answer in time")
	case errors.Is(err, ErrOverloaded):
		return protocol.NewError(ErrNameBackend, "The application backend is busy")
	}
	return protocol.NewError(ErrNameBackend, "The application backend is unavailable")
}

// CloseCode returns the close code for a connect hook error: the
// backend's for a rejection, DefaultRejectCode otherwise.
func CloseCode(err error) int {
	var r *Rejection
	if errors.As(err, &r) && r.Code != 0 {
		return r.Code
	}
	return DefaultRejectCode
}

// validCloseCode reports whether a rejected connect may close with code.
func validCloseCode(code int) bool {
	return code == 1008 || code >= 4000 && code <= 4999
}
