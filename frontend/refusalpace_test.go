package frontend

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRefusedPublishesArePaced: a client that keeps publishing into a
// full channel gets its first PublishRefusalBurst refusals at once and
// the rest at PublishRefusalRate, every one answered; its socket stays
// open through the wait (it counts as alive, though its pongs wait
// behind its publishes); another socket's publishes are not slowed.
func TestRefusedPublishesArePaced(t *testing.T) {
	const (
		rate, burst = 200, 50
		flood       = 250
	)
	cfg := testConfig()
	cfg.ChannelPublishRate, cfg.ChannelPublishBurst = 0.001, 1
	cfg.PublishRefusalRate, cfg.PublishRefusalBurst = rate, burst
	cfg.PingInterval, cfg.PingTimeout = 200*time.Millisecond, 500*time.Millisecond
	srv := startServer(t, cfg)
	pub := dial(t, srv)
	pub.handshake("")
	other := dial(t, srv)
	other.handshake("")

	// One message per publish: the reader pays a message's refusals off
	// after it, before it reads the next.
	for i := range flood {
		pub.send(`{"event":"#publish","data":{"channel":"full","data":1},"cid":` + strconv.Itoa(10+i) + `}`)
	}

	// Meanwhile another socket publishes to its own channel: it is
	// answered while the paced socket still waits for most of its
	// refusals (the paced socket's replies are buffered in pub.frames as
	// they arrive, so their number at that moment is what it had).
	other.send(`{"event":"#publish","data":{"channel":"free","data":2},"cid":2}`)
	if p := other.packet2(); p != `{"rid":2}` {
		t.Fatalf("other socket's publish: %s", p)
	}
	if got := len(pub.frames); got >= flood/2 {
		t.Fatalf("the paced socket had %d of its %d replies when another socket was answered: not paced, or the other waited for it", got, flood)
	}

	refused := 0
	for refused < flood-1 { // the channel's one token admits one
		p := pub.packet2()
		if p == "" {
			continue // a ping
		}
		var r struct {
			RID   int
			Error *struct{ Name string }
		}
		if err := json.Unmarshal([]byte(p), &r); err != nil {
			t.Fatalf("reply %q: %v", p, err)
		}
		if r.Error != nil {
			refused++
		}
	}
	// Each refusal past the bucket counts; a late timer refills it a
	// little, so fewer may.
	if paced := counter(t, srv.Registry(), "scc_frontend_publish_refusals_paced_total"); paced < float64(refused-burst)/2 {
		t.Fatalf("publish_refusals_paced_total = %v, want about %d", paced, refused-burst)
	}
	// The paced socket outlived several ping timeouts and still works.
	pub.send(`{"event":"#publish","data":{"channel":"after","data":3},"cid":9999}`)
	for {
		p := pub.packet2()
		if strings.Contains(p, `"rid":9999`) {
			if p != `{"rid":9999}` {
				t.Fatalf("publish after the flood: %s", p)
			}
			break
		}
	}
}
