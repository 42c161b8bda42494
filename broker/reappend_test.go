package broker

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// startTrio starts three brokers with history and replication and commits
// a ring of all three (version 2) on each.
func startTrio(t *testing.T) (b1, b2, b3 *testBroker, v2 protocol.Ring) {
	t.Helper()
	mod := historyBroker(historyRules(t), true)
	b1 = startBroker(t, mod("broker-1"))
	b2 = startBroker(t, mod("broker-2"))
	b3 = startBroker(t, mod("broker-3"))
	for _, b := range []*testBroker{b1, b2, b3} {
		<-b.Ready()
	}
	v2 = protocol.Ring{Version: 2, Brokers: []protocol.BrokerInfo{
		{ID: "broker-1", Addr: b1.addr()}, {ID: "broker-2", Addr: b2.addr()}, {ID: "broker-3", Addr: b3.addr()}}}
	for _, b := range []*testBroker{b1, b2, b3} {
		agentHandler{b.Server}.Commit(v2)
	}
	waitFor(t, "replication links", func() bool {
		return b1.repl.linksUp() == 2 && b2.repl.linksUp() == 2 && b3.repl.linksUp() == 2
	})
	return b1, b2, b3, v2
}

// movingChannel returns a channel broker-1 owns under v2 with broker-2 as
// its standby: broker-2 owns it once broker-1 leaves.
func movingChannel(v2 protocol.Ring) string {
	rg := ring.FromProtocol(v2)
	for i := 0; ; i++ {
		ch := fmt.Sprintf("room-%d", i)
		if rg.OwnerID(ch) == "broker-1" && rg.Broker(rg.StandbyIndex(ch, "broker-1")).ID == "broker-2" {
			return ch
		}
	}
}

// blockedIn reports whether some goroutine's stack holds fn.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Contains(buf[:n], []byte(fn))
}

// A publish is appended to a channel's stream once, even when its copy
// from another broker lands between the check that the channel does not
// hold it and the append. broker-2 forwarded P to broker-1 and its link
// to broker-1 failed before the acknowledgement: it appends P itself
// (appended_here). broker-1 had appended P, and its Replicate of P
// reaches broker-2 while broker-2 is between its check and its append
// (syncing the channel to its new standby, broker-3). The check is made
// again under the stream's lock, and the Replicate's publisher is
// recorded before it is stored, so broker-2 holds P once, at broker-1's
// offset; checked only before, it held P at two offsets, and subscribers
// got it twice.
func TestForwardAppendedOnceWhenItsCopyArrivesMeanwhile(t *testing.T) {
	b1, b2, _, v2 := startTrio(t)
	ch := movingChannel(v2)
	opts := b1.historyOptions(ch)
	pub := dialFE(t, b1.addr(), "frontend-a")
	for i := uint64(1); i <= 3; i++ {
		pub.publishSeq(ch, fmt.Sprintf(`"a%d"`, i), resendSeq+i)
	}
	waitFor(t, "the standby's copy", func() bool { p, _ := b2.hist.Position(ch); return p.Offset == 3 })

	// broker-2 commits the ring without broker-1: broker-3 becomes the
	// channel's standby, to be synced before broker-2's next append.
	agentHandler{b2.Server}.Commit(protocol.Ring{Version: 3, Brokers: v2.Brokers[1:]})
	b2.repl.mu.Lock()
	toB3 := b2.repl.peers["broker-3"]
	b2.repl.mu.Unlock()
	waitFor(t, "broker-2's link to broker-3", toB3.isUp)

	const publisher, seq = "frontend-b", resendSeq + 100
	toB3.mu.Lock() // holds broker-2 after its check, before its append
	done := make(chan struct{})
	go func() {
		defer close(done)
		b2.repl.publishForwarded(ch, opts, []byte(`"P"`), publisher, seq, func() {}) // the failed forward's fallback
	}()
	waitFor(t, "broker-2 past its check, syncing the new standby", func() bool { return blockedIn("(*peerOut).needsSync") })
	// broker-1 appends the forward it got (peerIn does this with a
	// Replicate of offset 0) and replicates it to broker-2.
	b1.repl.publishForwarded(ch, opts, []byte(`"P"`), publisher, seq, func() {})
	waitFor(t, "broker-1's copy of P at broker-2", func() bool { p, _ := b2.hist.Position(ch); return p.Offset == 4 })
	toB3.mu.Unlock()
	<-done

	snap, _ := b2.hist.Snapshot(ch)
	var got []string
	for _, p := range snap.Pubs {
		got = append(got, fmt.Sprintf("%d:%s", p.Offset, p.Data))
	}
	if want := `[1:"a1" 2:"a2" 3:"a3" 4:"P"]`; fmt.Sprint(got) != want {
		t.Fatalf("broker-2's stream %v, want %s", got, want)
	}
	if n := b2.metric("scc_broker_resend_duplicates_total"); n != 1 {
		t.Fatalf("resend duplicates at broker-2 = %v, want 1", n)
	}
}
