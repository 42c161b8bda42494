package cluster

import (
	"errors"
	"testing"
)

// TestAckInflight: an acknowledgement settles, as accepted, the
// publishes in flight up to the one it names; a re-sent publish with an
// older number sent after it leaves flight answered as unknown, never as
// accepted; later ones stay in flight, unsettled.
func TestAckInflight(t *testing.T) {
	type want struct {
		settled bool
		err     error
	}
	for _, tc := range []struct {
		name string
		seqs []uint64
		ack  uint64
		rest int
		want []want
	}{
		{"in order", []uint64{1, 2, 3}, 2, 1, []want{{true, nil}, {true, nil}, {false, nil}}},
		{"all", []uint64{4, 5}, 5, 0, []want{{true, nil}, {true, nil}}},
		{"none", []uint64{7, 8}, 6, 2, []want{{false, nil}, {false, nil}}},
		{"re-sent after", []uint64{200, 5, 201}, 200, 1, []want{{true, nil}, {true, errAckUnknown}, {false, nil}}},
		{"re-sent before", []uint64{5, 200, 201}, 200, 1, []want{{true, nil}, {true, nil}, {false, nil}}},
		{"named one absent", []uint64{3, 4}, 9, 0, []want{{true, errAckUnknown}, {true, errAckUnknown}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dones := make([]chan error, len(tc.seqs))
			var in []heldPub
			for i, s := range tc.seqs {
				dones[i] = make(chan error, 1)
				in = append(in, heldPub{seq: s, done: dones[i]})
			}
			rest := ackInflight(in, tc.ack)
			if len(rest) != tc.rest {
				t.Fatalf("%d left in flight, want %d", len(rest), tc.rest)
			}
			for i, w := range tc.want {
				select {
				case err := <-dones[i]:
					if !w.settled || !errors.Is(err, w.err) && err != w.err {
						t.Fatalf("publish %d (seq %d) settled with %v, want settled=%v with %v", i, tc.seqs[i], err, w.settled, w.err)
					}
				default:
					if w.settled {
						t.Fatalf("publish %d (seq %d) not settled", i, tc.seqs[i])
					}
				}
			}
		})
	}
}
