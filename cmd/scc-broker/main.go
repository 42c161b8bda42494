// Command scc-broker is an sccgo broker: it routes each publish from a
// frontend to every frontend subscribed to the channel. Brokers own the
// channels the ring gives them; on SIGTERM a broker drains (the state
// server reshards it out) before it exits. Run it with -h for every
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
		fmt.Fprintln(os.Stderr, "scc-broker:", err)
		os.Exit(1)
	}
}
