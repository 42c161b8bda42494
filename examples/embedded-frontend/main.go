// Command embedded-frontend is a SocketCluster frontend built as a library:
// it registers its own Go RPC handler and event handler, and joins a cluster
// when SCC_STATE_SERVER_HOST (or SCC_GOSSIP_SEEDS) is set, using only the
// exported API of the frontend and frontend/cluster packages.
//
//	go run ./examples/embedded-frontend            # standalone on :8000
//	SCC_STATE_SERVER_HOST=state SCC_AUTH_KEY=... go run ./examples/embedded-frontend
//
// A client invoking "time.now" gets the server's clock; "echo" returns its
// data; "greet" answers with the socket's auth token's sub claim.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/protocol"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "embedded-frontend:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()

	cfg := frontend.DefaultConfig()
	cfg.Logger = logger
	cfg.Registry = reg
	cfg.ServeAdmin = true
	// The HTTP server API (/api/, docs/api.md) when a key is given.
	cfg.API.Key = getenv("SCC_API_KEY")

	// Cluster wiring: the same variables and defaults as scc-frontend.
	ncfg, err := cluster.NodeConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	var srv *frontend.Server
	if ncfg.Enabled() {
		ncfg.Logger = logger
		ncfg.Registry = reg
		ncfg.Stats = func() protocol.Stats {
			if srv == nil {
				return protocol.Stats{}
			}
			st := srv.Stats()
			return protocol.Stats{Connections: st.Connections, Subscriptions: st.Subscriptions, MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut}
		}
		node, err := cluster.NewNode(ncfg)
		if err != nil {
			return err
		}
		cfg.Broker = node.Broker() // the server starts and closes it
	}

	srv, err = frontend.New(cfg)
	if err != nil {
		return err
	}
	srv.HandleRPC("time.now", func(context.Context, *frontend.Socket, json.RawMessage) (any, error) {
		return map[string]any{"unixMs": time.Now().UnixMilli()}, nil
	})
	srv.HandleRPC("echo", func(_ context.Context, _ *frontend.Socket, data json.RawMessage) (any, error) {
		return data, nil
	})
	srv.HandleRPC("greet", func(_ context.Context, s *frontend.Socket, _ json.RawMessage) (any, error) {
		sub, _ := s.AuthToken()["sub"].(string)
		if sub == "" {
			return nil, protocol.NewError("AuthError", "greet needs an authenticated socket")
		}
		return "hello " + sub, nil
	})
	srv.HandleEvent("typing", func(s *frontend.Socket, data json.RawMessage) {
		logger.Debug("typing", "conn", s.ID())
	})

	addr := ":8000"
	if p := getenv("SOCKETCLUSTER_PORT"); p != "" {
		addr = ":" + p
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serveErr == nil {
		serveErr = <-errc
	}
	if errors.Is(serveErr, context.Canceled) {
		serveErr = nil
	}
	return errors.Join(serveErr, err)
}
