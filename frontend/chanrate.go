package frontend

import (
	"github.com/sccgo/sccgo/internal/chanrate"
	"github.com/sccgo/sccgo/protocol"
)

// publishRejectChannelRate is the publish_errors_total reason of a publish
// refused by its channel's rate limit.
const publishRejectChannelRate = "channel_rate"

// channelRate is the per-channel publish limiter's configuration.
func (c Config) channelRate() chanrate.Config {
	return chanrate.Config{
		Default:     chanrate.Rule{Rate: c.ChannelPublishRate, Burst: c.ChannelPublishBurst},
		MaxChannels: c.ChannelRateTableSize,
		RuleFor:     c.ChannelPublishRule,
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
