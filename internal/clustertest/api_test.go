package clustertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	ringpkg "github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

const (
	apiKey     = "cluster-api-key"
	clientAuth = "client-auth-key-0123456789abcdef0123456789"
)

func apiCluster(t *testing.T) *clustertest.Cluster {
	// No broker leaves in these tests: a long scale-back delay keeps a
	// broker that gossip wrongly calls dead on a starved test machine in
	// the ring, as its publishes' order across frontends needs one ring.
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2, ScaleBackDelay: 30 * time.Second, Frontend: func(cfg *frontend.Config) {
		cfg.API.Key = apiKey
		cfg.AuthKey = []byte(clientAuth)
		cfg.API.QueryTimeout = 5 * time.Second
	}})
	// Every node on the same ring before the tests publish, so that each
	// channel has one owner throughout: the publish-order checks here do
	// not cover a reshard.
	v := c.WaitRing(10*time.Second, 2, 0)
	c.WaitBrokersAt(10*time.Second, v)
	return c
}

func post(t *testing.T, addr, method, body string) map[string]any {
	t.Helper()
	status, b := postStatus(t, addr, method, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d %s", method, body, status, b)
	}
	var out struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(b), &out); err != nil {
		t.Fatal(err)
	}
	return out.Result
}

// wsClient is a bare SocketCluster client: it shows exactly which packets
// arrive and the close code.
type wsClient struct {
	t       *testing.T
	ws      *websocket.Conn
	id      string
	packets chan string
	closed  chan int
}

func connect(t *testing.T, url, sub string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &wsClient{t: t, ws: ws, packets: make(chan string, 1024), closed: make(chan int, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { ws.CloseNow(); <-done })
	go func() {
		defer close(done)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.closed <- int(websocket.CloseStatus(err))
				return
			}
			if len(b) == 0 || string(b) == "#1" {
				ws.Write(context.Background(), websocket.MessageText, []byte{}) // v2 pong
				continue
			}
			if b[0] == '[' {
				var arr []json.RawMessage
				json.Unmarshal(b, &arr)
				for _, p := range arr {
					c.packets <- string(p)
				}
				continue
			}
			c.packets <- string(b)
		}
	}()
	tok := "null"
	if sub != "" {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub}).SignedString([]byte(clientAuth))
		if err != nil {
			t.Fatal(err)
		}
		tok = `"` + s + `"`
	}
	c.send(`{"event":"#handshake","data":{"authToken":%s},"cid":1}`, tok)
	var hs struct {
		Data struct {
			ID              string `json:"id"`
			IsAuthenticated bool   `json:"isAuthenticated"`
		} `json:"data"`
	}
	json.Unmarshal([]byte(c.next()), &hs)
	if hs.Data.ID == "" || hs.Data.IsAuthenticated != (sub != "") {
		t.Fatalf("handshake: %+v", hs)
	}
	c.id = hs.Data.ID
	return c
}

func (c *wsClient) send(format string, args ...any) {
	c.t.Helper()
	if err := c.ws.Write(context.Background(), websocket.MessageText, []byte(fmt.Sprintf(format, args...))); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) next() string {
	c.t.Helper()
	select {
	case p := <-c.packets:
		return p
	case <-time.After(10 * time.Second):
		c.t.Fatal("no packet within 10s")
	}
	return ""
}

func (c *wsClient) subscribe(ch string) {
	c.t.Helper()
	c.send(`{"event":"#subscribe","data":{"channel":%q},"cid":2}`, ch)
	if p := c.next(); p != `{"rid":2}` {
		c.t.Fatalf("subscribe %s: %s", ch, p)
	}
}

func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	select {
	case got := <-c.closed:
		if got != code {
			c.t.Fatalf("closed with %d, want %d", got, code)
		}
	case <-time.After(10 * time.Second):
		c.t.Fatalf("not closed (want %d)", code)
	}
}

// TestAPIClusterPublishIdempotent: an API publish on one frontend reaches
// subscribers on both exactly once, and a retry with the same idempotency
// key sent to the OTHER frontend is not delivered again.
func TestAPIClusterPublishIdempotent(t *testing.T) {
	c := apiCluster(t)
	f1, f2 := c.Frontends[0], c.Frontends[1]
	a := connect(t, f1.URL(), "")
	b := connect(t, f2.URL(), "")
	// Several channels, so both brokers own some of them.
	chans := []string{"ch-a", "ch-b", "ch-c", "ch-d"}
	for _, ch := range chans {
		a.subscribe(ch)
		b.subscribe(ch)
	}
	for i, ch := range chans {
		key := fmt.Sprintf("key-%d", i)
		post(t, f1.Addr(), "publish", fmt.Sprintf(`{"channel":%q,"data":%d,"idempotency_key":%q}`, ch, i, key))
		post(t, f2.Addr(), "publish", fmt.Sprintf(`{"channel":%q,"data":%d,"idempotency_key":%q}`, ch, i, key)) // the retry
		post(t, f2.Addr(), "broadcast", fmt.Sprintf(`{"channels":[%q],"data":"end-%d"}`, ch, i))
	}
	for _, cl := range []*wsClient{a, b} {
		// Per channel: the publish once, then the marker. Channels may
		// interleave, so collect by channel.
		got := map[string][]string{}
		for n := 0; n < 2*len(chans); n++ {
			var p struct {
				Event string `json:"event"`
				Data  struct {
					Channel string          `json:"channel"`
					Data    json.RawMessage `json:"data"`
				} `json:"data"`
			}
			raw := cl.next()
			if json.Unmarshal([]byte(raw), &p) != nil || p.Event != "#publish" {
				t.Fatalf("unexpected packet %s", raw)
			}
			got[p.Data.Channel] = append(got[p.Data.Channel], string(p.Data.Data))
		}
		for i, ch := range chans {
			want := fmt.Sprintf(`[%d "end-%d"]`, i, i)
			if fmt.Sprint(got[ch]) != want {
				t.Fatalf("%s got %v, want %s (exactly once, then the marker)", ch, got[ch], want)
			}
		}
	}
}

// TestAPIClusterUserOps: disconnect and unsubscribe of a user reach the
// user's sockets on both frontends, whichever frontend the call goes to,
// and leave other users alone; a socket is disconnected by id through
// another frontend; channels counts subscribers cluster-wide.
func TestAPIClusterUserOps(t *testing.T) {
	c := apiCluster(t)
	f1, f2 := c.Frontends[0], c.Frontends[1]
	u1 := connect(t, f1.URL(), "42")
	u2 := connect(t, f2.URL(), "42")
	other := connect(t, f2.URL(), "43")
	for _, cl := range []*wsClient{u1, u2, other} {
		cl.subscribe("room:1")
	}

	res := post(t, f1.Addr(), "channels", `{"pattern":"room:*"}`)
	if chs := fmt.Sprint(res["channels"]); chs != "map[room:1:map[num_clients:3]]" || res["partial"] != false {
		t.Fatalf("channels = %v", res)
	}
	info := post(t, f2.Addr(), "info", `{}`)
	if nodes, _ := info["nodes"].([]any); len(nodes) != 2 || info["partial"] != false {
		t.Fatalf("info = %v", info)
	}

	post(t, f1.Addr(), "unsubscribe", `{"user":"42","channel":"room:1"}`)
	for _, cl := range []*wsClient{u1, u2} {
		if p := cl.next(); !strings.Contains(p, `"#kickOut"`) || !strings.Contains(p, `"room:1"`) {
			t.Fatalf("want #kickOut, got %s", p)
		}
	}
	post(t, f1.Addr(), "publish", `{"channel":"room:1","data":"after"}`)
	if p := other.next(); !strings.Contains(p, `"after"`) {
		t.Fatalf("other user: %s", p)
	}

	post(t, f2.Addr(), "disconnect", `{"user":"42","code":4123,"reason":"banned"}`)
	u1.expectClose(4123)
	u2.expectClose(4123)

	// By socket id, through the frontend that does not hold it.
	post(t, f1.Addr(), "disconnect", fmt.Sprintf(`{"client":%q,"code":4124}`, other.id))
	other.expectClose(4124)
}

// BenchmarkAPIPublishCluster: server API publishes from one backend HTTP/1.1
// connection kept alive, one request at a time, through a frontend of a
// 2-broker, 2-frontend cluster to a channel with a subscriber on each
// frontend.
func BenchmarkAPIPublishCluster(b *testing.B) {
	c := clustertest.Start(b, clustertest.Options{Brokers: 2, Frontends: 2, Frontend: func(cfg *frontend.Config) {
		cfg.API.Key = apiKey
	}})
	c.WaitRing(10*time.Second, 2, 0)
	for _, f := range c.Frontends {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, _, err := websocket.Dial(ctx, f.URL(), nil)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(-1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		b.Cleanup(func() { ws.CloseNow(); <-done })
		ws.Write(context.Background(), websocket.MessageText, []byte(`{"event":"#handshake","data":{},"cid":1}`))
		ws.Write(context.Background(), websocket.MessageText, []byte(`{"event":"#subscribe","data":{"channel":"bench"},"cid":2}`))
	}
	clustertest.WaitFor(b, 10*time.Second, "subscriptions at the broker", func() bool {
		for _, f := range c.Frontends {
			if f.Server().Stats().Subscriptions != 1 {
				return false
			}
		}
		return true
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	url := "http://" + c.Frontends[0].Addr() + "/api/publish"
	body := []byte(`{"channel":"bench","data":{"text":"hello world"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "apikey "+apiKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("HTTP %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

// TestAPIPublishWaitsForItsOwner: a server API publish is answered 200
// only once the channel's owning broker acknowledged it. With the owner
// crashed and the ring still naming it (the moments before the state
// server commits a ring without it), a publish to one of its channels
// is answered 503 within SCC_ACK_TIMEOUT, not 200 for a message that may
// never be delivered; a publish to the other broker's channel, alone or
// in the same broadcast, still gets its 200.
func TestAPIPublishWaitsForItsOwner(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 1, ScaleBackDelay: time.Minute, Frontend: func(cfg *frontend.Config) {
		cfg.API.Key = apiKey
		cfg.AuthKey = []byte(clientAuth)
		cfg.AckTimeout = time.Second
	}})
	v := c.WaitRing(10*time.Second, 2, 0)
	c.WaitBrokersAt(10*time.Second, v)
	victim, other := c.Brokers[0], c.Brokers[1]
	rg := ringpkg.New(v, []protocol.BrokerInfo{{ID: victim.ID()}, {ID: other.ID()}})
	var lost, kept string
	for i := 0; lost == "" || kept == ""; i++ {
		switch ch := fmt.Sprintf("news:%d", i); rg.OwnerID(ch) {
		case victim.ID():
			lost = ch
		default:
			kept = ch
		}
	}
	addr := c.Frontends[0].Addr()
	post(t, addr, "publish", `{"channel":"`+lost+`","data":1}`) // its owner is up: 200
	victim.Crash()

	status, body := postStatus(t, addr, "publish", `{"channel":"`+lost+`","data":2}`)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "acknowledge") {
		t.Fatalf("publish to a crashed owner's channel: HTTP %d %s, want 503 saying it was not acknowledged", status, body)
	}
	post(t, addr, "publish", `{"channel":"`+kept+`","data":3}`)
	res := post(t, addr, "broadcast", `{"channels":["`+lost+`","`+kept+`"],"data":4}`)
	rs, _ := res["responses"].([]any)
	if len(rs) != 2 {
		t.Fatalf("broadcast result %v", res)
	}
	if e, _ := rs[0].(map[string]any); e["error"] == nil {
		t.Fatalf("broadcast: the crashed owner's channel answered %v, want an error", rs[0])
	}
	if e, _ := rs[1].(map[string]any); len(e) != 0 {
		t.Fatalf("broadcast: the live owner's channel answered %v, want {}", rs[1])
	}
}

// postStatus calls the server API and returns the status and body,
// whatever they are.
func postStatus(t *testing.T, addr, method, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/"+method, strings.NewReader(body))
	req.Header.Set("Authorization", "apikey "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
