package clustertest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	ringpkg "github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

const historyRulesDoc = `
rules:
  - match: "room:*"
    subscribe: anyone
    publish: anyone
    history: {size: 10000, ttl: 1m}
    recovery: true
  - match: "*"
    subscribe: anyone
    publish: anyone
`

// TestFrontendKilledClientsRecover: a frontend is killed under load; its
// client reconnects through the balancer to the other frontend, asks to
// recover, and gets every publication exactly once, in order, on a
// channel that frontend already holds for another socket and on one it
// does not.
func TestFrontendKilledClientsRecover(t *testing.T) {
	set := parseRules(t, historyRulesDoc)
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	fa, fb := c.Frontends[0], c.Frontends[1]
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// y keeps room:held subscribed on the surviving frontend.
	proxy, x, y := killPair(ctx, t, fa, fb)
	var err error
	if _, err := y.Subscribe(ctx, "room:held", client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	chans := []string{"room:held", "room:fresh"}
	subs := make([]*client.Subscription, len(chans))
	for i, ch := range chans {
		if subs[i], err = x.Subscribe(ctx, ch, client.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const total = 200
	pub := startNumbered(ctx, t, fb.URL(), chans, total)
	defer pub.wait()
	clustertest.WaitFor(t, 60*time.Second, "publishing under way", func() bool { return pub.sent.Load() >= 20 })
	proxy.Switch(fb.Addr())
	fa.Kill()

	for i, sub := range subs {
		expectSequence(ctx, t, "x", sub, chans[i], total, nil)
		if r := sub.Recovery(); !r.Asked || !r.Recovered || sub.RecoveryFailures() != 0 {
			t.Fatalf("%s: recovery %+v, failures %d", chans[i], r, sub.RecoveryFailures())
		}
	}
	pub.wait()
	select {
	case m := <-subs[0].C():
		t.Fatalf("extra message %+v", m)
	default:
	}
}

// TestClusterRecoverTooLate: through a cluster, a client that missed more
// than the channel's history holds is told so.
func TestClusterRecoverTooLate(t *testing.T) {
	doc := `
rules:
  - {match: "small:*", subscribe: anyone, publish: anyone, history: {size: 5, ttl: 1m}, recovery: true}
`
	set := parseRules(t, doc)
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 2,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	fa, fb := c.Frontends[0], c.Frontends[1]
	proxy := clustertest.StartSwitchProxy(t, fa.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lost := make(chan struct{})
	resume := make(chan struct{})
	x, err := client.Dial(ctx, proxy.URL(), client.Options{OnDisconnect: func(int, string) {
		select {
		case <-lost:
		default:
			close(lost)
			<-resume
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sub, err := x.Subscribe(ctx, "small:1", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctx, fb.URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	proxy.Switch(fb.Addr())
	fa.Kill()
	<-lost
	for i := 1; i <= 20; i++ {
		if err := pub.Publish(ctx, "small:1", i); err != nil {
			t.Fatal(err)
		}
	}
	close(resume)
	clustertest.WaitFor(t, 10*time.Second, "a failed recovery", func() bool { return sub.RecoveryFailures() == 1 })
	if r := sub.Recovery(); r.Reason != "gone" || r.Offset != 20 {
		t.Fatalf("recovery %+v", r)
	}
	if err := pub.Publish(ctx, "small:1", 21); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Next(ctx)
	if err != nil || string(m.Data) != "21" || m.Offset != 21 {
		t.Fatalf("live after a failed recovery: %+v %v", m, err)
	}
	_ = fmt.Sprint
}

// TestScaleOutKeepsEmptyStreamEpoch: a channel whose stream exists at its
// owner only because a subscriber asked for its position (nothing
// published yet) keeps its epoch when a scale-out moves it to another
// broker, so a client that recovers from that position after the move is
// told it missed nothing, not that the history was lost.
func TestScaleOutKeepsEmptyStreamEpoch(t *testing.T) {
	set := parseRules(t, historyRulesDoc)
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 1,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	v := c.WaitRing(10*time.Second, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x, err := client.Dial(ctx, c.Frontends[0].URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// Enough channels that some move to the second broker.
	const n = 16
	before := make(map[string]client.Recovery, n)
	for i := range n {
		ch := fmt.Sprintf("room:empty-%d", i)
		sub, err := x.Subscribe(ctx, ch, client.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before[ch] = sub.Recovery()
		if before[ch].Epoch == "" {
			t.Fatalf("%s: no position in the subscribe acknowledgement: %+v", ch, before[ch])
		}
	}
	c.AddBroker()
	c.WaitRing(20*time.Second, 2, v)
	y, err := client.Dial(ctx, c.Frontends[0].URL(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	for ch, r := range before {
		sub, err := y.Subscribe(ctx, ch, client.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := sub.Recovery(); got.Epoch != r.Epoch || got.Offset != 0 {
			t.Errorf("%s: position %d/%s after the scale-out, want 0/%s", ch, got.Offset, got.Epoch, r.Epoch)
		}
	}
}

// numbered publishes 1…total on every channel, in turn, from one client.
type numbered struct {
	sent atomic.Int64 // the last number published on every channel
	wg   sync.WaitGroup
}

func (n *numbered) wait() { n.wg.Wait() }

func startNumbered(ctx context.Context, t *testing.T, url string, chans []string, total int) *numbered {
	t.Helper()
	pub, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &numbered{}
	n.wg.Go(func() {
		defer pub.Close()
		for i := 1; i <= total; i++ {
			for _, ch := range chans {
				if err := pub.Publish(ctx, ch, i); err != nil {
					t.Errorf("publish %d: %v", i, err)
					return
				}
			}
			n.sent.Store(int64(i))
		}
	})
	return n
}

// expectSequence reads 1…total from sub, each once and in order; on a
// mismatch it fails with what about() says of the cluster.
func expectSequence(ctx context.Context, t *testing.T, who string, sub *client.Subscription, ch string, total int, about func() string) {
	t.Helper()
	for want := 1; want <= total; want++ {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("%s %s: waiting for %d: %v", who, ch, want, err)
		}
		if string(m.Data) != strconv.Itoa(want) {
			extra := ""
			if about != nil {
				extra = "; " + about()
			}
			t.Fatalf("%s %s: got %s, want %d (nothing missed, nothing twice, in order)%s", who, ch, m.Data, want, extra)
		}
	}
}

// TestRecoverWhileOwnerDown: a client resubscribes, asking to recover,
// right after the channel's owner crashed, while the ring still holds it
// (the state server drops it after ScaleBackDelay). The frontend asks
// again until the ring without it is committed and the client recovers
// from the new owner, which held the channel's history as its standby:
// the subscription is not refused, and nothing is missed or repeated.
func TestRecoverWhileOwnerDown(t *testing.T) {
	set := parseRules(t, historyRulesDoc)
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 1, ScaleBackDelay: 2 * time.Second,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	v := c.WaitRing(10*time.Second, 2, 0)
	victim := c.Brokers[0]
	rg := ringpkg.New(v, []protocol.BrokerInfo{{ID: c.Brokers[0].ID()}, {ID: c.Brokers[1].ID()}})
	ch := ""
	for i := 0; ch == ""; i++ {
		if name := fmt.Sprintf("room:%d", i); rg.OwnerID(name) == victim.ID() {
			ch = name
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := client.Dial(ctx, c.FrontendURLs()[0], client.Options{Backoff: client.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	sub, err := x.Subscribe(ctx, ch, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctx, c.FrontendURLs()[0], client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	next := func(want int) {
		t.Helper()
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %d: %v (recovery %+v)", want, err, sub.Recovery())
		}
		if string(m.Data) != strconv.Itoa(want) {
			t.Fatalf("got %s, want %d (nothing missed, nothing twice, in order)", m.Data, want)
		}
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			if err := pub.Publish(ctx, ch, i); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(1, 5)
	for i := 1; i <= 5; i++ {
		next(i)
	}
	victim.Crash()
	publish(6, 10)
	dropped := time.Now()
	if !x.Drop() {
		t.Fatal("no connection to drop")
	}
	clustertest.WaitFor(t, 15*time.Second, "the resubscribe to be answered", func() bool {
		r := sub.Recovery()
		select {
		case <-sub.Done():
			return true
		default:
			return r.Asked
		}
	})
	if r := sub.Recovery(); !r.Asked || !r.Recovered || sub.RecoveryFailures() != 0 {
		t.Fatalf("recovery %+v, failures %d, subscription %v", r, sub.RecoveryFailures(), sub.Err())
	}
	t.Logf("recovered %v after the drop", time.Since(dropped).Round(time.Millisecond))
	c.WaitRing(10*time.Second, 1, v)
	publish(11, 11)
	for i := 6; i <= 11; i++ {
		next(i)
	}
}

// killPair dials x through a switch proxy in front of fa, reconnecting
// within 100 ms to wherever the proxy points, and y straight to fb; both
// close when the test ends.
func killPair(ctx context.Context, t *testing.T, fa, fb *clustertest.FrontendNode) (*clustertest.SwitchProxy, *client.Client, *client.Client) {
	t.Helper()
	proxy := clustertest.StartSwitchProxy(t, fa.Addr())
	x, err := client.Dial(ctx, proxy.URL(), client.Options{Backoff: client.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}, SubscriptionBuffer: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	y, err := client.Dial(ctx, fb.URL(), client.Options{SubscriptionBuffer: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	return proxy, x, y
}
