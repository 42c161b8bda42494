package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/history"
)

// seqSink records, in order, what positions emits and what the reveals
// attach.
type seqSink struct{ log []string }

func (s *seqSink) Deliver(ch string, data []byte) { s.log = append(s.log, "raw "+string(data)) }
func (s *seqSink) DeliverPos(ch string, data []byte, off uint64, epoch string) {
	s.log = append(s.log, fmt.Sprintf("emit %d", off))
}

func testPositions(t *testing.T) (*positions, *seqSink) {
	t.Helper()
	b := New(Config{})
	t.Cleanup(func() { b.Close() })
	s := &seqSink{}
	b.sink, b.posSink = s, s
	return b.pos, s
}

func pubs(from, to uint64) []history.Pub {
	var out []history.Pub
	for o := from; o <= to; o++ {
		out = append(out, history.Pub{Offset: o, Data: []byte(fmt.Sprint(o))})
	}
	return out
}

func newReq(s *seqSink, ch string, from history.Position) *recoverReq {
	return &recoverReq{ch: ch, from: from, limit: 100, done: make(chan struct{}), attach: func(r history.Result) {
		var offs []uint64
		for _, p := range r.Pubs {
			offs = append(offs, p.Offset)
		}
		s.log = append(s.log, fmt.Sprintf("attach %v at %d %v", r.Recovered, r.Position.Offset, offs))
	}}
}

// TestRevealBehindAnswer: the owner answers up to offset 8 while this
// frontend has delivered only up to 5 (it is filling a gap, 6 to 8 held):
// the subscriber is attached at 5 with what it missed up to there, and
// gets 6 to 8 once, from the channel's own delivery.
func TestRevealBehindAnswer(t *testing.T) {
	p, s := testPositions(t)
	const ch = "room:a"
	sh := p.shard(ch)
	sh.m[ch] = &chanPos{epoch: "E", offset: 5, recovering: true}
	rq := newReq(s, ch, history.Position{Offset: 3, Epoch: "E"})
	p.answered(rq, history.Result{Recovered: true, Position: history.Position{Offset: 8, Epoch: "E"}, Pubs: pubs(4, 8)})
	p.recovered(ch, history.Result{Recovered: true, Position: history.Position{Offset: 8, Epoch: "E"}, Pubs: pubs(6, 8)})
	want := []string{"attach true at 5 [4 5]", "emit 6", "emit 7", "emit 8"}
	if !slices.Equal(s.log, want) {
		t.Fatalf("got %q, want %q", s.log, want)
	}
}

// TestRevealAheadOfAnswer: another broker link delivered 9 and 10 past
// the owner's answer at 8; with no link to ask the rest from, the
// subscriber is told its recovery is incomplete, never attached at 8 as
// recovered (it would miss 9 and 10 silently).
func TestRevealAheadOfAnswer(t *testing.T) {
	p, s := testPositions(t)
	const ch = "room:b"
	p.shard(ch).m[ch] = &chanPos{epoch: "E", offset: 10}
	rq := newReq(s, ch, history.Position{Offset: 6, Epoch: "E"})
	p.answered(rq, history.Result{Recovered: true, Position: history.Position{Offset: 8, Epoch: "E"}, Pubs: pubs(7, 8)})
	want := []string{"attach false at 10 []"}
	if !slices.Equal(s.log, want) {
		t.Fatalf("got %q, want %q", s.log, want)
	}
}

// TestRevealWaitsForChannel: the subscriber saw up to 7 elsewhere and
// this frontend has delivered up to 5: it is attached once the channel
// gets to the owner's answer, with nothing twice.
func TestRevealWaitsForChannel(t *testing.T) {
	p, s := testPositions(t)
	const ch = "room:c"
	l := &brokerLink{}
	p.shard(ch).m[ch] = &chanPos{epoch: "E", offset: 5}
	rq := newReq(s, ch, history.Position{Offset: 7, Epoch: "E"})
	p.answered(rq, history.Result{Recovered: true, Position: history.Position{Offset: 8, Epoch: "E"}, Pubs: pubs(8, 8)})
	for o := uint64(6); o <= 9; o++ {
		p.deliver(l, ch, []byte(fmt.Sprint(o)), o, "E")
	}
	want := []string{"emit 6", "emit 7", "attach true at 7 []", "emit 8", "emit 9"}
	if !slices.Equal(s.log, want) {
		t.Fatalf("got %q, want %q", s.log, want)
	}
}

// TestRevealFirstSubscriber: nothing delivered yet: the channel starts
// at the answer, and a repeat of it from another link is dropped.
func TestRevealFirstSubscriber(t *testing.T) {
	p, s := testPositions(t)
	const ch = "room:d"
	rq := newReq(s, ch, history.Position{Offset: 2, Epoch: "E"})
	p.answered(rq, history.Result{Recovered: true, Position: history.Position{Offset: 4, Epoch: "E"}, Pubs: pubs(3, 4)})
	l := &brokerLink{}
	p.deliver(l, ch, []byte("4"), 4, "E")
	p.deliver(l, ch, []byte("5"), 5, "E")
	want := []string{"attach true at 4 [3 4]", "emit 5"}
	if !slices.Equal(s.log, want) {
		t.Fatalf("got %q, want %q", s.log, want)
	}
}

// lockingSink takes its own lock in DeliverPos, as the frontend's
// subscription table does; entered is closed when a delivery reached it.
type lockingSink struct {
	mu      sync.Mutex
	entered chan struct{}
	once    sync.Once
}

func (s *lockingSink) Deliver(string, []byte) {}
func (s *lockingSink) DeliverPos(string, []byte, uint64, string) {
	s.once.Do(func() { close(s.entered) })
	s.mu.Lock()
	s.mu.Unlock()
}

// TestUnsubscribeUnderSinkLock: the frontend calls Unsubscribe under the
// lock its deliveries take, while a delivery holds the channel's
// positions lock and waits for that lock: Unsubscribe must not wait for
// the positions lock.
func TestUnsubscribeUnderSinkLock(t *testing.T) {
	b := New(Config{})
	s := &lockingSink{entered: make(chan struct{})}
	if err := b.Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const ch = "room:u"
	b.mu.Lock()
	b.channels[ch] = struct{}{}
	b.mu.Unlock()

	s.mu.Lock()
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		b.pos.deliver(&brokerLink{}, ch, []byte("1"), 1, "E")
	}()
	<-s.entered
	unsubscribed := make(chan struct{})
	go func() {
		defer close(unsubscribed)
		b.Unsubscribe(ch)
	}()
	select {
	case <-unsubscribed:
	case <-time.After(10 * time.Second):
		s.mu.Unlock() // let both go before failing
		t.Fatal("Unsubscribe waited for the positions lock held by a delivery waiting for the caller's lock")
	}
	s.mu.Unlock()
	<-delivered
	// The position goes once the delivery let go of it.
	waitFor(t, "the unsubscribed channel's position to go", func() bool { return len(b.pos.known()) == 0 })
}
