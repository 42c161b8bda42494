// Command scc-bench is sccgo's load generator and delivery checker. It
// speaks only the SocketCluster client protocol, so it measures any
// SocketCluster server. Run it with -h for the scenarios and flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		// A worker process shares the coordinator's terminal: Ctrl-C
		// reaches both, but only the coordinator decides what stops when
		// (it sends cancel, or its exit closes our stdin).
		signal.Ignore(os.Interrupt)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal gets the default action: exit at once.
		<-ctx.Done()
		stop()
	}()
	_, ttyErr := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	err := run(ctx, os.Args[1:], env{
		getenv: os.Getenv,
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		tty:    ttyErr == nil,
	})
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errRunFailed):
		fmt.Fprintln(os.Stderr, "scc-bench:", err)
		os.Exit(2)
	case errors.Is(err, errBoundMissed):
		fmt.Fprintln(os.Stderr, "scc-bench:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "scc-bench:", err)
		os.Exit(1)
	}
}
