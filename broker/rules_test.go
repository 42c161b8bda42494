package broker

import (
	"testing"

	"github.com/sccgo/sccgo/internal/rules"
)

// A broker holds the channel rules it was given: their digest is exported
// and returned, and ChannelOptions returns the governing rule's options.
// Without rules it reports the built-in default's digest.
func TestBrokerChannelRules(t *testing.T) {
	set, err := rules.Parse([]byte(`rules:
  - {match: "chat:*", subscribe: authenticated, publish: authenticated, history: {size: 20, ttl: 1m}, presence: true}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, func(c *Config) { c.Rules = set })
	if b.RulesDigest() != set.Digest() || set.Digest() == rules.Default().Digest() {
		t.Fatalf("RulesDigest %s, want %s (not the default's)", b.RulesDigest(), set.Digest())
	}
	if got := b.metric("scc_broker_channel_rules_info", "digest", set.Digest()); got != 1 {
		t.Fatalf("scc_broker_channel_rules_info{digest=%s} = %v, want 1", set.Digest(), got)
	}
	if o := b.ChannelOptions("chat:7"); o.History.Size != 20 || !o.Presence {
		t.Fatalf("chat:7 options %+v", o)
	}
	if o := b.ChannelOptions("news"); o.History.Size != 0 || o.Presence {
		t.Fatalf("news options %+v, want the default rule's", o)
	}

	d := startBroker(t, nil)
	if d.RulesDigest() != rules.Default().Digest() {
		t.Fatalf("no rules: digest %s, want the default's %s", d.RulesDigest(), rules.Default().Digest())
	}
	if got := d.metric("scc_broker_channel_rules_info", "digest", rules.Default().Digest()); got != 1 {
		t.Fatalf("no rules: channel_rules_info = %v", got)
	}
}
