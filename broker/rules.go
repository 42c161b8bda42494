package broker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
)

// rulesOf returns the channel rules cfg asks for: its Rules, else the
// built-in default (anyone may subscribe and publish).
func rulesOf(cfg Config) *rules.Set {
	if cfg.Rules != nil {
		return cfg.Rules
	}
	return rules.Default()
}

// registerRules exports the digest of the rules in force.
func (s *Server) registerRules() {
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "scc_broker_channel_rules_info",
		Help:        "Always 1; the digest label is the SHA-256 of the channel rules in force, so nodes with different rules show.",
		ConstLabels: prometheus.Labels{"digest": s.rules.Digest()},
	}, func() float64 { return 1 }))
}

// RulesDigest returns the digest of the channel rules in force (the
// default rules' when Config.Rules is nil). It is sent to the state
// server, which shows nodes whose rules differ.
func (s *Server) RulesDigest() string { return s.rules.Digest() }

// ChannelOptions returns the options (history, recovery, presence,
// publish rate) of the rule that governs channel. Brokers do not check
// client permissions, frontends do; the options are for the features
// brokers carry.
func (s *Server) ChannelOptions(channel string) rules.ChannelOptions {
	return s.rules.Options(channel)
}

// checkPeerRules logs a frontend link whose channel rules differ from the
// broker's; frontends that do not report a digest are not compared.
func (s *Server) checkPeerRules(p nodelink.Peer) {
	if p.RulesDigest != "" && p.RulesDigest != s.rules.Digest() {
		s.log.Warn("frontend runs different channel rules (SCC_CHANNELS_FILE)", "peer", p.NodeID,
			"peer_digest", p.RulesDigest, "digest", s.rules.Digest())
	}
}
