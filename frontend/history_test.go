package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/sccgo/sccgo/internal/rules"
)

const historyRules = `
rules:
  - match: "room:*"
    subscribe: anyone
    publish: anyone
    history: {size: 5000, ttl: 1m}
    recovery: true
  - match: "small:*"
    subscribe: anyone
    publish: anyone
    history: {size: 5, ttl: 1m}
    recovery: true
  - match: "norecover:*"
    subscribe: anyone
    publish: anyone
    history: {size: 5, ttl: 1m}
  - match: "*"
    subscribe: anyone
    publish: anyone
`

func historyConfig(t testing.TB) Config {
	t.Helper()
	set, err := rules.Parse([]byte(historyRules), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Rules = set
	return c
}

// histMsg is one packet a history test client reads.
type histMsg struct {
	RID   int             `json:"rid"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	Error json.RawMessage `json:"error"`
}

type histPub struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
}

type histAck struct {
	Channel   string `json:"channel"`
	Recovered bool   `json:"recovered"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Reason    string `json:"reason"`
}

// next returns the next packet that is not a ping.
func (c *rawClient) next() histMsg {
	c.t.Helper()
	for {
		p := c.packet2()
		if p == "" {
			continue
		}
		var m histMsg
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			c.t.Fatalf("packet %q: %v", p, err)
		}
		return m
	}
}

// subscribeFrom subscribes with cid, asking to recover from (offset,
// epoch) when epoch is set, and returns the acknowledgement.
func (c *rawClient) subscribeFrom(ch string, cid int, offset uint64, epoch string) histAck {
	c.t.Helper()
	data := ""
	if epoch != "" {
		data = fmt.Sprintf(`,"data":{"recover":{"offset":%d,"epoch":%q}}`, offset, epoch)
	}
	c.sendf(`{"event":"#subscribe","data":{"channel":%q%s},"cid":%d}`, ch, data, cid)
	m := c.next()
	if m.RID != cid || m.Error != nil {
		c.t.Fatalf("subscribe %s: %+v (%s)", ch, m, m.Error)
	}
	var a histAck
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Channel != ch || a.Epoch == "" {
		c.t.Fatalf("subscribe %s ack %s: %v", ch, m.Data, err)
	}
	return a
}

func (c *rawClient) nextPub() histPub {
	c.t.Helper()
	m := c.next()
	if m.Event != "#publish" {
		c.t.Fatalf("want #publish, got %+v", m)
	}
	var p histPub
	if err := json.Unmarshal(m.Data, &p); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func publishN(t *testing.T, srv *Server, ch string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := srv.Publish(context.Background(), ch, json.RawMessage(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistoryRecoverStandalone(t *testing.T) {
	srv := startServer(t, historyConfig(t))
	a := dial(t, srv)
	a.handshake("")
	ack := a.subscribeFrom("room:1", 2, 0, "")
	if ack.Recovered || ack.Offset != 0 {
		t.Fatalf("first subscribe: %+v", ack)
	}
	epoch := ack.Epoch
	publishN(t, srv, "room:1", 1, 3)
	for i := 1; i <= 3; i++ {
		p := a.nextPub()
		if p.Offset != uint64(i) || p.Epoch != epoch || string(p.Data) != fmt.Sprint(i) {
			t.Fatalf("live %d: %+v", i, p)
		}
	}
	a.ws.CloseNow()
	publishN(t, srv, "room:1", 4, 8) // missed

	b := dial(t, srv)
	b.handshake("")
	ack = b.subscribeFrom("room:1", 2, 3, epoch)
	if !ack.Recovered || ack.Offset != 8 || ack.Epoch != epoch {
		t.Fatalf("recovering subscribe: %+v", ack)
	}
	publishN(t, srv, "room:1", 9, 9)
	for i := 4; i <= 9; i++ {
		if p := b.nextPub(); p.Offset != uint64(i) || string(p.Data) != fmt.Sprint(i) {
			t.Fatalf("want offset %d, got %+v", i, p)
		}
	}

	// Another epoch: not recovered, nothing replayed, then live.
	c := dial(t, srv)
	c.handshake("")
	ack = c.subscribeFrom("room:1", 2, 3, "otherepo")
	if ack.Recovered || ack.Reason != "epoch" || ack.Offset != 9 {
		t.Fatalf("wrong epoch: %+v", ack)
	}
	publishN(t, srv, "room:1", 10, 10)
	if p := c.nextPub(); p.Offset != 10 {
		t.Fatalf("after a failed recovery: %+v", p)
	}
}

// TestHistoryAwayTooLong: a client that missed more than the history
// holds is told, never given a silent gap.
func TestHistoryAwayTooLong(t *testing.T) {
	srv := startServer(t, historyConfig(t))
	a := dial(t, srv)
	a.handshake("")
	ack := a.subscribeFrom("small:1", 2, 0, "")
	publishN(t, srv, "small:1", 1, 10)
	b := dial(t, srv)
	b.handshake("")
	got := b.subscribeFrom("small:1", 2, 2, ack.Epoch)
	if got.Recovered || got.Reason != "gone" || got.Offset != 10 {
		t.Fatalf("away too long: %+v", got)
	}
	// Within the window it recovers.
	c := dial(t, srv)
	c.handshake("")
	if got := c.subscribeFrom("small:1", 2, 6, ack.Epoch); !got.Recovered {
		t.Fatalf("within the window: %+v", got)
	}
	// A channel without recovery says so.
	d := dial(t, srv)
	d.handshake("")
	if got := d.subscribeFrom("norecover:1", 2, 0, ack.Epoch); got.Recovered || got.Reason != "disabled" {
		t.Fatalf("no recovery: %+v", got)
	}
	if n := counter(t, srv.reg, "scc_frontend_recoveries_total", "result", "gone"); n != 1 {
		t.Fatalf("gone recoveries counted %v", n)
	}
}

// TestHistoryPlainChannelUnchanged: channels without history answer and
// deliver exactly as before.
func TestHistoryPlainChannelUnchanged(t *testing.T) {
	srv := startServer(t, historyConfig(t))
	a := dial(t, srv)
	a.handshake("")
	a.subscribe("plain", 2)
	publishN(t, srv, "plain", 1, 1)
	a.expect(`{"event":"#publish","data":{"channel":"plain","data":1}}`)
}

// TestHistoryRecoverUnderLoad: subscribers recover while publications go
// on; each gets every offset exactly once, in order.
func TestHistoryRecoverUnderLoad(t *testing.T) {
	const total = 1000
	const subs = 10
	cfg := historyConfig(t)
	cfg.RecoveryMaxPublications = total
	srv := startServer(t, cfg)
	first := dial(t, srv)
	first.handshake("")
	epoch := first.subscribeFrom("room:load", 2, 0, "").Epoch
	clients := make([]*rawClient, subs)
	for i := range clients {
		c := dial(t, srv)
		c.handshake("")
		clients[i] = c
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= total; i++ {
			if err := srv.Publish(context.Background(), "room:load", json.RawMessage(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	results := make([]error, subs)
	for i, c := range clients {
		wg.Go(func() {
			c.sendf(`{"event":"#subscribe","data":{"channel":"room:load","data":{"recover":{"offset":0,"epoch":%q}}},"cid":2}`, epoch)
			var want uint64 = 1
			for want <= total {
				p := c.packet2()
				if p == "" {
					continue
				}
				var m histMsg
				json.Unmarshal([]byte(p), &m)
				if m.RID == 2 {
					var a histAck
					json.Unmarshal(m.Data, &a)
					if !a.Recovered {
						results[i] = fmt.Errorf("not recovered: %s", m.Data)
						return
					}
					continue
				}
				var pub histPub
				json.Unmarshal(m.Data, &pub)
				if pub.Offset != want {
					results[i] = fmt.Errorf("got offset %d, want %d", pub.Offset, want)
					return
				}
				want++
			}
		})
	}
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("subscriber %d: %v", i, err)
		}
	}
	if n := counter(t, srv.reg, "scc_frontend_recoveries_total", "result", "recovered"); n != subs {
		t.Errorf("recovered count %v", n)
	}
}

func TestAPIHistory(t *testing.T) {
	cfg := historyConfig(t)
	cfg.API.Key = testAPIKey
	cfg.ServeAdmin = true
	srv := startServer(t, cfg)
	addr := srv.Addr().String()
	for i := 1; i <= 7; i++ {
		apiOK(t, addr, "publish", fmt.Sprintf(`{"channel":"small:h","data":{"n":%d}}`, i))
	}
	res := apiOK(t, addr, "history", `{"channel":"small:h","limit":3}`)
	pubs, _ := res["publications"].([]any)
	if len(pubs) != 3 || res["offset"] != float64(7) || res["epoch"] == "" {
		t.Fatalf("history %v", res)
	}
	for i, p := range pubs {
		m := p.(map[string]any)
		if m["offset"] != float64(5+i) || fmt.Sprint(m["data"]) != fmt.Sprintf("map[n:%d]", 5+i) {
			t.Fatalf("publication %d: %v", i, m)
		}
	}
	// All it holds (size 5), oldest first.
	if pubs, _ := apiOK(t, addr, "history", `{"channel":"small:h","limit":100}`)["publications"].([]any); len(pubs) != 5 {
		t.Fatalf("all: %v", pubs)
	}
	if st, out := apiCall(t, addr, testAPIKey, "history", `{"channel":"plain"}`); st != 400 {
		t.Fatalf("channel without history: %d %v", st, out)
	}
	if st, out := apiCall(t, addr, testAPIKey, "history", `{"channel":"small:h","limit":100000}`); st != 400 {
		t.Fatalf("limit too high: %d %v", st, out)
	}
}

// TestHistoryReplayBoundedByQueue: a recovery that would overflow the
// socket's queue (and get it closed as a slow consumer, to come back and
// try again) is answered recovered false, and the socket stays.
func TestHistoryReplayBoundedByQueue(t *testing.T) {
	cfg := historyConfig(t)
	cfg.QueueMaxMessages = 64
	srv := startServer(t, cfg)
	a := dial(t, srv)
	a.handshake("")
	ep := a.subscribeFrom("room:q", 2, 0, "").Epoch
	publishN(t, srv, "room:q", 1, 50)
	b := dial(t, srv)
	b.handshake("")
	if got := b.subscribeFrom("room:q", 2, 0, ep); got.Recovered || got.Reason != "limit" || got.Offset != 50 {
		t.Fatalf("replay of 50 into a 64-message queue: %+v", got)
	}
	if got := b.subscribeFrom("room:q2", 3, 0, ""); got.Epoch == "" {
		t.Fatal("socket unusable after the refused recovery")
	}
	c := dial(t, srv)
	c.handshake("")
	if got := c.subscribeFrom("room:q", 2, 30, ep); !got.Recovered {
		t.Fatalf("a replay of 20 fits: %+v", got)
	}
}

// TestHistorySubscribeHook: a #subscribe the subscribe hook decides is
// answered, for a channel with history, as any other: its
// acknowledgement carries the channel's position, and a client that
// comes back with that position recovers what it missed.
func TestHistorySubscribeHook(t *testing.T) {
	cfg := rulesConfig(t, `
rules:
  - match: "hooked:*"
    subscribe: hook
    publish: anyone
    history: {size: 100, ttl: 1m}
    recovery: true
default: {subscribe: anyone, publish: anyone}
`)
	calls := make(chan string, 8)
	cfg.SubscribeHook = &fakeHooks{subscribe: func(_ context.Context, req *SubscribeRequest) error {
		calls <- req.Channel
		return nil
	}}
	srv := startServer(t, cfg)
	publishN(t, srv, "hooked:h", 1, 3)
	c := dial(t, srv)
	c.handshake("")
	ack := c.subscribeFrom("hooked:h", 2, 0, "")
	if ack.Offset != 3 || ack.Recovered {
		t.Fatalf("first ack %+v, want the position 3", ack)
	}
	<-calls
	publishN(t, srv, "hooked:h", 4, 4)
	if p := c.nextPub(); p.Offset != 4 || p.Epoch != ack.Epoch {
		t.Fatalf("live %+v", p)
	}
	publishN(t, srv, "hooked:h", 5, 7)
	d := dial(t, srv)
	d.handshake("")
	got := d.subscribeFrom("hooked:h", 2, 4, ack.Epoch)
	if !got.Recovered || got.Offset != 7 || got.Epoch != ack.Epoch {
		t.Fatalf("recovering ack %+v", got)
	}
	for want := uint64(5); want <= 7; want++ {
		if p := d.nextPub(); p.Offset != want {
			t.Fatalf("replay %+v, want offset %d", p, want)
		}
	}
	if got := d.Channels(srv); got == "[]" {
		t.Errorf("channels %s", got)
	}
}

// TestHistoryConnectHookChannels: a channel with history that the
// connect hook subscribes the socket to is named in the #handshake
// answer with the position the socket starts at, and deliveries follow
// from there.
func TestHistoryConnectHookChannels(t *testing.T) {
	cfg := historyConfig(t)
	cfg.ConnectHook = &fakeHooks{connect: func(_ context.Context, req *ConnectRequest) (*ConnectResult, error) {
		return &ConnectResult{Channels: []string{"room:g", "plain"}}, nil
	}}
	srv := startServer(t, cfg)
	publishN(t, srv, "room:g", 1, 3)
	c := dial(t, srv)
	data := c.handshake("")
	if fmt.Sprint(data["channels"]) != "[room:g plain]" {
		t.Fatalf("handshake answer %v", data)
	}
	pos, _ := data["positions"].(map[string]any)
	g, _ := pos["room:g"].(map[string]any)
	if g == nil || g["offset"] != float64(3) || g["epoch"] == "" || len(pos) != 1 {
		t.Fatalf("positions %v", data["positions"])
	}
	publishN(t, srv, "room:g", 4, 4)
	if p := c.nextPub(); p.Offset != 4 || p.Epoch != g["epoch"] {
		t.Fatalf("first delivery %+v after the position %v", p, g)
	}
}
