// Command coredns is CoreDNS with only the plugins that make k8s-pods'
// Corefile uses: cluster DNS for the Services and pods of a one-node
// cluster, answered from the API server, and nothing forwarded off the
// machine. Importing github.com/coredns/coredns/core/plugin instead would
// build every plugin (cloud DNS providers, etcd, dnstap, ...), several
// times the code for nothing.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives are the plugins above, in the order CoreDNS's own list
// (core/dnsserver/zdirectives.go) runs them.
var directives = []string{
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
