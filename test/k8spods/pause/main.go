// Command pause is the pod sandbox image of make k8s-pods: it holds the
// pod's namespaces and waits for SIGTERM or SIGINT, like the registry's
// pause image, which a machine that reaches only package registries
// cannot pull. scripts/k8s-pods.sh builds it statically and packs it with
// umoci.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
