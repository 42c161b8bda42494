package clustertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/client"
)

// TrafficOptions shapes steady test traffic.
type TrafficOptions struct {
	// URLs are the frontends; clients are spread over them round-robin.
	URLs []string
	// Channels is the number of channels (named ch-0 … ch-N-1).
	Channels int
	// Subscribers is the number of subscriber connections; each subscribes
	// to every channel.
	Subscribers int
	// Publishers is the number of publisher connections; each publishes to
	// every channel in turn.
	Publishers int
	// Interval is the pause between two publishes of one publisher.
	Interval time.Duration
	// Prefix is prepended to channel names.
	Prefix string
	// OnDeliver, if set, is called for every valid delivery to a
	// subscriber, with its decoded payload and receive time (for example
	// to measure latency per phase). It runs on the receiving goroutines
	// and must be safe for concurrent use.
	OnDeliver func(p bench.Payload, recv time.Time)
	// TLSConfig is given to every client (Cluster.ClientTLSConfig for
	// wss:// frontends).
	TLSConfig *tls.Config
}

// Traffic publishes sequence-numbered messages on many channels through
// some frontends and checks, per subscriber, that each one arrives exactly
// once and in order per publisher and channel.
type Traffic struct {
	t    testing.TB
	opts TrafficOptions

	subs     []*subscriber
	pubs     []*client.Client
	channels []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // receivers
	pubWG  sync.WaitGroup // publishers

	published atomic.Int64
	failed    atomic.Int64

	mu       sync.Mutex
	lastRecv map[string]time.Time // channel → newest SentAt delivered anywhere
	paused   atomic.Bool
	// publishing counts publishers between their pause check and the
	// Expect of their publish, so Checkpoint can wait for them.
	publishing atomic.Int64

	anomalies []string // under mu: the first few, logged by Stop
	closing   atomic.Bool
}

// maxAnomalies bounds what Stop logs.
const maxAnomalies = 20

// anomaly keeps one line that explains a failed check.
func (tr *Traffic) anomaly(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.anomalies) < maxAnomalies {
		tr.anomalies = append(tr.anomalies, fmt.Sprintf(format, args...))
	}
}

// Anomalies returns the first deliveries of a publication seen twice by
// one subscriber (with both places in the channel's history) and the
// first disconnects of subscribers.
func (tr *Traffic) Anomalies() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.anomalies...)
}

// trace notes one delivery and reports a publication delivered twice.
func (tr *Traffic) trace(s *subscriber, m client.Message, p bench.Payload, now time.Time) {
	v, _ := s.recent.LoadOrStore(m.Channel, &deliveryRing{})
	r := v.(*deliveryRing)
	d := delivery{pub: p.Publisher, seq: p.Seq, offset: m.Offset, epoch: m.Epoch, at: now}
	if last := r.last; !last.at.IsZero() && d.offset != 0 && d.epoch == last.epoch && d.offset != last.offset+1 {
		tr.anomaly("subscriber %d %s: offset %d (publisher %d seq %d) followed offset %d (publisher %d seq %d)",
			s.id, m.Channel, d.offset, d.pub, d.seq, last.offset, last.pub, last.seq)
	}
	if prev, dup := r.note(d); dup {
		tr.anomaly("subscriber %d %s: publisher %d seq %d delivered at offset %d epoch %q, again %v later at offset %d epoch %q",
			s.id, m.Channel, p.Publisher, p.Seq, prev.offset, prev.epoch, now.Sub(prev.at).Round(time.Microsecond), d.offset, d.epoch)
	}
}

type subscriber struct {
	id    int
	c     *client.Client
	check *bench.Checker
	// recent keeps, per channel, the last deliveries' places, so that a
	// publication delivered twice is reported with both offsets.
	recent sync.Map // channel → *deliveryRing (one receiver per channel)
	drops  atomic.Int64
}

// traceDepth is how many deliveries per subscriber and channel are kept
// to explain a duplicate.
const traceDepth = 256

type delivery struct {
	pub    int
	seq    uint64
	offset uint64
	epoch  string
	at     time.Time
}

type deliveryRing struct {
	d    [traceDepth]delivery
	next int
	last delivery // the latest
}

// note records m's delivery and returns the earlier delivery of the same
// publication, if one is still kept.
func (r *deliveryRing) note(d delivery) (delivery, bool) {
	var prev delivery
	found := false
	for _, x := range r.d {
		if !x.at.IsZero() && x.pub == d.pub && x.seq == d.seq {
			prev, found = x, true
			break
		}
	}
	r.d[r.next%traceDepth] = d
	r.next++
	r.last = d
	return prev, found
}

// subscriptionBuffer is each subscription's buffer: a channel gets at
// most a few hundred messages a second here and its receiver drains it
// at once, so this holds seconds of a stalled receiver's messages (an
// overflow shows as loss). A buffer of 64k messages per subscription
// (4 MiB) took 3 GiB of allocations for 800 subscriptions, which under
// the race detector stalled whole test runs.
const subscriptionBuffer = 2048

// StartTraffic connects the clients, subscribes and starts publishing.
func StartTraffic(t testing.TB, opts TrafficOptions) *Traffic {
	t.Helper()
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Millisecond
	}
	tr := &Traffic{t: t, opts: opts, lastRecv: make(map[string]time.Time)}
	for i := 0; i < opts.Channels; i++ {
		tr.channels = append(tr.channels, fmt.Sprintf("%sch-%d", opts.Prefix, i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	for i := 0; i < opts.Subscribers; i++ {
		url := opts.URLs[i%len(opts.URLs)]
		s := &subscriber{id: i, check: bench.NewChecker()}
		c, err := client.Dial(ctx, url, client.Options{SubscriptionBuffer: subscriptionBuffer, TLSConfig: opts.TLSConfig,
			OnDisconnect: func(code int, reason string) {
				if !tr.closing.Load() && s.drops.Add(1) <= 3 {
					tr.anomaly("subscriber %d (%s) disconnected: %d %s", i, url, code, reason)
				}
			}})
		if err != nil {
			t.Fatalf("subscriber %d dialing %s: %v", i, url, err)
		}
		s.c = c
		tr.subs = append(tr.subs, s)
		for _, ch := range tr.channels {
			began := time.Now()
			sub, err := c.Subscribe(ctx, ch, client.SubscribeOptions{})
			if d := time.Since(began); d > 200*time.Millisecond && os.Getenv("SLOWSUB") != "" {
				t.Logf("slow subscribe: subscriber %d %s took %v at %v", i, ch, d, began.Sub(start))
			}
			if err != nil {
				t.Fatalf("subscriber %d subscribing %s: %v (after %v; the subscribes before took %v)", i, ch, err, time.Since(began).Round(time.Millisecond), began.Sub(start).Round(time.Millisecond))
			}
			tr.wg.Add(1)
			go tr.receive(s, sub)
		}
	}
	for i := 0; i < opts.Publishers; i++ {
		url := opts.URLs[(i+1)%len(opts.URLs)]
		c, err := client.Dial(ctx, url, client.Options{TLSConfig: opts.TLSConfig})
		if err != nil {
			t.Fatalf("publisher %d dialing %s: %v", i, url, err)
		}
		tr.pubs = append(tr.pubs, c)
	}
	t.Logf("traffic: %d subscribers × %d channels subscribed in %v", opts.Subscribers, opts.Channels, time.Since(start).Round(time.Millisecond))
	tr.ctx, tr.cancel = context.WithCancel(context.Background())
	for i, p := range tr.pubs {
		tr.pubWG.Add(1)
		go tr.publish(i, p)
	}
	return tr
}

func (tr *Traffic) receive(s *subscriber, sub *client.Subscription) {
	defer tr.wg.Done()
	for {
		select {
		case m, ok := <-sub.C():
			if !ok {
				return
			}
			now := time.Now()
			p, err := s.check.Observe(m.Channel, m.Data, now)
			if err == nil {
				tr.trace(s, m, p, now)
				if tr.opts.OnDeliver != nil {
					tr.opts.OnDeliver(p, now)
				}
				tr.mu.Lock()
				if p.SentAt.After(tr.lastRecv[m.Channel]) {
					tr.lastRecv[m.Channel] = p.SentAt
				}
				tr.mu.Unlock()
			}
		case <-sub.Done():
			return
		}
	}
}

func (tr *Traffic) publish(id int, c *client.Client) {
	defer tr.pubWG.Done()
	seq := make([]uint64, len(tr.channels))
	tick := time.NewTicker(tr.opts.Interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-tr.ctx.Done():
			return
		case <-tick.C:
		}
		if tr.paused.Load() {
			continue
		}
		tr.publishing.Add(1)
		if tr.paused.Load() { // paused meanwhile: Checkpoint may not have seen us
			tr.publishing.Add(-1)
			continue
		}
		k := i % len(tr.channels)
		ch := tr.channels[k]
		seq[k]++
		data := bench.EncodePayload(id, seq[k], time.Now(), 64)
		// The publish is not cancelled by Stop: a publish the frontend
		// acknowledged must be expected, so Stop waits for it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Publish(ctx, ch, data)
		cancel()
		if err != nil {
			// Not accepted: the publisher knows, so no subscriber expects
			// it. Its sequence number stays used, which the checker
			// would see as a gap: expect the rest around it instead.
			tr.failed.Add(1)
			tr.publishing.Add(-1)
			continue
		}
		tr.published.Add(1)
		for _, s := range tr.subs {
			s.check.Expect(id, ch, seq[k])
		}
		tr.publishing.Add(-1)
	}
}

// Published returns how many publishes were acknowledged and how many
// failed.
func (tr *Traffic) Published() (ok, failed int64) { return tr.published.Load(), tr.failed.Load() }

// Pause stops publishing until Resume; subscribers keep receiving.
func (tr *Traffic) Pause() { tr.paused.Store(true) }

// Resume restarts publishing.
func (tr *Traffic) Resume() { tr.paused.Store(false) }

// WaitCaughtUp waits until every subscriber received every message
// acknowledged so far, or the timeout passes.
func (tr *Traffic) WaitCaughtUp(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		missing := int64(0)
		for _, s := range tr.subs {
			missing += s.check.Missing()
		}
		if missing == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// WaitFlowing waits until every channel delivered a message sent after
// since, and returns how long after since that happened; ok is false at
// the timeout.
func (tr *Traffic) WaitFlowing(since time.Time, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		tr.mu.Lock()
		all := true
		var latest time.Time
		for _, ch := range tr.channels {
			at := tr.lastRecv[ch]
			if !at.After(since) {
				all = false
				break
			}
			if at.After(latest) {
				latest = at
			}
		}
		tr.mu.Unlock()
		if all {
			return time.Since(since), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, false
}

// Stop stops publishing, waits briefly for stragglers, closes every
// client and returns the merged check of all subscribers.
func (tr *Traffic) Stop(settle time.Duration) bench.CheckResult {
	tr.cancel()
	tr.pubWG.Wait()
	tr.WaitCaughtUp(settle)
	tr.closing.Store(true)
	for _, p := range tr.pubs {
		p.Close()
	}
	for _, s := range tr.subs {
		s.c.Close()
	}
	tr.wg.Wait()
	var r bench.CheckResult
	for _, s := range tr.subs {
		r.Merge(s.check.Result())
	}
	for _, a := range tr.Anomalies() {
		tr.t.Logf("traffic: %s", a)
	}
	for i, sr := range r.Streams {
		if i == 5 {
			break
		}
		tr.t.Logf("traffic: stream publisher %d %s: expected %d, lost %d, duplicated %d, out of order %d, unexpected %d",
			sr.Publisher, sr.Channel, sr.Expected, sr.Lost, sr.Duplicated, sr.OutOfOrder, sr.Unexpected)
	}
	return r
}

// Checkpoint pauses publishing, waits up to settle for every subscriber to
// catch up, and returns the merged check so far; publishing resumes.
func (tr *Traffic) Checkpoint(settle time.Duration) bench.CheckResult {
	tr.Pause()
	defer tr.Resume()
	// A publish already in progress finishes before the pause takes
	// effect: wait until it is expected (else a delivery that beat its
	// acknowledgement counts as unexpected), then for the deliveries.
	deadline := time.Now().Add(settle)
	for tr.publishing.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	tr.WaitCaughtUp(time.Until(deadline))
	var r bench.CheckResult
	for _, s := range tr.subs {
		r.Merge(s.check.Result())
	}
	return r
}
