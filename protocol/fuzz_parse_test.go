package protocol

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The hot-path parsers (ParsePublish, ParseDeliver, ParsePubAck) read
// message bodies without reflection. On any input they must not panic, and
// whenever both they and msgpack's reflective decoder accept a body they
// must agree; what they return must re-encode to a body that parses the same.

// parseSeeds are bodies that sit on the edges of the fast parsers: wider
// integer and length encodings than the writers use, nil and empty data,
// wrong container sizes, and lengths that run past the end.
var parseSeeds = [][]byte{
	{},
	{0x90},
	{0x91, 0x00},
	{0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	{0x91, 0xd0, 0xff},                 // a negative int where a uint belongs
	{0x91, 0xcc},                       // truncated uint8
	{0x92, 0xa1, 'c', 0xc0},            // nil data
	{0x92, 0xa1, 'c', 0xc4, 0},         // empty bin
	{0x92, 0xa1, 'c', 0xa1, 'x'},       // data as a str
	{0x92, 0xc4, 1, 'c', 0xc4, 1, 'x'}, // channel as a bin
	{0x92, 0xd9, 1, 'c', 0xc5, 0, 1, 'x'},
	{0x92, 0xdb, 0xff, 0xff, 0xff, 0xff},
	{0x92, 0xa1, 'c', 0xc6, 0xff, 0xff, 0xff, 0xff, 'x'},
	{0x93, 0x01, 0xa1, 'c', 0xc4, 1, 'x'},
	{0x93, 0xcd, 0, 1, 0xda, 0, 1, 'c', 0xc4, 1, 'x', 0xc3}, // trailing bytes
	{0x94, 0x01, 0xa1, 'c', 0xc4, 1, 'x', 0x01},             // a newer, longer struct
	{0xdc, 0, 3, 0x01, 0xa1, 'c', 0xc4, 1, 'x'},             // array16 header
	{0x93, 0x01, 0xa2, 0xff, 0xfe, 0xc4, 1, 'x'},            // channel not UTF-8
}

// addBodySeeds seeds f with parseSeeds, every message body of the sample
// messages, and the data of every publish captured from the real client,
// wrapped in the message that carries it between nodes.
func addBodySeeds(f *testing.F, wrap func(channel string, data []byte) []byte) {
	for _, b := range parseSeeds {
		f.Add(b)
	}
	for _, m := range sampleMessages() {
		b, err := msgpack.Marshal(m.body)
		if err == nil {
			f.Add(b)
		}
	}
	for _, fr := range loadFrames(f) {
		pk, _ := DecodePackets(fr.msg)
		for _, p := range pk {
			if p.Event != EventPublish {
				continue
			}
			if pd, err := DecodePublish(p.Data); err == nil {
				f.Add(wrap(pd.Channel, pd.Data))
			}
		}
	}
}

// bodyOf strips the type byte of a single encoded message.
func bodyOf(msg []byte) []byte { return msg[1:] }

func FuzzParsePublish(f *testing.F) {
	addBodySeeds(f, func(ch string, data []byte) []byte {
		return bodyOf(AppendPublishMsg(nil, 7, ch, data))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, ch, data, err := ParsePublish(body)
		var p Publish
		merr := msgpack.Unmarshal(body, &p)
		if err != nil {
			return
		}
		if merr == nil && (p.Seq != seq || p.Channel != ch || !bytes.Equal(p.Data, data)) {
			t.Fatalf("% x: ParsePublish = %d %q %q, msgpack = %d %q %q", body, seq, ch, data, p.Seq, p.Channel, p.Data)
		}
		// What the broker would forward re-encodes and parses the same.
		again := AppendPublishMsg(nil, seq, ch, data)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgPublish {
			t.Fatalf("AppendPublishMsg(%d, %q, %q) = % x does not split: %v", seq, ch, data, again, err)
		}
		s2, c2, d2, err := ParsePublish(msgs[0].Body)
		if err != nil || s2 != seq || c2 != ch || !bytes.Equal(d2, data) {
			t.Fatalf("publish round trip of % x: %d %q %q, %v", body, s2, c2, d2, err)
		}
		var q Publish
		if err := msgs[0].Decode(&q); err != nil || q.Seq != seq || q.Channel != ch || !bytes.Equal(q.Data, data) {
			t.Fatalf("msgpack reads AppendPublishMsg's % x as %+v, %v", again, q, err)
		}
	})
}

func FuzzParseDeliver(f *testing.F) {
	addBodySeeds(f, func(ch string, data []byte) []byte {
		return bodyOf(AppendDeliverMsg(nil, ch, data))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, data, err := ParseDeliver(body)
		var d Deliver
		merr := msgpack.Unmarshal(body, &d)
		if err != nil {
			return
		}
		if merr == nil && (d.Channel != ch || !bytes.Equal(d.Data, data)) {
			t.Fatalf("% x: ParseDeliver = %q %q, msgpack = %q %q", body, ch, data, d.Channel, d.Data)
		}
		again := AppendDeliverMsg(nil, ch, data)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgDeliver {
			t.Fatalf("AppendDeliverMsg(%q, %q) = % x does not split: %v", ch, data, again, err)
		}
		c2, d2, err := ParseDeliver(msgs[0].Body)
		if err != nil || c2 != ch || !bytes.Equal(d2, data) {
			t.Fatalf("deliver round trip of % x: %q %q, %v", body, c2, d2, err)
		}
		var q Deliver
		if err := msgs[0].Decode(&q); err != nil || q.Channel != ch || !bytes.Equal(q.Data, data) {
			t.Fatalf("msgpack reads AppendDeliverMsg's % x as %+v, %v", again, q, err)
		}
	})
}

func FuzzParsePubAck(f *testing.F) {
	addBodySeeds(f, func(_ string, data []byte) []byte {
		return bodyOf(AppendPubAckMsg(nil, uint64(len(data))<<20))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, err := ParsePubAck(body)
		var a PubAck
		merr := msgpack.Unmarshal(body, &a)
		if err != nil {
			return
		}
		if merr == nil && a.Seq != seq {
			t.Fatalf("% x: ParsePubAck = %d, msgpack = %d", body, seq, a.Seq)
		}
		again := AppendPubAckMsg(nil, seq)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgPubAck {
			t.Fatalf("AppendPubAckMsg(%d) = % x does not split: %v", seq, again, err)
		}
		s2, err := ParsePubAck(msgs[0].Body)
		var q PubAck
		if err != nil || s2 != seq || msgs[0].Decode(&q) != nil || q.Seq != seq {
			t.Fatalf("puback round trip of %d via % x: %d %+v, %v", seq, again, s2, q, err)
		}
	})
}

func FuzzParseDeliverPos(f *testing.F) {
	addBodySeeds(f, func(ch string, data []byte) []byte {
		return bodyOf(AppendDeliverPosMsg(nil, ch, data, 1<<33, "AbCdEfGh"))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, data, off, epoch, err := ParseDeliverPos(body)
		if err != nil {
			return
		}
		var d Deliver
		if merr := msgpack.Unmarshal(body, &d); merr == nil && (d.Channel != ch || !bytes.Equal(d.Data, data) || d.Offset != off || d.Epoch != epoch) {
			t.Fatalf("% x: ParseDeliverPos = %q %q %d %q, msgpack = %+v", body, ch, data, off, epoch, d)
		}
		if c, dd, err := ParseDeliver(body); err != nil || c != ch || !bytes.Equal(dd, data) {
			t.Fatalf("% x: ParseDeliver disagrees: %q %q %v", body, c, dd, err)
		}
		again := AppendDeliverPosMsg(nil, ch, data, off, epoch)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgDeliver {
			t.Fatalf("AppendDeliverPosMsg does not split: % x %v", again, err)
		}
		c2, d2, o2, e2, err := ParseDeliverPos(msgs[0].Body)
		if err != nil || c2 != ch || !bytes.Equal(d2, data) || o2 != off || (off != 0 && e2 != epoch) {
			t.Fatalf("round trip of % x: %q %q %d %q, %v", body, c2, d2, o2, e2, err)
		}
	})
}

// FuzzDecodeHistory decodes hostile History and HistoryReply bodies: never
// a panic, and what decodes re-encodes to the same value.
func FuzzDecodeHistory(f *testing.F) {
	addBodySeeds(f, func(ch string, data []byte) []byte {
		b, _ := msgpack.Marshal(&HistoryReply{ID: 1, Channel: ch, Offset: 2, Epoch: "e", Recovered: true, Pubs: []HistoryPub{{Offset: 2, Data: data}}})
		return b
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		var h History
		if err := (Message{Type: MsgHistory, Body: body}).Decode(&h); err == nil {
			b, err := msgpack.Marshal(&h)
			var h2 History
			if err != nil || (Message{Body: b}).Decode(&h2) != nil || h2 != h {
				t.Fatalf("history %+v does not round-trip: %v", h, err)
			}
		}
		var r HistoryReply
		if err := (Message{Type: MsgHistoryReply, Body: body}).Decode(&r); err == nil {
			b, err := msgpack.Marshal(&r)
			var r2 HistoryReply
			if err != nil || (Message{Body: b}).Decode(&r2) != nil || r2.ID != r.ID || r2.Epoch != r.Epoch || len(r2.Pubs) != len(r.Pubs) {
				t.Fatalf("history reply %+v does not round-trip: %v", r, err)
			}
		}
	})
}

func FuzzParseReplicate(f *testing.F) {
	addBodySeeds(f, func(ch string, data []byte) []byte {
		return bodyOf(AppendReplicateMsg(nil, &Replicate{Seq: 3, Channel: ch, Epoch: "e", Offset: 9, Time: -1, Data: data, Publisher: "fe", PubSeq: 1 << 40}))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Replicate
		err := ParseReplicate(body, &r)
		var m Replicate
		merr := msgpack.Unmarshal(body, &m)
		if err != nil {
			return
		}
		if merr == nil && (m.Seq != r.Seq || m.Channel != r.Channel || m.Epoch != r.Epoch || m.Offset != r.Offset ||
			m.Time != r.Time || !bytes.Equal(m.Data, r.Data) || m.Publisher != r.Publisher || m.PubSeq != r.PubSeq) {
			t.Fatalf("% x: ParseReplicate = %+v, msgpack = %+v", body, r, m)
		}
		again := AppendReplicateMsg(nil, &r)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgReplicate {
			t.Fatalf("AppendReplicateMsg(%+v) = % x does not split: %v", r, again, err)
		}
		var r2, q Replicate
		if err := ParseReplicate(msgs[0].Body, &r2); err != nil || r2.Seq != r.Seq || r2.Channel != r.Channel ||
			r2.Epoch != r.Epoch || r2.Offset != r.Offset || r2.Time != r.Time || !bytes.Equal(r2.Data, r.Data) ||
			r2.Publisher != r.Publisher || r2.PubSeq != r.PubSeq {
			t.Fatalf("replicate round trip of % x: %+v, %v", body, r2, err)
		}
		if err := msgs[0].Decode(&q); err != nil || q.Seq != r.Seq || q.Time != r.Time || !bytes.Equal(q.Data, r.Data) {
			t.Fatalf("msgpack reads AppendReplicateMsg's % x as %+v, %v", again, q, err)
		}
	})
}

func FuzzParseReplAck(f *testing.F) {
	addBodySeeds(f, func(_ string, data []byte) []byte {
		return bodyOf(AppendReplAckMsg(nil, uint64(len(data))<<30))
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, err := ParseReplAck(body)
		var a ReplAck
		merr := msgpack.Unmarshal(body, &a)
		if err != nil {
			return
		}
		if merr == nil && a.Seq != seq {
			t.Fatalf("% x: ParseReplAck = %d, msgpack = %d", body, seq, a.Seq)
		}
		again := AppendReplAckMsg(nil, seq)
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 || msgs[0].Type != MsgReplAck {
			t.Fatalf("AppendReplAckMsg(%d) = % x does not split: %v", seq, again, err)
		}
		s2, err := ParseReplAck(msgs[0].Body)
		var q ReplAck
		if err != nil || s2 != seq || msgs[0].Decode(&q) != nil || q.Seq != seq {
			t.Fatalf("replack round trip of %d via % x: %d %+v, %v", seq, again, s2, q, err)
		}
	})
}

// FuzzDecodeReplSnapshot: a snapshot from a hostile or broken peer decodes
// or fails, never panics, and what decodes re-encodes the same.
func FuzzDecodeReplSnapshot(f *testing.F) {
	for _, m := range sampleMessages() {
		if b, err := msgpack.Marshal(m.body); err == nil {
			f.Add(b)
		}
	}
	for _, b := range parseSeeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var s ReplSnapshot
		if err := (Message{Type: MsgReplSnapshot, Body: body}).Decode(&s); err != nil {
			return
		}
		again, err := AppendMessage(nil, MsgReplSnapshot, &s)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", s, err)
		}
		msgs, err := SplitMessages(again)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("% x does not split: %v", again, err)
		}
		var s2 ReplSnapshot
		if err := msgs[0].Decode(&s2); err != nil || s2.Seq != s.Seq || s2.Channel != s.Channel || len(s2.Pubs) != len(s.Pubs) {
			t.Fatalf("snapshot round trip: %+v vs %+v, %v", s2, s, err)
		}
	})
}
