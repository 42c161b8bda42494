package broker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons (bounded: they are metric labels).
const (
	dropLinkQueue = "link_queue" // a Deliver did not fit a link's queue (or the link closed)
	dropMalformed = "malformed"  // a message from a frontend did not decode
	dropUnknown   = "unexpected" // a message type a frontend should not send
	dropAck       = "ack_queue"  // a PubAck or SubAck did not fit the link's queue
	dropDuplicate = "duplicate"  // a publish repeated an idempotency key seen within the window
)

type metrics struct {
	links         prometheus.Gauge
	publishesIn   prometheus.Counter
	deliveriesOut prometheus.Counter
	drops         *prometheus.CounterVec
	ringVersion   prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, t *interest) *metrics {
	m := &metrics{
		links:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "scc_broker_links", Help: "Frontend links connected."}),
		publishesIn:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_broker_publishes_in_total", Help: "Publishes received from frontends."}),
		deliveriesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_broker_deliveries_out_total", Help: "Delivers queued to frontend links (one per interested link per publish)."}),
		drops:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_drops_total", Help: "Messages the broker dropped, by reason."}, []string{"reason"}),
		ringVersion:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "scc_broker_ring_version", Help: "Version of the committed ring this broker last heard of."}),
	}
	for _, r := range []string{dropLinkQueue, dropMalformed, dropUnknown, dropAck, dropDuplicate} {
		m.drops.WithLabelValues(r)
	}
	reg.MustRegister(m.links, m.publishesIn, m.deliveriesOut, m.drops, m.ringVersion,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scc_broker_channels", Help: "Channels at least one frontend link holds."},
			func() float64 { return float64(t.channels.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "scc_broker_subscriptions", Help: "(frontend link, channel) interest pairs."},
			func() float64 { return float64(t.pairs.Load()) }),
	)
	return m
}
