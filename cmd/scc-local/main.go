// Command scc-local runs a whole sccgo cluster on this machine: one
// scc-state, -brokers scc-broker and -frontends scc-frontend processes from
// -bin-dir (make build puts them in bin/), with every line they print
// prefixed by its process name. It prints the client, status, demo and
// control URLs once every node is ready, serves a small control API to
// add, stop, kill and restart nodes, and stops everything on Ctrl-C.
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
		// After the first signal, a second one gets the default action
		// (exit at once); the children then die by their parent-death
		// signal.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scc-local:", err)
		os.Exit(1)
	}
}
