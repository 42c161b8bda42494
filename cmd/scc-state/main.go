// Command scc-state is sccgo's cluster state server: one per cluster, it
// knows the brokers and frontends, assigns ring versions, coordinates
// reshards and serves the cluster status. Run it with -h for every
// environment variable.
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
		fmt.Fprintln(os.Stderr, "scc-state:", err)
		os.Exit(1)
	}
}
