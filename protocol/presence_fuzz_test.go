package protocol

import (
	"reflect"
	"testing"
)

// presenceBodies maps each presence message type to a fresh value of its
// struct.
var presenceBodies = map[MsgType]func() any{
	MsgPresenceJoin:   func() any { return &PresenceJoin{} },
	MsgPresenceLeave:  func() any { return &PresenceLeave{} },
	MsgPresenceQuery:  func() any { return &PresenceQuery{} },
	MsgPresenceResult: func() any { return &PresenceResult{} },
}

// fuzzPresence is the shared body of the presence fuzz targets: a frame
// of hostile bytes never panics the splitter or the decoder, and a
// decoded message encodes and decodes back to the same value.
func fuzzPresence(t *testing.T, frame []byte, want MsgType) {
	msgs, _ := SplitMessages(frame)
	for _, m := range msgs {
		mk, ok := presenceBodies[m.Type]
		if !ok || (want != 0 && m.Type != want) {
			continue
		}
		v := mk()
		if err := m.Decode(v); err != nil {
			continue
		}
		b, err := AppendMessage(nil, m.Type, v)
		if err != nil {
			t.Fatalf("re-encoding %v %+v: %v", m.Type, v, err)
		}
		again, err := SplitMessages(b)
		if err != nil || len(again) != 1 {
			t.Fatalf("re-split %v: %v %v", m.Type, again, err)
		}
		w := mk()
		if err := again[0].Decode(w); err != nil {
			t.Fatalf("re-decoding %v: %v", m.Type, err)
		}
		if !reflect.DeepEqual(normalize(v), normalize(w)) {
			t.Fatalf("%v round trip = %+v, want %+v", m.Type, w, v)
		}
	}
}

// normalize maps empty slices to nil, which msgpack does not tell apart
// from absent ones after a round trip.
func normalize(v any) any {
	switch x := v.(type) {
	case *PresenceJoin:
		c := *x
		if len(c.Members) == 0 {
			c.Members = nil
		}
		c.Members = normMembers(c.Members)
		return c
	case *PresenceLeave:
		c := *x
		if len(c.Clients) == 0 {
			c.Clients = nil
		}
		return c
	case *PresenceResult:
		c := *x
		if len(c.Members) == 0 {
			c.Members = nil
		}
		c.Members = normMembers(c.Members)
		return c
	}
	return v
}

func normMembers(ms []PresenceMember) []PresenceMember {
	if ms == nil {
		return nil
	}
	out := make([]PresenceMember, len(ms))
	for i, m := range ms {
		if len(m.Info) == 0 {
			m.Info = nil
		}
		out[i] = m
	}
	return out
}

func addPresenceSeeds(f *testing.F, t MsgType) {
	for _, m := range sampleMessages() {
		if m.t == t {
			b, _ := AppendMessage(nil, m.t, m.body)
			f.Add(b)
		}
	}
	// Hostile shapes: a huge declared member count, a nested member, a
	// wrong field type.
	f.Add([]byte{byte(t), 0x93, 0xa1, 'c', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(t), 0x92, 0xa1, 'c', 0x91, 0x93, 0x91, 0x91, 0x01, 0xc0, 0xc0})
	f.Add([]byte{byte(t), 0x95, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3})
}

func FuzzPresenceJoin(f *testing.F) {
	addPresenceSeeds(f, MsgPresenceJoin)
	f.Fuzz(func(t *testing.T, frame []byte) { fuzzPresence(t, frame, MsgPresenceJoin) })
}

func FuzzPresenceLeave(f *testing.F) {
	addPresenceSeeds(f, MsgPresenceLeave)
	f.Fuzz(func(t *testing.T, frame []byte) { fuzzPresence(t, frame, MsgPresenceLeave) })
}

func FuzzPresenceQuery(f *testing.F) {
	addPresenceSeeds(f, MsgPresenceQuery)
	f.Fuzz(func(t *testing.T, frame []byte) { fuzzPresence(t, frame, MsgPresenceQuery) })
}

func FuzzPresenceResult(f *testing.F) {
	addPresenceSeeds(f, MsgPresenceResult)
	f.Fuzz(func(t *testing.T, frame []byte) { fuzzPresence(t, frame, MsgPresenceResult) })
}
