// Command scc-frontend is sccgo's client-facing server: a WebSocket
// endpoint that speaks the SocketCluster protocol. Without
// SCC_STATE_SERVER_HOST it runs standalone, a complete single-node
// pub/sub server. Run it with -h for every environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal gets the default action: exit at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scc-frontend:", err)
		os.Exit(1)
	}
}
