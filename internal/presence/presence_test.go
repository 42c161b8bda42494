package presence

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTableCountsAndUniqueUsers(t *testing.T) {
	tb := NewTable()
	tb.Join(1, "room", Member{Client: "a", User: "u1"})
	tb.Join(2, "room", Member{Client: "b", User: "u1"}) // same user, other socket
	tb.Join(2, "room", Member{Client: "c"})             // anonymous
	if !tb.Join(1, "room", Member{Client: "c"}) {       // same client id, other source: another socket
		t.Fatal("client c of source 1 not new")
	}
	if tb.Join(1, "room", Member{Client: "a", User: "u1"}) {
		t.Fatal("a reported twice counted as new")
	}
	if got := tb.Stats("room"); got != (Stats{Clients: 4, Users: 1}) {
		t.Fatalf("stats = %+v, want 4 clients 1 user", got)
	}
	tb.Join(1, "room", Member{Client: "a", User: "u2"}) // user changed
	if got := tb.Stats("room"); got.Users != 2 {
		t.Fatalf("users after a user change = %d, want 2", got.Users)
	}
	if _, ok := tb.Leave(2, "room", "a"); ok {
		t.Fatal("left a member of another source")
	}
	dropped := tb.DropSource(1)
	if len(dropped["room"]) != 2 {
		t.Fatalf("DropSource(1) = %v, want 2 members", dropped)
	}
	if got := tb.Stats("room"); got != (Stats{Clients: 2, Users: 1}) {
		t.Fatalf("stats after drop = %+v", got)
	}
	tb.DropChannel(2, "room")
	if got := tb.Stats("room"); got != (Stats{}) || tb.Len() != 0 {
		t.Fatalf("stats after dropping everything = %+v, len %d", got, tb.Len())
	}
}

func TestTablePagesCoverEveryMemberOnce(t *testing.T) {
	tb := NewTable()
	for i := range 1000 {
		tb.Join(uint64(i%3), "ch", Member{Client: fmt.Sprint(i), User: fmt.Sprint(i % 10)})
	}
	seen := map[string]int{}
	off, pages := 0, 0
	for {
		ms, st, next := tb.Page("ch", off, 64)
		if st.Clients != 1000 || st.Users != 10 {
			t.Fatalf("stats = %+v", st)
		}
		for _, m := range ms {
			seen[m.Client]++
		}
		pages++
		if next == 0 {
			break
		}
		off = next
	}
	if len(seen) != 1000 || pages != 16 {
		t.Fatalf("paged %d distinct members in %d pages", len(seen), pages)
	}
	for c, n := range seen {
		if n != 1 {
			t.Fatalf("member %s listed %d times", c, n)
		}
	}
}

func TestTableShrinksAfterStorm(t *testing.T) {
	tb := NewTable()
	for i := range 10000 {
		tb.Join(1, "ch", Member{Client: fmt.Sprint(i)})
	}
	for i := range 9990 {
		tb.Leave(1, "ch", fmt.Sprint(i))
	}
	sh := tb.shard("ch")
	if c := sh.m["ch"]; cap(c.list) > 1000 {
		t.Fatalf("list capacity %d after the storm left", cap(c.list))
	}
	ms, st, _ := tb.Page("ch", 0, 100)
	if len(ms) != 10 || st.Clients != 10 {
		t.Fatalf("after shrink: %d members, %+v", len(ms), st)
	}
}

type sink struct {
	mu  sync.Mutex
	evs []protocol.PresenceEvent
	chs []string
}

func (s *sink) publish(ch string, data []byte) {
	var ev protocol.PresenceEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.chs = append(s.chs, ch)
	s.mu.Unlock()
}

func newHub(t *testing.T, max int, s *sink) *Hub {
	h, err := NewHub(Config{EventMaxMembers: max, JoinLeave: func(ch string) bool { return ch != "quiet" },
		Publish: s.publish, Metrics: NewMetrics(nil, "test", nil)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHubCoalescesAndCaps(t *testing.T) {
	s := &sink{}
	h := newHub(t, 3, s)
	h.Join(1, "room", []Member{{Client: "a", User: "u"}}, false)
	h.Leave(1, "room", []string{"a"}) // cancels the join
	h.Join(1, "room", []Member{{Client: "b"}, {Client: "c"}, {Client: "d"}, {Client: "e"}, {Client: "f"}}, false)
	h.Join(1, "room", []Member{{Client: "z"}}, true) // silent: no event
	h.Join(1, "quiet", []Member{{Client: "q"}}, false)
	h.Flush()
	if len(s.evs) != 1 || s.chs[0] != "#presence:room" {
		t.Fatalf("events = %+v on %v, want one on #presence:room", s.evs, s.chs)
	}
	ev := s.evs[0]
	if len(ev.Join) != 3 || len(ev.Leave) != 0 || ev.Omitted != 2 || ev.Coalesced != 2 || ev.Clients != 6 {
		t.Fatalf("event = %+v, want 3 joins, 2 omitted, 2 coalesced, 6 clients", ev)
	}
	m := h.cfg.Metrics
	if got := counter(m, DropCoalesced); got != 2 {
		t.Errorf("coalesced = %v, want 2", got)
	}
	if got := counter(m, DropOverCap); got != 2 {
		t.Errorf("over cap = %v, want 2", got)
	}
	h.Flush()
	if len(s.evs) != 1 {
		t.Fatalf("an empty interval published %d more events", len(s.evs)-1)
	}
	h.DropSource(1)
	h.Flush()
	if len(s.evs) != 2 || len(s.evs[1].Leave) != 3 || s.evs[1].Omitted != 3 || s.evs[1].Clients != 0 {
		t.Fatalf("events after DropSource = %+v", s.evs[1:])
	}
	h.Join(2, "room", []Member{{Client: "x"}}, false)
	h.DropChannel(2, "room") // silent, but the pending join stays told
	h.Close()
}

func counter(m *Metrics, reason string) float64 {
	var d = m.Drops.WithLabelValues(reason)
	return testCounter(d)
}

func TestTableUpdateAddsNothing(t *testing.T) {
	tb := NewTable()
	if tb.Update(1, "ch", Member{Client: "a", User: "u"}) || tb.Len() != 0 {
		t.Fatal("Update added a member")
	}
	tb.Join(1, "ch", Member{Client: "a", User: "u"})
	if !tb.Update(1, "ch", Member{Client: "a", User: "v"}) {
		t.Fatal("Update of a member failed")
	}
	if ms, st, _ := tb.Page("ch", 0, 10); st != (Stats{Clients: 1, Users: 1}) || ms[0].User != "v" {
		t.Fatalf("after Update: %+v %+v", ms, st)
	}
}
