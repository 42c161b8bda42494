package broker

import (
	"sync/atomic"

	"github.com/sccgo/sccgo/internal/presence"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Presence (docs/presence.md): the broker that owns a channel holds the
// members frontends report for it, keyed by link, answers queries, and
// publishes coalesced join/leave events on the channel's companion
// channel to every link that holds the channel. A link's members go with
// its interest: when it unsubscribes the channel (the channel moved in a
// reshard, or its last local subscriber left) they are dropped without
// events; when the link closes (the frontend died or lost its link) they
// leave, with events.

// dropPresence counts presence messages refused: for a channel whose rule
// has no presence, or that the link does not hold.
const dropPresence = "presence_refused"

// brokerPresence is the broker's presence: the hub of members and events,
// and the committed ring, so that only a channel's owner publishes its
// events (during a reshard the old and the new owner both hold the
// members, and clients would see every change twice).
type brokerPresence struct {
	*presence.Hub
	ring atomic.Pointer[ring.Ring]
}

// owns reports whether this broker owns ch under the committed ring; a
// broker that has heard of no ring (no state server) owns everything.
func (s *Server) owns(ch string) bool {
	r := s.pres.ring.Load()
	if r == nil || r.Len() == 0 {
		return true
	}
	return r.OwnerID(ch) == s.NodeID()
}

func (s *Server) initPresence() error {
	s.pres = &brokerPresence{}
	h, err := presence.NewHub(presence.Config{
		EventInterval:   s.cfg.PresenceEventInterval,
		EventMaxMembers: s.cfg.PresenceEventMaxMembers,
		JoinLeave:       func(ch string) bool { return s.rules.Options(ch).JoinLeave && s.owns(ch) },
		Publish:         s.publishPresence,
		Metrics: presence.NewMetrics(s.reg, protocol.RoleBroker, func() float64 {
			return float64(s.pres.Table().Len())
		}),
	})
	if err != nil {
		return err
	}
	s.pres.Hub = h
	s.m.drops.WithLabelValues(dropPresence)
	return nil
}

// publishPresence sends an event on companion to every link that holds
// the base channel: frontends hand it to their sockets subscribed to the
// companion channel.
func (s *Server) publishPresence(companion string, data []byte) {
	base, _ := protocol.PresenceBase(companion)
	targets := s.table.links(base)
	if len(targets) == 0 {
		return
	}
	msg := protocol.AppendDeliverMsg(make([]byte, 0, 8+len(companion)+len(data)), companion, data)
	for _, t := range targets {
		if !t.nl.SendRaw(msg) {
			s.m.drops.WithLabelValues(dropLinkQueue).Inc()
		}
	}
}

// presenceOn reports whether ch is a presence channel this link holds.
func (l *link) presenceOn(ch string) bool {
	if _, ok := l.chans[ch]; !ok || !l.s.rules.Options(ch).Presence {
		l.s.m.drops.WithLabelValues(dropPresence).Inc()
		return false
	}
	return true
}

// handlePresence applies one presence message; false when m is not one.
func (l *link) handlePresence(m protocol.Message) bool {
	s := l.s
	switch m.Type {
	case protocol.MsgPresenceJoin:
		var j protocol.PresenceJoin
		if err := m.Decode(&j); err != nil {
			s.m.drops.WithLabelValues(dropMalformed).Inc()
			return true
		}
		if l.presenceOn(j.Channel) {
			s.pres.Join(l.id, j.Channel, j.Members, j.Silent)
		}
	case protocol.MsgPresenceLeave:
		var lv protocol.PresenceLeave
		if err := m.Decode(&lv); err != nil {
			s.m.drops.WithLabelValues(dropMalformed).Inc()
			return true
		}
		s.pres.Leave(l.id, lv.Channel, lv.Clients)
	case protocol.MsgPresenceQuery:
		var q protocol.PresenceQuery
		if err := m.Decode(&q); err != nil {
			s.m.drops.WithLabelValues(dropMalformed).Inc()
			return true
		}
		res := protocol.PresenceResult{ID: q.ID}
		if q.StatsOnly {
			st := s.pres.Stats(q.Channel)
			res.Clients, res.Users = st.Clients, st.Users
		} else {
			limit := q.Limit
			if limit <= 0 || limit > s.cfg.PresencePageMax {
				limit = s.cfg.PresencePageMax
			}
			ms, st, _ := s.pres.Page(q.Channel, q.Offset, limit)
			// A result must fit one link message: a shorter page (the
			// counts tell the reader there is more).
			maxBytes := s.cfg.Link.MessageLimit() / 2
			size := int64(64 + len(q.Channel))
			for i, m := range ms {
				size += int64(len(m.Client)+len(m.User)+len(m.Info)) + 16
				if size > maxBytes {
					ms = ms[:i]
					break
				}
			}
			res.Clients, res.Users, res.Members = st.Clients, st.Users, ms
		}
		if err := l.nl.Send(protocol.MsgPresenceResult, &res); err != nil {
			s.m.drops.WithLabelValues(dropAck).Inc()
		}
	default:
		return false
	}
	return true
}
