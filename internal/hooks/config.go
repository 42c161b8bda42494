package hooks

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
)

// Kind names one of the four hooks.
type Kind int

// The hooks, in the order of Config's fields.
const (
	Connect Kind = iota
	Subscribe
	Publish
	RPC
	numKinds
)

var kindNames = [numKinds]string{"connect", "subscribe", "publish", "rpc"}

// String returns the hook's name as used in metrics and env names
// (lower case): connect, subscribe, publish, rpc.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// idempotent reports whether a call of the hook may be repeated: connect
// and subscribe only ask for a decision; publish and rpc may act.
func (k Kind) idempotent() bool { return k == Connect || k == Subscribe }

// HookConfig configures one hook. <HOOK> in the env names is CONNECT,
// SUBSCRIBE, PUBLISH or RPC.
type HookConfig struct {
	// URL receives the hook's POSTs (http or https). Empty turns the hook
	// off. Env SCC_PROXY_<HOOK>_URL.
	URL string
	// Timeout bounds one call, retries and their backoff included.
	// Default 1s (rpc: 5s). Env SCC_PROXY_<HOOK>_TIMEOUT.
	Timeout time.Duration
	// Concurrency bounds the hook's calls in flight, and its connections
	// to the backend. A call beyond it fails at once as overloaded.
	// Default 64. Env SCC_PROXY_<HOOK>_CONCURRENCY.
	Concurrency int
	// FailOpen allows what the hook decides when the call fails (backend
	// down, timeout, overloaded, bad answer): connect accepts with no
	// change, subscribe and publish allow. Default false (fail-closed:
	// refuse). Not for rpc, whose answer only the backend can make. Env
	// SCC_PROXY_<HOOK>_FAIL_OPEN.
	FailOpen bool
	// Retries is how many more attempts follow a connection error or a
	// 5xx answer, within Timeout. Default 2 for connect and subscribe;
	// publish and rpc are not idempotent and must keep 0. Env
	// SCC_PROXY_CONNECT_RETRIES, SCC_PROXY_SUBSCRIBE_RETRIES.
	Retries int
}

// Config configures a Client.
type Config struct {
	// Connect, Subscribe, Publish and RPC configure each hook.
	Connect, Subscribe, Publish, RPC HookConfig
	// ConnectHeaders lists the WebSocket upgrade request's headers that
	// the connect hook receives. Default Cookie, Authorization, Origin.
	// Env SCC_PROXY_CONNECT_HEADERS (comma-separated).
	ConnectHeaders []string
	// KeyHeader is the request header that carries Key, so the backend can
	// tell the frontend's calls from anyone else's. Default
	// X-SCC-Hook-Key. Env SCC_PROXY_KEY_HEADER.
	KeyHeader string
	// Key is sent in KeyHeader on every call; empty sends no such header.
	// For Authorization, give the whole value ("Bearer …"). Env
	// SCC_PROXY_KEY.
	Key string
	// MaxResponseBytes bounds a response body, and separately its
	// headers; a larger answer is a bad response. Default 64 KiB. Env
	// SCC_PROXY_MAX_RESPONSE_BYTES.
	MaxResponseBytes int64
	// RetryBackoff is the wait before the first retry, doubled for each
	// next one, with up to half again of jitter. Default 50ms. Env
	// SCC_PROXY_RETRY_BACKOFF.
	RetryBackoff time.Duration
	// IdleConnTimeout closes a keep-alive connection to the backend idle
	// this long. Keep it below the backend's own idle timeout (Node's
	// http server: 5s), or a call may race the backend's close. Default
	// 4s. Env SCC_PROXY_IDLE_TIMEOUT.
	IdleConnTimeout time.Duration
	// Registry receives the hook metrics; nil uses a private registry.
	Registry prometheus.Registerer
}

// Limits of Validate.
const (
	maxRetries       = 10
	minResponseBytes = 1 << 10
	maxResponseBytes = 64 << 20
)

// DefaultConfig returns the defaults: every hook off (no URL), 1s timeout
// (rpc 5s), 64 calls in flight, fail-closed, 2 retries for connect and
// subscribe.
func DefaultConfig() Config {
	h := HookConfig{Timeout: time.Second, Concurrency: 64}
	c := Config{
		Connect:          h,
		Subscribe:        h,
		Publish:          h,
		RPC:              h,
		ConnectHeaders:   []string{"Cookie", "Authorization", "Origin"},
		KeyHeader:        "X-SCC-Hook-Key",
		MaxResponseBytes: 64 << 10,
		RetryBackoff:     50 * time.Millisecond,
		IdleConnTimeout:  4 * time.Second,
	}
	c.Connect.Retries = 2
	c.Subscribe.Retries = 2
	c.RPC.Timeout = 5 * time.Second
	return c
}

// Hook returns the configuration of hook k.
func (c *Config) Hook(k Kind) *HookConfig {
	switch k {
	case Connect:
		return &c.Connect
	case Subscribe:
		return &c.Subscribe
	case Publish:
		return &c.Publish
	case RPC:
		return &c.RPC
	}
	return nil
}

// Enabled reports whether any hook has a URL.
func (c Config) Enabled() bool {
	for k := Kind(0); k < numKinds; k++ {
		if c.Hook(k).URL != "" {
			return true
		}
	}
	return false
}

// Validate checks c, naming the env variable of a bad field.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("hooks: %s: %s", name, fmt.Sprintf(format, a...)))
	}
	for k := Kind(0); k < numKinds; k++ {
		h := c.Hook(k)
		env := "SCC_PROXY_" + strings.ToUpper(k.String()) + "_"
		if h.URL != "" {
			u, err := url.Parse(h.URL)
			switch {
			case err != nil:
				bad(env+"URL", "%v", err)
			case u.Scheme != "http" && u.Scheme != "https":
				bad(env+"URL", "%q: want an http or https URL", h.URL)
			case u.Host == "":
				bad(env+"URL", "%q: no host", h.URL)
			}
		}
		if h.Timeout <= 0 {
			bad(env+"TIMEOUT", "must be positive")
		}
		if h.Concurrency < 1 {
			bad(env+"CONCURRENCY", "must be at least 1")
		}
		if h.Retries < 0 || h.Retries > maxRetries {
			bad(env+"RETRIES", "must be 0 to %d", maxRetries)
		}
		if !k.idempotent() && h.Retries != 0 {
			bad(env+"RETRIES", "%s is not idempotent and is never retried", k)
		}
		if k == RPC && h.FailOpen {
			bad(env+"FAIL_OPEN", "an rpc's answer comes from the backend only; rpc always fails closed")
		}
	}
	for _, name := range c.ConnectHeaders {
		if !httpguts.ValidHeaderFieldName(name) {
			bad("SCC_PROXY_CONNECT_HEADERS", "%q is not a header name", name)
		}
	}
	if !httpguts.ValidHeaderFieldName(c.KeyHeader) {
		bad("SCC_PROXY_KEY_HEADER", "%q is not a header name", c.KeyHeader)
	}
	if !httpguts.ValidHeaderFieldValue(c.Key) {
		bad("SCC_PROXY_KEY", "not a valid header value")
	}
	if c.MaxResponseBytes < minResponseBytes || c.MaxResponseBytes > maxResponseBytes {
		bad("SCC_PROXY_MAX_RESPONSE_BYTES", "must be %d to %d", minResponseBytes, maxResponseBytes)
	}
	if c.RetryBackoff < 0 {
		bad("SCC_PROXY_RETRY_BACKOFF", "must not be negative")
	}
	if c.IdleConnTimeout < 0 {
		bad("SCC_PROXY_IDLE_TIMEOUT", "must not be negative")
	}
	return errors.Join(errs...)
}
