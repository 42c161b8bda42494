package frontend

import (
	"github.com/sccgo/sccgo/internal/chanrate"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// publishRejectChannelRate is the publish_errors_total reason of a publish
// refused by its channel's rate limit.
const publishRejectChannelRate = "channel_rate"

// channelRate is the per-channel publish limiter's configuration. A
// channel's rate comes from ChannelPublishRule when it decides, else from
// the publish_rate of the channel's rule in Rules when it sets one, else
// from ChannelPublishRate and ChannelPublishBurst.
func (c Config) channelRate() chanrate.Config {
	return chanrate.Config{
		Default:     chanrate.Rule{Rate: c.ChannelPublishRate, Burst: c.ChannelPublishBurst},
		MaxChannels: c.ChannelRateTableSize,
		RuleFor:     channelRuleFor(c.ChannelPublishRule, c.Rules),
	}
}

// channelRuleFor combines a program's per-channel hook with the rules
// file's publish_rate options; nil when neither can decide.
func channelRuleFor(hook func(string) (chanrate.Rule, bool), set *rules.Set) func(string) (chanrate.Rule, bool) {
	if set == nil || !set.HasPublishRates() {
		return hook
	}
	return func(channel string) (chanrate.Rule, bool) {
		if hook != nil {
			if r, ok := hook(channel); ok {
				return r, true
			}
		}
		if pr := set.Options(channel).PublishRate; pr.PerSecond > 0 {
			return chanrate.Rule{Rate: pr.PerSecond, Burst: pr.Burst}, true
		}
		return chanrate.Rule{}, false
	}
}

// allowChannelPublish takes a token from channel's publish bucket. A
// refusal is counted and returned as the error the client receives.
func (s *Server) allowChannelPublish(channel string) *protocol.Error {
	if s.chanRate.Allow(channel) {
		return nil
	}
	s.m.publishErrors.WithLabelValues(publishRejectChannelRate).Inc()
	return protocol.NewError(protocol.ErrNameResourceLimit, "Publish rate limit of the "+channel+" channel exceeded")
}

// publishRejectChannelDeliveries is the publish_errors_total reason of a
// publish refused by its channel's delivery budget.
const publishRejectChannelDeliveries = "channel_deliveries"

// deliveryUnitBytes is the data size one delivery unit stands for: a
// publish costs each subscriber one unit plus one per this many bytes.
const deliveryUnitBytes = 1024

// channelDeliveries is the per-channel delivery budget's configuration:
// a channel's rate comes from the delivery_rate of its rule in Rules
// when it sets one, else from ChannelDeliveryRate and
// ChannelDeliveryBurst.
func (c Config) channelDeliveries() chanrate.Config {
	cc := chanrate.Config{
		Default:     chanrate.Rule{Rate: c.ChannelDeliveryRate, Burst: c.ChannelDeliveryBurst},
		MaxChannels: c.ChannelRateTableSize,
	}
	if set := c.Rules; set != nil && set.HasDeliveryRates() {
		cc.RuleFor = func(channel string) (chanrate.Rule, bool) {
			if dr := set.Options(channel).DeliveryRate; dr.PerSecond > 0 {
				return chanrate.Rule{Rate: dr.PerSecond, Burst: dr.Burst}, true
			}
			return chanrate.Rule{}, false
		}
	}
	return cc
}

// deliveryBudgets reports whether any channel has a delivery budget.
func (c Config) deliveryBudgets() bool {
	return c.ChannelDeliveryRate > 0 || c.Rules != nil && c.Rules.HasDeliveryRates()
}

// allowChannelDeliveries charges a client publish of size bytes to
// channel's delivery budget: one unit per local subscriber (at least
// one) and per KiB of data. Publishing costs the frontend a write per
// subscriber, so a publish rate alone lets a channel with many readers,
// or large messages, take the CPU every other client needs. A refusal is
// counted and returned as the error the client receives.
func (s *Server) allowChannelDeliveries(channel string, size int) *protocol.Error {
	if !s.deliveryBudgets {
		return nil
	}
	n := max(1, s.subs.count(channel)) * (1 + size/deliveryUnitBytes)
	if s.chanDeliv.AllowN(channel, n) {
		return nil
	}
	s.m.publishErrors.WithLabelValues(publishRejectChannelDeliveries).Inc()
	return protocol.NewError(protocol.ErrNameResourceLimit, "Delivery rate limit of the "+channel+" channel exceeded")
}

// count returns how many local sockets are subscribed to channel.
func (t *subTable) count(channel string) int {
	sh := t.shard(channel)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e := sh.m[channel]; e != nil {
		return e.n
	}
	return 0
}
