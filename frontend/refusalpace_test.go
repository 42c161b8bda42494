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
	start := time.Now()
	for i := range flood {
		pub.send(`{"event":"#publish","data":{"channel":"full","data":1},"cid":` + strconv.Itoa(10+i) + `}`)
	}

	// Meanwhile another socket publishes to its own channel at once.
	other.send(`{"event":"#publish","data":{"channel":"free","data":2},"cid":2}`)
	if p := other.packet2(); p != `{"rid":2}` {
		t.Fatalf("other socket's publish: %s", p)
	}
	otherAt := time.Since(start)

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
	el := time.Since(start)
	paced := counter(t, srv.Registry(), "scc_frontend_publish_refusals_paced_total")
	t.Logf("%d refusals in %v (other socket answered after %v), %v paced", refused, el, otherAt, paced)
	// Beyond the burst, each refusal waited for the rate: at least
	// (refused-burst)/rate, less what refilled while the burst went out.
	if min := time.Duration(float64(refused-burst-5) / rate * float64(time.Second)); el < min {
		t.Fatalf("%d refusals answered in %v: not paced to %d/s after a burst of %d (want at least %v)", refused, el, rate, burst, min)
	}
	// Each refusal past the bucket counts; a late timer refills it a
	// little, so fewer may (the elapsed time above is the pacing).
	if paced < float64(refused-burst)/2 {
		t.Fatalf("publish_refusals_paced_total = %v, want about %d", paced, refused-burst)
	}
	if otherAt > el/2 {
		t.Fatalf("another socket's publish was answered after %v of %v: slowed by the paced socket", otherAt, el)
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
