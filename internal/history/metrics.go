package history

import "github.com/prometheus/client_golang/prometheus"

// Register exports s's figures on reg as scc_<role>_history_streams,
// _publications, _bytes and _evicted_total{reason}.
func Register(reg prometheus.Registerer, role string, s *Store) {
	p := "scc_" + role + "_history_"
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "streams", Help: "Channels with history held (each with an epoch)."},
			func() float64 { return float64(s.streams.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "publications", Help: "Publications retained in channel histories."},
			func() float64 { return float64(s.pubs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "bytes", Help: "Bytes counted against the history memory budget (SCC_HISTORY_MAX_BYTES)."},
			func() float64 { return float64(s.bytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "epochs_total", Help: "Streams created, each under a new epoch (a stream created again after its history was lost counts again)."},
			func() float64 { return float64(s.epochs.Load()) }),
		evictedCollector{s: s, desc: prometheus.NewDesc(p+"evicted_total",
			"Publications (reasons size, ttl, budget, restored, gap) and whole streams (stream, meta_ttl) dropped from history, by reason.", []string{"reason"}, nil)},
	)
}

type evictedCollector struct {
	s    *Store
	desc *prometheus.Desc
}

func (c evictedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c evictedCollector) Collect(ch chan<- prometheus.Metric) {
	for i, r := range evictReasons {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.s.evicted[i].Load()), r)
	}
}
