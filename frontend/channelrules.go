package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// LoadChannelRules reads a channel rules file (docs/channels.md) for
// Config.Rules.
func LoadChannelRules(path string) (*rules.Set, error) { return rules.Load(path) }

// reasonHookUnavailable refuses a channel whose rule defers to a backend
// hook when the server has none.
const reasonHookUnavailable = "hook_unavailable"

// channelRules is the server's rules, bound to its token verifier, and
// the refusal counter.
type channelRules struct {
	set     *rules.Set
	refused *prometheus.CounterVec // op, reason
	// hookRefused counts what a backend hook refused (hookcalls.go).
	hookRefused *prometheus.CounterVec // hook, reason
}

func (s *Server) initChannelRules() {
	set := s.cfg.Rules
	if set == nil {
		set = rules.Default()
	}
	s.rules.set = set.WithVerifier(func(signed string) (map[string]any, error) {
		info, perr := s.auth.verifyToken(signed)
		if perr != nil {
			return nil, errors.New(perr.Message)
		}
		return info.claims, nil
	})
	s.rules.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scc", Subsystem: "frontend", Name: "channel_refusals_total",
		Help: "Client subscribes and publishes refused by the channel rules, by operation and reason.",
	}, []string{"op", "reason"})
	for _, op := range []string{rules.OpSubscribe.String(), rules.OpPublish.String(), opRecheck} {
		for _, r := range []rules.Reason{rules.ReasonReserved, rules.ReasonUnauthenticated, rules.ReasonClaim,
			rules.ReasonTokenChannels, rules.ReasonSubscriptionToken, rules.ReasonNobody, reasonHookUnavailable} {
			s.rules.refused.WithLabelValues(op, string(r))
		}
	}
	s.reg.MustRegister(s.rules.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "scc", Subsystem: "frontend", Name: "channel_rules_info",
		Help:        "Always 1; the digest label is the SHA-256 of the channel rules in force, so nodes with different rules show.",
		ConstLabels: prometheus.Labels{"digest": s.rules.set.Digest()},
	}, func() float64 { return 1 }))
	if r, ok := s.cfg.Broker.(RulesReporter); ok {
		r.ReportRulesDigest(s.rules.set.Digest())
	}
	if u, ok := s.cfg.Broker.(RulesUser); ok {
		u.UseChannelRules(s.rules.set)
	}
}

// RulesUser is implemented by a Broker that reads the channel options of
// the rules in force (cluster.Node's Broker re-sends the unacknowledged
// publishes of channels with history after a broker failure). New calls
// it once, before Start.
type RulesUser interface {
	UseChannelRules(set *rules.Set)
}

// RulesReporter is implemented by a Broker that reports the frontend's
// channel rules digest to the cluster, so that the state server can show
// nodes whose rules differ (cluster.Node's Broker does). New calls it once,
// before Start, with the digest of the rules in force.
type RulesReporter interface {
	ReportRulesDigest(digest string)
}

// RulesDigest returns the digest of the channel rules in force (the
// default rules' when Config.Rules is nil).
func (s *Server) RulesDigest() string { return s.rules.set.Digest() }

// checkChannel applies the channel rules to a client subscribe (with the
// #subscribe data, where a subscription token travels) or publish, and
// returns the error to answer with, or nil.
func (s *Socket) checkChannel(op rules.Op, channel string, data json.RawMessage) *protocol.Error {
	srv := s.srv
	s.mu.Lock()
	info := s.auth
	s.mu.Unlock()
	sub := rules.Subject{SubscribeData: data}
	if info != nil {
		sub.Authenticated, sub.Claims = true, info.claims
	}
	if op == rules.OpSubscribe && s.isGranted(channel) {
		return nil
	}
	d := srv.rules.set.Check(op, channel, sub)
	switch {
	case d.Allow:
		return nil
	case d.NeedHook && srv.hookFor(op):
		return errHookDecides
	case d.NeedHook:
		srv.rules.refused.WithLabelValues(op.String(), reasonHookUnavailable).Inc()
		name := protocol.ErrNameSubscribeBlocked
		if op == rules.OpPublish {
			name = protocol.ErrNamePublishBlocked
		}
		return protocol.NewError(name, fmt.Sprintf("the %s channel's rule asks a backend hook, and this server has none", channel))
	}
	srv.rules.refused.WithLabelValues(op.String(), string(d.Reason)).Inc()
	return d.Err
}

// opRecheck labels refusals found when a socket's auth token changed.
const opRecheck = "recheck"

// recheckChannels kicks the socket out of the channels its current auth
// state no longer lets it subscribe to: after #removeAuthToken, an expiry,
// or a token for another user, a socket must not keep receiving
// user:{sub} messages it was admitted to under the old token. Channels
// admitted by a subscription token (whose data is not kept), by a hook, or
// subscribed by the connect hook stay: those grants do not depend on the
// auth token.
func (s *Socket) recheckChannels() {
	s.mu.Lock()
	if len(s.channels) == 0 {
		s.mu.Unlock()
		return
	}
	chans := slices.Clone(s.channels)
	info := s.auth
	s.mu.Unlock()
	var sub rules.Subject
	if info != nil {
		sub.Authenticated, sub.Claims = true, info.claims
	}
	for _, ch := range chans {
		if _, ok := protocol.PresenceBase(ch); ok || s.isGranted(ch) {
			continue // a companion channel follows its base channel
		}
		d := s.srv.rules.set.Check(rules.OpSubscribe, ch, sub)
		if d.Err == nil || d.Reason == rules.ReasonSubscriptionToken {
			continue
		}
		if s.KickOut(ch, d.Err.Message) == nil {
			s.srv.rules.refused.WithLabelValues(opRecheck, string(d.Reason)).Inc()
		}
	}
}
