package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/protocol"
)

// Client calls the application backend's hooks. It is safe for concurrent
// use. Its methods implement ConnectHook, SubscribeHook, PublishHook and
// RPCHook.
type Client struct {
	cfg     Config
	hooks   [numKinds]*hook
	headers []string // Config.ConnectHeaders, canonical
}

// hook is one configured hook: its transport, its concurrency semaphore
// and its metrics.
type hook struct {
	kind   Kind
	cfg    HookConfig
	client *Client
	http   *http.Client
	tr     *http.Transport
	sem    chan struct{}
	m      hookMetrics
}

// New returns a Client for the hooks of cfg that have a URL. It validates
// cfg and registers the metrics; it does no I/O and starts no goroutine.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg}
	for _, name := range cfg.ConnectHeaders {
		c.headers = append(c.headers, http.CanonicalHeaderKey(name))
	}
	for k := Kind(0); k < numKinds; k++ {
		hc := *cfg.Hook(k)
		if hc.URL == "" {
			continue
		}
		tr := &http.Transport{
			// Hooks go straight to the backend: no proxy from the
			// environment.
			Proxy: nil,
			DialContext: (&net.Dialer{
				Timeout:   hc.Timeout,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSHandshakeTimeout:    hc.Timeout,
			MaxIdleConns:           hc.Concurrency,
			MaxIdleConnsPerHost:    hc.Concurrency,
			MaxConnsPerHost:        hc.Concurrency,
			IdleConnTimeout:        cfg.IdleConnTimeout,
			MaxResponseHeaderBytes: cfg.MaxResponseBytes,
			// Answers are small; gzip would cost more than it saves.
			DisableCompression: true,
		}
		c.hooks[k] = &hook{
			kind:   k,
			cfg:    hc,
			client: c,
			tr:     tr,
			http: &http.Client{
				Transport: tr,
				// A redirect is a misconfigured URL: following it would
				// send the key elsewhere. It counts as a bad status.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
			sem: make(chan struct{}, hc.Concurrency),
			m:   m.forHook(k),
		}
	}
	return c, nil
}

// Enabled reports whether hook k has a URL; false on a nil Client.
func (c *Client) Enabled(k Kind) bool {
	return c != nil && k >= 0 && k < numKinds && c.hooks[k] != nil
}

// Close closes the idle connections to the backend, which ends their
// goroutines. Calls in flight finish; a Client may still be used after
// Close.
func (c *Client) Close() {
	for _, h := range c.hooks {
		if h != nil {
			h.tr.CloseIdleConnections()
		}
	}
}

// Connect calls the connect hook. It returns the accepted result, a
// *Rejection, or, when the call failed fail-closed, an error wrapping one
// of the sentinel errors. A call that failed fail-open returns an empty
// result with FailedOpen set.
func (c *Client) Connect(ctx context.Context, req *ConnectRequest) (*ConnectResult, error) {
	h := c.hooks[Connect]
	if h == nil {
		return nil, ErrDisabled
	}
	r := *req
	if len(c.headers) > 0 && req.Header != nil {
		r.Headers = make(map[string]string, len(c.headers))
		for _, name := range c.headers {
			vs := req.Header.Values(name)
			if len(vs) == 0 {
				continue
			}
			sep := ", "
			if name == "Cookie" {
				sep = "; "
			}
			r.Headers[name] = strings.Join(vs, sep)
		}
	}
	res := &ConnectResult{}
	open, err := h.call(ctx, &r, func(raw json.RawMessage) (outcome, error) {
		if err := json.Unmarshal(raw, res); err != nil {
			return outBadResponse, fmt.Errorf("%w: connect result: %v", ErrBadResponse, err)
		}
		return outAllow, nil
	})
	if err != nil {
		return nil, err
	}
	if open {
		return &ConnectResult{FailedOpen: true}, nil
	}
	return res, nil
}

// Subscribe calls the subscribe hook: nil allows, a *Rejection denies,
// another error is a failure (fail-closed). A failure of a fail-open hook
// returns nil.
func (c *Client) Subscribe(ctx context.Context, req *SubscribeRequest) error {
	h := c.hooks[Subscribe]
	if h == nil {
		return ErrDisabled
	}
	_, err := h.call(ctx, req, func(json.RawMessage) (outcome, error) { return outAllow, nil })
	return err
}

// Publish calls the publish hook. An allowed publish returns a result
// whose Data, if not nil, replaces the publication's data; otherwise as
// Subscribe.
func (c *Client) Publish(ctx context.Context, req *PublishRequest) (*PublishResult, error) {
	h := c.hooks[Publish]
	if h == nil {
		return nil, ErrDisabled
	}
	var res struct {
		Data json.RawMessage `json:"data"`
	}
	open, err := h.call(ctx, req, func(raw json.RawMessage) (outcome, error) {
		if err := json.Unmarshal(raw, &res); err != nil {
			return outBadResponse, fmt.Errorf("%w: publish result: %v", ErrBadResponse, err)
		}
		if res.Data != nil {
			return outReplace, nil
		}
		return outAllow, nil
	})
	if err != nil {
		return nil, err
	}
	return &PublishResult{Data: res.Data, FailedOpen: open}, nil
}

// RPC calls the rpc hook and returns the result's data (JSON null when
// the result has none), a *Rejection carrying the backend's error object,
// or a failure.
func (c *Client) RPC(ctx context.Context, req *RPCRequest) (json.RawMessage, error) {
	h := c.hooks[RPC]
	if h == nil {
		return nil, ErrDisabled
	}
	var res struct {
		Data json.RawMessage `json:"data"`
	}
	_, err := h.call(ctx, req, func(raw json.RawMessage) (outcome, error) {
		if err := json.Unmarshal(raw, &res); err != nil {
			return outBadResponse, fmt.Errorf("%w: rpc result: %v", ErrBadResponse, err)
		}
		return outAllow, nil
	})
	if err != nil {
		return nil, err
	}
	if res.Data == nil {
		return json.RawMessage("null"), nil
	}
	return res.Data, nil
}

// call runs one hook call and counts it. parse reads an allowing result.
// It returns nil when the backend allowed, a *Rejection, or a failure;
// a failure of a fail-open hook returns open instead (a canceled call
// never does: nobody waits for it).
func (h *hook) call(ctx context.Context, req any, parse func(json.RawMessage) (outcome, error)) (open bool, err error) {
	start := time.Now()
	out, err := h.exchange(ctx, req, parse)
	if c := h.m.calls[out]; c != nil {
		c.Inc()
	}
	if out != outOverloaded {
		h.m.duration.Observe(time.Since(start).Seconds())
	}
	if err == nil || out == outDeny {
		return false, err
	}
	err = fmt.Errorf("%s hook: %w", h.kind, err)
	if h.cfg.FailOpen && out != outCanceled {
		h.m.failedOpen.Inc()
		return true, nil
	}
	return false, err
}

// exchange sends req, retrying idempotent hooks, and decides the answer.
func (h *hook) exchange(ctx context.Context, req any, parse func(json.RawMessage) (outcome, error)) (outcome, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return outError, fmt.Errorf("encoding the request: %w", err)
	}
	select {
	case h.sem <- struct{}{}:
	default:
		return outOverloaded, ErrOverloaded
	}
	h.m.inFlight.Inc()
	defer func() {
		<-h.sem
		h.m.inFlight.Dec()
	}()
	cctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	// ended classifies an error met once cctx is done: the caller gave up
	// (canceled), or a deadline passed, the hook's or the caller's own.
	ended := func() (outcome, error) {
		if errors.Is(ctx.Err(), context.Canceled) {
			return outCanceled, ctx.Err()
		}
		return outTimeout, ErrTimeout
	}
	backoff := h.client.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		env, out, err, retry := h.attempt(cctx, body)
		if err == nil {
			return h.decide(env, parse)
		}
		if cctx.Err() != nil {
			return ended()
		}
		if !retry || attempt >= h.cfg.Retries {
			return out, err
		}
		h.m.retries.Inc()
		t := time.NewTimer(backoff + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-cctx.Done():
			t.Stop()
			return ended()
		}
		backoff *= 2
	}
}

// envelope is every hook's answer: a result (allow) or an error (deny),
// and for connect a close code.
type envelope struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	Code   json.RawMessage `json:"code"`
}

// attempt makes one HTTP request. retry says whether a failure may be
// repeated (a connection error or a 5xx); a retry happens only for
// idempotent hooks.
func (h *hook) attempt(ctx context.Context, body []byte) (env envelope, out outcome, err error, retry bool) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return env, outError, err, false
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	if key := h.client.cfg.Key; key != "" {
		hr.Header.Set(h.client.cfg.KeyHeader, key)
	}
	resp, err := h.http.Do(hr)
	if err != nil {
		return env, outError, fmt.Errorf("%w: %v", ErrUnavailable, err), true
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return env, outBadStatus, fmt.Errorf("%w: %s", ErrBadStatus, resp.Status), resp.StatusCode >= 500
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return env, outBadResponse, fmt.Errorf("%w: content type %q, want application/json", ErrBadResponse, ct), false
		}
	}
	max := h.client.cfg.MaxResponseBytes
	if resp.ContentLength > max {
		return env, outBadResponse, fmt.Errorf("%w: body of %d bytes, above %d", ErrBadResponse, resp.ContentLength, max), false
	}
	// Read one byte past the bound to tell a body of exactly max bytes
	// from a larger one; the rest is never read.
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return env, outError, fmt.Errorf("%w: reading the answer: %v", ErrUnavailable, err), true
	}
	if int64(len(b)) > max {
		return env, outBadResponse, fmt.Errorf("%w: body above %d bytes", ErrBadResponse, max), false
	}
	// The answer's keys match exactly ("result", never "Result"), as the
	// documented contract says: encoding/json would match a struct's
	// fields case-insensitively.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return env, outBadResponse, fmt.Errorf("%w: %v", ErrBadResponse, err), false
	}
	env = envelope{Result: fields["result"], Error: fields["error"], Code: fields["code"]}
	return env, 0, nil, false
}

// decide turns an answer into allow (parse), deny or bad_response. An
// error wins over a result: a backend that meant to deny is never read as
// allowing.
func (h *hook) decide(env envelope, parse func(json.RawMessage) (outcome, error)) (outcome, error) {
	if isSet(env.Error) {
		return outDeny, h.rejection(env)
	}
	if !isSet(env.Result) {
		return outBadResponse, fmt.Errorf("%w: neither result nor error", ErrBadResponse)
	}
	if env.Result[0] != '{' {
		return outBadResponse, fmt.Errorf("%w: result is not an object", ErrBadResponse)
	}
	return parse(env.Result)
}

func isSet(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// rejection reads the backend's error object. One that is not an object
// or string still denies, with a generic message.
func (h *hook) rejection(env envelope) *Rejection {
	r := &Rejection{Hook: h.kind, Err: &protocol.Error{}}
	if err := r.Err.UnmarshalJSON(env.Error); err != nil {
		r.Err = protocol.NewError(ErrNameBackend, "Rejected by the application backend")
	}
	if h.kind == Connect {
		r.Code = DefaultRejectCode
		var code int
		if isSet(env.Code) && json.Unmarshal(env.Code, &code) == nil && validCloseCode(code) {
			r.Code = code
		}
	}
	return r
}

var (
	_ ConnectHook   = (*Client)(nil)
	_ SubscribeHook = (*Client)(nil)
	_ PublishHook   = (*Client)(nil)
	_ RPCHook       = (*Client)(nil)
)
