package localcluster

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// ControlTokenHeader is the request header that carries the control
// token. Every state-changing request must send it: a browser page on
// another origin cannot add a custom header without a CORS preflight,
// which the endpoint never grants, and cannot read the token.
const ControlTokenHeader = "X-SCC-Local-Token"

// ControlUsage documents the control endpoint; base is its URL without a
// trailing slash, e.g. "http://127.0.0.1:7700", and token the value of
// ControlTokenHeader (a placeholder where it must not be shown).
func ControlUsage(base, token string) string {
	return fmt.Sprintf(`Control endpoint (JSON answers; every POST needs the header %[3]s):
  T='%[3]s: %[2]s'
  curl %[1]s/procs                                       # list processes
  curl -X POST -H "$T" %[1]s/brokers                     # add a broker (waits until ready)
  curl -X POST -H "$T" %[1]s/brokers/broker-1/stop       # SIGTERM: graceful leave, no message lost
  curl -X POST -H "$T" %[1]s/brokers/broker-1/kill       # SIGKILL: a crash
  curl -X POST -H "$T" %[1]s/brokers/broker-1/restart    # same port and ID (SIGKILLs it first if running)
  curl -X POST -H "$T" %[1]s/state/kill                  # SIGKILL the state server
  curl -X POST -H "$T" %[1]s/state/start                 # start it again
  curl -X POST -H "$T" %[1]s/frontends                   # add a frontend (waits until ready)
  curl -X POST -H "$T" %[1]s/frontends/frontend-1/kill   # SIGKILL a frontend
`, base, token, ControlTokenHeader)
}

// Reasons a control request is refused (HTTP 403), as logged.
const (
	refuseHost   = "foreign_host"
	refuseOrigin = "cross_origin"
	refuseToken  = "bad_token"
)

// guardControl refuses, with HTTP 403, any request whose Host is not
// loopback-like (a DNS-rebinding page reaches the endpoint under its own
// name), any request a browser marks as coming from another origin, and
// any request other than GET or HEAD without the control token. An empty
// token refuses every state-changing request.
func (c *Cluster) guardControl(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := ""
		switch {
		case !controlHostAllowed(r.Host):
			reason = refuseHost
		case !sameOrigin(r):
			reason = refuseOrigin
		case r.Method != http.MethodGet && r.Method != http.MethodHead &&
			(token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(ControlTokenHeader)), []byte(token)) != 1):
			reason = refuseToken
		}
		if reason != "" {
			c.log.Warn("control request refused", "reason", reason, "peer", r.RemoteAddr,
				"method", r.Method, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden: " + reason})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// controlHostAllowed reports whether a request's Host names this machine
// in a way no other site can: an IP literal or localhost. A DNS name could
// be rebound to 127.0.0.1 by a page that wants to reach the endpoint.
func controlHostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	return net.ParseIP(host) != nil || strings.EqualFold(host, "localhost")
}

// sameOrigin reports whether a request is not a cross-origin one from a
// browser: no Origin header (curl, scripts) or the endpoint's own origin,
// and no Sec-Fetch-Site saying another site sent it.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	return o == "" || strings.EqualFold(o, "http://"+r.Host)
}

// ControlHandler serves the cluster's control API:
//
//	GET  /procs                       every process (ProcInfo list)
//	POST /brokers                     add a broker; 201 with its ProcInfo
//	POST /brokers/{name}/stop         SIGTERM (graceful leave); 202
//	POST /brokers/{name}/kill         SIGKILL; 200 once reaped
//	POST /brokers/{name}/restart      same port and ID; 200 once ready
//	POST /state/kill                  SIGKILL the state server
//	POST /state/start                 start it again; 200 once ready
//	POST /frontends                   add a frontend; 201 once ready
//	POST /frontends/{name}/kill       SIGKILL a frontend
//
// Every POST must carry token in the ControlTokenHeader header. Requests
// with a Host other than an IP literal or localhost, and cross-origin
// requests from browsers, are refused with 403 whatever their method.
//
// Errors are {"error": "..."} with 403 for a refused request, 404 for an
// unknown name, 504 when a node did not become ready within
// Options.OpTimeout and 500 otherwise.
func (c *Cluster) ControlHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, ControlUsage("http://"+r.Host, "<the token scc-local printed>"))
	})
	mux.HandleFunc("GET /procs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Procs())
	})
	mux.HandleFunc("POST /brokers", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.opts.OpTimeout)
		defer cancel()
		name, err := c.AddBroker(ctx)
		c.reply(w, name, http.StatusCreated, err)
	})
	mux.HandleFunc("POST /brokers/{name}/stop", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		c.reply(w, name, http.StatusAccepted, c.StopBroker(name, true))
	})
	mux.HandleFunc("POST /brokers/{name}/kill", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		c.reply(w, name, http.StatusOK, c.StopBroker(name, false))
	})
	mux.HandleFunc("POST /brokers/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.opts.OpTimeout)
		defer cancel()
		name := r.PathValue("name")
		c.reply(w, name, http.StatusOK, c.RestartBroker(ctx, name))
	})
	mux.HandleFunc("POST /state/kill", func(w http.ResponseWriter, r *http.Request) {
		c.reply(w, "state", http.StatusOK, c.KillState())
	})
	mux.HandleFunc("POST /state/start", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.opts.OpTimeout)
		defer cancel()
		c.reply(w, "state", http.StatusOK, c.StartState(ctx))
	})
	mux.HandleFunc("POST /frontends", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.opts.OpTimeout)
		defer cancel()
		name, err := c.AddFrontend(ctx)
		c.reply(w, name, http.StatusCreated, err)
	})
	mux.HandleFunc("POST /frontends/{name}/kill", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		c.reply(w, name, http.StatusOK, c.KillFrontend(name))
	})
	return c.guardControl(token, mux)
}

// reply answers with the named process's ProcInfo, or the error.
func (c *Cluster) reply(w http.ResponseWriter, name string, okStatus int, err error) {
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrUnknownProc):
			status = http.StatusNotFound
		case errors.Is(err, context.DeadlineExceeded):
			status = http.StatusGatewayTimeout
		case errors.Is(err, ErrClosed):
			status = http.StatusServiceUnavailable
		}
		body := map[string]any{"error": err.Error()}
		if in, perr := c.Proc(name); perr == nil {
			body["proc"] = in
		}
		writeJSON(w, status, body)
		return
	}
	in, err := c.Proc(name)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, okStatus, in)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
