package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Replication keeps a second copy of every channel with history at the
// channel's standby: the broker that ranks second for it in the ring
// (ring.StandbyIndex), which owns the channel once its owner is removed.
//
// The ack point: the owner appends a publication to its history (which
// assigns the offset), sends it to the standby as a Replicate, and only
// when the standby's ReplAck covers it does it deliver the publication to
// subscriber frontends and count it towards the publisher's PubAck. So a
// publication a subscriber saw, or a publisher's frontend saw acknowledged,
// is at the standby too: when the owner dies, the standby continues the
// channel with the same epoch at the next offset, and a frontend that
// re-sends an unacknowledged publish is recognized by its (publisher,
// sequence) and not delivered twice.
//
// While the standby is unreachable (its link down or its queue full), the
// owner delivers without waiting and counts the publication in
// scc_broker_replication_total{result="unreplicated"}: the channel then
// survives the owner's crash only up to what the standby already held.
//
// Order: Replicates leave in offset order because they are queued under
// the history stream's lock (Append's callback), and a peer's pending
// publications are released (delivered) strictly in queue order, also
// when its link fails, so a channel's deliveries keep offset order.
//
// Lock order: history stream lock, then peerOut.mu, then nodelink's link
// lock (a leaf). Releases run with no peerOut.mu held.
type replicator struct {
	s    *Server
	hist *history.Store
	m    *replMetrics

	ring atomic.Pointer[ring.Ring]
	// ringTick is closed, and replaced, at every ring change.
	ringTick atomic.Pointer[chan struct{}]

	mu    sync.Mutex
	self  string              // this broker's id, set by Serve
	lcfg  nodelink.Config     // the links it dials to other brokers, set by Serve
	peers map[string]*peerOut // by broker id
	shut  bool
	// Handoffs (handoff.go): the ring before the current one, the
	// brokers whose ReplHandoff is awaited, and the highest ring version
	// each broker handed off for.
	prev         *ring.Ring
	awaiting     map[string]chan struct{}
	awaitTimers  map[string]*time.Timer // the timeouts of the waits in awaiting
	handedOff    map[string]uint64
	awaitingAny  atomic.Bool
	awaitVersion uint64 // the ring version the awaited handoffs are for
	// Brokers leaving on purpose: inLinks counts the replication links
	// from each broker, leaving holds those that said they are leaving
	// (ReplLeaving), leavers those of them whose handoff is awaited, and
	// leavingSelf is set once this broker leaves.
	inLinks     map[string]int
	leaving     map[string]bool
	leavers     map[string]bool
	leavingSelf bool
	hasRing     chan struct{} // closed at the first ring that holds this broker
	firstRing   sync.Once

	pubs publishers
}

// Replication results (bounded: metric labels).
const (
	replOK           = "replicated"   // the standby acknowledged it before delivery
	replUnreplicated = "unreplicated" // delivered without a standby copy (standby down, queue full)
	replNoStandby    = "no_standby"   // the ring has no other broker
)

type replMetrics struct {
	results    *prometheus.CounterVec
	duplicates prometheus.Counter
	snapshots  prometheus.Counter
	// snapshotFailures counts snapshots the link could not queue.
	snapshotFailures prometheus.Counter
	handoffs         *prometheus.CounterVec
	forwarded        *prometheus.CounterVec
	received         *prometheus.CounterVec
	wait             prometheus.Histogram
	floorWaits       *prometheus.CounterVec
	floorWaiting     prometheus.Gauge
}

func newReplMetrics(reg prometheus.Registerer) *replMetrics {
	m := &replMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_replication_total",
			Help: "Publications of channels with history this broker owned, by what replication did for them (replicated, unreplicated, no_standby)."}, []string{"result"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_broker_resend_duplicates_total",
			Help: "Publishes a frontend re-sent after a failover that the channel already held (acknowledged, not delivered again)."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_broker_replication_snapshots_total",
			Help: "Whole channel histories sent to a standby ahead of the channel's first publication on a new replication link."}),
		snapshotFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_broker_replication_snapshot_failures_total",
			Help: "Channel histories the replication link could not queue (its queue was full); the channel's next publication sends its history again."}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_handoffs_total",
			Help: "Ring changes that gave channels of this broker to another one, by result (sent; link_down: the new owner was not reachable within the handoff timeout)."}, []string{"result"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_forwarded_total",
			Help: "Publishes of channels with history another broker owns, forwarded to it (forwarded) or appended here because it did not acknowledge them (appended_here)."}, []string{"result"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_replicas_received_total",
			Help: "Replication messages for other brokers' channels, by kind: stored (publication, snapshot), forwarded publishes appended as owner (forward), publications not stored because the copy already had their offset (stale)."}, []string{"kind"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scc_broker_replication_wait_seconds",
			Help:    "Time from appending a publication to the standby's acknowledgement (the cost replication adds before delivery).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}),
	}
	for _, r := range []string{replOK, replUnreplicated, replNoStandby} {
		m.results.WithLabelValues(r)
	}
	for _, k := range []string{"publication", "snapshot", "forward", "stale"} {
		m.received.WithLabelValues(k)
	}
	for _, r := range []string{"sent", "link_down"} {
		m.handoffs.WithLabelValues(r)
	}
	for _, r := range []string{"forwarded", "appended_here"} {
		m.forwarded.WithLabelValues(r)
	}
	m.floorWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_broker_ring_floor_waits_total",
		Help: "Times a frontend's publishes waited for this broker to reach the ring version they were routed by, by result (ok; timeout: the handoff timeout passed first and they were routed by the older ring)."}, []string{"result"})
	for _, r := range []string{"ok", "timeout"} {
		m.floorWaits.WithLabelValues(r)
	}
	m.floorWaiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "scc_broker_ring_floor_waiting",
		Help: "Frontend links whose publishes wait now for this broker to reach the ring version they were routed by."})
	reg.MustRegister(m.results, m.duplicates, m.snapshots, m.snapshotFailures, m.handoffs, m.forwarded, m.received, m.wait, m.floorWaits, m.floorWaiting)
	return m
}

func newReplicator(s *Server, hist *history.Store, reg prometheus.Registerer, shards int) *replicator {
	r := &replicator{s: s, hist: hist, m: newReplMetrics(reg), peers: make(map[string]*peerOut), pubs: newPublishers(shards),
		awaiting: make(map[string]chan struct{}), awaitTimers: make(map[string]*time.Timer), handedOff: make(map[string]uint64), hasRing: make(chan struct{}),
		inLinks: make(map[string]int), leaving: make(map[string]bool), leavers: make(map[string]bool)}
	tick := make(chan struct{})
	r.ringTick.Store(&tick)
	return r
}

// setRing records the ring standbys are chosen by and closes the links to
// brokers that left it.
func (r *replicator) setRing(rg *ring.Ring) {
	prev := r.ring.Load()
	// The waits for handoffs are in place before the ring is: a publish
	// routed by the new ring never finds it without them.
	r.awaitHandoffs(prev, rg)
	r.ring.Store(rg)
	tick := make(chan struct{})
	close(*r.ringTick.Swap(&tick))
	r.mu.Lock()
	self := r.self
	r.mu.Unlock()
	if self == "" || rg.Contains(self) {
		r.firstRing.Do(func() { close(r.hasRing) })
	}
	defer r.handoff(prev, rg)
	r.mu.Lock()
	var gone []*peerOut
	for id, p := range r.peers {
		if !rg.Contains(id) || rg.Broker(rg.Index(id)).Addr != p.info.Addr {
			gone = append(gone, p)
			delete(r.peers, id)
		}
	}
	// Dial every other broker now: each is the standby of some of this
	// broker's channels, and a link dialed at the first publication would
	// let that publication go unreplicated.
	for _, info := range rg.Brokers() {
		if _, ok := r.peers[info.ID]; !ok && info.ID != r.self && r.self != "" && !r.shut {
			r.peers[info.ID] = r.newPeer(info)
		}
	}
	r.mu.Unlock()
	for _, p := range gone {
		p.close()
	}
}

// standby returns the link to ch's standby: the best-ranked broker other
// than this one, or nil when there is none.
func (r *replicator) standby(ch string) *peerOut {
	rg := r.ring.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	i := rg.StandbyIndex(ch, r.self)
	if i < 0 || r.shut || r.self == "" {
		return nil
	}
	info := rg.Broker(i)
	p := r.peers[info.ID]
	if p == nil {
		p = r.newPeer(info)
		r.peers[info.ID] = p
	}
	return p
}

// linksUp returns how many replication links are up.
func (r *replicator) linksUp() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.peers {
		p.mu.Lock()
		if p.l != nil {
			n++
		}
		p.mu.Unlock()
	}
	return n
}

func (r *replicator) close() {
	r.mu.Lock()
	r.shut = true
	peers := r.peers
	r.peers = map[string]*peerOut{}
	r.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
}

// publishReplicated handles one publish of a channel with history on
// the link's reader: it appends it (assigning its offset), sends it to the
// channel's standby and, once the standby has it, delivers it and lets
// the frame's PubAck go. seq is the publisher frontend's sequence number.
func (l *link) publishReplicated(ch string, opts history.Options, data []byte, seq uint64) {
	s := l.s
	r := s.repl
	pa := l.framePending()
	publisher := l.nl.Peer().NodeID
	p := r.standby(ch)
	if p != nil && p.needsSync(ch) {
		r.sync(p, ch)
	}
	pa.left.Add(1)
	start := time.Now()
	// A re-sent publish whose first copy's Replicate arrived since
	// HandleMessages checked it is not appended again (see
	// publishForwarded).
	seen := func() bool { return r.pubs.seen(ch, publisher, seq) }
	_, appended := r.hist.AppendUnless(ch, opts, data, seen, func(pos history.Position) {
		r.pubs.record(ch, publisher, seq)
		msg := protocol.AppendDeliverPosMsg(make([]byte, 0, 24+len(ch)+len(data)), ch, data, pos.Offset, pos.Epoch)
		if p == nil {
			r.m.results.WithLabelValues(replNoStandby).Inc()
			l.deliverPending(ch, msg, pa)
			return
		}
		p.send(ch, func(rseq uint64) []byte {
			return protocol.AppendReplicateMsg(make([]byte, 0, 32+len(ch)+len(pos.Epoch)+len(data)+len(publisher)), &protocol.Replicate{
				Seq: rseq, Channel: ch, Epoch: pos.Epoch, Offset: pos.Offset, Time: time.Now().UnixNano(),
				Data: data, Publisher: publisher, PubSeq: seq,
			})
		}, func(replicated bool) {
			if replicated {
				r.m.results.WithLabelValues(replOK).Inc()
				r.m.wait.Observe(time.Since(start).Seconds())
			} else {
				r.m.results.WithLabelValues(replUnreplicated).Inc()
			}
			l.deliverPending(ch, msg, pa)
		})
	})
	if !appended {
		r.m.duplicates.Inc()
		l.donePending(pa)
	}
}

// afterDelivered runs fn, which must not block, once every publication
// of ch appended so far has been delivered: at once without replication,
// else after the publications still waiting for ch's standby (they are
// delivered later than they are appended). A History reply sent this way
// keeps its place in the channel's delivery order: after every Deliver up
// to its position, before every later one. It runs under the stream lock.
func (s *Server) afterDelivered(ch string, fn func()) {
	if s.repl == nil {
		fn()
		return
	}
	p := s.repl.standby(ch)
	if p == nil {
		fn()
		return
	}
	p.after(fn)
}

// deliverPending queues msg to every link that holds ch, holds pa until
// each has written it, and then drops the hold publishReplicated took.
// It may run on any goroutine.
func (l *link) deliverPending(ch string, msg []byte, pa *pendingAck) {
	s := l.s
	n := 0
	for _, t := range s.table.links(ch) {
		if !t.nl.SendRaw(msg) {
			s.m.drops.WithLabelValues(dropLinkQueue).Inc()
			continue
		}
		n++
		pa.left.Add(1)
		t.nl.AfterFlush(func() { l.donePending(pa) })
	}
	s.m.deliveriesOut.Add(float64(n))
	l.donePending(pa)
}

// --- the owner's side: one outgoing link per standby ---

// peerOut is this broker's link to another broker it replicates to.
type peerOut struct {
	r    *replicator
	info protocol.BrokerInfo
	red  *nodelink.Redialer

	mu       sync.Mutex
	l        *nodelink.Link // nil while down
	gen      uint64         // connection generation
	seq      uint64         // last Replicate/ReplSnapshot sent on l
	acked    uint64         // highest ReplAck on l
	q        []replPending  // in send order
	draining bool
	closed   bool
	// synced are the channels whose history was sent on l (as a
	// ReplSnapshot) before their first Replicate.
	synced map[string]struct{}
}

// replPending is one publication waiting for the standby: release runs
// once, with whether the standby stored it.
type replPending struct {
	seq     uint64 // 0: never sent
	gen     uint64
	release func(replicated bool)
}

// newPeer dials info, under r.mu.
func (r *replicator) newPeer(info protocol.BrokerInfo) *peerOut {
	p := &peerOut{r: r, info: info}
	p.red = nodelink.NewRedialer(info.Addr, r.lcfg, nodelink.DefaultRedialMin, nodelink.DefaultRedialMax, p.up)
	p.red.Start()
	return p
}

func (p *peerOut) up(_ context.Context, nl *nodelink.Link) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = nl.Close(nodelink.ReasonShutdown)
		return
	}
	p.l = nl
	p.gen++
	p.seq, p.acked = 0, 0
	p.synced = make(map[string]struct{})
	p.mu.Unlock()
	p.r.mu.Lock()
	leaving := p.r.leavingSelf
	p.r.mu.Unlock()
	if leaving {
		p.sendLeaving()
	}
	p.r.s.log.Info("replication link up", "peer", p.info.ID)
	err := nl.Run(p)
	p.mu.Lock()
	if p.l == nl {
		p.l = nil
	}
	p.mu.Unlock()
	p.drain() // what was waiting on nl goes out unreplicated, in order
	p.r.s.log.Info("replication link down", "peer", p.info.ID, "err", err)
}

// HandleMessages reads the standby's ReplAcks.
func (p *peerOut) HandleMessages(nl *nodelink.Link, msgs []protocol.Message) {
	var top uint64
	for _, m := range msgs {
		if m.Type != protocol.MsgReplAck {
			continue
		}
		if seq, err := protocol.ParseReplAck(m.Body); err == nil {
			top = max(top, seq)
		}
	}
	if top == 0 {
		return
	}
	p.mu.Lock()
	if p.l == nl && top > p.acked {
		p.acked = min(top, p.seq)
	}
	p.mu.Unlock()
	p.drain()
}

// Closed implements nodelink.Handler.
func (p *peerOut) Closed(*nodelink.Link, error) {}

// send queues one publication of ch for the standby: encode builds its
// message for a link sequence number. release runs after the standby
// acknowledged it, or at once (unreplicated) when the standby cannot take
// it, but never before the publications queued earlier were released. A
// publication the link's queue refuses leaves ch unsynced, and so does a
// snapshot the queue refused (sync): the channel's publications then go
// unreplicated until the next one's sync sends the whole history, so the
// standby never holds a run with a hole (ch "": a forward, nothing to
// sync).
func (p *peerOut) send(ch string, encode func(seq uint64) []byte, release func(replicated bool)) {
	p.mu.Lock()
	sent := false
	_, synced := p.synced[ch]
	if p.l != nil && (ch == "" || synced) {
		p.seq++
		if p.l.SendRaw(encode(p.seq)) {
			p.q = append(p.q, replPending{seq: p.seq, gen: p.gen, release: release})
			sent = true
		} else {
			p.seq--
			if ch != "" {
				delete(p.synced, ch)
			}
		}
	}
	if !sent {
		p.q = append(p.q, replPending{release: release})
	}
	p.mu.Unlock()
	if !sent {
		p.drain()
	}
}

// needsSync reports whether ch's history has not been sent on the
// current link yet.
func (p *peerOut) needsSync(ch string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return false
	}
	_, ok := p.synced[ch]
	return !ok
}

// sync sends ch's whole history ahead of its first Replicate on the
// current link, so a standby that is new to the channel (it restarted, or
// became the standby when the ring changed) holds all of it, not only
// what follows. It runs before the publication's Append, outside the
// stream lock; a publication appended meanwhile by another link is in
// the snapshot or follows it. A history larger than half a link frame
// goes without its oldest publications (the standby keeps the newest
// run, as its own history would). A snapshot the link cannot queue (its
// queue is full) leaves the channel unsynced, so the next publication
// tries again: counted synced, the standby would hold the channel's later
// publications without the earlier ones, which a failover would then
// serve. sync reports whether the channel is synced on the link.
func (r *replicator) sync(p *peerOut, ch string) bool {
	snap, ok := r.hist.Snapshot(ch)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return false
	}
	if _, done := p.synced[ch]; done {
		return true
	}
	if !ok {
		p.synced[ch] = struct{}{}
		return true // nothing yet: the Replicates carry it all
	}
	msg, err := r.snapshotMsg(ch, snap, p.seq+1, r.s.cfg.Link.MessageLimit())
	if err != nil || !p.l.SendRaw(msg) {
		// Not synced: the channel's next publication tries again.
		r.m.snapshotFailures.Inc()
		return false
	}
	p.synced[ch] = struct{}{}
	p.seq++
	p.q = append(p.q, replPending{seq: p.seq, gen: p.gen, release: func(bool) {}})
	r.m.snapshots.Inc()
	return true
}

// after runs fn once everything queued so far is released (at once when
// nothing is queued).
func (p *peerOut) after(fn func()) {
	p.mu.Lock()
	if len(p.q) == 0 {
		p.mu.Unlock()
		fn()
		return
	}
	last := p.q[len(p.q)-1]
	p.q = append(p.q, replPending{seq: last.seq, gen: last.gen, release: func(bool) { fn() }})
	p.mu.Unlock()
	p.drain() // the last one may have been released meanwhile
}

// drain releases, in queue order, every pending publication the standby
// acknowledged or can no longer acknowledge. One caller drains at a time;
// what others queue meanwhile is picked up by the loop.
func (p *peerOut) drain() {
	p.mu.Lock()
	if p.draining {
		p.mu.Unlock()
		return
	}
	p.draining = true
	for len(p.q) > 0 {
		h := p.q[0]
		lost := h.seq == 0 || h.gen != p.gen || p.l == nil
		if !lost && p.acked < h.seq {
			break
		}
		p.q[0] = replPending{}
		p.q = p.q[1:]
		if len(p.q) == 0 {
			p.q = nil
		}
		p.mu.Unlock()
		h.release(!lost)
		p.mu.Lock()
	}
	p.draining = false
	p.mu.Unlock()
}

func (p *peerOut) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.red.Close()
	p.drain()
}

// --- the standby's side: links accepted from other brokers ---

// serveReplica runs a link from a broker that replicates to this one, in
// the accepting goroutine.
func (s *Server) serveReplica(nl *nodelink.Link) {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		_ = nl.Close(nodelink.ReasonShutdown)
		return
	}
	s.replIn[nl] = struct{}{}
	s.mu.Unlock()
	s.repl.peerUp(nl.Peer().NodeID)
	s.log.Info("replica link up", "peer", nl.Peer().NodeID)
	s.repl.giveBack(nl.Peer().NodeID)
	err := nl.Run(&peerIn{r: s.repl, nl: nl})
	s.mu.Lock()
	delete(s.replIn, nl)
	s.mu.Unlock()
	s.repl.peerGone(nl.Peer().NodeID)
	s.log.Info("replica link down", "peer", nl.Peer().NodeID, "err", err)
}

// peerIn is a link accepted from a broker that replicates to this one.
//
// A frame's ReplAck covers everything up to its highest sequence number
// (cumulative), so acknowledgements go out in frame order. A frame with a
// forwarded publish (this broker owns the channel) is acknowledged only
// once this broker's own standby holds the publication: the forwarding
// broker acknowledges its frontend on it, and a crash of this broker
// before then must leave the publish unacknowledged, to be appended by the
// forwarding broker, not lost.
type peerIn struct {
	r  *replicator
	nl *nodelink.Link

	mu   sync.Mutex
	acks []*inAck // frames not acknowledged yet, in order
}

// inAck is one frame's acknowledgement, sent once left reaches 0: one for
// the frame being read, one per forwarded publish not yet replicated.
type inAck struct {
	seq  uint64
	left atomic.Int32
}

// HandleMessages stores each replicated publication and snapshot, then
// acknowledges them all with one ReplAck.
func (h *peerIn) HandleMessages(nl *nodelink.Link, msgs []protocol.Message) {
	r := h.r
	var top uint64
	var rep protocol.Replicate
	var fa *inAck // this frame's acknowledgement, once it must wait
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgReplicate:
			if err := protocol.ParseReplicate(m.Body, &rep); err != nil {
				r.s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			opts := r.s.historyOptions(rep.Channel)
			top = max(top, rep.Seq)
			if rep.Offset == 0 { // a publish forwarded to the owner
				if fa == nil {
					fa = h.hold()
				}
				fa.left.Add(1)
				r.publishForwarded(rep.Channel, opts, rep.Data, rep.Publisher, rep.PubSeq, func() { h.release(fa) })
				r.m.received.WithLabelValues("forward").Inc()
				continue
			}
			// Recorded first: a publish of this broker's that checks
			// under the stream's lock whether the channel has it
			// (AppendUnless) then never misses it.
			r.pubs.record(rep.Channel, rep.Publisher, rep.PubSeq)
			if r.hist.Put(rep.Channel, opts, rep.Epoch, history.Pub{Offset: rep.Offset, Time: rep.Time, Data: rep.Data}, nil) {
				r.m.received.WithLabelValues("publication").Inc()
			} else {
				// At or below an offset this broker's copy already has:
				// sent twice, or numbered by two brokers at once.
				r.m.received.WithLabelValues("stale").Inc()
			}
		case protocol.MsgReplLeaving:
			r.peerLeaving(nl.Peer().NodeID)
		case protocol.MsgReplHandoff:
			var ho protocol.ReplHandoff
			if err := m.Decode(&ho); err != nil {
				r.s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			r.handoffReceived(nl.Peer().NodeID, ho.Version)
		case protocol.MsgReplSnapshot:
			var sn protocol.ReplSnapshot
			if err := m.Decode(&sn); err != nil {
				r.s.m.drops.WithLabelValues(dropMalformed).Inc()
				continue
			}
			r.restore(&sn)
			top = max(top, sn.Seq)
		default:
			r.s.m.drops.WithLabelValues(dropUnknown).Inc()
		}
	}
	if top == 0 {
		if fa != nil {
			h.release(fa)
		}
		return
	}
	if fa == nil {
		h.mu.Lock()
		waiting := len(h.acks) > 0
		if waiting {
			fa = &inAck{seq: top}
			fa.left.Store(1)
			h.acks = append(h.acks, fa)
		}
		h.mu.Unlock()
		if !waiting {
			h.sendAck(top)
			return
		}
	} else {
		h.mu.Lock()
		fa.seq = top
		h.mu.Unlock()
	}
	h.release(fa)
}

// hold queues the acknowledgement of the frame being read.
func (h *peerIn) hold() *inAck {
	a := &inAck{}
	a.left.Store(1)
	h.mu.Lock()
	h.acks = append(h.acks, a)
	h.mu.Unlock()
	return a
}

// release takes one wait off a; the acknowledgements at the head of the
// queue that wait for nothing more go out as one ReplAck.
func (h *peerIn) release(a *inAck) {
	if a.left.Add(-1) > 0 {
		return
	}
	h.mu.Lock()
	var top uint64
	for len(h.acks) > 0 && h.acks[0].left.Load() == 0 {
		top = max(top, h.acks[0].seq)
		h.acks[0] = nil
		h.acks = h.acks[1:]
	}
	if len(h.acks) == 0 {
		h.acks = nil
	}
	h.mu.Unlock()
	if top > 0 {
		h.sendAck(top)
	}
}

func (h *peerIn) sendAck(seq uint64) {
	if !h.nl.SendRaw(protocol.AppendReplAckMsg(make([]byte, 0, 10), seq)) {
		h.r.s.m.drops.WithLabelValues(dropAck).Inc()
	}
}

// Closed implements nodelink.Handler.
func (h *peerIn) Closed(*nodelink.Link, error) {}

// restore installs a snapshot another broker sent.
func (r *replicator) restore(sn *protocol.ReplSnapshot) {
	snap := history.Snapshot{Position: history.Position{Offset: sn.Offset, Epoch: sn.Epoch}, Time: sn.Time}
	for _, p := range sn.Pubs {
		snap.Pubs = append(snap.Pubs, history.Pub{Offset: p.Offset, Time: p.Time, Data: p.Data})
	}
	// Publishers first, as for a Replicate (peerIn.HandleMessages).
	for _, p := range sn.Publishers {
		r.pubs.record(sn.Channel, p.ID, p.Seq)
	}
	r.hist.Restore(sn.Channel, r.s.historyOptions(sn.Channel), snap)
	r.m.received.WithLabelValues("snapshot").Inc()
}

// snapshotMsg encodes channel's history for another broker.
// snapshotMsg encodes snap as a ReplSnapshot of at most maxBytes (no
// bound when 0), without its oldest publications if it must. Its size
// estimate counts every header at its largest msgpack size.
func (r *replicator) snapshotMsg(ch string, snap history.Snapshot, seq uint64, maxBytes int64) ([]byte, error) {
	sn := protocol.ReplSnapshot{Seq: seq, Channel: ch, Epoch: snap.Position.Epoch, Offset: snap.Position.Offset, Time: snap.Time,
		Publishers: r.pubs.list(ch)}
	pubs := snap.Pubs
	if maxBytes > 0 {
		size := int64(64 + len(ch) + len(snap.Position.Epoch))
		for _, p := range sn.Publishers {
			size += int64(len(p.ID)) + 16 // the array's, the string's and the sequence's headers
		}
		keep := 0
		for i := len(pubs) - 1; i >= 0; i-- {
			size += int64(len(pubs[i].Data)) + 24
			if size > maxBytes {
				break
			}
			keep++
		}
		pubs = pubs[len(pubs)-keep:]
	}
	for _, p := range pubs {
		sn.Pubs = append(sn.Pubs, protocol.ReplPub{Offset: p.Offset, Time: p.Time, Data: p.Data})
	}
	return protocol.AppendMessage(nil, protocol.MsgReplSnapshot, &sn)
}

// --- publishers: what a re-sent publish is compared with ---

// MinResendSeq is the smallest publish sequence number brokers
// deduplicate: frontends that re-send start their sequence at their start
// time in Unix nanoseconds, which keeps it growing across their restarts;
// a peer that counts from 1 on each link is never deduplicated.
const MinResendSeq = 1 << 56

// publishers remembers, per channel with history, the last publish
// sequence number each frontend sent. It is sharded by channel.
type publishers struct {
	shards []pubShard
}

type pubShard struct {
	mu sync.Mutex
	m  map[string]map[string]uint64 // channel → publisher → last seq
	_  [32]byte
}

func newPublishers(n int) publishers {
	p := publishers{shards: make([]pubShard, n)}
	for i := range p.shards {
		p.shards[i].m = make(map[string]map[string]uint64)
	}
	return p
}

func (p *publishers) shard(ch string) *pubShard {
	return &p.shards[xxhash.Sum64String(ch)%uint64(len(p.shards))]
}

// seen reports whether seq from publisher is at or below the last one
// channel took from it: a re-sent publish.
func (p *publishers) seen(ch, publisher string, seq uint64) bool {
	if publisher == "" || seq < MinResendSeq {
		return false
	}
	sh := p.shard(ch)
	sh.mu.Lock()
	last := sh.m[ch][publisher]
	sh.mu.Unlock()
	return seq <= last
}

// record notes that channel took seq from publisher.
func (p *publishers) record(ch, publisher string, seq uint64) {
	if publisher == "" || seq < MinResendSeq {
		return
	}
	sh := p.shard(ch)
	sh.mu.Lock()
	m := sh.m[ch]
	if m == nil {
		m = make(map[string]uint64, 2)
		sh.m[ch] = m
	}
	if seq > m[publisher] {
		m[publisher] = seq
	}
	sh.mu.Unlock()
}

// prune forgets the channels keep reports false for (their history is
// gone), so the table stays as large as the histories.
func (p *publishers) prune(keep func(ch string) bool) {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		var drop []string
		for ch := range sh.m {
			drop = append(drop, ch)
		}
		sh.mu.Unlock()
		for _, ch := range drop {
			if keep(ch) {
				continue
			}
			sh.mu.Lock()
			delete(sh.m, ch)
			sh.mu.Unlock()
		}
	}
}

// run prunes the publishers of channels whose history is gone, every
// interval, until stop.
func (r *replicator) run(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.pubs.prune(func(ch string) bool { _, ok := r.hist.Position(ch); return ok })
		}
	}
}

func (p *publishers) list(ch string) []protocol.ReplPublisher {
	sh := p.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]protocol.ReplPublisher, 0, len(sh.m[ch]))
	for id, seq := range sh.m[ch] {
		out = append(out, protocol.ReplPublisher{ID: id, Seq: seq})
	}
	return out
}
