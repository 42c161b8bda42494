package protocol

import (
	"encoding/json"
	"strings"
)

// Presence on the client protocol (docs/presence.md). The names start with
// '#', which SocketCluster reserves to the server: no application event or
// channel can take them.
const (
	// ProcPresence is the procedure a client invokes for a channel's
	// members: data PresenceRequest, answer PresenceReply.
	ProcPresence = "#presence"
	// ProcPresenceStats is the procedure for a channel's counts: data
	// PresenceRequest (channel only), answer PresenceStats.
	ProcPresenceStats = "#presenceStats"
	// PresenceChannelPrefix starts the read-only companion channel on
	// which a channel's join and leave events are published:
	// "#presence:room:1" carries the events of "room:1" as PresenceEvent.
	PresenceChannelPrefix = "#presence:"
)

// PresenceChannel returns the companion channel of channel's join and
// leave events.
func PresenceChannel(channel string) string { return PresenceChannelPrefix + channel }

// PresenceBase returns the channel whose events companion carries, and
// whether companion is a presence companion channel.
func PresenceBase(companion string) (string, bool) {
	base, ok := strings.CutPrefix(companion, PresenceChannelPrefix)
	return base, ok && base != ""
}

// PresenceRequest is the data of #presence and #presenceStats.
type PresenceRequest struct {
	Channel string `json:"channel"`
	// Offset and Limit page the members (#presence only); Limit 0 asks
	// for the server's page maximum.
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
}

// PresenceClient is one member as clients see it.
type PresenceClient struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// PresenceStats are a channel's counts: present clients (sockets) and
// unique non-empty user ids.
type PresenceStats struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

// PresenceReply answers #presence: the counts, one page of members, and
// the offset of the next page (absent on the last page).
type PresenceReply struct {
	PresenceStats
	Members []PresenceClient `json:"members"`
	Next    int              `json:"next,omitempty"`
}

// PresenceEvent is published on a channel's companion channel, at most
// once per channel per coalescing interval: the clients that joined and
// left since the last event (a join and a leave of the same client in one
// interval cancel out), how many changes were left out over the per-event
// cap, how many cancelled out, and the counts after the changes.
type PresenceEvent struct {
	Join    []PresenceClient `json:"join,omitempty"`
	Leave   []PresenceClient `json:"leave,omitempty"`
	Omitted int              `json:"omitted,omitempty"`
	// Coalesced counts the changes of this interval that cancelled out
	// (a join and a leave of one client: two). Frontends read it, with
	// Omitted, for their event metrics.
	Coalesced int `json:"coalesced,omitempty"`
	PresenceStats
}
