package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/protocol"
)

const presenceRulesDoc = `
rules:
  - match: "private:*"
    subscribe: authenticated
    publish: authenticated
    presence: true
    join_leave: true
  - match: "room:*"
    subscribe: anyone
    publish: anyone
    presence: true
    join_leave: true
  - match: "counted:*"
    subscribe: anyone
    publish: anyone
    presence: true
default: {subscribe: anyone, publish: anyone}
`

func presenceConfig(t *testing.T) Config {
	c := rulesConfig(t, presenceRulesDoc)
	c.Presence.EventInterval = 50 * time.Millisecond
	return c
}

// rid returns the next packet that answers cid, skipping others.
func (c *rawClient) rid(cid int) map[string]any {
	c.t.Helper()
	for {
		p := c.packet()
		var m map[string]any
		if json.Unmarshal([]byte(p), &m) == nil && m["rid"] == float64(cid) {
			return m
		}
	}
}

// A socket that cannot subscribe to a channel reads none of its presence,
// nor does one that may but has not; the companion channel of events is
// read-only and follows its channel.
func TestPresenceAccess(t *testing.T) {
	srv := startServer(t, presenceConfig(t))
	anon := dial(t, srv)
	anon.handshake("")
	anon.sendf(`{"event":"#subscribe","data":{"channel":"private:1"},"cid":2}`)
	anon.expectJSON(blocked(2, "SubscribeBlockedError", "the private:1 channel needs an authenticated socket"))
	for i, ev := range []string{protocol.ProcPresence, protocol.ProcPresenceStats} {
		anon.sendf(`{"event":%q,"data":{"channel":"private:1"},"cid":%d}`, ev, 3+i)
		r := anon.rid(3 + i)
		if r["error"] == nil || r["data"] != nil {
			t.Fatalf("%s of a channel the socket may not subscribe to = %v", ev, r)
		}
	}
	anon.sendf(`{"event":"#subscribe","data":{"channel":"#presence:private:1"},"cid":5}`)
	if r := anon.rid(5); !strings.Contains(fmt.Sprint(r["error"]), "SubscribeBlockedError") {
		t.Fatalf("subscribe to the events of a channel the socket may not subscribe to = %v", r)
	}

	// Allowed to subscribe but not subscribed: no members.
	anon.sendf(`{"event":"#presence","data":{"channel":"room:1"},"cid":6}`)
	if r := anon.rid(6); r["error"] == nil {
		t.Fatalf("#presence without a subscription = %v", r)
	}
	anon.subscribe("room:1", 7)
	anon.sendf(`{"event":"#presence","data":{"channel":"room:1"},"cid":8}`)
	r := anon.rid(8)
	data, _ := json.Marshal(r["data"])
	var rep protocol.PresenceReply
	if err := json.Unmarshal(data, &rep); err != nil || rep.Clients != 1 || len(rep.Members) != 1 || rep.Members[0].Client == "" {
		t.Fatalf("#presence of room:1 = %v", r)
	}
	// No client publishes on a companion channel.
	anon.sendf(`{"event":"#publish","data":{"channel":"#presence:room:1","data":{"join":[{"client":"forged"}]}},"cid":9}`)
	if r := anon.rid(9); r["error"] == nil {
		t.Fatalf("publish on a companion channel = %v", r)
	}
	// A channel with presence but no join_leave has no events.
	anon.subscribe("counted:1", 10)
	anon.sendf(`{"event":"#subscribe","data":{"channel":"#presence:counted:1"},"cid":11}`)
	if r := anon.rid(11); r["error"] == nil {
		t.Fatalf("events of a channel without join_leave = %v", r)
	}
	// Leaving the channel kicks the socket out of its events.
	anon.subscribe("#presence:room:1", 12)
	anon.sendf(`{"event":"#unsubscribe","data":"room:1","cid":13}`)
	anon.rid(13)
	for {
		p := anon.packet()
		if strings.Contains(p, `"#kickOut"`) && strings.Contains(p, `"#presence:room:1"`) {
			break
		}
	}
	if n := srv.subs.subs.Load(); n != 1 { // counted:1 only
		t.Fatalf("subscriptions after the kick-out = %d, want 1", n)
	}
}

// Standalone: join and leave events reach the companion channel's
// subscribers as ordinary #publish packets.
func TestPresenceStandaloneEvents(t *testing.T) {
	srv := startServer(t, presenceConfig(t))
	w := dial(t, srv)
	w.handshake("")
	w.subscribe("room:1", 2)
	w.subscribe("#presence:room:1", 3)
	m := dial(t, srv)
	hs := m.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "42", "info": map[string]any{"name": "ann"}}))
	id := hs["id"].(string)
	m.subscribe("room:1", 2)
	var ev protocol.PresenceEvent
	var joined *protocol.PresenceClient
	for joined == nil { // the watcher's own join may come first, or in the same event
		ev = nextEvent(t, w)
		for i := range ev.Join {
			if ev.Join[i].Client == id {
				joined = &ev.Join[i]
			}
		}
	}
	if joined.User != "42" || string(joined.Info) != `{"name":"ann"}` || ev.Clients != 2 || ev.Users != 1 {
		t.Fatalf("join event = %+v", ev)
	}
	m.sendf(`{"event":"#unsubscribe","data":"room:1","cid":3}`)
	ev = nextEvent(t, w)
	if len(ev.Leave) != 1 || ev.Leave[0].Client != id || ev.Clients != 1 || ev.Users != 0 {
		t.Fatalf("leave event = %+v", ev)
	}
}

func nextEvent(t *testing.T, c *rawClient) protocol.PresenceEvent {
	t.Helper()
	for {
		var pkt struct {
			Event string `json:"event"`
			Data  struct {
				Channel string                 `json:"channel"`
				Data    protocol.PresenceEvent `json:"data"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(c.packet()), &pkt) == nil && pkt.Event == "#publish" && strings.HasPrefix(pkt.Data.Channel, "#presence:") {
			return pkt.Data.Data
		}
	}
}

// stormMember is a light client for the storm: it counts the presence
// events it reads and discards everything else.
type stormMember struct {
	ws     *websocket.Conn
	events atomic.Int64
	bad    atomic.Int64 // events listing more changes than the cap
	joins  atomic.Int64 // joins plus omitted changes seen
	done   chan struct{}
}

// A storm of members joining one channel within a second becomes a few
// capped events per interval, and no subscriber falls behind.
func TestPresenceJoinStorm(t *testing.T) {
	n := 5000
	switch {
	case testing.Short():
		n = 500
	case raceOn:
		n = 1000 // 5000 takes minutes under the race detector on a small machine
	}
	cfg := presenceConfig(t)
	cfg.Presence.EventInterval = 100 * time.Millisecond
	cfg.Presence.EventMaxMembers = 50
	cfg.MaxConnectionsPerIP = 0
	cfg.MaxSubscriptionsPerIP = 0
	srv := startServer(t, cfg)
	url := wsURL(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	members := make([]*stormMember, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ws, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			ws.SetReadLimit(1 << 20)
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{},"cid":1}`))
			if _, _, err := ws.Read(ctx); err != nil {
				t.Errorf("handshake: %v", err)
				return
			}
			m := &stormMember{ws: ws, done: make(chan struct{})}
			members[i] = m
			go m.read(ctx, cfg.Presence.EventMaxMembers) // answers pings while the others connect
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range members {
			if m != nil {
				m.ws.CloseNow()
				<-m.done
			}
		}
	})
	if t.Failed() {
		return
	}
	// The storm: every member subscribes to the channel and its events
	// in one frame, all within well under a second.
	start := time.Now()
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = m.ws.Write(ctx, websocket.MessageText, []byte(`[{"event":"#subscribe","data":{"channel":"room:storm"},"cid":2},{"event":"#subscribe","data":{"channel":"#presence:room:storm"},"cid":3}]`))
		}()
	}
	wg.Wait()
	t.Logf("%d members sent their subscribes in %v", n, time.Since(start))

	waitFor(t, 120*time.Second, "every member present and subscribed to the events", func() bool {
		st, err := srv.PresenceStats(ctx, "room:storm")
		return err == nil && st.Clients == n && srv.subs.subs.Load() == int64(2*n)
	})
	// One more member joins after the storm: every member hears of it.
	probe := dial(t, srv)
	probe.handshake("")
	probe.subscribe("room:storm", 2)
	waitFor(t, 60*time.Second, "every member heard the last join", func() bool {
		for _, m := range members {
			if m.events.Load() == 0 {
				return false
			}
		}
		return true
	})
	var events, bad int64
	for _, m := range members {
		events += m.events.Load()
		bad += m.bad.Load()
	}
	if bad > 0 {
		t.Fatalf("%d events listed more than %d changes", bad, cfg.Presence.EventMaxMembers)
	}
	if c := counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonSlowConsumer); c != 0 {
		t.Fatalf("%v subscribers closed as slow consumers", c)
	}
	if got := srv.nconns.Load(); got != int64(n+1) {
		t.Fatalf("%d sockets open, want %d (closes by reason: pong timeout %v)", got, n+1,
			counter(t, srv.Registry(), "scc_frontend_closes_total", "reason", reasonPongTimeout))
	}
	published := counter(t, srv.Registry(), "scc_frontend_presence_events_total")
	overCap := counter(t, srv.Registry(), "scc_frontend_presence_event_drops_total", "reason", "over_cap")
	t.Logf("%v events published for %d joins, %v changes over the cap (counted as omitted); %d event deliveries to %d subscribers",
		published, n, overCap, events, n)
	if published > float64(n)/float64(cfg.Presence.EventMaxMembers)*4+20 || overCap == 0 {
		t.Fatalf("%v events for %d joins: not coalesced and capped", published, n)
	}
}

func (m *stormMember) read(ctx context.Context, limit int) {
	defer close(m.done)
	for {
		_, b, err := m.ws.Read(ctx)
		if err != nil {
			return
		}
		if len(b) == 0 {
			_ = m.ws.Write(ctx, websocket.MessageText, nil)
			continue
		}
		if !strings.Contains(string(b), `"#presence:`) {
			continue
		}
		var pkts []json.RawMessage
		if b[0] == '[' {
			_ = json.Unmarshal(b, &pkts)
		} else {
			pkts = []json.RawMessage{b}
		}
		for _, p := range pkts {
			var pkt struct {
				Event string `json:"event"`
				Data  struct {
					Channel string                 `json:"channel"`
					Data    protocol.PresenceEvent `json:"data"`
				} `json:"data"`
			}
			if json.Unmarshal(p, &pkt) != nil || pkt.Event != "#publish" || pkt.Data.Channel != "#presence:room:storm" {
				continue
			}
			ev := pkt.Data.Data
			m.events.Add(1)
			m.joins.Add(int64(len(ev.Join) + ev.Omitted))
			if len(ev.Join)+len(ev.Leave) > limit {
				m.bad.Add(1)
			}
		}
	}
}

// A member whose auth token changes is reported again with its new user.
func TestPresenceFollowsAuthChanges(t *testing.T) {
	srv := startServer(t, presenceConfig(t))
	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "ann"}))
	c.subscribe("room:1", 2)
	users := func() []string {
		res, err := srv.Presence(context.Background(), "room:1", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range res.Members {
			out = append(out, m.User)
		}
		return out
	}
	if got := users(); len(got) != 1 || got[0] != "ann" {
		t.Fatalf("users = %v, want [ann]", got)
	}
	c.sendf(`{"event":"#authenticate","data":%q,"cid":3}`, hsToken(t, testKey, jwt.MapClaims{"sub": "bob"}))
	c.rid(3)
	if got := users(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("users after #authenticate as bob = %v, want [bob]", got)
	}
	c.send(`{"event":"#removeAuthToken","cid":4}`)
	c.rid(4)
	st, err := srv.PresenceStats(context.Background(), "room:1")
	if err != nil || st != (protocol.PresenceStats{Clients: 1, Users: 0}) {
		t.Fatalf("stats after logout = %+v, %v; want 1 client, no user", st, err)
	}
}

// The server API's presence and presence_stats, standalone: pages, counts,
// and refusals for channels without presence and reserved ones.
func TestAPIPresenceStandalone(t *testing.T) {
	cfg := presenceConfig(t)
	cfg.API.Key = testAPIKey
	cfg.ServeAdmin = true
	cfg.Presence.PageMax = 2
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	for i := range 3 {
		c := dial(t, srv)
		c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": fmt.Sprint("u", i%2)}))
		c.subscribe("room:1", 2)
	}
	st := apiOK(t, addr, "presence_stats", `{"channel":"room:1"}`)
	if st["clients"] != 3.0 || st["users"] != 2.0 {
		t.Fatalf("presence_stats = %v", st)
	}
	p := apiOK(t, addr, "presence", `{"channel":"room:1","limit":10}`) // capped at PageMax
	if ms, _ := p["members"].([]any); len(ms) != 2 || p["next"] != 2.0 {
		t.Fatalf("first page = %v, want 2 members and next 2", p)
	}
	p = apiOK(t, addr, "presence", `{"channel":"room:1","offset":2}`)
	if ms, _ := p["members"].([]any); len(ms) != 1 || p["next"] != nil {
		t.Fatalf("last page = %v, want 1 member and no next", p)
	}
	for _, body := range []string{`{"channel":"plain:1"}`, `{"channel":"#scc:user:1"}`, `{"channel":"room:1","offset":-1}`, `{}`} {
		if code, out := apiCall(t, addr, testAPIKey, "presence", body); code != http.StatusBadRequest {
			t.Errorf("presence %s: HTTP %d %v, want 400", body, code, out)
		}
	}
	if code, _ := apiCall(t, addr, testAPIKey, "presence_stats", `{"channel":"room:1","limit":3}`); code != http.StatusBadRequest {
		t.Errorf("presence_stats with a limit: HTTP %d, want 400", code)
	}
}
