package bench

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Checker counts what one receiver got against what it should have got.
// A receiver is one subscriber connection (or any single consumer): the
// same message legitimately reaches many receivers, so duplicates only
// make sense per receiver. Messages are grouped in streams, one per
// publisher and channel, whose sequence numbers start at 1.
//
// Observe and Expect may be called in any order and from any goroutine;
// Result may be called at any time and reflects what was seen so far.
// Memory is one bit per message of each stream, minus the prefix that has
// already arrived complete.
type Checker struct {
	mu      sync.Mutex
	streams map[streamKey]*stream
	// The streams of the channel seen last, by publisher: a subscriber
	// usually receives on one channel, and an int key is far cheaper to
	// look up than a (publisher, channel name) pair.
	lastCh    string
	lastPub   map[int]*stream
	malformed int64
	observer  func(Payload, time.Time)
	lat       *Recorder
}

type streamKey struct {
	pub     int
	channel string
}

// CheckerOption configures a Checker.
type CheckerOption func(*Checker)

// WithObserver makes the Checker call fn for every valid delivery (after
// counting it), instead of recording its latency in the Checker's own
// histogram. fn must be safe for concurrent use if Observe is called
// concurrently.
func WithObserver(fn func(p Payload, recv time.Time)) CheckerOption {
	return func(c *Checker) { c.observer = fn; c.lat = nil }
}

// NewChecker returns an empty Checker. By default it keeps a latency
// histogram of every delivery, reported in CheckResult.Latency.
func NewChecker(opts ...CheckerOption) *Checker {
	c := &Checker{streams: make(map[streamKey]*stream), lat: NewRecorder(1)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Observe counts one delivery of payload on channel, received at recv. It
// returns the decoded payload, or ErrBadPayload (counted as Malformed).
func (c *Checker) Observe(channel string, payload []byte, recv time.Time) (Payload, error) {
	p, err := DecodePayload(payload)
	c.mu.Lock()
	if err != nil {
		c.malformed++
		c.mu.Unlock()
		return p, err
	}
	c.stream(p.Publisher, channel).observe(p.Seq)
	c.mu.Unlock()
	if c.observer != nil {
		c.observer(p, recv)
	} else if c.lat != nil {
		c.lat.Record(0, recv.Sub(p.SentAt))
	}
	return p, nil
}

// Expect records that message seq of publisher pubID on channel should
// reach this receiver.
func (c *Checker) Expect(pubID int, channel string, seq uint64) {
	c.ExpectRange(pubID, channel, seq, seq)
}

// ExpectRange records that messages from..to (inclusive) of publisher
// pubID on channel should reach this receiver.
func (c *Checker) ExpectRange(pubID int, channel string, from, to uint64) {
	if from == 0 {
		from = 1
	}
	if to < from {
		return
	}
	c.mu.Lock()
	c.stream(pubID, channel).expect(span{from, to})
	c.mu.Unlock()
}

// Missing returns how many expected messages have not arrived yet.
func (c *Checker) Missing() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, s := range c.streams {
		n += s.expectedCount() - s.seenExpected()
	}
	return n
}

// Reset forgets everything observed and expected.
func (c *Checker) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.streams)
	c.lastCh, c.lastPub = "", nil
	c.malformed = 0
	if c.lat != nil {
		c.lat.Reset()
	}
}

func (c *Checker) stream(pub int, channel string) *stream {
	if c.lastPub != nil && channel == c.lastCh {
		if s := c.lastPub[pub]; s != nil {
			return s
		}
	}
	k := streamKey{pub, channel}
	s := c.streams[k]
	if s == nil {
		s = &stream{base: 1}
		c.streams[k] = s
	}
	if c.lastPub == nil || channel != c.lastCh {
		c.lastCh, c.lastPub = channel, make(map[int]*stream)
	}
	c.lastPub[pub] = s
	return s
}

// CheckResult is the outcome of a check. Expected counts the messages that
// should have arrived; Received counts every delivery, duplicates included.
// Lost = expected messages that never arrived; Duplicated = deliveries of a
// message already delivered; OutOfOrder = first deliveries of a message
// after a later message of the same stream; Unexpected = distinct messages
// that arrived but were not expected (for example published before the
// check window, or after a failed publish). Malformed counts deliveries
// that were not bench payloads.
type CheckResult struct {
	Expected   int64 `json:"expected"`
	Received   int64 `json:"received"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	OutOfOrder int64 `json:"out_of_order"`
	Unexpected int64 `json:"unexpected"`
	Malformed  int64 `json:"malformed"`
	// Streams lists the streams with a problem (lost, duplicated,
	// out-of-order or unexpected messages), sorted by publisher and
	// channel; at most MaxProblemStreams of them.
	Streams []StreamResult `json:"streams,omitempty"`
	// MoreStreams counts problem streams left out of Streams.
	MoreStreams int `json:"more_streams,omitempty"`
	// Latency summarises the latency of every delivery, when the Checker
	// kept its own histogram.
	Latency *LatencySummary `json:"latency,omitempty"`
}

// MaxProblemStreams bounds CheckResult.Streams.
const MaxProblemStreams = 1000

// StreamResult is the check of one publisher on one channel.
type StreamResult struct {
	Publisher  int    `json:"publisher"`
	Channel    string `json:"channel"`
	Expected   int64  `json:"expected"`
	Received   int64  `json:"received"`
	Lost       int64  `json:"lost"`
	Duplicated int64  `json:"duplicated"`
	OutOfOrder int64  `json:"out_of_order"`
	Unexpected int64  `json:"unexpected"`
}

func (s StreamResult) problem() bool {
	return s.Lost != 0 || s.Duplicated != 0 || s.OutOfOrder != 0 || s.Unexpected != 0
}

// OK reports whether every expected message arrived exactly once and in
// order, and nothing else arrived.
func (r CheckResult) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.Unexpected == 0 && r.Malformed == 0
}

// Result returns the counts so far.
func (c *Checker) Result() CheckResult {
	c.mu.Lock()
	var r CheckResult
	r.Malformed = c.malformed
	for k, s := range c.streams {
		sr := s.result(k)
		r.add(sr)
		if sr.problem() {
			r.Streams = append(r.Streams, sr)
		}
	}
	c.mu.Unlock()
	r.sortStreams()
	if c.lat != nil && c.observer == nil {
		ls := c.lat.Total().Summary()
		r.Latency = &ls
	}
	return r
}

func (r *CheckResult) add(s StreamResult) {
	r.Expected += s.Expected
	r.Received += s.Received
	r.Lost += s.Lost
	r.Duplicated += s.Duplicated
	r.OutOfOrder += s.OutOfOrder
	r.Unexpected += s.Unexpected
}

func (r *CheckResult) sortStreams() {
	slices.SortFunc(r.Streams, func(a, b StreamResult) int {
		return cmp.Or(cmp.Compare(a.Publisher, b.Publisher), cmp.Compare(a.Channel, b.Channel))
	})
	if len(r.Streams) > MaxProblemStreams {
		r.MoreStreams += len(r.Streams) - MaxProblemStreams
		r.Streams = r.Streams[:MaxProblemStreams]
	}
}

// Merge adds o's counts to r, summing streams with the same publisher and
// channel. Latency summaries are not mergeable and are dropped; merge
// histograms instead.
func (r *CheckResult) Merge(o CheckResult) {
	r.Expected += o.Expected
	r.Received += o.Received
	r.Lost += o.Lost
	r.Duplicated += o.Duplicated
	r.OutOfOrder += o.OutOfOrder
	r.Unexpected += o.Unexpected
	r.Malformed += o.Malformed
	r.MoreStreams += o.MoreStreams
	r.Latency = nil
	if len(o.Streams) == 0 {
		return
	}
	idx := make(map[streamKey]int, len(r.Streams))
	for i, s := range r.Streams {
		idx[streamKey{s.Publisher, s.Channel}] = i
	}
	for _, s := range o.Streams {
		if i, ok := idx[streamKey{s.Publisher, s.Channel}]; ok {
			t := &r.Streams[i]
			t.Expected += s.Expected
			t.Received += s.Received
			t.Lost += s.Lost
			t.Duplicated += s.Duplicated
			t.OutOfOrder += s.OutOfOrder
			t.Unexpected += s.Unexpected
			continue
		}
		idx[streamKey{s.Publisher, s.Channel}] = len(r.Streams)
		r.Streams = append(r.Streams, s)
	}
	r.sortStreams()
}

// span is an inclusive range of sequence numbers.
type span struct{ from, to uint64 }

// stream is the state of one publisher on one channel at one receiver.
// seen is a bitset of arrived sequence numbers: bit i of words is sequence
// base+i. Every sequence below base has arrived (whole words are dropped
// from the front once complete).
type stream struct {
	base       uint64
	words      []uint64
	maxSeq     uint64
	received   int64
	duplicated int64
	outOfOrder int64
	expected   []span // sorted, disjoint, not adjacent
}

// observe counts one delivery of seq (>= 1).
func (s *stream) observe(seq uint64) {
	s.received++
	if s.isSeen(seq) {
		s.duplicated++
		return
	}
	if seq < s.maxSeq {
		s.outOfOrder++
	} else {
		s.maxSeq = seq
	}
	off := seq - s.base
	w := int(off / 64)
	for w >= len(s.words) {
		s.words = append(s.words, 0)
	}
	s.words[w] |= 1 << (off % 64)
	for len(s.words) > 1 && s.words[0] == ^uint64(0) {
		s.words = s.words[1:]
		s.base += 64
	}
}

func (s *stream) isSeen(seq uint64) bool {
	if seq < s.base {
		return true
	}
	off := seq - s.base
	w := off / 64
	return w < uint64(len(s.words)) && s.words[w]&(1<<(off%64)) != 0
}

// countSeen counts arrived sequence numbers in sp.
func (s *stream) countSeen(sp span) int64 {
	var n int64
	if sp.from < s.base {
		n += int64(min(sp.to, s.base-1) - sp.from + 1)
		if sp.to < s.base {
			return n
		}
		sp.from = s.base
	}
	end := s.base + uint64(len(s.words))*64 // first sequence past the bitset
	if sp.from >= end {
		return n
	}
	sp.to = min(sp.to, end-1)
	lo, hi := sp.from-s.base, sp.to-s.base
	for w := lo / 64; w <= hi/64; w++ {
		word := s.words[w]
		if w == lo/64 {
			word &= ^uint64(0) << (lo % 64)
		}
		if w == hi/64 && hi%64 != 63 {
			word &= (1 << (hi%64 + 1)) - 1
		}
		n += int64(bits.OnesCount64(word))
	}
	return n
}

func (s *stream) uniqueSeen() int64 { return s.received - s.duplicated }

func (s *stream) expectedCount() int64 {
	var n int64
	for _, sp := range s.expected {
		n += int64(sp.to - sp.from + 1)
	}
	return n
}

func (s *stream) seenExpected() int64 {
	var n int64
	for _, sp := range s.expected {
		n += s.countSeen(sp)
	}
	return n
}

// expect adds sp to the expected set, keeping it sorted and merged.
func (s *stream) expect(sp span) {
	if n := len(s.expected); n == 0 || s.expected[n-1].to+1 < sp.from {
		s.expected = append(s.expected, sp) // common: a later range
		return
	} else if last := &s.expected[n-1]; sp.from >= last.from {
		last.to = max(last.to, sp.to) // common: the next sequence number
		return
	}
	all := append(s.expected, sp)
	slices.SortFunc(all, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	out := all[:1]
	for _, x := range all[1:] {
		last := &out[len(out)-1]
		if x.from <= last.to+1 {
			last.to = max(last.to, x.to)
			continue
		}
		out = append(out, x)
	}
	s.expected = out
}

func (s *stream) result(k streamKey) StreamResult {
	exp := s.expectedCount()
	seenExp := s.seenExpected()
	return StreamResult{
		Publisher:  k.pub,
		Channel:    k.channel,
		Expected:   exp,
		Received:   s.received,
		Lost:       exp - seenExp,
		Duplicated: s.duplicated,
		OutOfOrder: s.outOfOrder,
		Unexpected: s.uniqueSeen() - seenExp,
	}
}
