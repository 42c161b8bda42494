package hostile

import (
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
)

// TestChannelFloodIsBounded is the fan-out amplification attack: one
// anonymous publisher, well within its own inbound rate, floods a channel
// many sockets subscribe to. The channel's publish rate bounds what every
// subscriber receives; the excess is refused with an error object and
// counted, and another channel is untouched.
func TestChannelFloodIsBounded(t *testing.T) {
	const (
		rate, burst = 20, 50
		subscribers = 50
		flood       = 1000
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.InboundRate, c.InboundBurst = 0, 0
		c.ChannelPublishRate, c.ChannelPublishBurst = rate, burst
	})
	subs := make([]*scClient, subscribers)
	for i := range subs {
		subs[i] = dialSC(t, f.url)
		subs[i].handshake("")
		subs[i].subscribe("hot", 2)
		subs[i].subscribe("other", 3)
	}
	pub := dialSC(t, f.url)
	pub.handshake("")
	other := dialSC(t, f.url)
	other.handshake("")

	start := time.Now()
	for i := range flood {
		pub.sendf(`{"event":"#publish","data":{"channel":"hot","data":%d},"cid":%d}`, i, 10+i)
		if i%100 == 0 {
			other.sendf(`{"event":"#publish","data":{"channel":"other","data":%d},"cid":%d}`, i, 10+i)
		}
	}
	accepted := 0
	for i := range flood {
		r := pub.reply(10 + i)
		e, refused := r["error"].(map[string]any)
		switch {
		case !refused:
			accepted++
		case e["name"] != "ResourceLimitError":
			t.Fatalf("publish %d: %v", i, e)
		}
	}
	for i := 0; i < flood; i += 100 {
		other.expectOK(10 + i)
	}
	elapsed := time.Since(start)
	if limit := burst + int(rate*elapsed.Seconds()) + 1; accepted > limit {
		t.Fatalf("%d of %d publishes accepted in %v at %d/s burst %d", accepted, flood, elapsed, rate, burst)
	}
	if n := metric(t, f.srv.Registry(), "scc_frontend_publish_errors_total", "reason", "channel_rate"); int(n) != flood-accepted {
		t.Fatalf("channel_rate refusals counted %v, want %d", n, flood-accepted)
	}

	// A last publish on the other channel fences what each subscriber got.
	other.sendf(`{"event":"#publish","data":{"channel":"other","data":"end"},"cid":5}`)
	other.expectOK(5)
	for i, c := range subs {
		hot, others := 0, 0
		for {
			p := c.next(waitTimeout)
			if strings.Contains(p, `"channel":"hot"`) {
				hot++
			} else if strings.Contains(p, `"channel":"other"`) {
				if strings.Contains(p, `"end"`) {
					break
				}
				others++
			}
		}
		if hot != accepted || others != flood/100 {
			t.Fatalf("subscriber %d got %d on the flooded channel (want %d) and %d on the other (want %d)", i, hot, accepted, others, flood/100)
		}
	}
}
