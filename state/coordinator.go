package state

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Conn is one node's link as the coordinator sees it; *nodelink.Link is
// one. Send must not block on the network.
type Conn interface {
	Send(t protocol.MsgType, body any) error
	Close(reason string) error
}

// Reshard results (metric label values).
const (
	resultOK      = "ok"      // every frontend prepared in time
	resultTimeout = "timeout" // committed after PrepareTimeout
	resultDirect  = "direct"  // committed without a prepare phase (nothing moves)
)

// Reshard phases.
const (
	phasePrepare = "prepare"
	phaseDrain   = "drain"
)

// Close reasons the coordinator gives links.
const reasonReplaced = "replaced"

// member is one node the coordinator knows. Owned by the loop.
type member struct {
	id, role         string
	addr, gossipAddr string
	conn             Conn
	connSeq          uint64 // event sequence when conn came up
	since            time.Time
	draining         bool   // said so in Hello
	rulesDigest      string // channel rules digest from Hello; "" if not sent
	leaving          bool   // sent Leave
	gossipDead       bool
	gossipDeadSeq    uint64
	ringVersion      uint64
	stats            protocol.Stats
	statsAt          time.Time

	joinTimer, leaveTimer *timer
	leaveAt               time.Time // when leaveTimer fires
	addDue, removeDue     bool
}

func (m *member) connected() bool { return m.conn != nil }

// healthy: the link is up and gossip has not declared the node dead since
// the link came up (a newer link is newer evidence than an older verdict).
func (m *member) healthy() bool {
	return m.conn != nil && !(m.gossipDead && m.gossipDeadSeq > m.connSeq)
}

func (m *member) going() bool { return m.leaving || m.draining }

// timer is a cancellable timer whose firing runs on the loop; fired
// callbacks check it is still the member's current one.
type timer struct{ t *time.Timer }

func (t *timer) stop() {
	if t != nil {
		t.t.Stop()
	}
}

// reshard is the one reshard in progress.
type reshard struct {
	ring     protocol.Ring
	from     protocol.Ring
	phase    string
	needed   map[string]bool // frontend id → prepared
	started  time.Time
	timer    *timer
	releases []string // leaving brokers to release after the drain
	result   string
}

// coordinator decides ring versions and runs reshards. All its state is
// owned by the loop goroutine; other goroutines talk to it through the
// inbox.
type coordinator struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	onCommit func(protocol.Ring) // gossip.SetRing; called on the loop

	inboxMu sync.Mutex
	inbox   []func()
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}

	// Loop-owned.
	seq          uint64
	members      map[string]*member
	byConn       map[Conn]*member
	ring         protocol.Ring
	hasRing      bool
	maxVersion   uint64
	known        protocol.Ring // highest ring reported during startup
	hasKnown     bool
	startupDone  bool
	startupTimer *timer
	rs           *reshard
	lastReshard  time.Time

	// Published for Welcome seeds.
	mu    sync.Mutex
	seeds []string
}

func newCoordinator(cfg Config, log *slog.Logger, m *metrics) *coordinator {
	return &coordinator{
		cfg:     cfg,
		log:     log,
		m:       m,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		members: make(map[string]*member),
		byConn:  make(map[Conn]*member),
	}
}

// run is the loop; it returns after stop.
func (c *coordinator) run() {
	defer close(c.stopped)
	c.startup()
	var batch []func()
	for {
		select {
		case <-c.done:
			c.stopTimers()
			return
		case <-c.wake:
		}
		c.inboxMu.Lock()
		batch, c.inbox = c.inbox, batch[:0]
		c.inboxMu.Unlock()
		for i, f := range batch {
			c.seq++
			f()
			batch[i] = nil
		}
	}
}

// stop ends the loop and waits for it (run must have been started).
func (c *coordinator) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	<-c.stopped
}

func (c *coordinator) enqueue(f func()) {
	c.inboxMu.Lock()
	c.inbox = append(c.inbox, f)
	c.inboxMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// call runs f on the loop and waits for it, or for ctx or stop.
func (c *coordinator) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	c.enqueue(func() { f(); close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopped:
		return context.Canceled
	}
}

// after runs f on the loop after d, unless stopped first.
func (c *coordinator) after(d time.Duration, f func(t *timer)) *timer {
	t := &timer{}
	t.t = time.AfterFunc(d, func() { c.enqueue(func() { f(t) }) })
	return t
}

func (c *coordinator) stopTimers() {
	c.startupTimer.stop()
	for _, m := range c.members {
		m.joinTimer.stop()
		m.leaveTimer.stop()
	}
	if c.rs != nil {
		c.rs.timer.stop()
	}
}

// --- inputs (any goroutine) ---

// connect records a welcomed link.
func (c *coordinator) connect(conn Conn, p nodelink.Peer) {
	c.enqueue(func() { c.onConnect(conn, p) })
}

// disconnect records a closed link.
func (c *coordinator) disconnect(conn Conn) {
	c.enqueue(func() { c.onDisconnect(conn) })
}

// reportRing records the committed ring a node holds.
func (c *coordinator) reportRing(conn Conn, r protocol.Ring) {
	c.enqueue(func() { c.onRingReport(conn, r) })
}

// prepared records a frontend's Prepared.
func (c *coordinator) prepared(conn Conn, v uint64) {
	c.enqueue(func() { c.onPrepared(conn, v) })
}

// leave records a broker's Leave.
func (c *coordinator) leave(conn Conn) {
	c.enqueue(func() { c.onLeave(conn) })
}

// stats records a node's Stats.
func (c *coordinator) stats(conn Conn, s protocol.Stats) {
	c.enqueue(func() { c.onStats(conn, s) })
}

// gossipMember records gossip's verdict on a node.
func (c *coordinator) gossipMember(id string, alive bool) {
	c.enqueue(func() { c.onGossip(id, alive) })
}

// gossipRing records a ring gossip carried: during startup it counts as a
// report; afterwards it only raises the version floor.
func (c *coordinator) gossipRing(r protocol.Ring) {
	c.enqueue(func() {
		if !c.versionOK(r.Version, "gossip") {
			return
		}
		c.noteVersion(r.Version)
		if !c.startupDone && (!c.hasKnown || r.Version > c.known.Version) {
			c.known, c.hasKnown = cloneRing(r), true
		}
	})
}

// Seeds returns gossip addresses for Welcome.
func (c *coordinator) Seeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seeds)
}

// --- loop ---

func (c *coordinator) startup() {
	if c.cfg.StartupDelay <= 0 {
		c.endStartup()
		return
	}
	c.log.Info("collecting members before the first commit", "delay", c.cfg.StartupDelay)
	c.startupTimer = c.after(c.cfg.StartupDelay, func(*timer) { c.endStartup() })
}

func (c *coordinator) endStartup() {
	c.startupDone = true
	c.startupTimer = nil
	if c.hasKnown && (!c.hasRing || c.known.Version > c.ring.Version) {
		c.ring, c.hasRing = cloneRing(c.known), true
	}
	c.ensureRingMembers()
	// The startup delay stood in for both delays: brokers of the ring that
	// did not come back go, connected brokers that are not in it come.
	for _, m := range c.brokers() {
		in := c.inRing(m.id)
		switch {
		case in && !m.healthy():
			m.removeDue = true
		case !in && m.healthy() && !m.going():
			m.addDue = true
		}
	}
	target := c.target()
	switch {
	case len(target) == 0:
		c.log.Info("startup: no brokers yet")
		c.releaseIfLast()
	case !c.hasRing || len(c.ring.Brokers) == 0 || sameBrokers(target, c.ring.Brokers):
		c.commitDirect(target)
	default:
		c.begin(target)
	}
	c.reconcileAll()
	for _, m := range c.brokers() {
		if m.going() && m.connected() {
			c.onGoing(m)
		}
		c.forgetIfGone(m)
	}
}

func (c *coordinator) onConnect(conn Conn, p nodelink.Peer) {
	m := c.members[p.NodeID]
	if m == nil {
		m = &member{id: p.NodeID}
		c.members[p.NodeID] = m
	}
	if m.conn != nil && m.conn != conn {
		delete(c.byConn, m.conn)
		m.conn.Close(reasonReplaced)
	}
	m.role = p.Role
	m.conn, m.connSeq = conn, c.seq
	m.since = time.Now()
	if p.Addr != "" {
		m.addr = p.Addr
	}
	m.gossipAddr = p.GossipAddr
	m.draining = p.Draining
	m.rulesDigest = p.RulesDigest
	if c.versionOK(p.RingVersion, m.id) {
		m.ringVersion = max(m.ringVersion, p.RingVersion)
		c.noteVersion(p.RingVersion)
	}
	c.byConn[conn] = m
	c.log.Info("member connected", "peer", m.id, "role", m.role, "addr", m.addr, "version", p.RingVersion, "draining", p.Draining)
	c.updateMembers()

	if c.startupDone && c.hasRing {
		c.sendTo(m, protocol.MsgRing, &c.ring)
	}
	if m.role == protocol.RoleFrontend && c.rs != nil && c.rs.phase == phasePrepare {
		c.rs.needed[m.id] = false
		c.sendTo(m, protocol.MsgPrepare, &protocol.Prepare{Ring: c.rs.ring})
	}
	if m.role != protocol.RoleBroker || !c.startupDone {
		return
	}
	if m.draining {
		c.onGoing(m)
		return
	}
	c.reconcile(m)
	// A ring broker back at a new address: reshard so nodes dial it there.
	// And a broker back when none was: removals that came due while no
	// broker was left to reshard to (a restart whose startup delay ended
	// before any came back) can go now. maybeReshard does nothing when the
	// target is the ring.
	c.maybeReshard()
}

func (c *coordinator) onDisconnect(conn Conn) {
	m := c.byConn[conn]
	if m == nil {
		return
	}
	delete(c.byConn, conn)
	if m.conn != conn {
		return
	}
	m.conn = nil
	c.log.Info("member disconnected", "peer", m.id, "role", m.role)
	if m.role == protocol.RoleFrontend {
		delete(c.members, m.id)
		if c.rs != nil && c.rs.phase == phasePrepare {
			delete(c.rs.needed, m.id)
			c.checkPrepared()
		}
	} else if c.startupDone {
		c.reconcile(m)
		c.forgetIfGone(m)
	}
	c.updateMembers()
}

func (c *coordinator) onRingReport(conn Conn, r protocol.Ring) {
	m := c.byConn[conn]
	if m == nil {
		return
	}
	if !c.versionOK(r.Version, m.id) {
		return
	}
	m.ringVersion = max(m.ringVersion, r.Version)
	c.noteVersion(r.Version)
	if !c.startupDone {
		if !c.hasKnown || r.Version > c.known.Version {
			c.known, c.hasKnown = cloneRing(r), true
		}
		return
	}
	// A node holds a newer ring than this server (it restarted with no
	// startup delay): adopt it rather than reshard from nothing.
	if c.rs == nil && len(r.Brokers) > 0 && (!c.hasRing || r.Version > c.ring.Version) {
		c.log.Info("adopting a newer ring a node reported", "peer", m.id, "version", r.Version)
		c.ring, c.hasRing = cloneRing(r), true
		c.m.ringVersion.Set(float64(r.Version))
		c.ensureRingMembers()
		for _, o := range c.members {
			if o.connected() && o.ringVersion < r.Version {
				c.sendTo(o, protocol.MsgRing, &c.ring)
			}
		}
		if c.onCommit != nil {
			c.onCommit(c.ring)
		}
		c.reconcileAll()
		c.maybeReshard()
	}
}

func (c *coordinator) onPrepared(conn Conn, v uint64) {
	m := c.byConn[conn]
	if m == nil || c.rs == nil || c.rs.phase != phasePrepare || v != c.rs.ring.Version {
		return
	}
	if _, ok := c.rs.needed[m.id]; ok {
		c.rs.needed[m.id] = true
		c.checkPrepared()
	}
}

func (c *coordinator) onLeave(conn Conn) {
	m := c.byConn[conn]
	if m == nil || m.role != protocol.RoleBroker {
		return
	}
	if !m.leaving {
		c.log.Info("broker leaving", "peer", m.id)
	}
	m.leaving = true
	if c.startupDone {
		c.onGoing(m)
	}
}

// onGoing handles a broker that is leaving: reshard it out, or release it
// at once if no ring holds it.
func (c *coordinator) onGoing(m *member) {
	c.reconcile(m)
	inPending := c.rs != nil && (ringHas(c.rs.ring, m.id) || slices.Contains(c.rs.releases, m.id))
	if !c.inCommitted(m.id) && !inPending {
		c.release(m, c.ring.Version)
		return
	}
	c.maybeReshard()
}

func (c *coordinator) onStats(conn Conn, s protocol.Stats) {
	m := c.byConn[conn]
	if m == nil {
		return
	}
	m.stats, m.statsAt = s, time.Now()
	if c.versionOK(s.RingVersion, m.id) {
		m.ringVersion = max(m.ringVersion, s.RingVersion)
		c.noteVersion(s.RingVersion)
	}
}

func (c *coordinator) onGossip(id string, alive bool) {
	m := c.members[id]
	if m == nil || m.role != protocol.RoleBroker {
		return
	}
	if m.gossipDead == !alive {
		return
	}
	m.gossipDead = !alive
	if !alive {
		m.gossipDeadSeq = c.seq
		c.log.Info("gossip declares broker dead", "peer", id)
	}
	if c.startupDone {
		c.reconcile(m)
	}
}

// --- timers ---

// reconcile starts or stops m's timers to match its health and the ring
// it is heading for (the reshard's ring while one runs).
func (c *coordinator) reconcile(m *member) {
	if m.role != protocol.RoleBroker || !c.startupDone {
		return
	}
	healthy := m.healthy()
	if c.inRing(m.id) {
		c.stopJoin(m)
		m.addDue = false
		if healthy {
			c.stopLeave(m)
			m.removeDue = false
		} else if m.leaveTimer == nil && !m.removeDue {
			m.leaveAt = time.Now().Add(c.cfg.ScaleBackDelay)
			m.leaveTimer = c.after(c.cfg.ScaleBackDelay, func(t *timer) { c.leaveFired(m, t) })
		}
		return
	}
	c.stopLeave(m)
	m.removeDue = false
	if healthy && !m.going() {
		if m.joinTimer == nil && !m.addDue {
			m.joinTimer = c.after(c.cfg.ScaleOutDelay, func(t *timer) { c.joinFired(m, t) })
		}
		return
	}
	c.stopJoin(m)
	m.addDue = false
}

func (c *coordinator) reconcileAll() {
	for _, m := range c.brokers() {
		c.reconcile(m)
	}
}

func (c *coordinator) stopJoin(m *member) {
	m.joinTimer.stop()
	m.joinTimer = nil
}

func (c *coordinator) stopLeave(m *member) {
	m.leaveTimer.stop()
	m.leaveTimer = nil
}

func (c *coordinator) joinFired(m *member, t *timer) {
	if m.joinTimer != t || c.members[m.id] != m {
		return
	}
	m.joinTimer = nil
	if m.healthy() && !m.going() && !c.inRing(m.id) {
		c.log.Info("broker joins the ring", "peer", m.id)
		m.addDue = true
		c.maybeReshard()
	}
}

func (c *coordinator) leaveFired(m *member, t *timer) {
	if m.leaveTimer != t || c.members[m.id] != m {
		return
	}
	m.leaveTimer = nil
	if !m.healthy() && c.inRing(m.id) {
		c.log.Info("broker leaves the ring", "peer", m.id, "reason", "unhealthy")
		m.removeDue = true
		c.takeFailedWith(m)
		c.maybeReshard()
	}
}

// takeFailedWith marks for removal, with m, every other broker of the ring
// that failed at about the same time: unhealthy, with its leave timer
// due within half of ScaleBackDelay. Brokers that fail together (a host,
// a rack, a kill of several) then leave in one reshard. One at a time,
// the first ring would still hold the others, and every frontend would
// wait out the prepare and subscribe timeouts on their links before the
// next reshard could start.
func (c *coordinator) takeFailedWith(m *member) {
	window := time.Now().Add(c.cfg.ScaleBackDelay / 2)
	for _, o := range c.brokers() {
		if o == m || o.healthy() || o.removeDue || o.leaveTimer == nil || !c.inRing(o.id) || o.leaveAt.After(window) {
			continue
		}
		c.stopLeave(o)
		o.removeDue = true
		c.log.Info("broker leaves the ring", "peer", o.id, "reason", "unhealthy", "with", m.id)
	}
}

// --- reshards ---

// target is the broker set the ring should have now.
func (c *coordinator) target() []protocol.BrokerInfo {
	var out []protocol.BrokerInfo
	for _, b := range c.ring.Brokers {
		m := c.members[b.ID]
		if m != nil && (m.removeDue || m.going()) {
			continue
		}
		if m != nil && m.connected() && m.addr != "" {
			b.Addr = m.addr
		}
		out = append(out, b)
	}
	for _, m := range c.brokers() {
		if m.addDue && m.healthy() && !m.going() && !ringHas(c.ring, m.id) {
			out = append(out, protocol.BrokerInfo{ID: m.id, Addr: m.addr})
		}
	}
	return ring.New(0, out).Brokers()
}

// maybeReshard starts a reshard if none runs and the target differs from
// the ring.
func (c *coordinator) maybeReshard() {
	if !c.startupDone || c.rs != nil {
		return
	}
	target := c.target()
	if len(target) == 0 {
		c.releaseIfLast()
		return
	}
	if c.hasRing && sameBrokers(target, c.ring.Brokers) {
		return
	}
	c.begin(target)
}

// releaseIfLast releases leaving brokers when no broker would be left: an
// empty ring routes nothing, so the ring is kept as it is.
func (c *coordinator) releaseIfLast() {
	for _, m := range c.brokers() {
		if m.going() && c.inCommitted(m.id) {
			c.log.Warn("last brokers leaving; keeping the ring", "peer", m.id)
			c.release(m, c.ring.Version)
		}
	}
}

func (c *coordinator) nextVersion() uint64 {
	c.maxVersion++
	return c.maxVersion
}

// begin starts the prepare phase for a ring of target.
func (c *coordinator) begin(target []protocol.BrokerInfo) {
	rs := &reshard{
		ring:    protocol.Ring{Version: c.nextVersion(), Brokers: target},
		from:    cloneRing(c.ring),
		phase:   phasePrepare,
		needed:  make(map[string]bool),
		started: time.Now(),
	}
	c.rs = rs
	c.log.Info("reshard: prepare", "version", rs.ring.Version, "from", ringString(rs.from), "to", ringString(rs.ring))
	for _, m := range c.members {
		if m.role == protocol.RoleFrontend && m.connected() {
			if c.hasRing && m.ringVersion < c.ring.Version {
				c.sendTo(m, protocol.MsgRing, &c.ring) // the ring being left
			}
			rs.needed[m.id] = false
			c.sendTo(m, protocol.MsgPrepare, &protocol.Prepare{Ring: rs.ring})
		}
	}
	c.reconcileAll()
	rs.timer = c.after(c.cfg.PrepareTimeout, func(*timer) {
		if c.rs != rs || rs.phase != phasePrepare {
			return
		}
		waiting := 0
		for _, ok := range rs.needed {
			if !ok {
				waiting++
			}
		}
		c.log.Warn("reshard: prepare timed out; committing anyway", "version", rs.ring.Version, "waiting", waiting)
		c.m.reshardTimeouts.Inc()
		rs.result = resultTimeout
		c.commit()
	})
	c.checkPrepared()
}

func (c *coordinator) checkPrepared() {
	rs := c.rs
	if rs == nil || rs.phase != phasePrepare {
		return
	}
	for _, ok := range rs.needed {
		if !ok {
			return
		}
	}
	rs.result = resultOK
	c.commit()
}

// commit ends the prepare phase: every frontend and broker gets Commit, and
// the drain window starts.
func (c *coordinator) commit() {
	rs := c.rs
	rs.timer.stop()
	rs.phase = phaseDrain
	if c.maxVersion > rs.ring.Version {
		// A node reported a higher version meanwhile: stay above it.
		rs.ring.Version = c.nextVersion()
	}
	c.install(rs.ring)
	c.m.reshards.WithLabelValues(rs.result).Inc()
	c.m.reshardDuration.Observe(time.Since(rs.started).Seconds())
	for _, m := range c.brokers() {
		if m.going() && !ringHas(rs.ring, m.id) && ringHas(rs.from, m.id) {
			rs.releases = append(rs.releases, m.id)
		}
	}
	c.log.Info("reshard: committed", "version", rs.ring.Version, "result", rs.result, "took", time.Since(rs.started))
	rs.timer = c.after(c.cfg.DrainWindow, func(*timer) {
		if c.rs == rs {
			c.finish()
		}
	})
}

// commitDirect commits target without a prepare phase (nothing moves).
func (c *coordinator) commitDirect(target []protocol.BrokerInfo) {
	r := protocol.Ring{Version: c.nextVersion(), Brokers: target}
	c.log.Info("committing ring", "version", r.Version, "ring", ringString(r))
	c.install(r)
	c.m.reshards.WithLabelValues(resultDirect).Inc()
}

// install makes r the committed ring and tells every node.
func (c *coordinator) install(r protocol.Ring) {
	c.ring, c.hasRing = cloneRing(r), true
	c.lastReshard = time.Now()
	c.m.ringVersion.Set(float64(r.Version))
	for _, m := range c.members {
		if m.connected() && (m.role == protocol.RoleFrontend || m.role == protocol.RoleBroker) {
			c.sendTo(m, protocol.MsgCommit, &protocol.Commit{Ring: r})
		}
	}
	for _, m := range c.brokers() {
		if ringHas(r, m.id) {
			m.addDue = false
		} else {
			m.removeDue = false
		}
	}
	if c.onCommit != nil {
		c.onCommit(c.ring)
	}
}

// finish ends the drain window: leaving brokers are released and the next
// reshard may start.
func (c *coordinator) finish() {
	rs := c.rs
	c.rs = nil
	for _, id := range rs.releases {
		if m := c.members[id]; m != nil {
			c.release(m, rs.ring.Version)
		}
	}
	for _, m := range c.brokers() {
		c.forgetIfGone(m)
	}
	c.reconcileAll()
	c.maybeReshard()
}

func (c *coordinator) release(m *member, v uint64) {
	if m.connected() {
		c.log.Info("broker released", "peer", m.id, "version", v)
		c.sendTo(m, protocol.MsgReleased, &protocol.Released{Version: v})
	}
}

// --- helpers ---

func sortStrings(s []string) { sort.Strings(s) }

func (c *coordinator) sendTo(m *member, t protocol.MsgType, body any) {
	if m.conn == nil {
		return
	}
	if err := m.conn.Send(t, body); err != nil {
		// The link counts the drop by reason. Every message sent here
		// moves the member's ring or a reshard, so it is logged where an
		// operator sees it: the member catches up with the ring when it
		// reconnects or by gossip, and a reshard waits for its timeout.
		c.log.Warn("a message to a member was not sent", "peer", m.id, "msg", t.String(), "err", err)
		return
	}
	switch b := body.(type) {
	case *protocol.Ring:
		m.ringVersion = max(m.ringVersion, b.Version)
	case *protocol.Commit:
		m.ringVersion = max(m.ringVersion, b.Ring.Version)
	}
}

// versionOK reports whether a ring version from peer may raise the
// version floor: at most ring.MaxVersion, and at most MaxRingVersionStep
// above the highest version known. Otherwise it is counted and logged.
func (c *coordinator) versionOK(v uint64, peer string) bool {
	err := ring.CheckVersion(c.maxVersion, c.maxVersion > 0, v, c.cfg.MaxRingVersionStep)
	if err == nil {
		return true
	}
	reason := ring.VersionReason(err)
	c.m.ringRejects.WithLabelValues(reason).Inc()
	c.log.Warn("ignoring a ring version", "peer", peer, "reason", reason, "err", err)
	return false
}

func (c *coordinator) noteVersion(v uint64) {
	if v > c.maxVersion {
		c.maxVersion = v
	}
}

// inRing: the broker is in the ring being installed (the reshard's while
// one runs, else the committed one).
func (c *coordinator) inRing(id string) bool {
	if c.rs != nil {
		return ringHas(c.rs.ring, id)
	}
	return c.inCommitted(id)
}

func (c *coordinator) inCommitted(id string) bool {
	return c.hasRing && ringHas(c.ring, id)
}

func (c *coordinator) ringIndex(id string) int {
	if !c.hasRing {
		return -1
	}
	return slices.IndexFunc(c.ring.Brokers, func(b protocol.BrokerInfo) bool { return b.ID == id })
}

// ensureRingMembers creates records for ring brokers that have not
// connected, so their timers run.
func (c *coordinator) ensureRingMembers() {
	for _, b := range c.ring.Brokers {
		if c.members[b.ID] == nil {
			c.members[b.ID] = &member{id: b.ID, role: protocol.RoleBroker, addr: b.Addr}
		}
	}
}

// forgetIfGone drops a disconnected broker no ring holds.
func (c *coordinator) forgetIfGone(m *member) {
	if m.connected() || m.role != protocol.RoleBroker || c.inCommitted(m.id) {
		return
	}
	if c.rs != nil && (ringHas(c.rs.ring, m.id) || slices.Contains(c.rs.releases, m.id)) {
		return
	}
	c.stopJoin(m)
	c.stopLeave(m)
	delete(c.members, m.id)
}

// brokers returns broker members sorted by ID (deterministic order).
func (c *coordinator) brokers() []*member {
	out := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		if m.role == protocol.RoleBroker {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// updateMembers refreshes the member gauges and the Welcome seeds.
func (c *coordinator) updateMembers() {
	counts := map[string]int{protocol.RoleBroker: 0, protocol.RoleFrontend: 0}
	var seeds []string
	for _, m := range c.members {
		if !m.connected() {
			continue
		}
		counts[m.role]++
		if m.gossipAddr != "" {
			seeds = append(seeds, m.gossipAddr)
		}
	}
	for role, n := range counts {
		c.m.members.WithLabelValues(role).Set(float64(n))
	}
	c.m.rulesDigests.Set(float64(len(c.rulesDigests())))
	slices.Sort(seeds)
	if len(seeds) > c.cfg.MaxSeeds {
		seeds = seeds[:c.cfg.MaxSeeds]
	}
	c.mu.Lock()
	c.seeds = seeds
	c.mu.Unlock()
}

func ringHas(r protocol.Ring, id string) bool {
	return slices.ContainsFunc(r.Brokers, func(b protocol.BrokerInfo) bool { return b.ID == id })
}

func sameBrokers(a, b []protocol.BrokerInfo) bool {
	return ring.New(0, a).SameBrokers(ring.New(0, b))
}

func cloneRing(r protocol.Ring) protocol.Ring {
	r.Brokers = slices.Clone(r.Brokers)
	return r
}

func ringString(r protocol.Ring) string {
	return ring.FromProtocol(r).String()
}
