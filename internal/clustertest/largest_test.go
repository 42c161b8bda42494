package clustertest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/nodelink"
	ringpkg "github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// TestLargestPublicationCrossesTheSmallestLink: on links with the
// smallest frame a frontend accepts for its largest publication
// (cluster.NodeConfig.CheckPublicationFits), publications of the largest
// size on a channel with the longest name reach a subscriber on another
// frontend, are replicated to the channel's standby (the owner's crash
// loses none of them and changes no epoch), and no link drops a message.
func TestLargestPublicationCrossesTheSmallestLink(t *testing.T) {
	const maxPub, maxChan = 16 << 10, 256
	frame := int64(2 * (maxPub + maxChan + cluster.PublicationOverhead))
	nc := cluster.NodeConfig{Link: nodelink.DefaultConfig()}
	nc.Link.MaxFrameBytes = frame
	if err := nc.CheckPublicationFits(maxPub, maxChan); err != nil {
		t.Fatalf("the smallest frame is refused: %v", err)
	}
	nc.Link.MaxFrameBytes = frame - 1
	if err := nc.CheckPublicationFits(maxPub, maxChan); err == nil {
		t.Fatal("a frame one byte smaller is accepted")
	}

	set, err := rules.Parse([]byte(`rules:
  - {match: "*", subscribe: anyone, publish: anyone, history: {size: 100, ttl: 10m}}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{
		Brokers: 3, Frontends: 2,
		Link:   func(l *nodelink.Config) { l.MaxFrameBytes = frame },
		Broker: func(b *broker.Config) { b.Rules = set },
		Frontend: func(f *frontend.Config) {
			f.Rules = set
			f.MaxPublishBytes, f.MaxChannelLength, f.API.MaxBodyBytes = maxPub, maxChan, 4096
		},
	})
	v := c.WaitRing(10*time.Second, 3, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	urls := c.FrontendURLs()
	sub, err := client.Dial(ctx, urls[0], client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := client.Dial(ctx, urls[1], client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	ch := "big:" + strings.Repeat("c", maxChan-4)
	s, err := sub.Subscribe(ctx, ch, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A JSON string of exactly maxPub bytes, quotes included, distinct
	// per publication.
	data := func(i int) string {
		return string(rune('a'+i)) + strings.Repeat("d", maxPub-3)
	}
	want := 0
	publishAndReceive := func(n int) {
		t.Helper()
		for range n {
			if err := pub.Publish(ctx, ch, data(want)); err != nil {
				t.Fatalf("publish %d: %v", want, err)
			}
			m, err := s.Next(ctx)
			if err != nil {
				t.Fatalf("receiving publication %d: %v", want, err)
			}
			if len(m.Data) != maxPub || string(m.Data[1:len(m.Data)-1]) != data(want) {
				t.Fatalf("publication %d arrived as %d bytes", want, len(m.Data))
			}
			want++
		}
	}
	publishAndReceive(5)

	// The owner crashes: its standby holds all five and continues the
	// channel under the same epoch.
	off0, epoch0 := s.Position()
	if epoch0 == "" {
		t.Fatal("the subscription has no epoch: the channel keeps no history")
	}
	var ring []protocol.BrokerInfo
	for _, b := range c.Brokers {
		ring = append(ring, protocol.BrokerInfo{ID: b.ID()})
	}
	rg := ringpkg.New(1, ring)
	owner := rg.Broker(rg.OwnerIndex(ch)).ID
	for _, b := range c.Brokers {
		if b.ID() == owner {
			b.Crash()
		}
	}
	c.WaitRing(10*time.Second, 2, v)
	publishAndReceive(2)
	if lost := c.FrontendCounter("scc_frontend_history_recoveries_total", "result", "epoch"); lost != 0 {
		t.Fatalf("the channel continued under a new epoch %v times: its standby did not hold its history", lost)
	}
	if off, epoch := s.Position(); epoch != epoch0 || off != off0+2 {
		t.Fatalf("after the owner's crash the channel is at %d of epoch %q, want %d of %q", off, epoch, off0+2, epoch0)
	}
	if d := c.FrontendCounter("scc_frontend_link_drops_total", "reason", nodelink.ReasonTooLarge); d != 0 {
		t.Fatalf("the frontends' links dropped %v messages as too large", d)
	}
}
