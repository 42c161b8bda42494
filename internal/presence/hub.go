package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/protocol"
)

// Config configures a Hub.
type Config struct {
	// EventInterval is how long changes of a channel are gathered into
	// one join/leave event (default 500ms).
	EventInterval time.Duration
	// EventMaxMembers caps the joins plus leaves listed in one event of
	// one channel; changes beyond it are counted in the event's omitted
	// field and in the drop counter (default 100).
	EventMaxMembers int
	// JoinLeave reports whether channel publishes join and leave events;
	// nil means none does.
	JoinLeave func(channel string) bool
	// Publish sends one event on channel's companion channel; it must not
	// block.
	Publish func(companion string, data []byte)
	// Metrics, when not nil, counts events and what they left out.
	Metrics *Metrics
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{EventInterval: 500 * time.Millisecond, EventMaxMembers: 100}
}

// Validate checks the limits.
func (c Config) Validate() error {
	if c.EventInterval <= 0 {
		return errors.New("presence: event interval must be positive")
	}
	if c.EventMaxMembers < 1 {
		return errors.New("presence: event max members must be at least 1")
	}
	return nil
}

// Drop reasons of Metrics.Drops (bounded: they are metric labels).
const (
	// DropCoalesced counts changes that cancelled out within an interval
	// (a join and a leave of one client: two changes).
	DropCoalesced = "coalesced"
	// DropOverCap counts changes beyond EventMaxMembers in one interval.
	DropOverCap = "over_cap"
)

// Metrics are a Hub's counters.
type Metrics struct {
	Events prometheus.Counter
	Drops  *prometheus.CounterVec
}

// NewMetrics registers scc_<role>_presence_* on reg (nil registers
// nowhere); members reports the present members for a gauge.
func NewMetrics(reg prometheus.Registerer, role string, members func() float64) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: fmt.Sprintf("scc_%s_presence_events_total", role),
			Help: "Join/leave events published on #presence: companion channels (one per channel per interval at most).",
		}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: fmt.Sprintf("scc_%s_presence_event_drops_total", role),
			Help: "Join/leave changes not listed in an event, by reason: coalesced (a join and a leave that cancelled out), over_cap (beyond the per-event cap; counted in the event's omitted field).",
		}, []string{"reason"}),
	}
	m.Drops.WithLabelValues(DropCoalesced)
	m.Drops.WithLabelValues(DropOverCap)
	if reg != nil {
		reg.MustRegister(m.Events, m.Drops)
		if members != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: fmt.Sprintf("scc_%s_presence_members", role),
				Help: "Present members held, all presence channels together.",
			}, members))
		}
	}
	return m
}

// Hub is the presence of the channels a node owns: the member table and
// the coalesced join/leave events.
type Hub struct {
	cfg Config
	t   *Table

	mu      sync.Mutex
	pending map[string]*pendingEvents

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type pendingEvents struct {
	changes   map[key]change
	order     []key // first-seen order, for stable events
	omitted   int
	coalesced int
}

type change struct {
	join bool
	m    Member
}

// NewHub returns a Hub; Start runs its event flusher.
func NewHub(cfg Config) (*Hub, error) {
	d := DefaultConfig()
	if cfg.EventInterval == 0 {
		cfg.EventInterval = d.EventInterval
	}
	if cfg.EventMaxMembers == 0 {
		cfg.EventMaxMembers = d.EventMaxMembers
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Hub{cfg: cfg, t: NewTable(), pending: make(map[string]*pendingEvents), stop: make(chan struct{})}, nil
}

// Table returns the member table.
func (h *Hub) Table() *Table { return h.t }

// Start runs the flusher until Close.
func (h *Hub) Start() {
	if h.cfg.JoinLeave == nil || h.cfg.Publish == nil {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.cfg.EventInterval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.Flush()
			}
		}
	}()
}

// Close stops the flusher and waits for it; it is idempotent.
func (h *Hub) Close() {
	h.once.Do(func() { close(h.stop) })
	h.wg.Wait()
}

// Join adds members of ch for src. Unless silent, each new member is a
// join event.
func (h *Hub) Join(src uint64, ch string, ms []Member, silent bool) {
	for _, m := range ms {
		if h.t.Join(src, ch, m) && !silent {
			h.record(ch, key{src, m.Client}, change{join: true, m: m})
		}
	}
}

// Leave removes src's clients from ch; each one present is a leave
// event.
func (h *Hub) Leave(src uint64, ch string, clients []string) {
	for _, c := range clients {
		if m, ok := h.t.Leave(src, ch, c); ok {
			h.record(ch, key{src, c}, change{m: m})
		}
	}
}

// DropChannel removes src's members of ch without events: the channel
// moved to another owner, or src no longer holds it.
func (h *Hub) DropChannel(src uint64, ch string) { h.t.DropChannel(src, ch) }

// DropSource removes every member src reported (its link is gone); each
// is a leave event.
func (h *Hub) DropSource(src uint64) {
	for ch, ms := range h.t.DropSource(src) {
		for _, m := range ms {
			h.record(ch, key{src, m.Client}, change{m: m})
		}
	}
}

// Stats returns ch's counts in O(1).
func (h *Hub) Stats(ch string) Stats { return h.t.Stats(ch) }

// Page returns a page of ch's members (see Table.Page).
func (h *Hub) Page(ch string, offset, limit int) ([]Member, Stats, int) {
	return h.t.Page(ch, offset, limit)
}

func (h *Hub) record(ch string, k key, c change) {
	if h.cfg.JoinLeave == nil || !h.cfg.JoinLeave(ch) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pending[ch]
	if p == nil {
		p = &pendingEvents{changes: make(map[key]change)}
		h.pending[ch] = p
	}
	if old, ok := p.changes[k]; ok {
		if old.join != c.join {
			// A join and a leave within one interval: nothing to tell.
			delete(p.changes, k)
			p.coalesced += 2
			h.drop(DropCoalesced, 2)
			return
		}
		p.changes[k] = c
		return
	}
	if len(p.changes) >= h.cfg.EventMaxMembers {
		p.omitted++
		h.drop(DropOverCap, 1)
		return
	}
	p.changes[k] = c
	p.order = append(p.order, k)
}

func (h *Hub) drop(reason string, n int) {
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.Drops.WithLabelValues(reason).Add(float64(n))
	}
}

// Flush publishes the gathered events now; the flusher calls it every
// EventInterval.
func (h *Hub) Flush() {
	h.mu.Lock()
	if len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	pend := h.pending
	h.pending = make(map[string]*pendingEvents)
	h.mu.Unlock()
	for ch, p := range pend {
		if len(p.changes) == 0 && p.omitted == 0 {
			continue
		}
		// An interval whose changes all cancelled out sends nothing: its
		// coalesced changes are counted here only.
		ev := protocol.PresenceEvent{Omitted: p.omitted, Coalesced: p.coalesced, PresenceStats: h.t.Stats(ch)}
		for _, k := range p.order {
			c, ok := p.changes[k]
			if !ok {
				continue
			}
			pc := ClientOf(c.m)
			if c.join {
				ev.Join = append(ev.Join, pc)
			} else {
				ev.Leave = append(ev.Leave, pc)
			}
		}
		data, err := json.Marshal(ev)
		if err != nil {
			continue // members' info is checked JSON; never happens
		}
		h.cfg.Publish(protocol.PresenceChannel(ch), data)
		if h.cfg.Metrics != nil {
			h.cfg.Metrics.Events.Inc()
		}
	}
}

// ClientOf returns m as clients see it. Info that is not valid JSON is
// left out.
func ClientOf(m Member) protocol.PresenceClient {
	pc := protocol.PresenceClient{Client: m.Client, User: m.User}
	if len(m.Info) > 0 && json.Valid(m.Info) {
		pc.Info = json.RawMessage(m.Info)
	}
	return pc
}
