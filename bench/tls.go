package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

type tlsKey struct {
	caFile   string
	insecure bool
}

// tlsConfigs caches one client TLS configuration per setting, so
// thousands of connections share one parsed CA pool (and TLS session
// cache).
var tlsConfigs sync.Map // tlsKey → *tls.Config

// clientTLS returns the TLS configuration for wss:// URLs, nil for the
// defaults (system roots).
func (c Config) clientTLS() (*tls.Config, error) {
	if c.TLSCAFile == "" && !c.TLSInsecure {
		return nil, nil
	}
	k := tlsKey{c.TLSCAFile, c.TLSInsecure}
	if v, ok := tlsConfigs.Load(k); ok {
		return v.(*tls.Config), nil
	}
	tc := &tls.Config{InsecureSkipVerify: c.TLSInsecure, ClientSessionCache: tls.NewLRUClientSessionCache(0)}
	if c.TLSCAFile != "" {
		b, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: -tls-ca: %v", ErrConfig, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%w: -tls-ca: no PEM certificate in %s", ErrConfig, c.TLSCAFile)
		}
	}
	v, _ := tlsConfigs.LoadOrStore(k, tc)
	return v.(*tls.Config), nil
}
