package membership

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/ring"
)

type metrics struct {
	connected   prometheus.Gauge
	ringVersion prometheus.Gauge
	changes     *prometheus.CounterVec
	rejects     *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, role string) *metrics {
	p := "scc_" + role + "_"
	m := &metrics{
		connected:   prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "state_connected", Help: "1 while the link to the state server is up."}),
		ringVersion: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "membership_ring_version", Help: "Version of the highest committed ring the membership agent holds."}),
		changes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "ring_changes_total", Help: "Rings applied, by source (state, gossip, fallback)."}, []string{"source"}),
		rejects:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "ring_rejects_total", Help: "Rings refused for their version, by reason (version_jump, version_ceiling)."}, []string{"reason"}),
	}
	for _, r := range []string{ring.ReasonVersionJump, ring.ReasonVersionCeiling} {
		m.rejects.WithLabelValues(r)
	}
	if reg != nil {
		m.connected = register(reg, m.connected)
		m.ringVersion = register(reg, m.ringVersion)
		m.changes = register(reg, m.changes)
		m.rejects = register(reg, m.rejects)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (several agents may share a registry in tests). A clash with a
// different metric of the same name leaves c unregistered rather than
// taking the node down.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
