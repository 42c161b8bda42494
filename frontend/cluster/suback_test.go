package cluster

import (
	"slices"
	"strconv"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sccgo/sccgo/protocol"
)

func subAck(t testing.TB, id uint64) []protocol.Message {
	b, err := msgpack.Marshal(&protocol.SubAck{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return []protocol.Message{{Type: protocol.MsgSubAck, Body: b}}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// batch takes c's next batch and fails unless it is want.
func batch(t *testing.T, c *subControl, max int, wantUnsub, wantSub []string) uint64 {
	t.Helper()
	unsub, sub, id, ok := c.next(max, 1)
	if !ok {
		t.Fatalf("no batch, want -%v +%v", wantUnsub, wantSub)
	}
	slices.Sort(unsub)
	slices.Sort(sub)
	if !slices.Equal(unsub, wantUnsub) || !slices.Equal(sub, wantSub) {
		t.Fatalf("batch -%v +%v, want -%v +%v", unsub, sub, wantUnsub, wantSub)
	}
	return id
}

func noBatch(t *testing.T, c *subControl) {
	t.Helper()
	if unsub, sub, _, ok := c.next(1000, 1); ok {
		t.Fatalf("batch -%v +%v sent, want none", unsub, sub)
	}
}

// TestSubControlOneBatchInFlight: changes made while a batch is in
// flight wait for its acknowledgement and then go out together; a
// subscriber is released only by the acknowledgement of the batch that
// carried its channel.
func TestSubControlOneBatchInFlight(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	wa := c.subscribe(interest, []string{"a"}, &st)
	id1 := batch(t, &c, 1000, nil, []string{"a"})
	wb := c.subscribe(interest, []string{"b"}, &st)
	wc := c.subscribe(interest, []string{"c"}, &st)
	again := c.subscribe(interest, []string{"a"}, &st) // sent, not acknowledged
	noBatch(t, &c)
	if isClosed(wa) || isClosed(again) {
		t.Fatal("released before the acknowledgement")
	}
	c.acked(id1)
	if !isClosed(wa) || !isClosed(again) || isClosed(wb) || isClosed(wc) {
		t.Fatalf("after ack 1: %v %v %v %v", isClosed(wa), isClosed(again), isClosed(wb), isClosed(wc))
	}
	id2 := batch(t, &c, 1000, nil, []string{"b", "c"})
	noBatch(t, &c)
	c.acked(id2)
	if !isClosed(wb) || !isClosed(wc) || len(c.waiters) != 0 || len(c.marks) != 0 {
		t.Fatalf("after ack 2: %v %v, %d waiters, %d marks", isClosed(wb), isClosed(wc), len(c.waiters), len(c.marks))
	}
	if w := c.subscribe(interest, []string{"a"}, &st); !isClosed(w) {
		t.Fatal("a channel already acknowledged waits")
	}
}

// TestSubControlCoalesces: a subscribe and an unsubscribe of one channel
// that both wait for the batch in flight send nothing; a storm of
// channels joined and left meanwhile costs the broker nothing.
func TestSubControlCoalesces(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	c.subscribe(interest, []string{"held"}, &st)
	c.acked(batch(t, &c, 1000, nil, []string{"held"}))
	c.subscribe(interest, []string{"first"}, &st)
	id := batch(t, &c, 1000, nil, []string{"first"})

	var storm []<-chan struct{}
	for i := range 500 {
		ch := "storm-" + strconv.Itoa(i)
		storm = append(storm, c.subscribe(interest, []string{ch}, &st))
		c.unsubscribe(interest, []string{ch}, &st)
	}
	c.unsubscribe(interest, []string{"held"}, &st)
	back := c.subscribe(interest, []string{"held"}, &st) // its unsubscribe never went
	c.unsubscribe(interest, []string{"first"}, &st)      // sent: must go
	if st.coalesced != 1002 {
		t.Fatalf("coalesced %d, want 1002", st.coalesced)
	}
	c.acked(id)
	if !isClosed(back) {
		t.Fatal("a channel the broker kept waits")
	}
	c.acked(batch(t, &c, 1000, []string{"first"}, nil))
	noBatch(t, &c)
	for i, w := range storm {
		if !isClosed(w) {
			t.Fatalf("storm subscriber %d never released", i)
		}
	}
	if len(interest) != 1 || c.pendingLen() != 0 {
		t.Fatalf("interest %v, %d pending", interest, c.pendingLen())
	}
}

// TestSubControlBatchSize: no batch names more than its maximum, and a
// subscriber waits for the batch that carries its channel.
func TestSubControlBatchSize(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	var names []string
	for i := range 10 {
		names = append(names, "ch-"+strconv.Itoa(i))
	}
	w := c.subscribe(interest, names, &st)
	var sent []string
	for n := 0; ; n++ {
		unsub, sub, id, ok := c.next(4, 1)
		if !ok {
			break
		}
		if len(unsub)+len(sub) > 4 {
			t.Fatalf("batch of %d", len(unsub)+len(sub))
		}
		sent = append(sent, sub...)
		if isClosed(w) {
			t.Fatalf("released after %d channels", len(sent))
		}
		c.acked(id)
	}
	if len(sent) != 10 || !isClosed(w) {
		t.Fatalf("sent %v, released %v", sent, isClosed(w))
	}
}

// TestSubControlSync: a reconnect's Sync carries everything; what was
// pending is not sent again, and its subscribers wait for the Sync's
// acknowledgement.
func TestSubControlSync(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	c.subscribe(interest, []string{"a"}, &st)
	batch(t, &c, 1000, nil, []string{"a"}) // lost with the connection
	w := c.subscribe(interest, []string{"b"}, &st)
	id := c.sync(nil)
	noBatch(t, &c)
	c.acked(id - 1) // a late acknowledgement of the old connection
	if isClosed(w) {
		t.Fatal("released before the Sync's acknowledgement")
	}
	c.acked(id)
	if !isClosed(w) {
		t.Fatal("not released by the Sync's acknowledgement")
	}
	noBatch(t, &c)
}

// TestSubAckReleasesWhileDown: subscribes made while the link is down
// are carried by the Sync of the next connection and released by its
// acknowledgement.
func TestSubAckReleasesWhileDown(t *testing.T) {
	l := &brokerLink{b: &Broker{cfg: DefaultConfig(), m: newMetrics(nil)}, interest: map[string]struct{}{}}
	w1 := l.addInterest([]string{"a"})
	w2 := l.addInterest([]string{"b"})
	l.removeInterest([]string{"a"})
	id := l.ctl.sync(nil)
	l.HandleMessages(nil, subAck(t, id))
	if !isClosed(w1) || !isClosed(w2) || len(l.ctl.waiters) != 0 {
		t.Fatalf("after the Sync's ack: %v %v, %d waiting", isClosed(w1), isClosed(w2), len(l.ctl.waiters))
	}
}

// BenchmarkSubAckStorm: a storm of single-channel subscribes, each taken
// in a batch of its own and acknowledged, with 10000 waiting. A batch
// costs what it carries, not a walk over every pending subscribe.
func BenchmarkSubAckStorm(b *testing.B) {
	const waiting = 10000
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	names := make([]string, waiting+b.N)
	for i := range names {
		names[i] = "ch-" + strconv.Itoa(i)
	}
	for i := range waiting {
		c.subscribe(interest, names[i:i+1], &st)
	}
	b.ResetTimer()
	for i := range b.N {
		c.subscribe(interest, names[waiting+i:waiting+i+1], &st)
		if _, _, id, ok := c.next(1, 1); ok {
			c.acked(id)
		}
	}
}

// TestSubControlTake: a channel's pending subscribe can be sent at once,
// ahead of its batch, for a message the broker must read after it; its
// subscriber is released no earlier than before.
func TestSubControlTake(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	c.subscribe(interest, []string{"a"}, &st)
	id1 := batch(t, &c, 1000, nil, []string{"a"})
	w := c.subscribe(interest, []string{"p", "q"}, &st)
	id2, ok := c.take("p")
	if !ok || id2 != id1+1 {
		t.Fatalf("take: %d %v", id2, ok)
	}
	if _, ok := c.take("p"); ok {
		t.Fatal("taken twice")
	}
	if _, ok := c.take("a"); ok {
		t.Fatal("took a channel with nothing pending")
	}
	c.acked(id2)
	if isClosed(w) {
		t.Fatal("released before the batch carrying q")
	}
	c.acked(batch(t, &c, 1000, nil, []string{"q"}))
	if !isClosed(w) {
		t.Fatal("not released")
	}
}

// TestSubControlWindow: up to window batches go out before the first
// acknowledgement, and no more.
func TestSubControlWindow(t *testing.T) {
	var c subControl
	var st ctlStats
	interest := map[string]struct{}{}
	for i := range 10 {
		c.subscribe(interest, []string{"ch-" + strconv.Itoa(i)}, &st)
	}
	var ids []uint64
	for {
		_, sub, id, ok := c.next(2, 3)
		if !ok {
			break
		}
		if len(sub) != 2 {
			t.Fatalf("batch %v", sub)
		}
		ids = append(ids, id)
	}
	if len(ids) != 3 {
		t.Fatalf("%d batches in flight, window 3", len(ids))
	}
	c.acked(ids[0])
	if _, _, _, ok := c.next(2, 3); !ok {
		t.Fatal("no batch after an acknowledgement opened the window")
	}
	if _, _, _, ok := c.next(2, 3); ok {
		t.Fatal("a batch beyond the window")
	}
}
