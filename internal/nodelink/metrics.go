package nodelink

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/protocol"
)

// Reasons for rejects, drops and closes (bounded: they are metric labels).
// Handshake rejects also use the protocol.Reject* reasons.
const (
	ReasonTimeout     = "timeout"      // handshake: nothing (or not all) arrived in time
	ReasonClosed      = "closed"       // handshake: the peer went away; drop: the link is closed
	ReasonQueueFull   = "queue_full"   // drop: the writer queue is at QueueMaxBytes
	ReasonTooLarge    = "too_large"    // drop: one message exceeds MaxFrameBytes
	ReasonUnsent      = "unsent"       // drop: queued but not yet written when the link closed
	ReasonPingTimeout = "ping_timeout" // close: nothing arrived for PingTimeout
	ReasonReadError   = "read_error"   // close: the connection failed while reading
	ReasonWriteError  = "write_error"  // close: a frame write failed or timed out
	ReasonProtocol    = "protocol"     // close: a malformed frame or a handshake message after Welcome
	ReasonRejected    = "rejected"     // close: the peer sent Reject
	ReasonShutdown    = "shutdown"     // close: this node is shutting down

	// ReasonPendingTotal refuses a handshake (HTTP 503) when
	// MaxPendingHandshakes are already unverified.
	ReasonPendingTotal = "pending_total"
	// ReasonPendingSource refuses a handshake (HTTP 503) when its source
	// IP already has MaxPendingHandshakesPerSource unverified.
	ReasonPendingSource = "pending_source"
)

// Metrics counts link traffic, drops, closes and rejects. Create one per
// process and role with NewMetrics and share it between Configs.
type Metrics struct {
	Rejects   *prometheus.CounterVec // scc_<role>_link_rejects_total{reason}
	Drops     *prometheus.CounterVec // scc_<role>_link_drops_total{reason}
	Closes    *prometheus.CounterVec // scc_<role>_link_closes_total{reason}
	FramesIn  prometheus.Counter     // scc_<role>_link_frames_in_total
	FramesOut prometheus.Counter     // scc_<role>_link_frames_out_total
	BytesIn   prometheus.Counter     // scc_<role>_link_bytes_in_total
	BytesOut  prometheus.Counter     // scc_<role>_link_bytes_out_total
	// PendingHandshakes is scc_<role>_link_pending_handshakes: accepted
	// handshakes whose Hello is not verified yet.
	PendingHandshakes prometheus.Gauge
}

// NewMetrics creates the link counters for role and registers them on reg
// (nil, including a nil *prometheus.Registry: not registered). Calling it twice with the same registry and role
// returns counters backed by the same series.
func NewMetrics(reg prometheus.Registerer, role string) *Metrics {
	if role == "" {
		role = "node"
	}
	p := "scc_" + role + "_link_"
	m := &Metrics{
		Rejects:           prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "rejects_total", Help: "Link handshakes refused, by reason."}, []string{"reason"}),
		Drops:             prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "drops_total", Help: "Outbound link messages dropped, by reason."}, []string{"reason"}),
		Closes:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "closes_total", Help: "Established links closed, by reason."}, []string{"reason"}),
		FramesIn:          prometheus.NewCounter(prometheus.CounterOpts{Name: p + "frames_in_total", Help: "Link frames read."}),
		FramesOut:         prometheus.NewCounter(prometheus.CounterOpts{Name: p + "frames_out_total", Help: "Link frames written."}),
		BytesIn:           prometheus.NewCounter(prometheus.CounterOpts{Name: p + "bytes_in_total", Help: "Link payload bytes read."}),
		BytesOut:          prometheus.NewCounter(prometheus.CounterOpts{Name: p + "bytes_out_total", Help: "Link payload bytes written."}),
		PendingHandshakes: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "pending_handshakes", Help: "Accepted link handshakes whose hello is not verified yet."}),
	}
	// Known reasons start at zero, so dashboards see every series.
	for _, r := range []string{protocol.RejectAuth, protocol.RejectVersion, protocol.RejectMalformed, protocol.RejectRole, protocol.RejectState, ReasonTimeout, ReasonClosed, ReasonNoCert, ReasonPendingTotal, ReasonPendingSource} {
		m.Rejects.WithLabelValues(r)
	}
	for _, r := range []string{ReasonQueueFull, ReasonTooLarge, ReasonClosed, ReasonUnsent} {
		m.Drops.WithLabelValues(r)
	}
	for _, r := range []string{ReasonPingTimeout, ReasonReadError, ReasonWriteError, ReasonProtocol, ReasonRejected, ReasonShutdown} {
		m.Closes.WithLabelValues(r)
	}
	if r, ok := reg.(*prometheus.Registry); ok && r == nil {
		reg = nil // a nil *Registry in the interface
	}
	if reg != nil {
		m.Rejects = register(reg, m.Rejects)
		m.Drops = register(reg, m.Drops)
		m.Closes = register(reg, m.Closes)
		m.FramesIn = register(reg, m.FramesIn)
		m.FramesOut = register(reg, m.FramesOut)
		m.BytesIn = register(reg, m.BytesIn)
		m.BytesOut = register(reg, m.BytesOut)
		m.PendingHandshakes = register(reg, m.PendingHandshakes)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
