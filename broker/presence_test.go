package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// presFE is a frontend end of a link that hands presence results and
// deliveries to channels.
type presFE struct {
	l       *nodelink.Link
	results chan protocol.PresenceResult
	events  chan string // channels of Delivers
	nextSub uint64
}

func (f *presFE) HandleMessages(_ *nodelink.Link, msgs []protocol.Message) {
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgPresenceResult:
			var r protocol.PresenceResult
			if err := m.Decode(&r); err != nil {
				panic(err)
			}
			f.results <- r
		case protocol.MsgDeliver:
			ch, _, _ := protocol.ParseDeliver(m.Body)
			select {
			case f.events <- ch:
			default:
			}
		}
	}
}

func (f *presFE) Closed(*nodelink.Link, error) {}

func dialPresFE(t testing.TB, addr, id string) *presFE {
	t.Helper()
	l, err := nodelink.Dial(context.Background(), addr, feConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	f := &presFE{l: l, results: make(chan protocol.PresenceResult, 16), events: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Run(f)
	}()
	t.Cleanup(func() {
		l.Close("test")
		<-done
	})
	return f
}

func (f *presFE) query(t testing.TB, q protocol.PresenceQuery) protocol.PresenceResult {
	if err := f.l.Send(protocol.MsgPresenceQuery, &q); err != nil {
		t.Fatal(err)
	}
	return <-f.results
}

func presenceBroker(t testing.TB) *testBroker {
	set, err := rules.Parse([]byte("default: {subscribe: anyone, publish: anyone, presence: true, join_leave: true}\n"), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return startBroker(t, func(c *Config) { c.Rules = set })
}

// A link's members count only for channels it holds, go without events
// when it stops holding the channel, and leave when the link closes.
func TestPresenceFollowsInterest(t *testing.T) {
	br := presenceBroker(t)
	f1 := dialPresFE(t, br.addr(), "fe-1")
	f2 := dialPresFE(t, br.addr(), "fe-2")
	// Not held yet: refused and counted.
	f1.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "room", Members: []protocol.PresenceMember{{Client: "early"}}})
	for _, f := range []*presFE{f1, f2} {
		f.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: 1, Channels: []string{"room"}})
	}
	f1.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "room", Members: []protocol.PresenceMember{{Client: "a", User: "u"}, {Client: "b", User: "u"}}})
	f2.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "room", Members: []protocol.PresenceMember{{Client: "a", User: "v"}}})
	waitFor(t, "3 members", func() bool { return br.pres.Stats("room").Clients == 3 })
	if r := f1.query(t, protocol.PresenceQuery{ID: 7, Channel: "room", StatsOnly: true}); r.ID != 7 || r.Clients != 3 || r.Users != 2 {
		t.Fatalf("stats = %+v, want 3 clients, 2 users", r)
	}
	if got := br.metric("scc_broker_drops_total", "reason", dropPresence); got != 1 {
		t.Fatalf("refused joins = %v, want 1", got)
	}
	f1.l.Send(protocol.MsgUnsubscribe, &protocol.Unsubscribe{Channels: []string{"room"}})
	waitFor(t, "fe-1's members dropped", func() bool { return br.pres.Stats("room").Clients == 1 })
	f2.l.Close("test")
	waitFor(t, "fe-2's members gone with its link", func() bool { return br.pres.Stats("room").Clients == 0 })
}

// BenchmarkPresenceStats100k is presence_stats of a channel of 100k
// members, asked over a real loopback link: one round trip per op.
func BenchmarkPresenceStats100k(b *testing.B) {
	br := presenceBroker(b)
	f := dialPresFE(b, br.addr(), "fe-1")
	f.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: 1, Channels: []string{"big"}})
	const n = 100_000
	for i := 0; i < n; i += 1000 {
		ms := make([]protocol.PresenceMember, 1000)
		for j := range ms {
			ms[j] = protocol.PresenceMember{Client: fmt.Sprintf("c%d", i+j), User: fmt.Sprintf("u%d", (i+j)%50_000)}
		}
		f.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "big", Members: ms, Silent: true})
	}
	waitFor(b, "100k members", func() bool { return br.pres.Stats("big").Clients == n })
	b.ReportAllocs()
	for b.Loop() {
		if r := f.query(b, protocol.PresenceQuery{Channel: "big", StatsOnly: true}); r.Clients != n || r.Users != 50_000 {
			b.Fatalf("stats %+v", r)
		}
	}
}

// Only the channel's owner under the committed ring publishes events: in
// a reshard the old and the new owner both hold the members.
func TestPresenceEventsOnlyFromOwner(t *testing.T) {
	br := presenceBroker(t)
	f := dialPresFE(t, br.addr(), "fe-1")
	f.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: 1, Channels: []string{"room"}})
	join := func(client string) {
		f.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "room", Members: []protocol.PresenceMember{{Client: client}}})
	}
	join("a")
	waitFor(t, "a present", func() bool { return br.pres.Stats("room").Clients == 1 })
	br.pres.Flush()
	if ch := <-f.events; ch != "#presence:room" {
		t.Fatalf("event on %q, want #presence:room", ch)
	}
	events := br.metric("scc_broker_presence_events_total")
	// A ring in which another broker owns every channel.
	agentHandler{br.Server}.Commit(protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{{ID: "other", Addr: "127.0.0.1:1"}}})
	join("b")
	waitFor(t, "b present", func() bool { return br.pres.Stats("room").Clients == 2 })
	br.pres.Flush()
	if got := br.metric("scc_broker_presence_events_total"); got != events {
		t.Fatalf("a broker that does not own the channel published %v events", got-events)
	}
}

// TestPresencePageFitsAFrame: a page of members larger than half a link
// frame comes back shorter, with the channel's counts, instead of not at
// all (the query then waited for its timeout).
func TestPresencePageFitsAFrame(t *testing.T) {
	set, err := rules.Parse([]byte("default: {subscribe: anyone, publish: anyone, presence: true}\n"), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	br := startBroker(t, func(c *Config) { c.Rules = set; c.Link.MaxFrameBytes = 16 << 10 })
	f := dialPresFE(t, br.addr(), "fe-1")
	f.l.Send(protocol.MsgSubscribe, &protocol.Subscribe{ID: 1, Channels: []string{"room"}})
	const n = 60 // 60 members of about 500 bytes: 30 KB
	for i := range n {
		f.l.Send(protocol.MsgPresenceJoin, &protocol.PresenceJoin{Channel: "room", Silent: true, Members: []protocol.PresenceMember{
			{Client: fmt.Sprintf("client-%03d", i), User: "u", Info: []byte(`"` + strings.Repeat("i", 480) + `"`)},
		}})
		if i%10 == 9 { // frames under the broker's limit
			waitFor(t, "the members", func() bool { return br.pres.Stats("room").Clients == i+1 })
		}
	}
	if err := f.l.Send(protocol.MsgPresenceQuery, &protocol.PresenceQuery{ID: 3, Channel: "room", Limit: n}); err != nil {
		t.Fatal(err)
	}
	var r protocol.PresenceResult
	select {
	case r = <-f.results:
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	if r.ID != 3 || r.Clients != n || len(r.Members) == 0 || len(r.Members) >= n {
		t.Fatalf("result %d members of %d clients, want a shorter page of %d", len(r.Members), r.Clients, n)
	}
	t.Logf("a page of %d of %d members", len(r.Members), n)
}
