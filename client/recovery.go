package client

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/sccgo/sccgo/protocol"
)

// Recovery is the outcome of one #subscribe of a channel with history.
type Recovery struct {
	// Asked is true when the #subscribe asked for the messages missed
	// since the last one received (a resubscribe after a reconnect).
	Asked bool
	// Recovered is true when every message missed follows, in order and
	// once, before live ones. When Asked and not Recovered, messages were
	// missed and will not come: reload the state from the application.
	Recovered bool
	// Offset and Epoch are the channel's position the subscription
	// continues from.
	Offset uint64
	Epoch  string
	// Reason says why not Recovered: "epoch" (the history was lost),
	// "gone" (the missed messages were dropped), "limit" (too many
	// missed), "ahead", "disabled" (the channel's rule has no recovery).
	Reason string
}

// ReasonUnsupported is Recovery.Reason when the server answered a
// recovering #subscribe without a position: it keeps no history for the
// channel, so what was missed is unknown.
const ReasonUnsupported = "unsupported"

// subHistory is a Subscription's place in its channel's history.
type subHistory struct {
	mu     sync.Mutex
	offset uint64
	epoch  string
	asked  bool // the #subscribe in flight asked to recover
	last   Recovery
	n      int    // acknowledgements of a channel with history
	failed int    // of them, recoveries asked and not complete
	gaps   uint64 // live messages whose offset skipped
}

// subscribeData is the #subscribe data: the application's, with
// {"recover":{"offset","epoch"}} added when the Subscription has a
// position to recover from.
func (s *Subscription) subscribeData() []byte {
	h := &s.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = false
	if s.opts.NoRecover || h.epoch == "" {
		return s.data
	}
	d := bytes.TrimSpace(s.data)
	if len(d) > 0 && (d[0] != '{' || !json.Valid(d)) {
		return s.data // not an object: nowhere to ask
	}
	out := []byte(`{"recover":{"offset":`)
	out = strconv.AppendUint(out, h.offset, 10)
	out = append(out, `,"epoch":`...)
	out = protocol.AppendString(out, h.epoch)
	out = append(out, '}')
	if len(d) > 0 {
		inner := bytes.TrimSpace(d[1 : len(d)-1])
		if len(inner) > 0 {
			out = append(out, ',')
			out = append(out, inner...)
		}
	}
	h.asked = true
	return append(out, '}')
}

// noteAck reads a #subscribe acknowledgement: on a channel with history
// it carries the position and whether the recovery asked for is complete.
func (s *Subscription) noteAck(data json.RawMessage) {
	var a protocol.SubscribeRecovery
	if len(data) == 0 || !bytes.Contains(data, []byte(`"epoch"`)) || json.Unmarshal(data, &a) != nil || a.Epoch == "" {
		a = protocol.SubscribeRecovery{}
	}
	h := &s.hist
	h.mu.Lock()
	if a.Epoch == "" {
		// A server that keeps no history for the channel (any more).
		asked := h.asked
		h.offset, h.epoch, h.asked = 0, "", false
		if !asked {
			h.mu.Unlock()
			return
		}
		h.failed++
		h.last = Recovery{Asked: true, Reason: ReasonUnsupported}
		r := h.last
		h.mu.Unlock()
		if f := s.opts.OnRecovery; f != nil {
			f(r)
		}
		return
	}
	r := Recovery{Asked: h.asked, Recovered: h.asked && a.Recovered, Offset: a.Offset, Epoch: a.Epoch, Reason: a.Reason}
	if !h.asked || !a.Recovered || h.epoch != a.Epoch {
		// Nothing (more) to replay: continue from the channel's position.
		h.offset, h.epoch = a.Offset, a.Epoch
	}
	h.n++
	if r.Asked && !r.Recovered {
		h.failed++
	}
	h.last = r
	h.mu.Unlock()
	if f := s.opts.OnRecovery; f != nil {
		f(r)
	}
}

// notePos records a received message's position.
func (s *Subscription) notePos(pos protocol.StreamPosition) {
	h := &s.hist
	h.mu.Lock()
	if (pos.Epoch == h.epoch && pos.Offset > h.offset+1) || (h.epoch != "" && pos.Epoch != h.epoch) {
		// Skipped offsets, or a new epoch (the owning broker lost the
		// history) without a resubscribe: messages may have been missed.
		h.gaps++
	}
	if pos.Epoch != h.epoch || pos.Offset > h.offset {
		h.offset, h.epoch = pos.Offset, pos.Epoch
	}
	h.mu.Unlock()
}

// Recovery returns the outcome of the Subscription's last #subscribe of
// a channel with history (the zero Recovery before one, or on a channel
// without history).
func (s *Subscription) Recovery() Recovery {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return s.hist.last
}

// RecoveryFailures returns how many resubscribes asked to recover and
// were told messages were missed.
func (s *Subscription) RecoveryFailures() int {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return s.hist.failed
}

// Position returns the offset and epoch of the last message received
// on a channel with history (or of the channel when subscribed).
func (s *Subscription) Position() (offset uint64, epoch string) {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return s.hist.offset, s.hist.epoch
}

// Gaps returns how many live messages skipped offsets, or came under a
// new epoch, without a resubscribe in between: a broker that lost the
// channel's history while the subscription stayed connected. Messages may
// have been missed there; reload the state as for a failed recovery.
func (s *Subscription) Gaps() uint64 {
	s.hist.mu.Lock()
	defer s.hist.mu.Unlock()
	return s.hist.gaps
}
