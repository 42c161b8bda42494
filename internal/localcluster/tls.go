package localcluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/sccgo/sccgo/internal/devcert"
)

// tlsFiles are the throwaway certificates of a cluster started with
// Options.TLS or Options.ClientTLS.
type tlsFiles struct {
	dir   string
	files devcert.Files
	pool  *x509.CertPool
}

// makeTLS writes a fresh CA and one node certificate, valid for the
// cluster's host, 127.0.0.1, ::1 and localhost, into a new temporary
// directory (removed by Close).
func makeTLS(host string) (*tlsFiles, error) {
	ca, err := devcert.NewCA("scc-local")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "scc-local-tls-")
	if err != nil {
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	f, err := ca.WriteIssued(dir, "node", host, "127.0.0.1", "::1", "localhost")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localcluster: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	return &tlsFiles{dir: dir, files: f, pool: pool}, nil
}

// tlsEnv adds the TLS variables for a child of role.
func (c *Cluster) tlsEnv(role Role, set func(k, v string)) {
	if c.tls == nil {
		return
	}
	f := c.tls.files
	if c.opts.TLS {
		set("SCC_TLS_CERT_FILE", f.CertFile)
		set("SCC_TLS_KEY_FILE", f.KeyFile)
		set("SCC_TLS_CA_FILE", f.CAFile)
	}
	if c.opts.ClientTLS && role == RoleFrontend {
		set("SCC_CLIENT_TLS_CERT_FILE", f.CertFile)
		set("SCC_CLIENT_TLS_KEY_FILE", f.KeyFile)
	}
}

// secure reports whether role's port serves TLS.
func (c *Cluster) secure(role Role) bool {
	if role == RoleFrontend {
		return c.opts.ClientTLS
	}
	return c.opts.TLS
}

// probeTLS is the probe client's TLS configuration: it trusts the
// cluster's CA.
func (c *Cluster) probeTLS() *tls.Config {
	if c.tls == nil {
		return nil
	}
	return &tls.Config{RootCAs: c.tls.pool}
}

// CAFile returns the PEM file of the CA that signed the cluster's
// certificates (for clients of wss:// frontends, e.g. scc-bench -tls-ca),
// or "" when the cluster runs without TLS.
func (c *Cluster) CAFile() string {
	if c.tls == nil {
		return ""
	}
	return c.tls.files.CAFile
}

// ClientTLSConfig returns a configuration that trusts the cluster's CA,
// or nil without TLS.
func (c *Cluster) ClientTLSConfig() *tls.Config { return c.probeTLS() }
