package broker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// heldStandby is a broker that takes replication links (from every
// broker of the ring) and keeps every Replicate unacknowledged until ack
// is called.
type heldStandby struct {
	addr string
	mu   sync.Mutex
	top  map[*nodelink.Link]uint64 // the highest sequence number read, per link
	got  int
}

func startHeldStandby(t *testing.T, id string) *heldStandby {
	t.Helper()
	h := &heldStandby{top: map[*nodelink.Link]uint64{}}
	cfg := nodelink.DefaultConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = id, protocol.RoleBroker, testKey
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, func(w http.ResponseWriter, r *http.Request) {
		l, err := nodelink.Accept(w, r, cfg, nil, nil)
		if err != nil {
			return
		}
		_ = l.Run(h)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.mu.Lock()
		for l := range h.top {
			_ = l.Close("test")
		}
		h.mu.Unlock()
		srv.Close()
	})
	h.addr = srv.Listener.Addr().String()
	return h
}

func (h *heldStandby) HandleMessages(l *nodelink.Link, msgs []protocol.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rep protocol.Replicate
	for _, m := range msgs {
		switch m.Type {
		case protocol.MsgReplicate:
			if protocol.ParseReplicate(m.Body, &rep) == nil {
				h.top[l] = max(h.top[l], rep.Seq)
				if rep.Offset > 0 {
					h.got++
				}
			}
		case protocol.MsgReplSnapshot:
			var sn protocol.ReplSnapshot
			if m.Decode(&sn) == nil {
				h.top[l] = max(h.top[l], sn.Seq)
			}
		}
	}
}

func (*heldStandby) Closed(*nodelink.Link, error) {}

func (h *heldStandby) publications() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got
}

// ack acknowledges everything received, on every link.
func (h *heldStandby) ack() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l, top := range h.top {
		if top > 0 {
			l.SendRaw(protocol.AppendReplAckMsg(nil, top))
		}
	}
}

// A publish forwarded to a channel's owner is acknowledged to its
// frontend only once the owner's standby holds it, as a publish sent to
// the owner directly is: an owner that crashed before replicating it
// must leave it unacknowledged (the forwarding broker then appends it
// itself), not acknowledged and gone. broker-1 forwards a publish of a
// channel broker-2 owns; broker-2's standby, broker-3, holds its
// acknowledgement: the frontend's PubAck waits for it. The owner used to
// acknowledge a forward as soon as it read it.
func TestForwardAcknowledgedOnceTheOwnersStandbyHoldsIt(t *testing.T) {
	mod := historyBroker(historyRules(t), true)
	b1 := startBroker(t, mod("broker-1"))
	b2 := startBroker(t, mod("broker-2"))
	b3 := startHeldStandby(t, "broker-3")
	<-b1.Ready()
	<-b2.Ready()
	rp := protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{
		{ID: "broker-1", Addr: b1.addr()}, {ID: "broker-2", Addr: b2.addr()}, {ID: "broker-3", Addr: b3.addr}}}
	agentHandler{b1.Server}.Commit(rp)
	agentHandler{b2.Server}.Commit(rp)
	waitFor(t, "replication links", func() bool { return b1.repl.linksUp() == 2 && b2.repl.linksUp() == 2 })
	rg := ring.FromProtocol(rp)
	var ch, ch2 string // ch: broker-2's, standby broker-3; ch2: broker-1's, standby broker-2
	for i := 0; ch == "" || ch2 == ""; i++ {
		c := fmt.Sprintf("room-%d", i)
		owner, standby := rg.OwnerID(c), rg.Broker(rg.StandbyIndex(c, rg.OwnerID(c))).ID
		switch {
		case owner == "broker-2" && standby == "broker-3" && ch == "":
			ch = c
		case owner == "broker-1" && standby == "broker-2" && ch2 == "":
			ch2 = c
		}
	}

	pub := dialFE(t, b1.addr(), "frontend-1")
	pub.publishSeq(ch, `"m1"`, resendSeq+1)
	waitFor(t, "the publication at broker-2's standby", func() bool { return b3.publications() == 1 })
	// A later frame on the same link, which broker-2 could acknowledge at
	// once, waits for the forward before it: acknowledgements are
	// cumulative.
	pub.publishSeq(ch2, `"m2"`, resendSeq+2)
	waitFor(t, "m2 at broker-2, its standby", func() bool { p, _ := b2.hist.Position(ch2); return p.Offset == 1 })
	// Nothing to wait for but time: the acknowledgement must not come
	// while the standby holds its own. (It came in microseconds.)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if pub.lastPubAck() != 0 {
			t.Fatal("the frontend got its PubAck before the owner's standby held the publication")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b3.ack()
	waitFor(t, "the PubAcks once the standby holds m1", func() bool { return pub.lastPubAck() == resendSeq+2 })
	if n := b1.metric("scc_broker_forwarded_total", "result", "forwarded"); n != 1 {
		t.Fatalf("forwarded = %v, want 1", n)
	}
}
