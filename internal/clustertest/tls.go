package clustertest

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/tlsconf"
)

// tlsSetup makes the cluster's throwaway CA when Options.TLS or
// Options.ClientTLS asks for one.
func (c *Cluster) tlsSetup() {
	if !c.opts.TLS && !c.opts.ClientTLS {
		return
	}
	ca, err := devcert.NewCA("clustertest")
	if err != nil {
		c.t.Fatalf("making a CA: %v", err)
	}
	c.ca, c.certDir = ca, c.t.TempDir()
}

// NodeTLS issues a certificate from the cluster's CA for name (valid for
// 127.0.0.1) and returns a store for it, as a node holding the cluster's
// certificates would load it. The cluster needs Options.TLS or ClientTLS.
func (c *Cluster) NodeTLS(name string) *tlsconf.Store {
	c.t.Helper()
	if c.ca == nil {
		c.t.Fatal("NodeTLS needs Options.TLS or Options.ClientTLS")
	}
	return c.storeFor(c.ca, name)
}

// ForeignTLS is NodeTLS with a CA of its own: a certificate the cluster
// does not trust.
func (c *Cluster) ForeignTLS(name string) *tlsconf.Store {
	c.t.Helper()
	ca, err := devcert.NewCA("foreign")
	if err != nil {
		c.t.Fatal(err)
	}
	return c.storeFor(ca, name)
}

func (c *Cluster) storeFor(ca *devcert.CA, name string) *tlsconf.Store {
	c.t.Helper()
	f, err := ca.WriteIssued(c.t.TempDir(), name, "127.0.0.1", "localhost")
	if err != nil {
		c.t.Fatalf("issuing a certificate: %v", err)
	}
	cfg := tlsconf.DefaultConfig()
	cfg.CertFile, cfg.KeyFile, cfg.CAFile, cfg.RequireCA = f.CertFile, f.KeyFile, f.CAFile, true
	st, err := tlsconf.New(cfg)
	if err != nil {
		c.t.Fatalf("loading certificates: %v", err)
	}
	return st
}

// linkTLS returns the store of node name when links use TLS, else nil.
func (c *Cluster) linkTLS(name string) *tlsconf.Store {
	if !c.opts.TLS {
		return nil
	}
	return c.NodeTLS(name)
}

// ClientTLSConfig is what a client needs to trust the frontends' wss://
// certificates (nil without Options.ClientTLS).
func (c *Cluster) ClientTLSConfig() *tls.Config {
	if !c.opts.ClientTLS {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ca.CertPEM)
	return &tls.Config{RootCAs: pool}
}

// StateTLSFailures returns scc_state_tls_handshake_failures_total for
// reason.
func (c *Cluster) StateTLSFailures(reason string) float64 {
	if c.State == nil || c.State.reg == nil {
		return 0
	}
	return counterValue(c.State.reg, "scc_state_tls_handshake_failures_total", "reason", reason)
}
