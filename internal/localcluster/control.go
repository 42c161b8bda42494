package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ControlUsage documents the control endpoint; base is its URL without a
// trailing slash, e.g. "http://127.0.0.1:7700".
func ControlUsage(base string) string {
	return fmt.Sprintf(`Control endpoint (JSON answers):
  curl %[1]s/procs                               # list processes
  curl -X POST %[1]s/brokers                     # add a broker (waits until ready)
  curl -X POST %[1]s/brokers/broker-1/stop       # SIGTERM: graceful leave, no message lost
  curl -X POST %[1]s/brokers/broker-1/kill       # SIGKILL: a crash
  curl -X POST %[1]s/brokers/broker-1/restart    # same port and ID (SIGKILLs it first if running)
  curl -X POST %[1]s/state/kill                  # SIGKILL the state server
  curl -X POST %[1]s/state/start                 # start it again
  curl -X POST %[1]s/frontends                   # add a frontend (waits until ready)
  curl -X POST %[1]s/frontends/frontend-1/kill   # SIGKILL a frontend
`, base)
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
// Errors are {"error": "..."} with 404 for an unknown name, 504 when a node
// did not become ready within Options.OpTimeout and 500 otherwise.
func (c *Cluster) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, ControlUsage("http://"+r.Host))
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
	return mux
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
