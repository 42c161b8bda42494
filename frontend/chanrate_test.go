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
