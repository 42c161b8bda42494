package state

import (
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Status is the cluster view served at /status.
type Status struct {
	NodeID      string         `json:"node"`
	StartupDone bool           `json:"startup_done"`
	MaxVersion  uint64         `json:"max_version"`
	Ring        *RingStatus    `json:"ring"`
	Reshard     *ReshardStatus `json:"reshard"`
	LastReshard *time.Time     `json:"last_reshard,omitempty"`
	Members     []MemberStatus `json:"members"`
	// RulesMismatch is true when connected members report more than one
	// channel rules digest; RulesDigest is then the most common one (ties:
	// the smallest), and the members that differ have RulesDiffer set.
	RulesMismatch bool `json:"rules_mismatch"`
	// RulesDigest is the channel rules digest of the connected members
	// (the majority's when they differ); "" when none reports one.
	RulesDigest string `json:"rules_digest,omitempty"`
	// RulesDigests counts the connected members per rules digest.
	RulesDigests map[string]int `json:"rules_digests"`
}

// RingStatus is a committed ring.
type RingStatus struct {
	Version uint64                `json:"version"`
	Brokers []protocol.BrokerInfo `json:"brokers"`
}

// ReshardStatus describes the reshard in progress.
type ReshardStatus struct {
	Version  uint64    `json:"version"`
	Phase    string    `json:"phase"`
	Brokers  []string  `json:"brokers"`
	Prepared int       `json:"prepared"`
	Needed   int       `json:"needed"`
	Started  time.Time `json:"started"`
}

// MemberStatus is one node.
type MemberStatus struct {
	ID          string `json:"id"`
	Role        string `json:"role"`
	Addr        string `json:"addr,omitempty"`
	GossipAddr  string `json:"gossip_addr,omitempty"`
	Connected   bool   `json:"connected"`
	Healthy     bool   `json:"healthy"`
	GossipDead  bool   `json:"gossip_dead,omitempty"`
	Draining    bool   `json:"draining,omitempty"`
	Leaving     bool   `json:"leaving,omitempty"`
	InRing      bool   `json:"in_ring"`
	RingVersion uint64 `json:"ring_version"`
	// RulesDigest is the node's channel rules digest ("" from a node that
	// does not report one); RulesDiffer marks a connected node whose
	// digest is not the majority's.
	RulesDigest string     `json:"rules_digest,omitempty"`
	RulesDiffer bool       `json:"rules_differ,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	Stats       *Stats     `json:"stats,omitempty"`
}

// Stats are a node's last reported counters.
type Stats struct {
	At            time.Time `json:"at"`
	Connections   int64     `json:"connections"`
	Subscriptions int64     `json:"subscriptions"`
	MessagesIn    uint64    `json:"messages_in"`
	MessagesOut   uint64    `json:"messages_out"`
}

// status builds the view; it runs on the loop.
func (c *coordinator) status() Status {
	st := Status{
		NodeID:      c.cfg.NodeID,
		StartupDone: c.startupDone,
		MaxVersion:  c.maxVersion,
		Members:     []MemberStatus{},
	}
	st.RulesDigests = c.rulesDigests()
	st.RulesDigest = majorityDigest(st.RulesDigests)
	st.RulesMismatch = len(st.RulesDigests) > 1
	if c.hasRing {
		st.Ring = &RingStatus{Version: c.ring.Version, Brokers: cloneRing(c.ring).Brokers}
	}
	if !c.lastReshard.IsZero() {
		t := c.lastReshard
		st.LastReshard = &t
	}
	if rs := c.rs; rs != nil {
		r := &ReshardStatus{Version: rs.ring.Version, Phase: rs.phase, Needed: len(rs.needed), Started: rs.started}
		for _, b := range rs.ring.Brokers {
			r.Brokers = append(r.Brokers, b.ID)
		}
		for _, ok := range rs.needed {
			if ok {
				r.Prepared++
			}
		}
		st.Reshard = r
	}
	ids := make([]string, 0, len(c.members))
	for id := range c.members {
		ids = append(ids, id)
	}
	sortStrings(ids)
	for _, id := range ids {
		m := c.members[id]
		ms := MemberStatus{
			ID: m.id, Role: m.role, Addr: m.addr, GossipAddr: m.gossipAddr,
			Connected: m.connected(), Healthy: m.healthy(), GossipDead: m.gossipDead,
			Draining: m.draining, Leaving: m.leaving, InRing: c.inCommitted(m.id),
			RingVersion: m.ringVersion, RulesDigest: m.rulesDigest,
			RulesDiffer: st.RulesMismatch && m.connected() && m.rulesDigest != "" && m.rulesDigest != st.RulesDigest,
		}
		if !m.since.IsZero() {
			t := m.since
			ms.Since = &t
		}
		if !m.statsAt.IsZero() {
			ms.Stats = &Stats{
				At: m.statsAt, Connections: m.stats.Connections, Subscriptions: m.stats.Subscriptions,
				MessagesIn: m.stats.MessagesIn, MessagesOut: m.stats.MessagesOut,
			}
		}
		st.Members = append(st.Members, ms)
	}
	return st
}

// rulesDigests counts the connected members per channel rules digest;
// members that report none (older nodes) are left out.
func (c *coordinator) rulesDigests() map[string]int {
	n := map[string]int{}
	for _, m := range c.members {
		if m.connected() && m.rulesDigest != "" {
			n[m.rulesDigest]++
		}
	}
	return n
}

// majorityDigest is the most common digest, the smallest of those tied.
func majorityDigest(counts map[string]int) string {
	best, bestN := "", 0
	for d, n := range counts {
		if n > bestN || (n == bestN && d < best) {
			best, bestN = d, n
		}
	}
	return best
}
