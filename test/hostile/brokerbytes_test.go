package hostile

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

// rogueBroker is a broker that holds the key but forwards bytes no
// publisher sent: it acknowledges subscriptions like a real one and hands
// each frontend link to the test.
type rogueBroker struct {
	links chan *nodelink.Link
}

func (rogueBroker) Closed(*nodelink.Link, error) {}

func (rogueBroker) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgSubscribe:
			var s protocol.Subscribe
			if m.Decode(&s) == nil {
				_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
			}
		case protocol.MsgSync:
			var s protocol.Sync
			if m.Decode(&s) == nil {
				_ = l.Send(protocol.MsgSubAck, &protocol.SubAck{ID: s.ID})
			}
		}
	}
}

func startRogueBroker(t *testing.T) (string, *rogueBroker) {
	t.Helper()
	rb := &rogueBroker{links: make(chan *nodelink.Link, 4)}
	cfg := peerLinkConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = "rogue-broker", protocol.RoleBroker, clusterKey
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, func(w http.ResponseWriter, r *http.Request) {
		l, err := nodelink.Accept(w, r, cfg, nil, nil)
		if err != nil {
			return
		}
		rb.links <- l
		_ = l.Run(rb)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		_ = hs.Close()
		<-done
	})
	return ln.Addr().String(), rb
}

// TestRogueBrokerBytes: a broker forwards data that is not UTF-8 or not
// JSON. The frontend drops each such publication once, counts it, and its
// subscribers only ever receive well-formed frames.
func TestRogueBrokerBytes(t *testing.T) {
	addr, rb := startRogueBroker(t)
	reg := prometheus.NewRegistry()
	ccfg := cluster.DefaultConfig()
	ccfg.Link = peerLinkConfig()
	ccfg.Link.NodeID, ccfg.Link.Role, ccfg.Link.AuthKey = "frontend-under-attack", protocol.RoleFrontend, clusterKey
	ccfg.Registry = reg
	b := cluster.New(ccfg)
	f := startFrontend(t, func(c *frontend.Config) { c.Broker = b })
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "rogue-broker", Addr: addr}}})
	var l *nodelink.Link
	select {
	case l = <-rb.links:
	case <-time.After(waitTimeout):
		t.Fatal("the frontend did not link to the broker")
	}

	const subscribers = 20
	subs := make([]*scClient, subscribers)
	for i := range subs {
		subs[i] = dialSC(t, f.url)
		subs[i].handshake("")
		subs[i].subscribe("room", 2)
	}

	bad := []string{
		"\"\xff\xfe\"",              // a JSON string, not UTF-8
		"{\"t\":\"\xed\xa0\x80\"}",  // an encoded surrogate
		`{"t":`,                     // truncated
		`1 2`,                       // two values
		`"</script>` + "\x01" + `"`, // a raw control byte
		`}{`,
	}
	var frame []byte
	frame = protocol.AppendDeliverMsg(frame, "room", []byte(`{"n":1}`))
	for _, d := range bad {
		frame = protocol.AppendDeliverMsg(frame, "room", []byte(d))
	}
	frame = protocol.AppendDeliverMsg(frame, "room", []byte(`{"n":2}`))
	if !l.SendRaw(frame) {
		t.Fatal("send failed")
	}
	for i, c := range subs {
		var got []string
		for len(got) < 2 {
			p := c.next(waitTimeout)
			if !utf8.ValidString(p) || !json.Valid([]byte(p)) {
				t.Fatalf("subscriber %d got a malformed packet %q", i, p)
			}
			if strings.Contains(p, `"#publish"`) {
				got = append(got, p)
			}
		}
		want := []string{
			`{"event":"#publish","data":{"channel":"room","data":{"n":1}}}`,
			`{"event":"#publish","data":{"channel":"room","data":{"n":2}}}`,
		}
		if got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("subscriber %d got %q, want %q", i, got, want)
		}
		keepsWorking(t, c, 3)
	}
	if n := metric(t, reg, "scc_frontend_broker_delivery_drops_total", "reason", protocol.InvalidUTF8); n != 2 {
		t.Fatalf("invalid_utf8 drops %v, want 2 (once per publication, not per subscriber)", n)
	}
	if n := metric(t, reg, "scc_frontend_broker_delivery_drops_total", "reason", protocol.InvalidJSON); n != 4 {
		t.Fatalf("invalid_json drops %v, want 4 (once per publication, not per subscriber)", n)
	}
}
