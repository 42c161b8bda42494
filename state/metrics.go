package state

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/ring"
)

// metrics are the scc_state_* series.
type metrics struct {
	members         *prometheus.GaugeVec
	ringVersion     prometheus.Gauge
	reshards        *prometheus.CounterVec
	reshardDuration prometheus.Histogram
	reshardTimeouts prometheus.Counter
	ringRejects     *prometheus.CounterVec
	rulesDigests    prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scc_state_members", Help: "Connected members, by role.",
		}, []string{"role"}),
		ringVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_state_ring_version", Help: "Version of the committed ring.",
		}),
		reshards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scc_state_reshards_total", Help: "Rings committed, by result (ok, timeout, direct).",
		}, []string{"result"}),
		reshardDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scc_state_reshard_duration_seconds",
			Help:    "Time from prepare to commit of a reshard.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		reshardTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scc_state_reshard_timeouts_total", Help: "Reshards committed after the prepare timeout.",
		}),
		ringRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scc_state_ring_rejects_total", Help: "Ring versions members reported that were ignored, by reason (version_jump, version_ceiling).",
		}, []string{"reason"}),
		rulesDigests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_state_rules_digests",
			Help: "Distinct channel rules digests among connected members that report one; above 1, nodes run different channel rules.",
		}),
	}
	for _, r := range []string{ring.ReasonVersionJump, ring.ReasonVersionCeiling} {
		m.ringRejects.WithLabelValues(r)
	}
	for _, r := range []string{resultOK, resultTimeout, resultDirect} {
		m.reshards.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.members, m.ringVersion, m.reshards, m.reshardDuration, m.reshardTimeouts, m.ringRejects, m.rulesDigests)
	}
	return m
}
