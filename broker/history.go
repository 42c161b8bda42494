package broker

import (
	"time"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/protocol"
)

// historyOptions returns channel's history settings from its rule.
func (s *Server) historyOptions(channel string) history.Options {
	h := s.rules.Options(channel).History
	return history.Options{Size: h.Size, TTL: time.Duration(h.TTL)}
}

// History returns the store of the broker's channel histories (for
// replication and moves).
func (s *Server) History() *history.Store { return s.hist }

// forwardHistory appends one publication to ch's history and, under the
// stream's lock so that Delivers leave in offset order, queues the same
// Deliver (with its offset and epoch) to every link that holds ch; it
// returns how many links took it.
func (l *link) forwardHistory(ch string, data []byte, opts history.Options) int {
	s := l.s
	sent := 0
	s.hist.Append(ch, opts, data, func(pos history.Position) {
		targets := s.table.links(ch)
		if len(targets) == 0 {
			return
		}
		msg := protocol.AppendDeliverPosMsg(make([]byte, 0, 24+len(ch)+len(data)), ch, data, pos.Offset, pos.Epoch)
		if l.targets == nil {
			l.targets = make(map[*link]struct{})
		}
		for _, t := range targets {
			if t.nl.SendRaw(msg) {
				sent++
				l.targets[t] = struct{}{}
			} else {
				s.m.drops.WithLabelValues(dropLinkQueue).Inc()
			}
		}
	})
	return sent
}

// history answers a frontend's History request. The reply is queued
// under the stream's lock, so on this link it follows every Deliver of
// the channel up to the position it carries and precedes every later one.
func (l *link) history(h protocol.History) {
	s := l.s
	opts := s.historyOptions(h.Channel)
	reply := protocol.HistoryReply{ID: h.ID, Channel: h.Channel}
	send := func() {
		b, err := protocol.AppendMessage(nil, protocol.MsgHistoryReply, &reply)
		if err != nil || !l.nl.SendRaw(b) {
			s.m.drops.WithLabelValues(dropAck).Inc()
		}
	}
	if h.Latest > 0 {
		pubs, pos, _ := s.hist.Latest(h.Channel, min(h.Latest, max(opts.Size, 0)))
		// A reply must fit one link message, with room for the headers
		// pubBytes leaves out: "up to Latest", the newest.
		limit := s.cfg.Link.MessageLimit() / 2
		for size := pubBytes(pubs); len(pubs) > 0 && size > limit; pubs = pubs[1:] {
			size -= int64(len(pubs[0].Data)) + 16
		}
		reply.Offset, reply.Epoch, reply.Pubs = pos.Offset, pos.Epoch, wirePubs(pubs)
		send()
		return
	}
	if s.repl != nil && opts.Enabled() && s.repl.ownedElsewhere(h.Channel) {
		if _, ok := s.hist.Position(h.Channel); !ok {
			// Not the owner under this broker's ring, and nothing to
			// answer from: a stream created here would be a second epoch
			// of the channel. The frontend asks the owner.
			reply.Reason = history.ReasonMoved
			send()
			return
		}
	}
	_, had := s.hist.Position(h.Channel)
	defer func() {
		if had || s.repl == nil {
			return
		}
		// The stream starts here, before any publication: the standby
		// gets its epoch now, so that a subscriber holding this position
		// can still recover after this broker fails.
		if p := s.repl.standby(h.Channel); p != nil && p.needsSync(h.Channel) {
			s.repl.sync(p, h.Channel)
		}
	}()
	s.hist.Since(h.Channel, opts, history.Position{Offset: h.Offset, Epoch: h.Epoch}, h.Limit, func(r history.Result) {
		reply.Offset, reply.Epoch = r.Position.Offset, r.Position.Epoch
		reply.Recovered, reply.Reason, reply.Pubs = r.Recovered, r.Reason, wirePubs(r.Pubs)
		if pubBytes(r.Pubs) > s.cfg.Link.MessageLimit()/2 {
			// A reply must fit one link message: too much missed.
			reply.Recovered, reply.Reason, reply.Pubs = false, history.ReasonLimit, nil
		}
		s.afterDelivered(h.Channel, send)
	})
}

func wirePubs(ps []history.Pub) []protocol.HistoryPub {
	if len(ps) == 0 {
		return nil
	}
	out := make([]protocol.HistoryPub, len(ps))
	for i, p := range ps {
		out[i] = protocol.HistoryPub{Offset: p.Offset, Time: p.Time, Data: p.Data}
	}
	return out
}

func pubBytes(ps []history.Pub) int64 {
	var n int64
	for _, p := range ps {
		n += int64(len(p.Data)) + 16
	}
	return n
}
