package hooks

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// outcome is a call's result as counted in scc_frontend_hook_calls_total.
type outcome int

const (
	outAllow       outcome = iota // the backend allowed (rpc: answered with a result)
	outReplace                    // publish allowed with replaced data
	outDeny                       // the backend answered with an error object
	outError                      // connection failed or refused
	outTimeout                    // no answer within the hook's timeout
	outOverloaded                 // the hook's concurrency bound was reached
	outBadStatus                  // an HTTP status other than 200
	outBadResponse                // not the documented JSON, or too large
	outCanceled                   // the caller gave up (the socket closed)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"allow", "replace", "deny", "error", "timeout", "overloaded", "bad_status", "bad_response", "canceled"}

func (o outcome) String() string { return outcomeNames[o] }

// metrics are the Client's collectors, shared by its hooks.
type metrics struct {
	calls      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	failedOpen *prometheus.CounterVec
	inFlight   *prometheus.GaugeVec
}

// hookMetrics are one hook's children, resolved once.
type hookMetrics struct {
	calls      [numOutcomes]prometheus.Counter
	duration   prometheus.Observer
	retries    prometheus.Counter
	failedOpen prometheus.Counter
	inFlight   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "scc", "frontend"
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "hook_calls_total",
			Help: "Calls of the application backend's hooks, by hook and outcome."}, []string{"hook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "hook_duration_seconds",
			Help:    "Time a hook call took, retries included (calls refused as overloaded are not timed).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"hook"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "hook_retries_total",
			Help: "Repeated attempts of connect and subscribe hook calls after a connection error or a 5xx."}, []string{"hook"}),
		failedOpen: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "hook_failed_open_total",
			Help: "Failed hook calls allowed because the hook is configured to fail open."}, []string{"hook"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "hook_in_flight",
			Help: "Hook calls in flight, bounded by SCC_PROXY_<HOOK>_CONCURRENCY."}, []string{"hook"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.retries, m.failedOpen, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("hooks: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) forHook(k Kind) hookMetrics {
	name := k.String()
	hm := hookMetrics{
		duration:   m.duration.WithLabelValues(name),
		retries:    m.retries.WithLabelValues(name),
		failedOpen: m.failedOpen.WithLabelValues(name),
		inFlight:   m.inFlight.WithLabelValues(name),
	}
	for o := outcome(0); o < numOutcomes; o++ {
		if o == outReplace && k != Publish {
			continue
		}
		hm.calls[o] = m.calls.WithLabelValues(name, o.String())
	}
	return hm
}
