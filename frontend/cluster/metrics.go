package cluster

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	drops         *prometheus.CounterVec
	reshards      *prometheus.CounterVec
	links         prometheus.Gauge
	linksUp       prometheus.Gauge
	subscriptions prometheus.Gauge
	ringVersion   prometheus.Gauge
	delivered     prometheus.Counter
	deliveryDrops *prometheus.CounterVec
	rerouted      prometheus.Counter
	fenceSeconds  prometheus.Histogram
	commitSeconds prometheus.Histogram
	resent        prometheus.Counter
	subBatches    prometheus.Counter
	subChanges    *prometheus.CounterVec
	subPending    prometheus.Gauge
}

// Results of a subscription change (broker_subscription_changes_total).
const (
	subChangeSubscribe   = "subscribe"   // sent to the broker in a batch
	subChangeUnsubscribe = "unsubscribe" // sent to the broker in a batch
	subChangeCoalesced   = "coalesced"   // cancelled by the opposite change before it was sent
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scc_frontend_route_drops_total",
			Help: "Publishes the frontend could not route to a broker, by reason (no_ring, backlog_full, backlog_expired, in_flight, fence_full, link_queue_full, link_closed, malformed).",
		}, []string{"reason"}),
		reshards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scc_frontend_reshard_events_total",
			Help: "Reshard steps on this frontend, by phase (prepare, commit) and trouble (prepare_timeout, subscribe_timeout, fence_timeout).",
		}, []string{"phase"}),
		links: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_frontend_broker_links",
			Help: "Broker links this frontend keeps (up or reconnecting).",
		}),
		linksUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_frontend_broker_links_up",
			Help: "Broker links that are connected.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_frontend_cluster_channels",
			Help: "Channels this frontend holds at brokers (one per channel, whatever the number of local subscribers).",
		}),
		ringVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scc_frontend_ring_version",
			Help: "Version of the ring publishes follow.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scc_frontend_broker_deliveries_total",
			Help: "Publishes received from brokers for local fan-out.",
		}),
		deliveryDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scc_frontend_broker_delivery_drops_total",
			Help: "Publications received from brokers and dropped before fan-out, by reason (invalid_utf8, invalid_json).",
		}, []string{"reason"}),
		rerouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scc_frontend_rerouted_total",
			Help: "Publishes that waited for a lost broker and were re-routed to the channel's new owner.",
		}),
		fenceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scc_frontend_fence_seconds",
			Help:    "Time publishes were held at a ring switch while old owners acknowledged earlier publishes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scc_frontend_commit_seconds",
			Help:    "Time from receiving a ring commit to publishing by it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	m.resent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scc_frontend_resent_total",
		Help: "Publishes of channels with history a failed broker had not acknowledged, re-sent to the channel's next owner (which drops what it already holds).",
	})
	m.subBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scc_frontend_broker_subscription_batches_total",
		Help: "Batches of subscription changes sent to brokers (a window of them in flight per link).",
	})
	m.subChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scc_frontend_broker_subscription_changes_total",
		Help: "Channel subscription changes toward brokers, by result (subscribe, unsubscribe: sent; coalesced: cancelled by the opposite change before it was sent).",
	}, []string{"result"})
	m.subPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "scc_frontend_broker_subscription_pending",
		Help: "Channel subscription changes waiting for the window of batches in flight on their broker link.",
	})
	if reg != nil {
		reg.MustRegister(m.subBatches, m.subChanges, m.subPending)
		reg.MustRegister(m.resent)
		reg.MustRegister(m.drops, m.reshards, m.links, m.linksUp, m.subscriptions, m.ringVersion,
			m.delivered, m.deliveryDrops, m.rerouted, m.fenceSeconds, m.commitSeconds)
	}
	return m
}
