package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sccgo/sccgo/protocol"
)

// PresenceMember is one present client of a channel: its socket id, the
// user id of its auth token and its connection info (the token's info
// claim).
type PresenceMember = protocol.PresenceClient

// PresenceStats are a channel's present clients and unique users.
type PresenceStats = protocol.PresenceStats

// PresencePage is one page of a channel's members, with its counts. Next
// is the offset of the next page, 0 on the last.
type PresencePage = protocol.PresenceReply

// PresenceEvent is one coalesced join/leave event of a channel.
type PresenceEvent = protocol.PresenceEvent

// Presence returns up to limit members of channel from offset (limit 0:
// the server's page maximum). The client must be subscribed to channel,
// whose rule must have presence; a refusal comes back as *Error.
func (c *Client) Presence(ctx context.Context, channel string, offset, limit int) (PresencePage, error) {
	var page PresencePage
	raw, err := c.Invoke(ctx, protocol.ProcPresence, protocol.PresenceRequest{Channel: channel, Offset: offset, Limit: limit})
	if err != nil {
		return page, err
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return page, fmt.Errorf("client: decoding presence: %w", err)
	}
	return page, nil
}

// PresenceStats returns channel's present clients and unique users.
func (c *Client) PresenceStats(ctx context.Context, channel string) (PresenceStats, error) {
	var st PresenceStats
	raw, err := c.Invoke(ctx, protocol.ProcPresenceStats, protocol.PresenceRequest{Channel: channel})
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("client: decoding presence stats: %w", err)
	}
	return st, nil
}

// JoinLeave receives a channel's join and leave events: a subscription
// to its #presence: companion channel (docs/presence.md).
type JoinLeave struct {
	sub *Subscription
}

// JoinLeave subscribes to the join and leave events of s's channel, whose
// rule must have join_leave.
func (s *Subscription) JoinLeave(ctx context.Context) (*JoinLeave, error) {
	sub, err := s.c.Subscribe(ctx, protocol.PresenceChannel(s.channel), SubscribeOptions{})
	if err != nil {
		return nil, err
	}
	return &JoinLeave{sub: sub}, nil
}

// Next returns the next event, or an error when ctx ends or the events
// subscription ended.
func (j *JoinLeave) Next(ctx context.Context) (PresenceEvent, error) {
	var ev PresenceEvent
	m, err := j.sub.Next(ctx)
	if err != nil {
		return ev, err
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return ev, fmt.Errorf("client: decoding presence event: %w", err)
	}
	return ev, nil
}

// Dropped returns how many events were dropped because Next was not
// called fast enough.
func (j *JoinLeave) Dropped() uint64 { return j.sub.Dropped() }

// Unsubscribe stops the events.
func (j *JoinLeave) Unsubscribe() error { return j.sub.Unsubscribe() }
