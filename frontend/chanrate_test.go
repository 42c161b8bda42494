package frontend

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/chanrate"
)

// TestChannelPublishRate floods one channel: publishes beyond its rate
// are refused with an error object and counted, its deliveries stay within
// the bucket, and another channel is unaffected.
func TestChannelPublishRate(t *testing.T) {
	cfg := testConfig()
	cfg.ChannelPublishRate, cfg.ChannelPublishBurst = 1, 20
	cfg.ChannelPublishRule = func(ch string) (chanrate.Rule, bool) {
		return chanrate.Rule{}, ch == "unlimited"
	}
	srv := startServer(t, cfg)
	sub := dial(t, srv)
	sub.handshake("")
	sub.subscribe("hot", 2)
	sub.subscribe("cold", 3)
	sub.subscribe("unlimited", 4)

	pub := dial(t, srv)
	pub.handshake("")
	// other is within the burst: "cold" has a bucket of its own.
	const flood, other = 500, 20
	start := time.Now()
	for i := range flood {
		pub.sendf(`{"event":"#publish","data":{"channel":"hot","data":1},"cid":%d}`, 10+i)
	}
	for i := range other {
		pub.sendf(`{"event":"#publish","data":{"channel":"cold","data":2},"cid":%d}`, 1000+i)
		pub.sendf(`{"event":"#publish","data":{"channel":"unlimited","data":3},"cid":%d}`, 2000+i)
	}
	okHot, refused := 0, 0
	for range flood + 2*other {
		var r struct {
			RID   int
			Error *struct{ Name, Message string }
		}
		p := pub.packet()
		if err := json.Unmarshal([]byte(p), &r); err != nil {
			t.Fatalf("reply %q: %v", p, err)
		}
		switch {
		case r.RID >= 1000 && r.Error != nil:
			t.Fatalf("publish to another channel refused: %s", p)
		case r.RID >= 1000:
		case r.Error == nil:
			okHot++
		case r.Error.Name == "ResourceLimitError" && strings.Contains(r.Error.Message, "hot"):
			refused++
		default:
			t.Fatalf("unexpected reply %s", p)
		}
	}
	elapsed := time.Since(start)
	if limit := 20 + int(elapsed.Seconds()) + 1; okHot > limit || okHot < 20 {
		t.Fatalf("%d publishes to the flooded channel accepted in %v at 1/s burst 20", okHot, elapsed)
	}
	if refused != flood-okHot {
		t.Fatalf("refused %d, accepted %d of %d", refused, okHot, flood)
	}
	if got := counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_rate"); int(got) != refused {
		t.Fatalf("channel_rate refusals counted %v, want %d", got, refused)
	}

	// The subscriber got exactly the accepted ones.
	hot, cold, unl := 0, 0, 0
	for hot+cold+unl < okHot+2*other {
		p := sub.packet()
		switch {
		case strings.Contains(p, `"channel":"hot"`):
			hot++
		case strings.Contains(p, `"channel":"cold"`):
			cold++
		case strings.Contains(p, `"channel":"unlimited"`):
			unl++
		}
	}
	if hot != okHot || cold != other || unl != other {
		t.Fatalf("delivered hot %d cold %d unlimited %d, want %d %d %d", hot, cold, unl, okHot, other, other)
	}
}

// TestChannelRulePublishRate: a channel whose rule sets publish_rate 5/s
// (burst 5) refuses the publishes of a burst beyond its bucket, while a
// channel under the default rule keeps SCC_CHANNEL_PUBLISH_RATE and loses
// none.
func TestChannelRulePublishRate(t *testing.T) {
	cfg := rulesConfig(t, `
default: {subscribe: anyone, publish: anyone}
rules:
  - {match: "slow:*", subscribe: anyone, publish: anyone, publish_rate: {per_second: 5}}
`)
	srv := startServer(t, cfg)
	pub := dial(t, srv)
	pub.handshake("")
	const n = 200
	start := time.Now()
	for i := range n {
		pub.sendf(`{"event":"#publish","data":{"channel":"slow:1","data":1},"cid":%d}`, 10+i)
		pub.sendf(`{"event":"#publish","data":{"channel":"news","data":2},"cid":%d}`, 1000+i)
	}
	okSlow, refused := 0, 0
	for range 2 * n {
		var r struct {
			RID   int
			Error *struct{ Name, Message string }
		}
		p := pub.packet()
		if err := json.Unmarshal([]byte(p), &r); err != nil {
			t.Fatalf("reply %q: %v", p, err)
		}
		switch {
		case r.RID >= 1000 && r.Error != nil:
			t.Fatalf("publish to the default-rate channel refused: %s", p)
		case r.RID >= 1000:
		case r.Error == nil:
			okSlow++
		case r.Error.Name == "ResourceLimitError" && strings.Contains(r.Error.Message, "slow:1"):
			refused++
		default:
			t.Fatalf("unexpected reply %s", p)
		}
	}
	elapsed := time.Since(start)
	// Burst 5, then 5 a second: the 6th publish of a burst is refused.
	if limit := 5 + int(5*elapsed.Seconds()) + 1; okSlow < 5 || okSlow > limit {
		t.Fatalf("%d publishes to slow:1 accepted in %v at 5/s burst 5", okSlow, elapsed)
	}
	if refused != n-okSlow || refused == 0 {
		t.Fatalf("refused %d, accepted %d of %d", refused, okSlow, n)
	}
	if got := counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_rate"); int(got) != refused {
		t.Fatalf("channel_rate refusals counted %v, want %d", got, refused)
	}
}

// A program's ChannelPublishRule decides first, then the rule's
// publish_rate, then the global rate; rules without any publish_rate add
// no lookup.
func TestChannelRuleForPrecedence(t *testing.T) {
	set := rulesConfig(t, "default: {subscribe: anyone, publish: anyone}\nrules:\n  - {match: \"slow:*\", subscribe: anyone, publish: anyone, publish_rate: {per_second: 5, burst: 7}}\n").Rules
	hook := func(ch string) (chanrate.Rule, bool) { return chanrate.Rule{Rate: 1, Burst: 1}, ch == "slow:vip" }
	f := channelRuleFor(hook, set)
	for ch, want := range map[string]struct {
		r  chanrate.Rule
		ok bool
	}{
		"slow:vip": {chanrate.Rule{Rate: 1, Burst: 1}, true},
		"slow:1":   {chanrate.Rule{Rate: 5, Burst: 7}, true},
		"news":     {chanrate.Rule{}, false},
	} {
		if r, ok := f(ch); r != want.r || ok != want.ok {
			t.Errorf("%s: %+v %v, want %+v %v", ch, r, ok, want.r, want.ok)
		}
	}
	plain := rulesConfig(t, "default: {subscribe: anyone, publish: anyone}\n").Rules
	if channelRuleFor(nil, plain) != nil || channelRuleFor(nil, nil) != nil {
		t.Fatal("a lookup per publish without any publish_rate")
	}
}

// TestChannelRuleDeliveryRate: a rule's delivery_rate sets the delivery
// budget of its channels in place of SCC_CHANNEL_DELIVERY_RATE, lower
// (even with the global budget off) or higher, and other channels keep
// the global one.
func TestChannelRuleDeliveryRate(t *testing.T) {
	cfg := rulesConfig(t, `
default: {subscribe: anyone, publish: anyone}
rules:
  - {match: "narrow:*", subscribe: anyone, publish: anyone, delivery_rate: {per_second: 5}}
  - {match: "wide:*", subscribe: anyone, publish: anyone, delivery_rate: {per_second: 100000, burst: 100000}}
`)
	cfg.ChannelPublishRate = 0
	for _, global := range []struct {
		rate  float64
		burst int
	}{{0, 0}, {5, 5}} {
		cfg.ChannelDeliveryRate, cfg.ChannelDeliveryBurst = global.rate, global.burst
		srv := startServer(t, cfg)
		pub := dial(t, srv)
		pub.handshake("")
		const n = 100
		start := time.Now()
		for i := range n {
			pub.sendf(`{"event":"#publish","data":{"channel":"narrow:1","data":1},"cid":%d}`, 10+i)
			pub.sendf(`{"event":"#publish","data":{"channel":"wide:1","data":2},"cid":%d}`, 1000+i)
			pub.sendf(`{"event":"#publish","data":{"channel":"news","data":3},"cid":%d}`, 2000+i)
		}
		okNarrow, okNews, refused := 0, 0, 0
		for range 3 * n {
			var r struct {
				RID   int
				Error *struct{ Name, Message string }
			}
			p := pub.packet()
			if err := json.Unmarshal([]byte(p), &r); err != nil {
				t.Fatalf("reply %q: %v", p, err)
			}
			switch {
			case r.Error != nil && r.Error.Name != "ResourceLimitError":
				t.Fatalf("unexpected reply %s", p)
			case r.RID >= 2000 && r.Error == nil:
				okNews++
			case r.RID >= 2000:
				refused++
			case r.RID >= 1000 && r.Error != nil:
				t.Fatalf("global %v: a publish to a channel with a higher delivery_rate refused: %s", global, p)
			case r.RID >= 1000:
			case r.Error == nil:
				okNarrow++
			default:
				refused++
			}
		}
		elapsed := time.Since(start)
		if limit := 5 + int(5*elapsed.Seconds()) + 1; okNarrow < 5 || okNarrow > limit {
			t.Fatalf("global %v: %d publishes to narrow:1 accepted in %v at 5/s burst 5", global, okNarrow, elapsed)
		}
		if global.rate == 0 && okNews != n {
			t.Fatalf("no global budget: %d of %d publishes to news accepted", okNews, n)
		}
		if global.rate > 0 && okNews == n {
			t.Fatalf("global budget %v: every publish to news accepted", global)
		}
		if got := counter(t, srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_deliveries"); int(got) != refused {
			t.Fatalf("channel_deliveries refusals counted %v, want %d", got, refused)
		}
	}
}
