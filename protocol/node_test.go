package protocol

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// sampleMessages has one populated value of every message type.
func sampleMessages() []struct {
	t    MsgType
	body any
} {
	ring := Ring{Version: 7, Brokers: []BrokerInfo{{ID: "b1", Addr: "127.0.0.1:9001"}, {ID: "b2", Addr: "127.0.0.1:9002"}}}
	return []struct {
		t    MsgType
		body any
	}{
		{MsgChallenge, &Challenge{Nonce: []byte("0123456789abcdef"), MinProto: 1, MaxProto: 3, NodeID: "state-0", Role: RoleState}},
		{MsgHello, &Hello{MinProto: 1, MaxProto: 1, NodeID: "fe-1", Role: RoleFrontend, Addr: "", GossipAddr: "127.0.0.1:7946",
			RingVersion: 1 << 40, Nonce: []byte{1, 2, 3}, MAC: bytes.Repeat([]byte{0xab}, 32), Draining: true, RulesDigest: "9f86d081"}},
		{MsgWelcome, &Welcome{Proto: 1, NodeID: "b1", MAC: []byte{9, 9}, Seeds: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		{MsgReject, &Reject{Reason: RejectAuth, Message: "bad mac"}},
		{MsgSubscribe, &Subscribe{ID: 3, Channels: []string{"a", "b", "ü"}}},
		{MsgUnsubscribe, &Unsubscribe{Channels: []string{"a"}}},
		{MsgSync, &Sync{ID: math.MaxUint64, Channels: []string{"x", "y"}}},
		{MsgSubAck, &SubAck{ID: 3}},
		{MsgPublish, &Publish{Seq: 42, Channel: "room1", Data: []byte(`{"text":"hi"}`)}},
		{MsgPubAck, &PubAck{Seq: 42}},
		{MsgDeliver, &Deliver{Channel: "room1", Data: []byte(`"x"`)}},
		{MsgRing, &ring},
		{MsgPrepare, &Prepare{Ring: ring}},
		{MsgPrepared, &Prepared{Version: 7}},
		{MsgCommit, &Commit{Ring: ring}},
		{MsgLeave, &Leave{NodeID: "b2"}},
		{MsgReleased, &Released{Version: 8}},
		{MsgStats, &Stats{Connections: 10, Subscriptions: -1, MessagesIn: 1 << 33, MessagesOut: 5, RingVersion: 7}},
		{MsgPing, &Ping{Seq: 1}},
		{MsgPong, &Pong{Seq: 1}},
		{MsgPresenceJoin, &PresenceJoin{Channel: "room1", Members: []PresenceMember{{Client: "c1", User: "42", Info: []byte(`{"name":"ann"}`)}, {Client: "c2"}}, Silent: true}},
		{MsgPresenceLeave, &PresenceLeave{Channel: "room1", Clients: []string{"c1", "c2"}}},
		{MsgPresenceQuery, &PresenceQuery{ID: 9, Channel: "room1", StatsOnly: true, Offset: 100, Limit: 50}},
		{MsgPresenceResult, &PresenceResult{ID: 9, Clients: 100000, Users: 3, Members: []PresenceMember{{Client: "c1", User: "42"}}, Error: "e"}},
		{MsgHistory, &History{ID: 9, Channel: "room1", Offset: 41, Epoch: "AbCdEfGh", Limit: 1000}},
		{MsgHistoryReply, &HistoryReply{ID: 9, Channel: "room1", Offset: 43, Epoch: "AbCdEfGh", Recovered: true,
			Pubs: []HistoryPub{{Offset: 42, Time: 1 << 60, Data: []byte(`"a"`)}, {Offset: 43, Data: []byte(`{"b":1}`)}}}},
		{MsgReplicate, &Replicate{Seq: 9, Channel: "room1", Epoch: "Ab3_x-9Q", Offset: 1 << 35, Time: 1764800000123456789,
			Data: []byte(`{"text":"hi"}`), Publisher: "frontend-1", PubSeq: 1 << 60}},
		{MsgReplAck, &ReplAck{Seq: 9}},
		{MsgReplSnapshot, &ReplSnapshot{Seq: 10, Channel: "room1", Epoch: "Ab3_x-9Q", Offset: 3, Time: 5,
			Pubs:       []ReplPub{{Offset: 2, Time: 4, Data: []byte(`1`)}, {Offset: 3, Time: 5, Data: []byte(`"x"`)}},
			Publishers: []ReplPublisher{{ID: "frontend-1", Seq: 77}}}},
		{MsgReplHandoff, &ReplHandoff{Version: 12}},
		{MsgRingFloor, &RingFloor{Version: 7}},
		{MsgReplLeaving, &ReplLeaving{}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	var frame []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		var err error
		frame, err = AppendMessage(frame, m.t, m.body)
		if err != nil {
			t.Fatalf("AppendMessage(%v): %v", m.t, err)
		}
	}
	got, err := SplitMessages(frame)
	if err != nil {
		t.Fatalf("SplitMessages: %v", err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("SplitMessages: %d messages, want %d", len(got), len(msgs))
	}
	for i, m := range msgs {
		if got[i].Type != m.t {
			t.Errorf("message %d type = %v, want %v", i, got[i].Type, m.t)
		}
		v := reflect.New(reflect.TypeOf(m.body).Elem())
		if err := got[i].Decode(v.Interface()); err != nil {
			t.Errorf("Decode %v: %v", m.t, err)
			continue
		}
		if !reflect.DeepEqual(v.Interface(), m.body) {
			t.Errorf("%v round trip = %+v, want %+v", m.t, v.Interface(), m.body)
		}
		// Each message also stands alone as a frame.
		one, _ := AppendMessage(nil, m.t, m.body)
		split, err := SplitMessages(one)
		if err != nil || len(split) != 1 || !bytes.Equal(split[0].Body, one[1:]) {
			t.Errorf("%v alone: %v %v", m.t, split, err)
		}
	}
	// Bodies alias the frame.
	if len(got) > 0 && &got[0].Body[0] != &frame[1] {
		t.Error("message bodies do not alias the frame")
	}
	// An empty frame has no messages.
	if m, err := SplitMessages(nil); err != nil || len(m) != 0 {
		t.Errorf("SplitMessages(nil) = %v, %v", m, err)
	}
}

func TestMsgTypeString(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range sampleMessages() {
		s := m.t.String()
		if strings.HasPrefix(s, "msg(") || seen[s] {
			t.Errorf("%d.String() = %q", m.t, s)
		}
		seen[s] = true
	}
	if got := MsgType(200).String(); got != "msg(200)" {
		t.Errorf("unknown type String() = %q", got)
	}
}

// TestAppendMessageError checks that an unencodable body leaves dst as it
// was.
func TestAppendMessageError(t *testing.T) {
	dst := []byte{1, 2, 3}
	out, err := AppendMessage(dst, MsgPing, make(chan int))
	if err == nil {
		t.Fatal("AppendMessage of a channel succeeded")
	}
	if !bytes.Equal(out, []byte{1, 2, 3}) {
		t.Errorf("dst after a failed append = %v", out)
	}
}

// boundarySizes cross every msgpack length-prefix boundary of str and bin.
var boundarySizes = []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000}

func TestHandWrittenEncoders(t *testing.T) {
	seqs := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	for _, cn := range boundarySizes {
		for _, dn := range boundarySizes {
			channel := strings.Repeat("c", cn)
			data := bytes.Repeat([]byte{'d'}, dn)
			seq := seqs[(cn+dn)%len(seqs)]

			frame := AppendPublishMsg([]byte{}, seq, channel, data)
			frame = AppendDeliverMsg(frame, channel, data)
			frame = AppendPubAckMsg(frame, seq)
			msgs, err := SplitMessages(frame)
			if err != nil || len(msgs) != 3 {
				t.Fatalf("channel %d data %d: SplitMessages = %d, %v", cn, dn, len(msgs), err)
			}
			if msgs[0].Type != MsgPublish || msgs[1].Type != MsgDeliver || msgs[2].Type != MsgPubAck {
				t.Fatalf("types = %v %v %v", msgs[0].Type, msgs[1].Type, msgs[2].Type)
			}

			var p Publish
			if err := msgs[0].Decode(&p); err != nil {
				t.Fatalf("decode publish (%d, %d): %v", cn, dn, err)
			}
			if p.Seq != seq || p.Channel != channel || !bytes.Equal(p.Data, data) {
				t.Errorf("publish (%d, %d) = %d %d %d", cn, dn, p.Seq, len(p.Channel), len(p.Data))
			}
			var d Deliver
			if err := msgs[1].Decode(&d); err != nil {
				t.Fatalf("decode deliver (%d, %d): %v", cn, dn, err)
			}
			if d.Channel != channel || !bytes.Equal(d.Data, data) {
				t.Errorf("deliver (%d, %d) = %d %d", cn, dn, len(d.Channel), len(d.Data))
			}
			var a PubAck
			if err := msgs[2].Decode(&a); err != nil || a.Seq != seq {
				t.Errorf("puback %d = %d, %v", seq, a.Seq, err)
			}

			// The reflection-free parsers read both encoders' output.
			refl, err := AppendMessage(nil, MsgPublish, &Publish{Seq: seq, Channel: channel, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range [][]byte{msgs[0].Body, refl[1:]} {
				s, c, dd, err := ParsePublish(body)
				if err != nil || s != seq || c != channel || !bytes.Equal(dd, data) {
					t.Errorf("ParsePublish (%d, %d) = %d %d %d %v", cn, dn, s, len(c), len(dd), err)
				}
			}
			refl, _ = AppendMessage(nil, MsgDeliver, &Deliver{Channel: channel, Data: data})
			for _, body := range [][]byte{msgs[1].Body, refl[1:]} {
				c, dd, err := ParseDeliver(body)
				if err != nil || c != channel || !bytes.Equal(dd, data) {
					t.Errorf("ParseDeliver (%d, %d) = %d %d %v", cn, dn, len(c), len(dd), err)
				}
			}
			refl, _ = AppendMessage(nil, MsgPubAck, &PubAck{Seq: seq})
			for _, body := range [][]byte{msgs[2].Body, refl[1:]} {
				if s, err := ParsePubAck(body); err != nil || s != seq {
					t.Errorf("ParsePubAck %d = %d, %v", seq, s, err)
				}
			}
		}
	}
}

// TestParseNilData checks that a reflection-encoded nil Data parses as
// empty.
func TestParseNilData(t *testing.T) {
	b, _ := AppendMessage(nil, MsgPublish, &Publish{Seq: 1, Channel: "c"})
	if _, c, d, err := ParsePublish(b[1:]); err != nil || c != "c" || len(d) != 0 {
		t.Errorf("ParsePublish nil data = %q %q %v", c, d, err)
	}
	b, _ = AppendMessage(nil, MsgDeliver, &Deliver{Channel: "c"})
	if c, d, err := ParseDeliver(b[1:]); err != nil || c != "c" || len(d) != 0 {
		t.Errorf("ParseDeliver nil data = %q %q %v", c, d, err)
	}
}

func TestParseMalformed(t *testing.T) {
	good := AppendPublishMsg(nil, 300, "room", []byte("data"))[1:]
	for i := 0; i < len(good); i++ {
		if _, _, _, err := ParsePublish(good[:i]); err == nil {
			t.Errorf("ParsePublish of %d/%d bytes succeeded", i, len(good))
		}
	}
	goodD := AppendDeliverMsg(nil, "room", []byte("data"))[1:]
	for i := 0; i < len(goodD); i++ {
		if _, _, err := ParseDeliver(goodD[:i]); err == nil {
			t.Errorf("ParseDeliver of %d/%d bytes succeeded", i, len(goodD))
		}
	}
	goodA := AppendPubAckMsg(nil, math.MaxUint64)[1:]
	for i := 0; i < len(goodA); i++ {
		if _, err := ParsePubAck(goodA[:i]); err == nil {
			t.Errorf("ParsePubAck of %d/%d bytes succeeded", i, len(goodA))
		}
	}
	for _, body := range [][]byte{
		{0x92, 0x01, 0xa1, 'c', 0xc4, 0x00},       // wrong arity
		{0x93, 0xd0, 0x01, 0xa1, 'c', 0xc4, 0x00}, // signed seq
		{0x93, 0x01, 0xc4, 0x01, 'c', 0xc4, 0x00}, // channel as bin
		{0x93, 0x01, 0xa1, 'c', 0x01},             // data as int
		{0x93, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'c'},
		{0x93, 0x01, 0xa1, 'c', 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},
	} {
		if _, _, _, err := ParsePublish(body); err == nil {
			t.Errorf("ParsePublish(% x) succeeded", body)
		}
	}
	for _, body := range [][]byte{{0x91, 0xa1, 'c'}, {0x92, 0x01, 0xc4, 0x00}, {0x92, 0xa1, 'c', 0xa1, 'd'}} {
		if _, _, err := ParseDeliver(body); err == nil {
			t.Errorf("ParseDeliver(% x) succeeded", body)
		}
	}
	for _, body := range [][]byte{{0x90}, {0x91, 0xa1, 'c'}, {0x91, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1}} {
		if _, err := ParsePubAck(body); err == nil {
			t.Errorf("ParsePubAck(% x) succeeded", body)
		}
	}
	if _, _, _, err := ParsePublish([]byte{0x93}); !errors.Is(err, ErrTruncated) {
		t.Errorf("ParsePublish(93) = %v, want ErrTruncated", err)
	}
	if _, _, _, err := ParsePublish([]byte{0x80}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePublish(80) = %v, want ErrMalformed", err)
	}
}

func TestSplitMessagesTruncated(t *testing.T) {
	for _, m := range sampleMessages() {
		frame, err := AppendMessage(nil, m.t, m.body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(frame); i++ {
			msgs, err := SplitMessages(frame[:i])
			if err == nil {
				t.Errorf("%v: SplitMessages of %d/%d bytes succeeded: %v", m.t, i, len(frame), msgs)
			}
			if len(msgs) != 0 {
				t.Errorf("%v: %d messages from a truncated single message", m.t, len(msgs))
			}
		}
	}
	// A frame cut inside its second message keeps the first.
	frame := AppendPubAckMsg(nil, 1)
	first := len(frame)
	frame = AppendPublishMsg(frame, 2, "c", []byte("data"))
	for i := first + 1; i < len(frame); i++ {
		msgs, err := SplitMessages(frame[:i])
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: err = %v, want ErrTruncated", i, err)
		}
		if len(msgs) != 1 || msgs[0].Type != MsgPubAck {
			t.Errorf("cut at %d: messages = %v", i, msgs)
		}
	}
}

func TestSplitMessagesHostile(t *testing.T) {
	deep := append([]byte{byte(MsgPing)}, bytes.Repeat([]byte{0x91}, 100)...)
	deep = append(deep, 0x01)
	wide := []byte{byte(MsgSubscribe), 0xdc, 0xff, 0xff} // array16 of 65535, no items
	cases := map[string][]byte{
		"type only":        {byte(MsgPing)},
		"never used 0xc1":  {byte(MsgPing), 0xc1},
		"array32 huge":     {byte(MsgSubscribe), 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 huge":       {byte(MsgSubscribe), 0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01},
		"array16 short":    wide,
		"map16 short":      {byte(MsgSubscribe), 0xde, 0x00, 0x02, 0x01, 0x01, 0x01},
		"str32 huge":       {byte(MsgLeave), 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'},
		"bin32 huge":       {byte(MsgPublish), 0xc6, 0x7f, 0xff, 0xff, 0xff},
		"ext32 huge":       {byte(MsgPublish), 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
		"ext8 short":       {byte(MsgPublish), 0xc7, 0x05, 0x01, 0x00},
		"str8 no length":   {byte(MsgLeave), 0xd9},
		"str16 no length":  {byte(MsgLeave), 0xda, 0x00},
		"float64 short":    {byte(MsgPing), 0xcb, 0, 0, 0},
		"fixext16 short":   {byte(MsgPing), 0xd8, 0x01},
		"nested too deep":  deep,
		"fixmap odd":       {byte(MsgPing), 0x81, 0x01},
		"fixarray missing": {byte(MsgPing), 0x93, 0x01, 0x02},
	}
	for name, frame := range cases {
		msgs, err := SplitMessages(frame)
		if err == nil {
			t.Errorf("%s: SplitMessages succeeded: %v", name, msgs)
		}
	}
	// Accepted nesting up to the limit.
	ok := append([]byte{byte(MsgPing)}, bytes.Repeat([]byte{0x91}, maxNesting)...)
	ok = append(ok, 0x01)
	if _, err := SplitMessages(ok); err != nil {
		t.Errorf("nesting of %d: %v", maxNesting, err)
	}
}

// TestSplitMessagesRandom feeds random and mutated frames: no panic, and the
// messages returned always tile a prefix of the frame.
func TestSplitMessagesRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var seeds [][]byte
	for _, m := range sampleMessages() {
		b, _ := AppendMessage(nil, m.t, m.body)
		seeds = append(seeds, b)
	}
	for i := 0; i < 3000; i++ {
		var frame []byte
		if i%2 == 0 {
			frame = make([]byte, r.IntN(64))
			for j := range frame {
				frame[j] = byte(r.UintN(256))
			}
		} else {
			frame = append([]byte(nil), seeds[r.IntN(len(seeds))]...)
			for k := r.IntN(4); k >= 0; k-- {
				frame[r.IntN(len(frame))] = byte(r.UintN(256))
			}
		}
		checkSplit(t, frame)
	}
}

// checkSplit asserts SplitMessages' invariants and decodes every message
// into every message struct (errors are fine, panics are not).
func checkSplit(t testing.TB, frame []byte) {
	t.Helper()
	msgs, err := SplitMessages(frame)
	off := 0
	for _, m := range msgs {
		if off >= len(frame) || MsgType(frame[off]) != m.Type {
			t.Fatalf("% x: message type at %d does not match", frame, off)
		}
		off++
		if len(m.Body) == 0 || off+len(m.Body) > len(frame) || !bytes.Equal(frame[off:off+len(m.Body)], m.Body) {
			t.Fatalf("% x: body at %d does not tile the frame", frame, off)
		}
		off += len(m.Body)
	}
	if err == nil && off != len(frame) {
		t.Fatalf("% x: success but %d of %d bytes consumed", frame, off, len(frame))
	}
	if err != nil && off == len(frame) {
		t.Fatalf("% x: error %v but every byte consumed", frame, err)
	}
	for _, m := range msgs {
		for _, s := range sampleMessages() {
			v := reflect.New(reflect.TypeOf(s.body).Elem()).Interface()
			_ = m.Decode(v)
		}
		var anyv any
		_ = msgpack.Unmarshal(m.Body, &anyv)
		_, _, _, _ = ParsePublish(m.Body)
		_, _, _ = ParseDeliver(m.Body)
		_, _ = ParsePubAck(m.Body)
	}
}

// TestDecodeAppendOnly checks the append-only rule: a body with more
// fields than this build knows (a newer peer) decodes the known ones, and
// one with fewer (an older peer) leaves the rest zero.
func TestDecodeAppendOnly(t *testing.T) {
	newer := []any{uint64(7), []string{"a", "b"}, "a field from a newer version", 42}
	body, err := msgpack.Marshal(newer)
	if err != nil {
		t.Fatal(err)
	}
	var s Subscribe
	if err := (Message{Type: MsgSubscribe, Body: body}).Decode(&s); err != nil {
		t.Fatalf("decoding a newer Subscribe: %v", err)
	}
	if s.ID != 7 || len(s.Channels) != 2 || s.Channels[1] != "b" {
		t.Fatalf("newer Subscribe decoded as %+v", s)
	}
	older, _ := msgpack.Marshal([]any{uint64(9)})
	s = Subscribe{}
	if err := (Message{Type: MsgSubscribe, Body: older}).Decode(&s); err != nil || s.ID != 9 || s.Channels != nil {
		t.Fatalf("older Subscribe decoded as %+v, %v", s, err)
	}
	pub := AppendPublishKeyMsg(nil, 3, "ch", []byte(`{}`), "k")
	pub[1] = 0x95 // one more field than this build knows
	pub = append(pub, 0x2a)
	if seq, ch, data, key, err := ParsePublishKey(pub[1:]); err != nil || seq != 3 || ch != "ch" || string(data) != "{}" || key != "k" {
		t.Fatalf("ParsePublishKey of a newer Publish = %d %q %q %q %v", seq, ch, data, key, err)
	}
}

func TestDecodeWrongShape(t *testing.T) {
	frame := AppendDeliverMsg(nil, "ch", []byte("x"))
	msgs, _ := SplitMessages(frame)
	var s Subscribe
	if err := msgs[0].Decode(&s); err == nil {
		t.Errorf("decoding a Deliver into Subscribe succeeded: %+v", s)
	}
	var h Hello
	str, _ := AppendMessage(nil, MsgHello, "just a string")
	msgs, _ = SplitMessages(str)
	if err := msgs[0].Decode(&h); err == nil {
		t.Errorf("decoding a string into Hello succeeded: %+v", h)
	}
}

func TestMACs(t *testing.T) {
	key := []byte("cluster-key")
	sn, dn := []byte("server-nonce-16b"), []byte("dialer-nonce-16b")
	base := HelloMAC(key, sn, RoleFrontend, "fe-1", dn)
	if len(base) != 32 {
		t.Fatalf("HelloMAC length = %d", len(base))
	}
	if !bytes.Equal(base, HelloMAC(key, sn, RoleFrontend, "fe-1", dn)) {
		t.Fatal("HelloMAC is not deterministic")
	}
	variants := map[string][]byte{
		"key":          HelloMAC([]byte("cluster-kez"), sn, RoleFrontend, "fe-1", dn),
		"empty key":    HelloMAC(nil, sn, RoleFrontend, "fe-1", dn),
		"server nonce": HelloMAC(key, []byte("server-nonce-16c"), RoleFrontend, "fe-1", dn),
		"role":         HelloMAC(key, sn, RoleBroker, "fe-1", dn),
		"node id":      HelloMAC(key, sn, RoleFrontend, "fe-2", dn),
		"dialer nonce": HelloMAC(key, sn, RoleFrontend, "fe-1", []byte("dialer-nonce-16c")),
		"swap nonces":  HelloMAC(key, dn, RoleFrontend, "fe-1", sn),
		// Moving bytes between fields changes the MAC: fields are length-
		// prefixed.
		"shift role/id":    HelloMAC(key, sn, "frontendf", "e-1", dn),
		"shift id/nonce":   HelloMAC(key, sn, RoleFrontend, "fe-1d", []byte("ialer-nonce-16b")),
		"shift nonce/role": HelloMAC(key, []byte("server-nonce-16"), "b"+RoleFrontend, "fe-1", dn),
		"welcome":          WelcomeMAC(key, dn, "fe-1"),
	}
	for name, mac := range variants {
		if bytes.Equal(mac, base) {
			t.Errorf("HelloMAC unchanged when %s changes", name)
		}
	}

	wbase := WelcomeMAC(key, dn, "b1")
	if !bytes.Equal(wbase, WelcomeMAC(key, dn, "b1")) {
		t.Fatal("WelcomeMAC is not deterministic")
	}
	for name, mac := range map[string][]byte{
		"key":          WelcomeMAC([]byte("other"), dn, "b1"),
		"nonce":        WelcomeMAC(key, sn, "b1"),
		"server id":    WelcomeMAC(key, dn, "b2"),
		"shift":        WelcomeMAC(key, dn[:len(dn)-1], "b"+"b1"),
		"empty id":     WelcomeMAC(key, dn, ""),
		"hello domain": HelloMAC(key, dn, "", "b1", nil),
	} {
		if bytes.Equal(mac, wbase) {
			t.Errorf("WelcomeMAC unchanged when %s changes", name)
		}
	}
}

func BenchmarkAppendPublishMsg(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 100)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublishMsg(buf[:0], 12345, "room1", data)
	}
}

func BenchmarkSplitMessages(b *testing.B) {
	var frame []byte
	for i := 0; i < 64; i++ {
		frame = AppendDeliverMsg(frame, "room1", bytes.Repeat([]byte("x"), 100))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := SplitMessages(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPublishIdempotencyKey: the key rides as a trailing fourth field, a
// 3-field Publish (older peers, no key) still parses with an empty key,
// and the reflection codec agrees with the fast one.
func TestPublishIdempotencyKey(t *testing.T) {
	b := AppendPublishKeyMsg(nil, 7, "room", []byte(`{"a":1}`), "k-1")
	seq, ch, data, key, err := ParsePublishKey(b[1:])
	if err != nil || seq != 7 || ch != "room" || string(data) != `{"a":1}` || key != "k-1" {
		t.Fatalf("ParsePublishKey = %d %q %q %q %v", seq, ch, data, key, err)
	}
	var p Publish
	msgs, err := SplitMessages(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ParseFrame: %v", err)
	}
	if err := msgs[0].Decode(&p); err != nil || p.IdempotencyKey != "k-1" || p.Channel != "room" {
		t.Fatalf("Decode = %+v %v", p, err)
	}
	if _, _, _, key, err := ParsePublishKey(AppendPublishMsg(nil, 1, "c", nil)[1:]); err != nil || key != "" {
		t.Fatalf("3-field publish: key %q err %v", key, err)
	}
	if !bytes.Equal(AppendPublishKeyMsg(nil, 1, "c", nil, ""), AppendPublishMsg(nil, 1, "c", nil)) {
		t.Fatal("an empty key must leave the 3-field form on the wire")
	}
	refl, err := AppendMessage(nil, MsgPublish, &Publish{Seq: 3, Channel: "c", Data: []byte("1"), IdempotencyKey: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, key, err := ParsePublishKey(refl[1:]); err != nil || key != "x" {
		t.Fatalf("reflection-encoded key = %q %v", key, err)
	}
	if _, _, _, _, err := ParsePublishKey(append(AppendPublishMsg(nil, 1, "c", nil)[1:2:2], 0)); err == nil {
		t.Fatal("truncated publish parsed")
	}
}

// TestHelloRulesDigestCompat: a Hello from a node that predates the rules
// digest (ten fields, ending at Draining) still decodes, with an empty
// digest, and a Hello with the digest decodes it at the end.
func TestHelloRulesDigestCompat(t *testing.T) {
	old := []any{1, 1, "fe-1", RoleFrontend, "", "127.0.0.1:7946", uint64(3), []byte{1}, []byte{2}, true}
	body, err := msgpack.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var h Hello
	if err := (Message{Type: MsgHello, Body: body}).Decode(&h); err != nil || h.NodeID != "fe-1" || !h.Draining || h.RulesDigest != "" {
		t.Fatalf("older Hello decoded as %+v, %v", h, err)
	}
	body, err = msgpack.Marshal(append(old, "abc123"))
	if err != nil {
		t.Fatal(err)
	}
	h = Hello{}
	if err := (Message{Type: MsgHello, Body: body}).Decode(&h); err != nil || !h.Draining || h.RulesDigest != "abc123" {
		t.Fatalf("Hello with a digest decoded as %+v, %v", h, err)
	}
}

func TestDeliverPos(t *testing.T) {
	b := AppendDeliverPosMsg(nil, "room1", []byte(`"x"`), 1<<40, "AbCdEfGh")
	msgs, err := SplitMessages(b)
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	var d Deliver
	if err := msgs[0].Decode(&d); err != nil || d.Offset != 1<<40 || d.Epoch != "AbCdEfGh" || string(d.Data) != `"x"` {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	ch, data, off, ep, err := ParseDeliverPos(msgs[0].Body)
	if err != nil || ch != "room1" || string(data) != `"x"` || off != 1<<40 || ep != "AbCdEfGh" {
		t.Fatalf("ParseDeliverPos = %q %q %d %q %v", ch, data, off, ep, err)
	}
	// Older parsers read the first two fields.
	if ch, data, err := ParseDeliver(msgs[0].Body); err != nil || ch != "room1" || string(data) != `"x"` {
		t.Fatalf("ParseDeliver = %q %q %v", ch, data, err)
	}
	// Without an offset the message is the 2-field form.
	if !bytes.Equal(AppendDeliverPosMsg(nil, "c", nil, 0, "e"), AppendDeliverMsg(nil, "c", nil)) {
		t.Fatal("offset 0 is not the plain Deliver")
	}
	_, _, off, ep, err = ParseDeliverPos(bodyOf(AppendDeliverMsg(nil, "c", nil)))
	if err != nil || off != 0 || ep != "" {
		t.Fatalf("plain deliver: %d %q %v", off, ep, err)
	}
}
