package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/rules"
)

const recoveryRules = `
rules:
  - match: "room:*"
    subscribe: anyone
    publish: anyone
    history: {size: 100, ttl: 1m}
    recovery: true
  - match: "small:*"
    subscribe: anyone
    publish: anyone
    history: {size: 5, ttl: 1m}
    recovery: true
`

func historyFrontend(t *testing.T) *testFrontend {
	t.Helper()
	set, err := rules.Parse([]byte(recoveryRules), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return startFrontend(t, "", func(c *frontend.Config) { c.Rules = set })
}

// gate holds a client's reconnect (its OnDisconnect blocks) while the
// test publishes what it misses.
type gate struct {
	lost    chan struct{}
	resume  chan struct{}
	holding bool
}

func newGate() *gate { return &gate{lost: make(chan struct{}, 1), resume: make(chan struct{})} }

func (g *gate) opts() client.Options {
	return client.Options{
		Backoff: client.Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond},
		OnDisconnect: func(int, string) {
			g.lost <- struct{}{}
			<-g.resume
		},
	}
}

// awayAndBack closes c's socket at the server, waits until the channel has
// no subscriber left, publishes from..to meanwhile and lets c reconnect.
func awayAndBack(t *testing.T, f *testFrontend, c *client.Client, g *gate, ch string, from, to int) {
	t.Helper()
	f.srv.SocketByID(c.ID()).Close(4000, "away")
	<-g.lost
	waitFor(t, "the socket gone", 5*time.Second, func() bool { return len(f.srv.LocalChannels()) == 0 })
	for i := from; i <= to; i++ {
		if err := f.srv.Publish(context.Background(), ch, json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	close(g.resume)
}

// TestRecoveryOnReconnect: a client away within the history window gets
// exactly what it missed, in order, once, and is told it recovered.
func TestRecoveryOnReconnect(t *testing.T) {
	f := historyFrontend(t)
	var mu sync.Mutex
	var recs []client.Recovery
	g := newGate()
	c := dial(t, f.URL(), g.opts())
	ctx := ctxT(t, 10*time.Second)
	sub, err := c.Subscribe(ctx, "room:1", client.SubscribeOptions{OnRecovery: func(r client.Recovery) {
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := sub.Recovery(); r.Asked || r.Epoch == "" {
		t.Fatalf("first subscribe: %+v", r)
	}
	for i := 1; i <= 3; i++ {
		if err := c.Publish(ctx, "room:1", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if m := next(t, sub); string(m.Data) != fmt.Sprint(i) || m.Offset != uint64(i) {
			t.Fatalf("live %d: %+v", i, m)
		}
	}
	awayAndBack(t, f, c, g, "room:1", 4, 10)
	for i := 4; i <= 10; i++ {
		if m := next(t, sub); string(m.Data) != fmt.Sprint(i) || m.Offset != uint64(i) {
			t.Fatalf("want %d, got %+v", i, m)
		}
	}
	if err := c.Publish(ctx, "room:1", 11); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != "11" {
		t.Fatalf("after recovery: %+v", m)
	}
	select {
	case m := <-sub.C():
		t.Fatalf("extra message %+v", m)
	default:
	}
	r := sub.Recovery()
	if !r.Asked || !r.Recovered || r.Offset != 10 || sub.RecoveryFailures() != 0 || sub.Gaps() != 0 {
		t.Fatalf("recovery %+v failures %d gaps %d", r, sub.RecoveryFailures(), sub.Gaps())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 2 || recs[0].Asked || !recs[1].Recovered {
		t.Fatalf("OnRecovery saw %+v", recs)
	}
}

// TestRecoveryTooLate: away longer than the history holds, the client is
// told recovery failed, never left with a silent gap.
func TestRecoveryTooLate(t *testing.T) {
	f := historyFrontend(t)
	g := newGate()
	c := dial(t, f.URL(), g.opts())
	ctx := ctxT(t, 10*time.Second)
	failed := make(chan client.Recovery, 1)
	sub, err := c.Subscribe(ctx, "small:1", client.SubscribeOptions{OnRecovery: func(r client.Recovery) {
		if r.Asked && !r.Recovered {
			failed <- r
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	awayAndBack(t, f, c, g, "small:1", 1, 20)
	select {
	case r := <-failed:
		if r.Reason != "gone" || r.Offset != 20 {
			t.Fatalf("failed recovery %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no failed recovery reported")
	}
	if sub.RecoveryFailures() != 1 {
		t.Fatalf("failures %d", sub.RecoveryFailures())
	}
	if err := c.Publish(ctx, "small:1", 21); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != "21" || m.Offset != 21 {
		t.Fatalf("live after a failed recovery: %+v", m)
	}
}

// TestRecoveryKeepsSubscribeData: the application's subscribe data still
// reaches the server next to the recovery request.
func TestRecoveryKeepsSubscribeData(t *testing.T) {
	f := historyFrontend(t)
	g := newGate()
	c := dial(t, f.URL(), g.opts())
	ctx := ctxT(t, 10*time.Second)
	sub, err := c.Subscribe(ctx, "room:2", client.SubscribeOptions{Data: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	awayAndBack(t, f, c, g, "room:2", 1, 2)
	for i := 1; i <= 2; i++ {
		if m := next(t, sub); string(m.Data) != fmt.Sprint(i) {
			t.Fatalf("want %d, got %+v", i, m)
		}
	}
	if r := sub.Recovery(); !r.Recovered {
		t.Fatalf("recovery %+v", r)
	}
}
