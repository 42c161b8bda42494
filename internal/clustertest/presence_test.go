package clustertest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

const presenceRules = `
default: {subscribe: anyone, publish: anyone}
rules:
  - match: "room:*"
    subscribe: anyone
    publish: anyone
    presence: true
    join_leave: true
`

// presenceCluster starts brokers and frontends that run presenceRules,
// with join/leave events every 100ms.
func presenceCluster(t *testing.T, brokers, frontends int) *clustertest.Cluster {
	set := parseRules(t, presenceRules)
	c := clustertest.Start(t, clustertest.Options{Brokers: brokers, Frontends: frontends,
		Frontend: func(cfg *frontend.Config) {
			cfg.Rules = set
			cfg.AuthKey = []byte(clientAuth)
			cfg.API.Key = apiKey
		},
		Broker: func(cfg *broker.Config) {
			cfg.Rules = set
			cfg.PresenceEventInterval = 100 * time.Millisecond
		},
	})
	c.WaitRing(10*time.Second, brokers, 0)
	return c
}

// dialAs connects a Go client to url, as user sub ("" for none).
func dialAs(t *testing.T, url, sub string) *client.Client {
	t.Helper()
	var opts client.Options
	if sub != "" {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "info": map[string]any{"name": "n" + sub}}).SignedString([]byte(clientAuth))
		if err != nil {
			t.Fatal(err)
		}
		opts.AuthToken = tok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscribe(t *testing.T, c *client.Client, ch string) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, ch, client.SubscribeOptions{})
	if err != nil {
		t.Fatalf("subscribe %s: %v", ch, err)
	}
	return s
}

// members returns the client ids of ch's members, every page, as c sees
// them; the error of the first failing call.
func members(c *client.Client, ch string) ([]string, client.PresenceStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ids []string
	var st client.PresenceStats
	off := 0
	for {
		p, err := c.Presence(ctx, ch, off, 2) // small pages: paging is part of the check
		if err != nil {
			return nil, st, err
		}
		st = p.PresenceStats
		for _, m := range p.Members {
			ids = append(ids, m.Client)
		}
		if p.Next == 0 {
			break
		}
		off = p.Next
	}
	slices.Sort(ids)
	return ids, st, nil
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// waitMembers waits until c sees exactly want in ch.
func waitMembers(t *testing.T, c *client.Client, ch string, want []string) client.PresenceStats {
	t.Helper()
	var got []string
	var st client.PresenceStats
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, st, err = members(c, ch)
		if err == nil && slices.Equal(got, want) && st.Clients == len(want) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("members of %s = %v (%+v, err %v), want %v", ch, got, st, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Members on two frontends, whose channel is owned by one of two brokers,
// are one list, each socket once; a user on two sockets is one unique
// user. The server API on either frontend says the same.
func TestPresenceClusterOneList(t *testing.T) {
	c := presenceCluster(t, 2, 2)
	f0, f1 := c.Frontends[0].URL(), c.Frontends[1].URL()
	a1 := dialAs(t, f0, "u1")
	a2 := dialAs(t, f1, "u1") // the same user on another socket
	b := dialAs(t, f1, "u2")
	anon := dialAs(t, f0, "")
	for _, cl := range []*client.Client{a1, a2, b, anon} {
		subscribe(t, cl, "room:1")
	}
	want := sorted(a1.ID(), a2.ID(), b.ID(), anon.ID())
	for _, cl := range []*client.Client{a1, b} { // one reader per frontend
		st := waitMembers(t, cl, "room:1", want)
		if st.Users != 2 {
			t.Fatalf("unique users = %d, want 2 (u1 twice, u2, and an anonymous socket)", st.Users)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := a1.PresenceStats(ctx, "room:1")
	if err != nil || st != (client.PresenceStats{Clients: 4, Users: 2}) {
		t.Fatalf("PresenceStats = %+v, %v; want 4 clients, 2 users", st, err)
	}
	p, err := a1.Presence(ctx, "room:1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Members {
		if m.Client == a2.ID() && (m.User != "u1" || string(m.Info) != `{"name":"nu1"}`) {
			t.Errorf("member %+v: want user u1 with the token's info", m)
		}
	}
	for _, f := range c.Frontends {
		r := post(t, f.Addr(), "presence_stats", `{"channel":"room:1"}`)
		if r["clients"] != 4.0 || r["users"] != 2.0 {
			t.Errorf("API presence_stats on %s = %v", f.Addr(), r)
		}
		r = post(t, f.Addr(), "presence", `{"channel":"room:1"}`)
		if ms, _ := r["members"].([]any); len(ms) != 4 {
			t.Errorf("API presence on %s = %v", f.Addr(), r)
		}
	}
}

// A member whose socket closes, and the members of a frontend whose links
// drop, leave within the bound, and subscribers of the events hear it.
func TestPresenceClusterLeaves(t *testing.T) {
	c := presenceCluster(t, 2, 2)
	f0, f1 := c.Frontends[0].URL(), c.Frontends[1].URL()
	w := dialAs(t, f0, "watcher")
	ws := subscribe(t, w, "room:1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jl, err := ws.JoinLeave(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m1 := dialAs(t, f0, "m1")
	m2 := dialAs(t, f1, "m2")
	subscribe(t, m1, "room:1")
	subscribe(t, m2, "room:1")
	waitMembers(t, w, "room:1", sorted(w.ID(), m1.ID(), m2.ID()))
	joined := map[string]bool{}
	for !joined[m1.ID()] || !joined[m2.ID()] {
		ev, err := jl.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for join events: %v (got %v)", err, joined)
		}
		for _, j := range ev.Join {
			joined[j.Client] = true
		}
	}

	m1id := m1.ID()
	m1.Close()
	waitMembers(t, w, "room:1", sorted(w.ID(), m2.ID()))

	// The second frontend loses every broker link while its socket stays
	// open: the owner drops its members.
	c.Frontends[1].Router().Close()
	waitMembers(t, w, "room:1", sorted(w.ID()))
	left := map[string]bool{}
	for !left[m1id] || !left[m2.ID()] {
		ev, err := jl.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for leave events: %v (got %v)", err, left)
		}
		for _, l := range ev.Leave {
			left[l.Client] = true
		}
	}
	c.Frontends[1].Kill()
}

// When the channel's owner dies, and when a broker joins and channels
// move to it, the new owner rebuilds presence from the frontends.
func TestPresenceClusterFailoverAndReshard(t *testing.T) {
	c := presenceCluster(t, 2, 2)
	f0, f1 := c.Frontends[0].URL(), c.Frontends[1].URL()
	x := dialAs(t, f0, "x")
	y := dialAs(t, f1, "y")
	z := dialAs(t, f1, "z")
	const n = 16
	chans := make([]string, n)
	for i := range chans {
		chans[i] = fmt.Sprintf("room:%d", i)
		for _, cl := range []*client.Client{x, y, z} {
			subscribe(t, cl, chans[i])
		}
	}
	want := sorted(x.ID(), y.ID(), z.ID())
	check := func(stage string) {
		t.Helper()
		for _, ch := range chans {
			st := waitMembers(t, x, ch, want)
			if st.Users != 3 {
				t.Fatalf("%s: %s has %d users, want 3", stage, ch, st.Users)
			}
		}
	}
	check("start")

	v := c.WaitRing(10*time.Second, 2, 0)
	c.Brokers[0].Kill()
	v = c.WaitRing(10*time.Second, 1, v)
	check("after the owner of half the channels died")

	nb := c.AddBroker()
	c.WaitRing(10*time.Second, 2, v)
	moved := 0
	r := ring.New(0, []protocol.BrokerInfo{{ID: c.Brokers[1].ID()}, {ID: nb.ID()}})
	for _, ch := range chans {
		if r.OwnerID(ch) == nb.ID() {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no channel moved to the new broker; pick other channel names")
	}
	check(fmt.Sprintf("after %d of %d channels moved to a new broker", moved, n))
}
