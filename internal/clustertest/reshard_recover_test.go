package clustertest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
)

// TestScaleOutDuringFrontendKill: a broker joins (channels move) while a
// frontend is killed under load; its client recovers on the other
// frontend and gets every publication exactly once, in order.
func TestScaleOutDuringFrontendKill(t *testing.T) {
	set := parseRules(t, historyRulesDoc)
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 2,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	v := c.WaitRing(10*time.Second, 1, 0)
	fa, fb := c.Frontends[0], c.Frontends[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy, x, y := killPair(ctx, t, fa, fb)
	var err error
	var chans []string
	for i := range 8 {
		chans = append(chans, "room:"+strconv.Itoa(i))
	}
	ysubs := make([]*client.Subscription, len(chans))
	for i, ch := range chans[:4] {
		if ysubs[i], err = y.Subscribe(ctx, ch, client.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	subs := make([]*client.Subscription, len(chans))
	for i, ch := range chans {
		if subs[i], err = x.Subscribe(ctx, ch, client.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const total = 300
	pub := startNumbered(ctx, t, fb.URL(), chans, total)
	defer pub.wait()
	clustertest.WaitFor(t, 30*time.Second, "publishing under way", func() bool { return pub.sent.Load() >= 20 })
	c.AddBroker()
	clustertest.WaitFor(t, 30*time.Second, "publishing under way", func() bool { return pub.sent.Load() >= 40 })
	proxy.Switch(fb.Addr())
	fa.Kill()
	c.WaitRing(20*time.Second, 2, v)

	about := func() string { return fmt.Sprintf("recoveries %v", recoveries(c)) }
	for i, sub := range ysubs[:4] {
		expectSequence(ctx, t, "y", sub, chans[i], total, about)
	}
	for i, sub := range subs {
		expectSequence(ctx, t, "x", sub, chans[i], total, about)
		if r := sub.Recovery(); !r.Asked || !r.Recovered || sub.RecoveryFailures() != 0 {
			t.Fatalf("%s: recovery %+v, failures %d", chans[i], r, sub.RecoveryFailures())
		}
	}
	pub.wait()
}

func recoveries(c *clustertest.Cluster) map[string]float64 {
	out := map[string]float64{}
	for _, r := range []string{"recovered", "link_down", "held_full", "epoch", "timeout", "gone", "limit", "ahead", "moved"} {
		out[r] = c.FrontendCounter("scc_frontend_history_recoveries_total", "result", r)
	}
	out["dup"] = c.FrontendCounter("scc_frontend_history_duplicates_total", "", "")
	return out
}
