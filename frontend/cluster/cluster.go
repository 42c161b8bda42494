package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Errors returned to publishers. The frontend turns them into SocketCluster
// error objects for the client.
var (
	// ErrNoRing means the frontend has not yet learned the ring.
	ErrNoRing = errors.New("cluster: no ring yet: the frontend has not joined the cluster")
	// ErrBacklogFull means too many publishes are waiting for a broker link.
	ErrBacklogFull = errors.New("cluster: publish backlog for the channel's broker is full")
	// ErrClosed means the broker was closed.
	ErrClosed = errors.New("cluster: closed")
)

// Config configures the cluster broker. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// Link is the template for every broker link: node id, role, auth key,
	// timeouts and metrics.
	Link nodelink.Config
	// ReconnectMin and ReconnectMax bound the jittered delay between link
	// reconnects (defaults 50ms and 500ms).
	ReconnectMin, ReconnectMax time.Duration
	// SubscribeTimeout bounds how long a reshard waits for brokers to
	// acknowledge subscriptions at new owners (default 5s).
	SubscribeTimeout time.Duration
	// FenceTimeout bounds how long a ring switch waits for brokers to
	// acknowledge the publishes sent before it (default 2s).
	FenceTimeout time.Duration
	// DrainWindow is how long moved channels stay subscribed at their old
	// owners after a commit (default 2s; SCC_RESHARD_DRAIN_WINDOW).
	DrainWindow time.Duration
	// BacklogMaxBytes bounds, per broker, the publishes held while its link
	// is down (default 8 MiB). Over it, publishes fail and are counted.
	BacklogMaxBytes int
	// BacklogMaxAge is how long a held publish may wait for its link before
	// it is dropped and counted (default 2s).
	BacklogMaxAge time.Duration
	// FenceMaxBytes bounds the publishes held during a ring switch (default
	// 8 MiB).
	FenceMaxBytes int
	// Resend reports whether the publishes of channel that a broker had
	// not acknowledged when its link failed are re-sent to the channel's
	// owner after the failover, keeping their sequence numbers. Brokers
	// drop re-sends of what they already hold only for channels with
	// history (replicated to a standby), so it should say true for those
	// alone; the node sets it from the channel rules. Nil re-sends
	// nothing: such publishes are lost and counted (in_flight).
	Resend func(channel string) bool
	// RecoverLimit is the most publications one History request asks a
	// broker for when this frontend fills a gap in a channel's offsets
	// (after a failover or a reshard). Default 10000.
	RecoverLimit int
	// RecoverTimeout bounds the wait for such a History reply; after it
	// the gap is given up, counted (timeout). Default 2s.
	RecoverTimeout time.Duration
	// RecoverRetry is how long a subscriber's History request waits
	// before it is asked again at the channel's owner, when the broker
	// asked answered that another broker owns the channel (rings switch
	// a little apart during a reshard) or the link to the owner is down
	// (a broker that died, until the ring without it is committed).
	// Default 50ms; the subscribe's acknowledgement timeout bounds the
	// retries.
	RecoverRetry time.Duration
	// RecoverHeldMaxBytes bounds, per channel, the publications held
	// while such a gap is being filled; over it the gap is given up,
	// counted (held_full). Default 4 MiB.
	RecoverHeldMaxBytes int
	// LocalSettle is how long a frontend waits, after subscribing at the
	// new owners, before it publishes by a ring it derived on its own
	// (the state server unreachable and gossip declaring a broker dead).
	// No prepare phase coordinates such a switch, and frontends learn of
	// the death at slightly different times: the wait lets the others
	// subscribe at the new owners before this one publishes there.
	// Publishes meanwhile wait in the dead broker's backlog and are
	// re-routed, not lost (default 500ms).
	LocalSettle time.Duration
	// SubscribeBatch is the most channels one batch of subscription
	// changes sent to a broker may name, and SubscribeWindow the most
	// batches a link has in flight (sent, not yet acknowledged). The
	// changes made while the window is full wait, and a subscribe and an
	// unsubscribe of one channel that both wait cancel out. So at most
	// SubscribeBatch × SubscribeWindow channels of subscription work are
	// ever queued ahead of a publish on a link, whatever the subscription
	// churn of the clients, and one acknowledgement wakes at most one
	// batch's subscribers (defaults 256 and 4; SCC_LINK_SUBSCRIBE_BATCH,
	// SCC_LINK_SUBSCRIBE_WINDOW).
	SubscribeBatch, SubscribeWindow int
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the metrics; nil registers nowhere.
	Registry prometheus.Registerer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ReconnectMin:     50 * time.Millisecond,
		ReconnectMax:     500 * time.Millisecond,
		SubscribeTimeout: 5 * time.Second,
		FenceTimeout:     2 * time.Second,
		DrainWindow:      2 * time.Second,
		BacklogMaxBytes:  8 << 20,
		BacklogMaxAge:    2 * time.Second,
		FenceMaxBytes:    8 << 20,
		LocalSettle:      500 * time.Millisecond,
		SubscribeBatch:   256,
		SubscribeWindow:  4,

		RecoverLimit:        10000,
		RecoverTimeout:      2 * time.Second,
		RecoverRetry:        50 * time.Millisecond,
		RecoverHeldMaxBytes: 4 << 20,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.SubscribeTimeout <= 0 {
		c.SubscribeTimeout = d.SubscribeTimeout
	}
	if c.FenceTimeout <= 0 {
		c.FenceTimeout = d.FenceTimeout
	}
	if c.DrainWindow < 0 {
		c.DrainWindow = 0
	}
	if c.BacklogMaxBytes <= 0 {
		c.BacklogMaxBytes = d.BacklogMaxBytes
	}
	if c.BacklogMaxAge <= 0 {
		c.BacklogMaxAge = d.BacklogMaxAge
	}
	if c.FenceMaxBytes <= 0 {
		c.FenceMaxBytes = d.FenceMaxBytes
	}
	if c.LocalSettle < 0 {
		c.LocalSettle = 0
	}
	if c.SubscribeBatch <= 0 {
		c.SubscribeBatch = d.SubscribeBatch
	}
	if c.SubscribeWindow <= 0 {
		c.SubscribeWindow = d.SubscribeWindow
	}
	if c.RecoverLimit <= 0 {
		c.RecoverLimit = d.RecoverLimit
	}
	if c.RecoverTimeout <= 0 {
		c.RecoverTimeout = d.RecoverTimeout
	}
	if c.RecoverRetry <= 0 {
		c.RecoverRetry = d.RecoverRetry
	}
	if c.RecoverHeldMaxBytes <= 0 {
		c.RecoverHeldMaxBytes = d.RecoverHeldMaxBytes
	}
}

type heldPub struct {
	channel string
	data    []byte
	key     string // idempotency key, "" for none
	at      time.Time
	seq     uint64 // publish sequence number once sent, kept by re-sends
	// done, when set, is told once what became of the publish: nil when
	// its owner acknowledged it, else why it was lost (PublishAcked).
	done chan<- error
}

// ErrPublishLost is what a PublishAcked caller learns of a publish lost
// before its owning broker acknowledged it (its link failed with it in
// flight, or it waited in a backlog past BacklogMaxAge).
var ErrPublishLost = errors.New("cluster: the publish was lost before its broker acknowledged it")

// ErrLinkClosed refuses a publish routed to a broker link that was
// closed (its broker left the ring) before the routing switched rings.
var ErrLinkClosed = errors.New("cluster: the broker link was closed; publish again")

// errAckUnknown settles a re-sent publish that an acknowledgement may or
// may not cover.
var errAckUnknown = errors.New("cluster: the broker's acknowledgement does not show whether it has the publish; it may still be delivered")

// settle tells h's publisher, if it waits, what became of it. Each
// held publish is settled where it leaves the frontend for good.
func (h *heldPub) settle(err error) {
	if h.done != nil {
		h.done <- err // buffered: one settle per publish
		h.done = nil
	}
}

// Broker is a frontend.Broker that routes through the cluster's brokers.
// It also implements the membership handler (Prepare and Commit).
type Broker struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sink    frontend.Sink
	posSink frontend.PositionSink // sink, when it takes stream positions
	pos     *positions            // last offset delivered per channel with history

	// pubSeq numbers publishes across every link and reconnect, starting
	// at the frontend's start time in Unix nanoseconds, so brokers can
	// recognize a publish this frontend re-sends, even after a restart.
	pubSeq atomic.Uint64

	// route guards the publishing state. Publishers hold it for reading
	// while they route and enqueue; a ring switch holds it for writing.
	route    sync.RWMutex
	pubRing  *ring.Ring
	pubLinks []*brokerLink // indexed like pubRing's brokers
	fencing  bool

	fenceMu    sync.Mutex
	fenceQ     []heldPub
	fenceBytes int

	// mu guards the interest state: which rings are in force, the
	// locally subscribed channels and the links.
	mu        sync.Mutex
	committed *ring.Ring
	prepared  *ring.Ring
	incoming  *ring.Ring
	channels  map[string]struct{}
	chanPeak  int // largest len(channels) since it was made
	links     map[string]*brokerLink
	closed    bool
	// forgetQ are the channels unsubscribed whose positions the
	// forgetter drops (unless subscribed again meanwhile).
	forgetQ    []string
	forgetKick chan struct{}

	pres presenceState // presence.go
}

var _ frontend.Broker = (*Broker)(nil)

// New returns a cluster broker. It starts nothing until Start.
func New(cfg Config) *Broker {
	cfg.fill()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:        cfg,
		log:        log,
		m:          newMetrics(cfg.Registry),
		ctx:        ctx,
		cancel:     cancel,
		channels:   make(map[string]struct{}),
		links:      make(map[string]*brokerLink),
		forgetKick: make(chan struct{}, 1),
	}
	b.pubSeq.Store(uint64(time.Now().UnixNano()))
	b.pos = newPositions(b, cfg.Registry)
	return b
}

// Start records the sink that receives deliveries and starts the backlog
// sweeper.
func (b *Broker) Start(ctx context.Context, sink frontend.Sink) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sink != nil {
		return errors.New("cluster: started twice")
	}
	b.sink = sink
	b.posSink, _ = sink.(frontend.PositionSink)
	b.wg.Add(2)
	go b.sweep()
	go b.forgetter()
	return nil
}

// forgetter drops the positions of channels no longer subscribed.
func (b *Broker) forgetter() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.forgetKick:
		}
		b.mu.Lock()
		q := b.forgetQ
		b.forgetQ = nil
		b.mu.Unlock()
		for _, ch := range q {
			b.pos.forgetUnless(ch, func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				_, ok := b.channels[ch]
				return ok
			})
		}
	}
}

// sweep drops publishes that waited too long for their link.
func (b *Broker) sweep() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.BacklogMaxAge / 4)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.mu.Lock()
			links := make([]*brokerLink, 0, len(b.links))
			for _, l := range b.links {
				links = append(links, l)
			}
			b.mu.Unlock()
			for _, l := range links {
				l.expire(now)
			}
		}
	}
}

// Ready reports whether the frontend holds a ring and every broker of it is
// linked.
func (b *Broker) Ready() bool {
	b.route.RLock()
	defer b.route.RUnlock()
	if b.pubRing == nil || b.pubRing.Len() == 0 {
		return false
	}
	for _, l := range b.pubLinks {
		if !l.isUp() {
			return false
		}
	}
	return true
}

// RingVersion returns the version of the ring publishes follow (0 = none).
func (b *Broker) RingVersion() uint64 {
	b.route.RLock()
	defer b.route.RUnlock()
	if b.pubRing == nil {
		return 0
	}
	return b.pubRing.Version()
}

// RingBrokers returns the number of brokers in the ring publishes follow.
func (b *Broker) RingBrokers() int {
	b.route.RLock()
	defer b.route.RUnlock()
	if b.pubRing == nil {
		return 0
	}
	return b.pubRing.Len()
}

// Subscribe registers local interest in channel at its owners under every
// ring in force and waits for the brokers' acknowledgements.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.channels[channel] = struct{}{}
	b.chanPeak = max(b.chanPeak, len(b.channels))
	var waits []<-chan struct{}
	for _, r := range b.ringsLocked() {
		if r.Len() == 0 {
			continue
		}
		l := b.linkLocked(r.Broker(r.OwnerIndex(channel)))
		waits = append(waits, l.addInterest([]string{channel}))
	}
	b.mu.Unlock()
	b.m.subscriptions.Inc()
	b.reportChannel(channel)
	return waitAll(ctx, waits)
}

// Unsubscribe drops local interest in channel at every broker.
func (b *Broker) Unsubscribe(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.channels[channel]; !ok {
		return
	}
	delete(b.channels, channel)
	// The channel's position goes on the forgetter's goroutine: the
	// caller holds the frontend's subscription lock, which deliveries
	// take under the positions lock.
	b.forgetQ = append(b.forgetQ, channel)
	select {
	case b.forgetKick <- struct{}{}:
	default:
	}
	b.channels = shrunk(b.channels, &b.chanPeak)
	b.m.subscriptions.Dec()
	for _, l := range b.links {
		l.removeInterest([]string{channel})
	}
}

// Publish routes one message to the owner of channel under the committed
// ring. It never waits for the network.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) error {
	return b.PublishIdempotent(ctx, channel, data, "")
}

// PublishIdempotent implements frontend.IdempotentPublisher: key travels
// with the publish to the channel's owning broker, which delivers it once
// per (channel, key) within its dedupe window, whichever frontend a retry
// comes through.
func (b *Broker) PublishIdempotent(ctx context.Context, channel string, data []byte, key string) error {
	return b.publish(channel, data, key, nil)
}

// PublishAcked implements frontend.AckedPublisher: a publish routed like
// PublishIdempotent, whose channel yields nil once the channel's owning
// broker acknowledged it (appended it and queued its deliveries), or why
// it was lost. Through a reshard the publish may wait in the fence, in a
// backlog or be re-sent, and is settled wherever it ends.
func (b *Broker) PublishAcked(channel string, data []byte, key string) (<-chan error, error) {
	done := make(chan error, 1)
	return done, b.publish(channel, data, key, done)
}

func (b *Broker) publish(channel string, data []byte, key string, done chan<- error) error {
	b.route.RLock()
	defer b.route.RUnlock()
	if b.pubRing == nil || b.pubRing.Len() == 0 {
		b.m.drops.WithLabelValues("no_ring").Inc()
		return ErrNoRing
	}
	if b.fencing {
		b.fenceMu.Lock()
		defer b.fenceMu.Unlock()
		if b.fenceBytes+len(data) > b.cfg.FenceMaxBytes {
			b.m.drops.WithLabelValues("fence_full").Inc()
			return ErrBacklogFull
		}
		b.fenceQ = append(b.fenceQ, heldPub{channel: channel, data: append([]byte(nil), data...), key: key, at: time.Now(), done: done})
		b.fenceBytes += len(data)
		return nil
	}
	l := b.pubLinks[b.pubRing.OwnerIndex(channel)]
	return l.publishHeld(heldPub{channel: channel, data: data, key: key, done: done})
}

// ringsLocked returns the rings whose owners must hold the local channels.
func (b *Broker) ringsLocked() []*ring.Ring {
	rs := make([]*ring.Ring, 0, 3)
	for _, r := range []*ring.Ring{b.committed, b.prepared, b.incoming} {
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// linkLocked returns the link to broker info, creating and starting it.
// While rings that name the broker at two addresses are in force (it
// moved), the link goes to the address of the newest of them.
func (b *Broker) linkLocked(info protocol.BrokerInfo) *brokerLink {
	info = b.newestAddrLocked(info)
	if l, ok := b.links[info.ID]; ok {
		if l.info.Addr == info.Addr {
			return l
		}
		// The broker moved: the new link keeps the old one's interest
		// and takes over what the old one holds and is still sent.
		b.log.Info("broker address changed", "peer", info.ID, "addr", info.Addr)
		nl := b.newLink(info, l.interest, l.intPeak)
		l.retire(nl)
		b.links[info.ID] = nl
		return nl
	}
	l := b.newLink(info, nil, 0)
	b.links[info.ID] = l
	return l
}

// newestAddrLocked returns info with the address the newest ring in force
// gives its broker.
func (b *Broker) newestAddrLocked(info protocol.BrokerInfo) protocol.BrokerInfo {
	var v uint64
	found := false
	for _, r := range b.ringsLocked() {
		if i := r.Index(info.ID); i >= 0 && (!found || r.Version() >= v) {
			info, v, found = r.Broker(i), r.Version(), true
		}
	}
	return info
}

// reconcileAddLocked makes every local channel held at its owner under
// every ring in force; it returns the acknowledgements to wait for.
func (b *Broker) reconcileAddLocked() []<-chan struct{} {
	var waits []<-chan struct{}
	for _, r := range b.ringsLocked() {
		if r.Len() == 0 {
			continue
		}
		want := make(map[int][]string)
		for ch := range b.channels {
			i := r.OwnerIndex(ch)
			want[i] = append(want[i], ch)
		}
		for i := 0; i < r.Len(); i++ {
			l := b.linkLocked(r.Broker(i))
			waits = append(waits, l.addInterest(want[i]))
		}
	}
	return waits
}

// reconcileFull drops interest that no ring in force needs any more and
// closes links to brokers that no ring names.
func (b *Broker) reconcileFull() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	rings := b.ringsLocked()
	for id, l := range b.links {
		inRing := false
		for _, r := range rings {
			if r.Contains(id) {
				inRing = true
			}
		}
		var drop []string
		for ch := range l.interestSnapshot() {
			keep := false
			if _, ok := b.channels[ch]; ok {
				for _, r := range rings {
					if r.Len() > 0 && r.OwnerID(ch) == id {
						keep = true
						break
					}
				}
			}
			if !keep {
				drop = append(drop, ch)
			}
		}
		l.removeInterest(drop)
		if !inRing {
			b.log.Info("closing link to broker outside the ring", "peer", id)
			l.close()
			b.stopLater(l)
			delete(b.links, id)
		}
	}
	b.m.links.Set(float64(len(b.links)))
}

// Prepare subscribes every local channel at its owner under r as well, and
// returns once the brokers acknowledged (or ctx ends).
func (b *Broker) Prepare(ctx context.Context, r protocol.Ring) error {
	nr := ring.FromProtocol(r)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.prepared = nr
	waits := b.reconcileAddLocked()
	b.mu.Unlock()
	b.reportAll()
	b.m.reshards.WithLabelValues("prepare").Inc()
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SubscribeTimeout)
	defer cancel()
	if err := waitAll(ctx, waits); err != nil {
		b.m.reshards.WithLabelValues("prepare_timeout").Inc()
		return fmt.Errorf("preparing ring %d: %w", r.Version, err)
	}
	return nil
}

// Commit makes r the ring publishes follow: it subscribes at the new owners
// if Prepare did not, fences, switches, and schedules the old owners'
// unsubscribes after the drain window.
func (b *Broker) Commit(r protocol.Ring) {
	nr := ring.FromProtocol(r)
	b.route.RLock()
	cur := b.pubRing
	b.route.RUnlock()
	if cur != nil && cur.Version() == nr.Version() && cur.SameBrokers(nr) {
		return
	}
	start := time.Now()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.incoming = nr
	waits := b.reconcileAddLocked()
	b.mu.Unlock()
	b.reportAll()

	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.SubscribeTimeout)
	if err := waitAll(ctx, waits); err != nil {
		b.m.reshards.WithLabelValues("subscribe_timeout").Inc()
		b.log.Warn("switching ring before every new owner acknowledged", "version", nr.Version(), "err", err)
	}
	cancel()
	if cur != nil && cur.Version() == nr.Version() && b.cfg.LocalSettle > 0 {
		// A ring of the same version with other brokers is one this
		// frontend derived without the state server: no prepare phase
		// told the other frontends to subscribe first.
		b.m.reshards.WithLabelValues("local_settle").Inc()
		t := time.NewTimer(b.cfg.LocalSettle)
		select {
		case <-t.C:
		case <-b.ctx.Done():
		}
		t.Stop()
	}

	// Fence: hold new publishes until the old owners acknowledged every
	// publish sent before the switch.
	b.route.Lock()
	b.fencing = true
	var targets []ackTarget
	for _, l := range b.pubLinks {
		targets = append(targets, l.ackTarget())
	}
	b.route.Unlock()
	fenceStart := time.Now()
	deadline := time.Now().Add(b.cfg.FenceTimeout)
	for _, t := range targets {
		if !t.wait(b.ctx, deadline) {
			b.m.reshards.WithLabelValues("fence_timeout").Inc()
		}
	}
	b.m.fenceSeconds.Observe(time.Since(fenceStart).Seconds())

	b.mu.Lock()
	if b.closed {
		// Closed during the fence: what it held ends with the broker.
		b.mu.Unlock()
		b.route.Lock()
		b.fenceMu.Lock()
		q := b.fenceQ
		b.fenceQ, b.fenceBytes, b.fencing = nil, 0, false
		b.fenceMu.Unlock()
		b.route.Unlock()
		for _, h := range q {
			h.settle(ErrClosed)
		}
		return
	}
	links := make([]*brokerLink, nr.Len())
	for i := range links {
		links[i] = b.linkLocked(nr.Broker(i))
	}
	all := make([]*brokerLink, 0, len(b.links))
	for _, l := range b.links {
		all = append(all, l)
	}
	b.m.links.Set(float64(len(b.links)))
	b.mu.Unlock()

	b.route.Lock()
	b.pubRing = nr
	b.pubLinks = links
	// Ahead of any publish routed by nr, on every link: a broker that
	// has not got nr yet holds them until it has.
	for _, l := range all {
		l.announceFloor(nr.Version())
	}
	// Re-route what waited for a link whose broker no longer owns it, then
	// what the fence held, in arrival order per source.
	for _, l := range all {
		for _, h := range l.takeMisrouted(nr, links) {
			if nr.Len() == 0 {
				b.m.drops.WithLabelValues("no_ring").Inc()
				h.settle(ErrNoRing)
				continue
			}
			if err := links[nr.OwnerIndex(h.channel)].publishHeld(h); err == nil {
				b.m.rerouted.Inc()
			} else {
				h.settle(err)
			}
		}
	}
	b.fenceMu.Lock()
	q := b.fenceQ
	b.fenceQ, b.fenceBytes = nil, 0
	b.fencing = false
	b.fenceMu.Unlock()
	for _, h := range q {
		if nr.Len() == 0 {
			b.m.drops.WithLabelValues("no_ring").Inc()
			h.settle(ErrNoRing)
			continue
		}
		if err := links[nr.OwnerIndex(h.channel)].publishHeld(h); err != nil {
			h.settle(err)
		}
	}
	b.route.Unlock()

	// Only now may subscribes stop holding channels at the old owners:
	// until the switch above, publishes still went there.
	b.mu.Lock()
	b.committed = nr
	b.incoming = nil
	if b.prepared != nil && b.prepared.Version() <= nr.Version() {
		b.prepared = nil
	}
	b.mu.Unlock()

	if cur != nil {
		// Fetch from the new owners what the old ones had not delivered.
		for _, ch := range b.pos.known() {
			if i := nr.OwnerIndex(ch); i >= 0 && cur.OwnerID(ch) != nr.Broker(i).ID {
				b.pos.check(links[i], ch)
			}
		}
	}
	b.m.ringVersion.Set(float64(nr.Version()))
	b.m.reshards.WithLabelValues("commit").Inc()
	b.m.commitSeconds.Observe(time.Since(start).Seconds())
	b.log.Info("ring committed", "version", nr.Version(), "brokers", nr.Len(), "took", time.Since(start))

	if cur == nil {
		b.reconcileFull()
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTimer(b.cfg.DrainWindow)
		defer t.Stop()
		select {
		case <-t.C:
			b.reconcileFull()
		case <-b.ctx.Done():
		}
	}()
}

// Close stops every link and waits for the broker's goroutines.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	links := b.links
	b.links = map[string]*brokerLink{}
	b.mu.Unlock()
	b.cancel()
	for _, l := range links {
		l.close()
		l.red.Close()
	}
	b.wg.Wait()
	return nil
}

func waitAll(ctx context.Context, waits []<-chan struct{}) error {
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// shrinkFloor is the smallest peak size from which a set that fell to a
// quarter of it is rebuilt.
const shrinkFloor = 256

// shrunk returns set, or a copy sized to its contents once it has fallen
// to a quarter of its peak: Go maps never shrink, and a subscription storm
// would otherwise leave its memory behind.
func shrunk(set map[string]struct{}, peak *int) map[string]struct{} {
	if *peak < shrinkFloor || len(set) >= *peak/4 {
		return set
	}
	m := make(map[string]struct{}, len(set))
	for k := range set {
		m[k] = struct{}{}
	}
	*peak = len(m)
	return m
}
