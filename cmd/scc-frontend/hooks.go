package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/hooks"
)

// readHooks reads the backend hooks' settings (SCC_PROXY_*).
func readHooks(r *config.Reader) hooks.Config {
	c := hooks.DefaultConfig()
	for _, k := range []hooks.Kind{hooks.Connect, hooks.Subscribe, hooks.Publish, hooks.RPC} {
		h := c.Hook(k)
		env := "SCC_PROXY_" + strings.ToUpper(k.String()) + "_"
		h.URL = r.String(env+"URL", h.URL, "URL of the "+k.String()+" hook (HTTP POST with JSON, see docs/hooks.md; empty: off)")
		h.Timeout = r.Duration(env+"TIMEOUT", h.Timeout, "bound on one "+k.String()+" hook call, retries included")
		h.Concurrency = r.Int(env+"CONCURRENCY", h.Concurrency, k.String()+" hook calls in flight; beyond it a call fails at once (overloaded)")
		if k != hooks.RPC {
			h.FailOpen = r.Bool(env+"FAIL_OPEN", h.FailOpen, "allow when the "+k.String()+" hook fails (backend down, timeout, overloaded, bad answer) instead of refusing")
		}
		if k == hooks.Connect || k == hooks.Subscribe {
			h.Retries = r.Int(env+"RETRIES", h.Retries, "more attempts of a "+k.String()+" hook call after a connection error or a 5xx")
		}
	}
	c.ConnectHeaders = r.List("SCC_PROXY_CONNECT_HEADERS", c.ConnectHeaders, "upgrade request headers the connect hook receives")
	c.KeyHeader = r.String("SCC_PROXY_KEY_HEADER", c.KeyHeader, "header that carries SCC_PROXY_KEY on every hook call")
	c.Key = r.String("SCC_PROXY_KEY", c.Key, "secret sent on every hook call so the backend can authenticate the frontend (empty: none)")
	c.MaxResponseBytes = r.Int64("SCC_PROXY_MAX_RESPONSE_BYTES", c.MaxResponseBytes, "largest hook answer in bytes (body, and headers apart)")
	c.RetryBackoff = r.Duration("SCC_PROXY_RETRY_BACKOFF", c.RetryBackoff, "wait before a hook's first retry, doubled for each next one")
	c.IdleConnTimeout = r.Duration("SCC_PROXY_IDLE_TIMEOUT", c.IdleConnTimeout, "close keep-alive connections to the backend idle this long (keep it below the backend's own)")
	return c
}

// rpcFallback forwards invokes that no Go handler claims to the rpc hook;
// the backend's result or error object is the client's response.
func rpcFallback(hc *hooks.Client) frontend.FallbackRPCHandler {
	return func(ctx context.Context, s *frontend.Socket, procedure string, data json.RawMessage) (any, error) {
		res, err := hc.RPC(ctx, &hooks.RPCRequest{
			SocketID:  s.ID(),
			Procedure: procedure,
			Claims:    s.AuthToken(),
			Data:      data,
		})
		if err != nil {
			return nil, hooks.ClientError(err)
		}
		return res, nil
	}
}

// startHooks builds the hook client when any hook has a URL; nil
// otherwise. The caller closes it after the frontend has shut down.
func startHooks(c hooks.Config, reg prometheus.Registerer, log *slog.Logger) (*hooks.Client, error) {
	if !c.Enabled() {
		return nil, nil
	}
	c.Registry = reg
	hc, err := hooks.New(c)
	if err != nil {
		return nil, err
	}
	return hc, nil
}

// wireHooks gives the frontend config the hooks that have a URL (a nil
// *hooks.Client in an interface field would not be nil).
func wireHooks(c *frontend.Config, hc *hooks.Client) {
	if hc.Enabled(hooks.Connect) {
		c.ConnectHook = hc
	}
	if hc.Enabled(hooks.Subscribe) {
		c.SubscribeHook = hc
	}
	if hc.Enabled(hooks.Publish) {
		c.PublishHook = hc
	}
}
