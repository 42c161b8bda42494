package bench

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry: microseconds from 1µs to 5 minutes, 3 significant
// digits. Every histogram in a run has the same geometry, so merges are
// exact.
const (
	histLowest  = 1
	histHighest = int64(5 * time.Minute / time.Microsecond)
	histDigits  = 3
)

// Hist is a latency histogram in microseconds. It marshals to JSON as the
// HdrHistogram V2 compressed base64 encoding, so worker processes can hand
// their histograms to the coordinator and they merge exactly.
type Hist struct{ h *hdr.Histogram }

// NewHist returns an empty histogram.
func NewHist() *Hist { return &Hist{h: hdr.New(histLowest, histHighest, histDigits)} }

// Record adds one latency. Values beyond the range are clamped to it.
func (h *Hist) Record(d time.Duration) {
	us := int64(d / time.Microsecond)
	us = min(max(us, histLowest), histHighest)
	_ = h.h.RecordValue(us) // in range by construction
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	if o != nil && o.h != nil {
		h.h.Merge(o.h)
	}
}

// Count returns the number of samples.
func (h *Hist) Count() int64 { return h.h.TotalCount() }

// Reset empties the histogram.
func (h *Hist) Reset() { h.h.Reset() }

// Clone returns an independent copy.
func (h *Hist) Clone() *Hist { return &Hist{h: h.h.Clone()} }

// Quantile returns the latency at quantile q (0..1).
func (h *Hist) Quantile(q float64) time.Duration {
	return time.Duration(h.h.ValueAtQuantile(q*100)) * time.Microsecond
}

// Summary returns the usual percentiles.
func (h *Hist) Summary() LatencySummary {
	if h.h.TotalCount() == 0 {
		return LatencySummary{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	v := h.h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	return LatencySummary{
		Count: h.h.TotalCount(),
		Mean:  h.h.Mean() / 1000,
		P50:   ms(v[50]),
		P90:   ms(v[90]),
		P99:   ms(v[99]),
		P999:  ms(v[99.9]),
		Max:   ms(h.h.Max()),
	}
}

// MarshalJSON encodes the histogram (V2 compressed, base64).
func (h *Hist) MarshalJSON() ([]byte, error) {
	b, err := h.h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encoding histogram: %w", err)
	}
	return json.Marshal(string(b))
}

// UnmarshalJSON decodes what MarshalJSON wrote. A histogram of another
// geometry is re-recorded into the standard one.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hdr.Decode([]byte(s))
	if err != nil {
		return fmt.Errorf("decoding histogram: %w", err)
	}
	h.h = hdr.New(histLowest, histHighest, histDigits)
	if dropped := h.h.Merge(d); dropped != 0 {
		return fmt.Errorf("decoding histogram: %d samples out of range", dropped)
	}
	return nil
}

// LatencySummary is a histogram's percentiles, in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Recorder collects latencies from many goroutines into sharded
// histograms: a total one and an interval one that Interval swaps out.
// Callers pick a shard (for example their connection index) so that
// concurrent receivers rarely contend.
type Recorder struct {
	shards []recShard
}

type recShard struct {
	mu       sync.Mutex
	total    *Hist
	interval *Hist
	count    int64 // deliveries in the current interval, recorded or not
	_        [40]byte
}

// NewRecorder returns a recorder with n shards (at least 1).
func NewRecorder(n int) *Recorder {
	r := &Recorder{shards: make([]recShard, max(n, 1))}
	for i := range r.shards {
		r.shards[i].total = NewHist()
		r.shards[i].interval = NewHist()
	}
	return r
}

// Record adds a latency to the total and the interval histograms.
func (r *Recorder) Record(shard int, d time.Duration) {
	s := &r.shards[uint(shard)%uint(len(r.shards))]
	s.mu.Lock()
	s.total.Record(d)
	s.interval.Record(d)
	s.count++
	s.mu.Unlock()
}

// Observe adds a delivery to the interval's count and histogram, and its
// latency to the total histogram when sample is true.
func (r *Recorder) Observe(shard int, d time.Duration, sample bool) {
	s := &r.shards[uint(shard)%uint(len(r.shards))]
	s.mu.Lock()
	if sample {
		s.total.Record(d)
	}
	s.interval.Record(d)
	s.count++
	s.mu.Unlock()
}

// Interval returns the deliveries and latencies recorded since the last
// call, and starts a new interval.
func (r *Recorder) Interval() (int64, *Hist) {
	out := NewHist()
	var n int64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out.Merge(s.interval)
		s.interval.Reset()
		n += s.count
		s.count = 0
		s.mu.Unlock()
	}
	return n, out
}

// Total returns a merged copy of every latency recorded with Record.
func (r *Recorder) Total() *Hist {
	out := NewHist()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out.Merge(s.total)
		s.mu.Unlock()
	}
	return out
}

// Reset empties every histogram and count.
func (r *Recorder) Reset() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.total.Reset()
		s.interval.Reset()
		s.count = 0
		s.mu.Unlock()
	}
}
