package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/presence"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// PresenceConfig configures presence (docs/presence.md). Channels have
// presence when their rule says `presence: true`.
type PresenceConfig struct {
	// EventInterval is how long join and leave changes of a channel are
	// gathered into one event, standalone (in a cluster the owning
	// broker's SCC_PRESENCE_EVENT_INTERVAL applies). Env
	// SCC_PRESENCE_EVENT_INTERVAL. Default 500ms.
	EventInterval time.Duration
	// EventMaxMembers caps the joins and leaves one event lists,
	// standalone; the rest are counted in its omitted field. Env
	// SCC_PRESENCE_EVENT_MAX_MEMBERS. Default 100.
	EventMaxMembers int
	// PageMax caps the members one #presence call or presence API call
	// returns; callers page with offset. Env SCC_PRESENCE_PAGE_MAX.
	// Default 1000.
	PageMax int
	// InfoMaxBytes is the largest connection info (the auth token's info
	// claim, as JSON) a member carries; larger info is left out and
	// counted. Env SCC_PRESENCE_INFO_MAX_BYTES. Default 1024.
	InfoMaxBytes int
}

// DefaultPresenceConfig returns the defaults.
func DefaultPresenceConfig() PresenceConfig {
	return PresenceConfig{EventInterval: 500 * time.Millisecond, EventMaxMembers: 100, PageMax: 1000, InfoMaxBytes: 1024}
}

func (c PresenceConfig) validate() error {
	if c.EventInterval <= 0 || c.EventMaxMembers < 1 || c.PageMax < 1 || c.InfoMaxBytes < 0 {
		return errors.New("presence: event interval, event max members and page max must be positive, info max bytes not negative")
	}
	return nil
}

// PresenceBroker is implemented by a Broker that carries presence to the
// broker that owns each channel. Joins and leaves are called with the
// channel's presence lock held, in the order they happen; they must not
// block.
type PresenceBroker interface {
	// SetPresenceSource tells the broker where to read a channel's local
	// members when it must report them again (a link reconnected, a
	// channel moved to another owner). Called before Start.
	SetPresenceSource(PresenceSource)
	// PresenceJoin reports one local member of channel.
	PresenceJoin(channel string, m protocol.PresenceMember)
	// PresenceLeave reports that a local member left channel.
	PresenceLeave(channel, client string)
	// PresenceQuery asks the channel's owner for its counts and members.
	PresenceQuery(ctx context.Context, q protocol.PresenceQuery) (protocol.PresenceResult, error)
}

// PresenceSource gives a PresenceBroker the local members of a channel.
type PresenceSource interface {
	// ReportPresence calls report with channel's local members (not at
	// all when there are none), holding the channel's presence lock so
	// that no join or leave of the channel is reported meanwhile.
	ReportPresence(channel string, report func([]protocol.PresenceMember))
}

// ErrNoPresence means the channel's rule has no presence.
var ErrNoPresence = errors.New("frontend: the channel has no presence")

// Presence refusal reasons (scc_frontend_presence_refused_total).
const (
	presRefusedOff         = "not_enabled"    // the channel's rule has no presence (or no join_leave, for the companion channel)
	presRefusedNotSub      = "not_subscribed" // the socket is not subscribed to the channel
	presRefusedUnavailable = "unavailable"    // the owner did not answer
	presRefusedInfo        = "info_too_big"   // a member's info was left out
)

const presLocks = 64

// presLocal is the frontend's side of presence: the local members of each
// presence channel (the sockets subscribed to it), reported once each to
// the Broker, which carries them to the channel's owner.
type presLocal struct {
	srv     *Server
	cfg     PresenceConfig
	t       *presence.Table
	locks   [presLocks]sync.Mutex
	pb      PresenceBroker // nil: the broker carries no presence
	refused *prometheus.CounterVec
	// events counts join/leave events and what they left out: the hub's
	// own standalone, those received from the owning brokers in a
	// cluster (fromOwners).
	events     *presence.Metrics
	fromOwners bool
	// deliveries counts events queued to sockets, one per socket.
	deliveries prometheus.Counter
}

func (s *Server) initPresence() {
	p := &presLocal{srv: s, cfg: s.cfg.Presence, t: presence.NewTable()}
	p.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scc_frontend_presence_refused_total",
		Help: "Presence requests refused and member info left out, by reason.",
	}, []string{"reason"})
	for _, r := range []string{presRefusedOff, presRefusedNotSub, presRefusedUnavailable, presRefusedInfo} {
		p.refused.WithLabelValues(r)
	}
	p.deliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "scc_frontend_presence_event_deliveries_total",
		Help: "Join/leave events queued to sockets subscribed to #presence: channels, one per socket per event.",
	})
	s.reg.MustRegister(p.refused, p.deliveries)
	p.events = presence.NewMetrics(s.reg, "frontend", func() float64 { return float64(p.t.Len()) })
	if lb, ok := s.broker.(*LocalBroker); ok {
		hub, err := presence.NewHub(presence.Config{
			EventInterval:   p.cfg.EventInterval,
			EventMaxMembers: p.cfg.EventMaxMembers,
			JoinLeave:       func(ch string) bool { return s.rules.set.Options(ch).JoinLeave },
			Publish:         lb.deliver,
			Metrics:         p.events,
		})
		if err == nil { // the config was validated
			lb.pres = hub
		}
	} else {
		p.fromOwners = true
	}
	if pb, ok := s.broker.(PresenceBroker); ok {
		p.pb = pb
		pb.SetPresenceSource(p)
	}
	s.pres = p
}

// enabled reports whether ch has presence: a client channel whose rule
// says so.
func (p *presLocal) enabled(ch string) bool {
	return p.pb != nil && !strings.HasPrefix(ch, ReservedPrefix) && p.srv.rules.set.Options(ch).Presence
}

func (p *presLocal) lock(ch string) *sync.Mutex {
	return &p.locks[xxhash.Sum64String(ch)%presLocks]
}

// member returns s as a presence member: its id, its token's user and
// info claim.
func (p *presLocal) member(s *Socket) protocol.PresenceMember {
	s.mu.Lock()
	info := s.auth
	s.mu.Unlock()
	m := protocol.PresenceMember{Client: s.id, User: userOf(info)}
	if info != nil {
		if v, ok := info.claims["info"]; ok && v != nil {
			b, err := json.Marshal(v)
			switch {
			case err != nil:
			case len(b) > p.cfg.InfoMaxBytes:
				p.refused.WithLabelValues(presRefusedInfo).Inc()
			default:
				m.Info = b
			}
		}
	}
	return m
}

// join reports s as a member of ch, when ch has presence. The caller
// holds ch's subscription shard lock.
func (p *presLocal) join(ch string, s *Socket) {
	if !p.enabled(ch) {
		return
	}
	m := p.member(s)
	mu := p.lock(ch)
	mu.Lock()
	p.t.Join(0, ch, m)
	p.pb.PresenceJoin(ch, m)
	mu.Unlock()
}

// leave reports that s left ch.
func (p *presLocal) leave(ch string, s *Socket) {
	if p.pb == nil || strings.HasPrefix(ch, ReservedPrefix) {
		return
	}
	mu := p.lock(ch)
	mu.Lock()
	if _, ok := p.t.Leave(0, ch, s.id); ok {
		p.pb.PresenceLeave(ch, s.id)
	}
	mu.Unlock()
}

// refresh reports s again in every presence channel it holds, after its
// auth token changed (its user or info may have).
func (p *presLocal) refresh(s *Socket) {
	if p.pb == nil {
		return
	}
	for _, ch := range s.Channels() {
		if !p.enabled(ch) {
			continue
		}
		m := p.member(s)
		mu := p.lock(ch)
		mu.Lock()
		// Only a member still present is updated: a leave that ran
		// meanwhile is not undone.
		if p.t.Update(0, ch, m) {
			p.pb.PresenceJoin(ch, m)
		}
		mu.Unlock()
	}
}

// ReportPresence implements PresenceSource.
func (p *presLocal) ReportPresence(ch string, report func([]protocol.PresenceMember)) {
	mu := p.lock(ch)
	mu.Lock()
	defer mu.Unlock()
	if ms := p.t.Source(0, ch); len(ms) > 0 {
		report(ms)
	}
}

// Markers of the event fields delivered reads, as the owner encodes them.
var (
	eventOmitted   = []byte(`"omitted":`)
	eventCoalesced = []byte(`"coalesced":`)
)

// delivered counts an event on a companion channel that was queued to n
// sockets. In a cluster it also counts the event and what it left out,
// as its owner reported them; standalone the hub counted those when it
// published it.
func (p *presLocal) delivered(data []byte, n int) {
	if n > 0 {
		p.deliveries.Add(float64(n))
	}
	if !p.fromOwners {
		return
	}
	p.events.Events.Inc()
	// Most events leave nothing out: decode only those that say so.
	if !bytes.Contains(data, eventOmitted) && !bytes.Contains(data, eventCoalesced) {
		return
	}
	var ev struct {
		Omitted   int `json:"omitted"`
		Coalesced int `json:"coalesced"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	if ev.Omitted > 0 {
		p.events.Drops.WithLabelValues(presence.DropOverCap).Add(float64(ev.Omitted))
	}
	if ev.Coalesced > 0 {
		p.events.Drops.WithLabelValues(presence.DropCoalesced).Add(float64(ev.Coalesced))
	}
}

// query asks ch's owner; limit is capped at PageMax.
func (p *presLocal) query(ctx context.Context, ch string, statsOnly bool, offset, limit int) (protocol.PresenceResult, error) {
	if !p.enabled(ch) {
		p.refused.WithLabelValues(presRefusedOff).Inc()
		return protocol.PresenceResult{}, ErrNoPresence
	}
	if limit <= 0 || limit > p.cfg.PageMax {
		limit = p.cfg.PageMax
	}
	res, err := p.pb.PresenceQuery(ctx, protocol.PresenceQuery{Channel: ch, StatsOnly: statsOnly, Offset: max(offset, 0), Limit: limit})
	if err == nil && res.Error != "" {
		err = errors.New(res.Error)
	}
	if err != nil {
		p.refused.WithLabelValues(presRefusedUnavailable).Inc()
		return res, fmt.Errorf("presence of %s: %w", ch, err)
	}
	return res, nil
}

// reply turns a result into the client's answer: the counts, the page,
// and the offset of the next page.
func presenceReply(res protocol.PresenceResult, offset int) protocol.PresenceReply {
	r := protocol.PresenceReply{PresenceStats: protocol.PresenceStats{Clients: res.Clients, Users: res.Users},
		Members: make([]protocol.PresenceClient, 0, len(res.Members))}
	for _, m := range res.Members {
		r.Members = append(r.Members, presence.ClientOf(m))
	}
	if end := max(offset, 0) + len(res.Members); len(res.Members) > 0 && end < res.Clients {
		r.Next = end
	}
	return r
}

// presenceCall answers #presence and #presenceStats: only a socket
// subscribed to the channel may read its presence.
func (s *Socket) presenceCall(p *protocol.Packet, statsOnly bool) {
	srv := s.srv
	srv.m.inRPC.Inc()
	var req protocol.PresenceRequest
	if err := json.Unmarshal(p.Data, &req); err != nil || req.Channel == "" {
		s.fail(p, protocol.NewError(protocol.ErrNameInvalidAction, "Presence request must be {\"channel\": \"...\"}"))
		return
	}
	if !srv.subs.has(req.Channel, s) {
		srv.pres.refused.WithLabelValues(presRefusedNotSub).Inc()
		s.fail(p, protocol.NewError(protocol.ErrNameInvalidAction, fmt.Sprintf("Socket %s is not subscribed to the %s channel", s.id, req.Channel)))
		return
	}
	cid := cloneRaw(p.CID)
	srv.wg.Go(func() {
		ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.AckTimeout)
		defer cancel()
		pp := &protocol.Packet{CID: cid}
		res, err := srv.pres.query(ctx, req.Channel, statsOnly, req.Offset, req.Limit)
		if err != nil {
			name := protocol.ErrNameBroker
			if errors.Is(err, ErrNoPresence) {
				name = protocol.ErrNameInvalidAction
			}
			s.fail(pp, protocol.NewError(name, err.Error()))
			return
		}
		var b []byte
		if statsOnly {
			b, _ = json.Marshal(protocol.PresenceStats{Clients: res.Clients, Users: res.Users})
		} else {
			b, _ = json.Marshal(presenceReply(res, req.Offset))
		}
		s.reply(pp, b)
	})
}

// checkCompanion decides a subscribe to base's companion channel of
// join/leave events: base's rule must have join_leave, and the socket
// must hold base or be allowed to subscribe to it without subscribe data
// or a hook.
func (s *Socket) checkCompanion(base string) *protocol.Error {
	srv := s.srv
	if !srv.rules.set.Options(base).JoinLeave || strings.HasPrefix(base, ReservedPrefix) {
		srv.pres.refused.WithLabelValues(presRefusedOff).Inc()
		return protocol.NewError(protocol.ErrNameSubscribeBlocked, fmt.Sprintf("the %s channel has no join and leave events", base))
	}
	// Subscribed to base, or allowed to subscribe to it by the rules
	// alone: a reconnecting client may resubscribe the two in any order.
	if !srv.subs.has(base, s) && s.checkChannel(rules.OpSubscribe, base, nil) != nil {
		srv.pres.refused.WithLabelValues(presRefusedNotSub).Inc()
		return protocol.NewError(protocol.ErrNameSubscribeBlocked, fmt.Sprintf("subscribe to the %s channel before its join and leave events", base))
	}
	return nil
}

// kickCompanion kicks s out of base's companion channel, which it may
// only hold while it holds base.
func (s *Socket) kickCompanion(base string) {
	if _, ok := protocol.PresenceBase(base); ok {
		return
	}
	_ = s.KickOut(protocol.PresenceChannel(base), fmt.Sprintf("left the %s channel", base))
}

// Presence returns up to limit members of channel from offset (limit 0 or
// above PresenceConfig.PageMax: PageMax), the channel's counts, and the
// offset of the next page (0 on the last).
func (s *Server) Presence(ctx context.Context, channel string, offset, limit int) (protocol.PresenceReply, error) {
	res, err := s.pres.query(ctx, channel, false, offset, limit)
	if err != nil {
		return protocol.PresenceReply{}, err
	}
	return presenceReply(res, offset), nil
}

// PresenceStats returns channel's present clients and unique users.
func (s *Server) PresenceStats(ctx context.Context, channel string) (protocol.PresenceStats, error) {
	res, err := s.pres.query(ctx, channel, true, 0, 0)
	if err != nil {
		return protocol.PresenceStats{}, err
	}
	return protocol.PresenceStats{Clients: res.Clients, Users: res.Users}, nil
}

// SetPresenceSource implements PresenceBroker: standalone, the members
// never need reporting again.
func (b *LocalBroker) SetPresenceSource(PresenceSource) {}

// PresenceJoin implements PresenceBroker.
func (b *LocalBroker) PresenceJoin(ch string, m protocol.PresenceMember) {
	if b.pres != nil {
		b.pres.Join(0, ch, []protocol.PresenceMember{m}, false)
	}
}

// PresenceLeave implements PresenceBroker.
func (b *LocalBroker) PresenceLeave(ch, client string) {
	if b.pres != nil {
		b.pres.Leave(0, ch, []string{client})
	}
}

// PresenceQuery implements PresenceBroker.
func (b *LocalBroker) PresenceQuery(ctx context.Context, q protocol.PresenceQuery) (protocol.PresenceResult, error) {
	if b.pres == nil {
		return protocol.PresenceResult{}, ErrNoPresence
	}
	res := protocol.PresenceResult{ID: q.ID}
	if q.StatsOnly {
		st := b.pres.Stats(q.Channel)
		res.Clients, res.Users = st.Clients, st.Users
		return res, nil
	}
	ms, st, _ := b.pres.Page(q.Channel, q.Offset, q.Limit)
	res.Clients, res.Users, res.Members = st.Clients, st.Users, ms
	return res, nil
}

// deliver hands a presence event to the local subscribers of its
// companion channel.
func (b *LocalBroker) deliver(companion string, data []byte) {
	if s := b.sink.Load(); s != nil {
		(*s).Deliver(companion, data)
	}
}

type presenceParams struct {
	Channel string `json:"channel"`
	Offset  int    `json:"offset"`
	Limit   int    `json:"limit"`
}

func (a *api) presenceParams(body []byte) (presenceParams, error) {
	var p presenceParams
	if err := decode(body, &p); err != nil {
		return p, err
	}
	if err := a.checkChannel(p.Channel); err != nil {
		return p, err
	}
	if p.Offset < 0 || p.Limit < 0 {
		return p, errors.New("offset and limit must not be negative")
	}
	return p, nil
}

// presence serves the API's presence: one page of the channel's members.
func (a *api) presence(ctx context.Context, body []byte) (any, int, string, error) {
	p, err := a.presenceParams(body)
	if err != nil {
		return invalid("%v", err)
	}
	res, err := a.s.Presence(ctx, p.Channel, p.Offset, p.Limit)
	switch {
	case errors.Is(err, ErrNoPresence):
		return invalid("%v", err)
	case err != nil:
		return unavailable(err)
	}
	return res, 0, "", nil
}

// presenceStats serves the API's presence_stats: O(1) at the owner.
func (a *api) presenceStats(ctx context.Context, body []byte) (any, int, string, error) {
	p, err := a.presenceParams(body)
	if err != nil {
		return invalid("%v", err)
	}
	if p.Offset != 0 || p.Limit != 0 {
		return invalid("presence_stats takes channel only")
	}
	res, err := a.s.PresenceStats(ctx, p.Channel)
	switch {
	case errors.Is(err, ErrNoPresence):
		return invalid("%v", err)
	case err != nil:
		return unavailable(err)
	}
	return res, 0, "", nil
}
