package frontend

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Close reasons: the bounded label values of closes_total and the reason
// key in logs.
const (
	reasonNormal            = "normal"
	reasonGoingAway         = "going_away"
	reasonPongTimeout       = "pong_timeout"
	reasonHandshakeTimeout  = "handshake_timeout"
	reasonHandshakeRejected = "handshake_rejected"
	reasonBeforeHandshake   = "before_handshake"
	reasonMessageTooBig     = "message_too_big"
	reasonSlowConsumer      = "slow_consumer"
	reasonRateLimited       = "rate_limited"
	reasonUnsupportedData   = "unsupported_data"
	reasonInvalidPayload    = "invalid_payload"
	reasonReadError         = "read_error"
	reasonWriteError        = "write_error"
	reasonClientClose       = "client_close"
	reasonAuthSignFailed    = "auth_sign_failed"
	reasonServer            = "server"
	// Inbound limits (see limits.go).
	reasonByteRateLimited  = "byte_rate_limited"
	reasonTooManyFragments = "too_many_fragments"
	reasonBatchTooLarge    = "batch_too_large"
	reasonReadBudget       = "read_budget"
)

// Subscribe rejection reasons for subscribe_errors_total.
const (
	subRejectSocketLimit = "socket_limit"
	subRejectMax         = "max_subscriptions"
	subRejectMaxPerIP    = "max_subscriptions_per_ip"
	subRejectPending     = "max_pending"
	subRejectBroker      = "broker"
)

// Rejection reasons for rejected_connections_total.
const (
	rejectPath          = "path"
	rejectOrigin        = "origin"
	rejectMaxConns      = "max_connections"
	rejectHandshakeRate = "handshake_rate"
	rejectDraining      = "draining"
	rejectUpgrade       = "upgrade"
	rejectMaxConnsPerIP = "max_connections_per_ip"
)

// metrics holds the frontend's Prometheus counters (prefix scc_frontend_);
// the connections, subscriptions and channels gauges are read from the
// server's atomics at scrape time (see New).
type metrics struct {
	connectionsTotal     prometheus.Counter
	handshakes           prometheus.Counter
	rejected             *prometheus.CounterVec
	refusalHolds         prometheus.Counter
	shortWaits           prometheus.Counter
	closes               *prometheus.CounterVec
	messagesIn           *prometheus.CounterVec
	messagesOut          prometheus.Counter
	bytesIn              prometheus.Counter
	bytesOut             prometheus.Counter
	framesOut            prometheus.Counter
	queueDrops           *prometheus.CounterVec
	authFailures         *prometheus.CounterVec
	publishErrors        *prometheus.CounterVec
	inPublish            prometheus.Counter
	inSubscribe          prometheus.Counter
	inOther              prometheus.Counter
	inRPC                prometheus.Counter
	inEvent              prometheus.Counter
	inPong               prometheus.Counter
	inRaw                prometheus.Counter
	inResponse           prometheus.Counter
	closeSlowConsumer    prometheus.Counter
	acceptsPaced         prometheus.Counter
	acceptsHeld          prometheus.Counter
	subscribeErrors      *prometheus.CounterVec
	subscribesPaced      *prometheus.CounterVec
	publishRefusalsPaced prometheus.Counter
	reattaches           *prometheus.CounterVec
	detachedPings        prometheus.Counter
	detachedPongs        prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	const ns, sub = "scc", "frontend"
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	m := &metrics{
		connectionsTotal:     prometheus.NewCounter(prometheus.CounterOpts(f("connections_total", "Client WebSocket connections accepted."))),
		handshakes:           prometheus.NewCounter(prometheus.CounterOpts(f("handshakes_total", "Successful SocketCluster #handshake exchanges."))),
		rejected:             prometheus.NewCounterVec(prometheus.CounterOpts(f("rejected_connections_total", "Upgrade requests refused, by reason.")), []string{"reason"}),
		shortWaits:           prometheus.NewCounter(prometheus.CounterOpts(f("short_connection_waits_total", "Upgrades that waited for their address's pace because its connections kept ending within SCC_SHORT_CONNECTION_TIME."))),
		refusalHolds:         prometheus.NewCounter(prometheus.CounterOpts(f("refusal_holds_total", "Refused connections held unanswered for SCC_REFUSAL_HOLD before their 503 (also counted in rejected_connections_total)."))),
		closes:               prometheus.NewCounterVec(prometheus.CounterOpts(f("closes_total", "Client connections closed, by reason.")), []string{"reason"}),
		messagesIn:           prometheus.NewCounterVec(prometheus.CounterOpts(f("messages_in_total", "Inbound packets and frames, by type.")), []string{"type"}),
		messagesOut:          prometheus.NewCounter(prometheus.CounterOpts(f("messages_out_total", "Packets queued to clients."))),
		bytesIn:              prometheus.NewCounter(prometheus.CounterOpts(f("bytes_in_total", "Inbound WebSocket message bytes."))),
		bytesOut:             prometheus.NewCounter(prometheus.CounterOpts(f("bytes_out_total", "Outbound data frame bytes written."))),
		framesOut:            prometheus.NewCounter(prometheus.CounterOpts(f("frames_out_total", "Outbound data frames written (several packets may share one)."))),
		queueDrops:           prometheus.NewCounterVec(prometheus.CounterOpts(f("queue_drops_total", "Outbound queue overflows, by bound.")), []string{"reason"}),
		authFailures:         prometheus.NewCounterVec(prometheus.CounterOpts(f("auth_failures_total", "Rejected auth tokens, by error name.")), []string{"reason"}),
		acceptsPaced:         prometheus.NewCounter(prometheus.CounterOpts(f("accepts_paced_total", "Connections accepted only after waiting in the listen queue for the handshake rate."))),
		acceptsHeld:          prometheus.NewCounter(prometheus.CounterOpts(f("accepts_held_total", "Accepted connections held while more goroutines than SCC_ACCEPT_RUNNABLE_MAX were ready to run."))),
		publishErrors:        prometheus.NewCounterVec(prometheus.CounterOpts(f("publish_errors_total", "Publishes refused, by reason.")), []string{"reason"}),
		subscribeErrors:      prometheus.NewCounterVec(prometheus.CounterOpts(f("subscribe_errors_total", "Subscribes refused, by reason.")), []string{"reason"}),
		publishRefusalsPaced: prometheus.NewCounter(prometheus.CounterOpts(f("publish_refusals_paced_total", "Refused publishes after which their socket's reader waited for SCC_PUBLISH_REFUSAL_RATE."))),
		reattaches:           prometheus.NewCounterVec(prometheus.CounterOpts(f("socket_reattaches_total", "Detached sockets given their WebSocket state again, by what needed it: a message to read, a frame to write, a close.")), []string{"by"}),
		detachedPings:        prometheus.NewCounter(prometheus.CounterOpts(f("detached_pings_total", "Pings written straight to a detached socket's descriptor."))),
		detachedPongs:        prometheus.NewCounter(prometheus.CounterOpts(f("detached_pongs_total", "Pongs read from a detached socket without rebuilding its WebSocket state (also counted in messages_in_total)."))),
		subscribesPaced:      prometheus.NewCounterVec(prometheus.CounterOpts(f("subscribes_paced_total", "Subscribes and unsubscribes whose socket waited for their turn under a subscription rate, by the rate that held it.")), []string{"reason"}),
	}
	for _, r := range []string{reasonNormal, reasonGoingAway, reasonPongTimeout, reasonHandshakeTimeout, reasonHandshakeRejected,
		reasonBeforeHandshake, reasonMessageTooBig, reasonSlowConsumer, reasonRateLimited, reasonUnsupportedData, reasonInvalidPayload,
		reasonReadError, reasonWriteError, reasonClientClose,
		reasonByteRateLimited, reasonTooManyFragments, reasonBatchTooLarge, reasonReadBudget} {
		m.closes.WithLabelValues(r)
	}
	for _, r := range []string{rejectPath, rejectOrigin, rejectMaxConns, rejectHandshakeRate, rejectDraining, rejectMaxConnsPerIP, rejectLimitClosesPerIP, rejectShortConnsPerIP, rejectHandshakesPerIP} {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{subRejectSocketLimit, subRejectMax, subRejectMaxPerIP, subRejectPending, subRejectBroker} {
		m.subscribeErrors.WithLabelValues(r)
	}
	for _, r := range []string{pacedSubscribeRate, pacedSubscribeRatePerIP, pacedUnsubscribeRate, pacedUnsubscribeRatePerIP} {
		m.subscribesPaced.WithLabelValues(r)
	}
	m.inPublish = m.messagesIn.WithLabelValues("publish")
	m.inSubscribe = m.messagesIn.WithLabelValues("subscribe")
	m.inRPC = m.messagesIn.WithLabelValues("rpc")
	m.inEvent = m.messagesIn.WithLabelValues("event")
	m.inOther = m.messagesIn.WithLabelValues("other")
	for _, r := range []string{reattachRead, reattachWrite, reattachClose} {
		m.reattaches.WithLabelValues(r)
	}
	m.inPong = m.messagesIn.WithLabelValues("pong")
	m.inRaw = m.messagesIn.WithLabelValues("raw")
	m.inResponse = m.messagesIn.WithLabelValues("response")
	m.closeSlowConsumer = m.closes.WithLabelValues(reasonSlowConsumer)
	reg.MustRegister(m.connectionsTotal, m.handshakes, m.rejected, m.refusalHolds, m.shortWaits, m.closes, m.messagesIn, m.messagesOut, m.bytesIn, m.bytesOut, m.framesOut, m.queueDrops,
		m.authFailures, m.publishErrors, m.acceptsPaced, m.acceptsHeld, m.subscribeErrors, m.subscribesPaced, m.publishRefusalsPaced,
		m.reattaches, m.detachedPings, m.detachedPongs)
	return m
}
