package nodelink

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ReasonNoCert: handshake refused because the link arrived over TLS
// without a verified client certificate.
const ReasonNoCert = "no_cert"

// ErrNoCert is returned by Accept for a TLS request without a verified
// client certificate.
var ErrNoCert = errors.New("nodelink: TLS link without a verified client certificate")

// dialTarget returns the URL and HTTP client to dial hostport with, and a
// func to call once the dial is over. Without cfg.TLS it is ws:// over the
// shared plain client; with it, wss:// over a transport of its own that
// carries the configuration current now (the transport derives the name
// to verify from hostport unless the configuration names one).
func dialTarget(hostport string, cfg Config) (url string, c *http.Client, done func()) {
	if cfg.TLS == nil {
		return "ws://" + hostport + Path, dialClient, func() {}
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     cfg.TLS(),
		TLSHandshakeTimeout: cfg.HandshakeTimeout,
	}
	// The upgraded connection is handed to the WebSocket; nothing stays
	// idle in the transport, but close whatever might.
	return "wss://" + hostport + Path, &http.Client{Transport: tr}, tr.CloseIdleConnections
}

// checkPeerCert refuses, with HTTP 403 before any upgrade, a link request
// that came over TLS without a client certificate verified against the
// cluster's CA. The listener only asks for certificates (so HTTPS probes
// of /healthz work on the same port); links insist. A request over plain
// TCP passes: that node runs without TLS on links.
func checkPeerCert(w http.ResponseWriter, r *http.Request, cfg Config) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) > 0 {
		return nil
	}
	cfg.Metrics.Rejects.WithLabelValues(ReasonNoCert).Inc()
	cfg.Logger.Warn("link refused", "reason", ReasonNoCert, "remote", r.RemoteAddr)
	http.Error(w, "client certificate required", http.StatusForbidden)
	return fmt.Errorf("accepting link from %s: %w", r.RemoteAddr, ErrNoCert)
}
