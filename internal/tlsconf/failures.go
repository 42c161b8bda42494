package tlsconf

import (
	"errors"
	"log"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a TLS handshake failed (bounded: they are metric labels).
const (
	FailTimeout = "timeout"  // the handshake did not finish in time (the server's handshake timeout)
	FailNotTLS  = "not_tls"  // the client spoke plain HTTP or something else, not TLS
	FailBadCert = "bad_cert" // a certificate did not verify (the client's against the CA, or the client refused the server's)
	FailClosed  = "closed"   // the client went away during the handshake
	FailOther   = "other"    // any other handshake error
)

// HandshakeFailures returns scc_<role>_tls_handshake_failures_total{reason}
// registered on reg (nil: not registered); a second call with the same
// registry returns the same counter.
func HandshakeFailures(reg prometheus.Registerer, role string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scc_" + role + "_tls_handshake_failures_total",
		Help: "TLS handshakes that failed on this server's port, by reason.",
	}, []string{"reason"})
	for _, r := range []string{FailTimeout, FailNotTLS, FailBadCert, FailClosed, FailOther} {
		c.WithLabelValues(r)
	}
	if r, ok := reg.(*prometheus.Registry); ok && r == nil {
		return c
	}
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// ErrorLog returns a logger for http.Server.ErrorLog: net/http reports a
// failed TLS handshake only there, so each such line is counted in
// failures by reason. Every line then goes to next at debug level (nil:
// dropped), so a stranger knocking cannot flood the log.
func ErrorLog(failures *prometheus.CounterVec, next *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{failures: failures, next: next}, "", 0)
}

type errorLogWriter struct {
	failures *prometheus.CounterVec
	next     *slog.Logger
}

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		w.failures.WithLabelValues(failReason(msg)).Inc()
	}
	if w.next != nil {
		w.next.Debug(msg)
	}
	return len(p), nil
}

// failReason classifies net/http's "http: TLS handshake error from ...: ..."
// line.
func failReason(msg string) string {
	switch {
	case strings.Contains(msg, "i/o timeout"):
		return FailTimeout
	case strings.Contains(msg, "HTTP request to an HTTPS server"), strings.Contains(msg, "does not look like a TLS handshake"):
		return FailNotTLS
	case strings.Contains(msg, "certificate"):
		return FailBadCert
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return FailClosed
	}
	return FailOther
}
