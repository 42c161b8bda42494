package cluster

import (
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

// TestSubAckReleasesInOrder: an acknowledgement releases the subscribes
// up to its id and no later one; a subscribe of a channel already asked
// for waits for the newest request.
func TestSubAckReleasesInOrder(t *testing.T) {
	l := &brokerLink{interest: map[string]struct{}{}}
	w1 := l.addInterest([]string{"a"})
	w2 := l.addInterest([]string{"b"})
	again := l.addInterest([]string{"a"}) // nothing new: waits for id 2
	w3 := l.addInterest([]string{"c"})
	l.HandleMessages(nil, subAck(t, 1))
	if !isClosed(w1) || isClosed(w2) || isClosed(again) || isClosed(w3) {
		t.Fatalf("after ack 1: %v %v %v %v", isClosed(w1), isClosed(w2), isClosed(again), isClosed(w3))
	}
	l.HandleMessages(nil, subAck(t, 2))
	if !isClosed(w2) || !isClosed(again) || isClosed(w3) {
		t.Fatalf("after ack 2: %v %v %v", isClosed(w2), isClosed(again), isClosed(w3))
	}
	l.HandleMessages(nil, subAck(t, 3))
	if !isClosed(w3) || len(l.subWaiters) != 0 {
		t.Fatalf("after ack 3: %v, %d waiting", isClosed(w3), len(l.subWaiters))
	}
	if w := l.addInterest([]string{"a"}); !isClosed(w) {
		t.Fatal("a channel already acknowledged waits")
	}
}

// BenchmarkSubAckStorm: a storm of single-channel subscribes, each
// acknowledged on its own, with 10000 in flight. An acknowledgement
// costs what it releases, not a walk over every pending subscribe.
func BenchmarkSubAckStorm(b *testing.B) {
	const inFlight = 10000
	l := &brokerLink{interest: map[string]struct{}{}}
	names := make([]string, inFlight+b.N)
	for i := range names {
		names[i] = "ch-" + strconv.Itoa(i)
	}
	for i := range inFlight {
		l.addInterest(names[i : i+1])
	}
	acks := make([][]protocol.Message, b.N)
	for i := range acks {
		acks[i] = subAck(b, uint64(i+1))
	}
	b.ResetTimer()
	for i := range b.N {
		l.addInterest(names[inFlight+i : inFlight+i+1])
		l.HandleMessages(nil, acks[i])
	}
}
