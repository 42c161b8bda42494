package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// capturedFrame is one line of testdata/frames/*.txt: "C>S <frame>" for a
// frame the client sent, "S>C <frame>" for one the server sent. Lines that
// start with '#' are comments. The frames were captured from
// socketcluster-client 20.0.2 talking to socketcluster-server 20.0.1.
type capturedFrame struct {
	file     string
	line     int
	toServer bool
	msg      []byte
}

func loadFrames(t testing.TB) []capturedFrame {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "frames", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []capturedFrame
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		n := 0
		for sc.Scan() {
			n++
			line := sc.Text()
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			var cf capturedFrame
			switch {
			case strings.HasPrefix(line, "C>S "):
				cf.toServer = true
			case strings.HasPrefix(line, "S>C "):
			case line == "C>S" || line == "S>C": // an empty frame: v2 ping or pong
				cf.toServer = line == "C>S"
				line += " "
			default:
				t.Fatalf("%s:%d: line has no direction prefix: %q", name, n, line)
			}
			cf.file, cf.line, cf.msg = filepath.Base(name), n, []byte(line[4:])
			out = append(out, cf)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestCapturedFrames decodes every captured frame: each one is a ping, a
// pong or a list of well-formed packets, and the decoder agrees with an
// independent reading of the JSON.
func TestCapturedFrames(t *testing.T) {
	frames := loadFrames(t)
	if len(frames) == 0 {
		t.Skip("no captured frames in testdata/frames")
	}
	kinds := map[PacketKind]int{}
	events := map[string]int{}
	for _, f := range frames {
		k := Classify(f.msg)
		switch k {
		case KindEmpty, KindV1Ping, KindV1Pong:
			continue
		case KindRaw:
			t.Errorf("%s:%d: raw frame %q", f.file, f.line, f.msg)
			continue
		}
		pk := checkDecodePackets(t, f.msg)
		for _, p := range pk {
			kinds[p.Kind()]++
			if p.Kind() == PacketOther {
				t.Errorf("%s:%d: packet of no kind in %s", f.file, f.line, f.msg)
			}
			if p.HasEvent {
				events[p.Event]++
			}
			checkReservedEvent(t, f, p)
		}
	}
	for _, k := range []PacketKind{PacketEvent, PacketRequest, PacketResponse} {
		if kinds[k] == 0 {
			t.Errorf("no captured packet of kind %d", k)
		}
	}
	for _, ev := range []string{EventHandshake, EventSubscribe, EventUnsubscribe, EventPublish, EventAuthenticate, EventRemoveAuthToken, EventSetAuthToken} {
		if events[ev] == 0 {
			t.Errorf("no captured %s packet", ev)
		}
	}
}

// checkReservedEvent checks the data of SocketCluster's own events against
// this package's decoders.
func checkReservedEvent(t *testing.T, f capturedFrame, p Packet) {
	t.Helper()
	switch p.Event {
	case EventHandshake:
		var h HandshakeRequest
		if err := json.Unmarshal(p.Data, &h); err != nil || p.Kind() != PacketRequest {
			t.Errorf("%s:%d: handshake %s: %v", f.file, f.line, p.Data, err)
		}
	case EventSubscribe:
		// Some captures send a malformed channel on purpose; the server
		// answered those with InvalidActionError.
		_, err := DecodeSubscribe(p.Data)
		if (err == nil) != hasStringChannel(p.Data) {
			t.Errorf("%s:%d: subscribe %s: %v", f.file, f.line, p.Data, err)
		}
	case EventPublish:
		pd, err := DecodePublish(p.Data)
		if (err == nil) != hasStringChannel(p.Data) {
			t.Errorf("%s:%d: publish %s: %v", f.file, f.line, p.Data, err)
		}
		if err != nil {
			break
		}
		if !f.toServer {
			// The server's frame is exactly what AppendPublish writes.
			if want := AppendPublish(nil, pd.Channel, pd.Data); !bytes.Contains(f.msg, want) {
				t.Errorf("%s:%d: server publish %s is not AppendPublish's %s", f.file, f.line, f.msg, want)
			}
		}
	case EventUnsubscribe, EventAuthenticate:
		if _, ok := DecodeString(p.Data); !ok {
			t.Errorf("%s:%d: %s data %s is not a string", f.file, f.line, p.Event, p.Data)
		}
	case EventRemoveAuthToken:
		if p.Data != nil {
			t.Errorf("%s:%d: #removeAuthToken with data %s", f.file, f.line, p.Data)
		}
	case EventSetAuthToken:
		var s SetAuthTokenData
		if err := json.Unmarshal(p.Data, &s); err != nil || strings.Count(s.Token, ".") != 2 {
			t.Errorf("%s:%d: #setAuthToken %s: %v", f.file, f.line, p.Data, err)
		}
	}
	if p.Kind() == PacketResponse && p.Error != nil {
		var e Error
		if err := json.Unmarshal(p.Error, &e); err != nil || e.Name == "" || e.Message == "" {
			t.Errorf("%s:%d: error %s = %+v, %v", f.file, f.line, p.Error, e, err)
		}
		// The server's error objects are exactly what MarshalJSON writes.
		if b, err := e.MarshalJSON(); err == nil && !f.toServer && !bytes.Equal(b, p.Error) && !hasNonASCIINumber(p.Error) {
			t.Errorf("%s:%d: error %s re-encodes as %s", f.file, f.line, p.Error, b)
		}
	}
}

// hasNonASCIINumber is a guard for error fields whose numbers encoding/json
// would print differently; SocketCluster's errors have none.
func hasNonASCIINumber(b []byte) bool {
	return bytes.ContainsAny(b, "eE.") && bytes.Contains(b, []byte("e+"))
}

// checkDecodePackets checks DecodePackets on msg against an independent
// reading with encoding/json's generic decoder, and returns its packets.
func checkDecodePackets(t testing.TB, msg []byte) []Packet {
	t.Helper()
	pk, err := DecodePackets(msg)
	if Classify(msg) != KindJSON {
		if !errors.Is(err, ErrNotJSON) || pk != nil {
			t.Fatalf("DecodePackets(%q) of a non-JSON message = %v, %v", msg, pk, err)
		}
		return nil
	}
	if valid := json.Valid(msg); valid != (err == nil) {
		t.Fatalf("DecodePackets(%q): err = %v, but json.Valid = %v", msg, err, valid)
	}
	if err != nil {
		if !errors.Is(err, ErrNotJSON) {
			t.Fatalf("DecodePackets(%q): err = %v, want ErrNotJSON", msg, err)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("generic decode of %q: %v", msg, err)
	}
	var elems []any
	switch x := v.(type) {
	case []any:
		elems = x
	case map[string]any:
		elems = []any{x}
	default:
		t.Fatalf("DecodePackets(%q) succeeded on a %T", msg, v)
	}
	if len(elems) != len(pk) {
		t.Fatalf("DecodePackets(%q): %d packets, want %d", msg, len(pk), len(elems))
	}
	for i, e := range elems {
		p := pk[i]
		obj, isObj := e.(map[string]any)
		if !isObj {
			if !reflect.DeepEqual(p, Packet{}) {
				t.Fatalf("DecodePackets(%q): element %d is a %T but decoded to %+v", msg, i, e, p)
			}
			continue
		}
		ev, isStr := obj["event"].(string)
		if p.HasEvent != isStr || p.Event != ev {
			t.Fatalf("DecodePackets(%q): packet %d event = %q/%v, want %q/%v", msg, i, p.Event, p.HasEvent, ev, isStr)
		}
		for _, f := range []struct {
			key  string
			raw  json.RawMessage
			want bool
		}{
			{"data", p.Data, hasKey(obj, "data")},
			{"error", p.Error, hasKey(obj, "error")},
			{"cid", p.CID, isJSONNumber(obj["cid"])},
			{"rid", p.RID, isJSONNumber(obj["rid"])},
		} {
			if (f.raw != nil) != f.want {
				t.Fatalf("DecodePackets(%q): packet %d %s = %q, want present=%v", msg, i, f.key, f.raw, f.want)
			}
			if f.raw == nil {
				continue
			}
			// Raw values are the exact bytes of the message.
			if !bytes.Contains(msg, f.raw) {
				t.Fatalf("DecodePackets(%q): packet %d %s %q is not a slice of the message", msg, i, f.key, f.raw)
			}
			d := json.NewDecoder(bytes.NewReader(f.raw))
			d.UseNumber()
			var got any
			if err := d.Decode(&got); err != nil || !reflect.DeepEqual(got, obj[f.key]) {
				t.Fatalf("DecodePackets(%q): packet %d %s = %q (%v), want %v", msg, i, f.key, f.raw, err, obj[f.key])
			}
		}
		checkReencode(t, msg, p)
	}
	return pk
}

// checkReencode writes a packet back with the Append functions and checks
// that it decodes to the same packet.
func checkReencode(t testing.TB, msg []byte, p Packet) {
	t.Helper()
	var out []byte
	switch p.Kind() {
	case PacketEvent:
		out = AppendEvent(nil, p.Event, p.Data, 0)
	case PacketRequest:
		cid, ok := ParseCallID(p.CID)
		if !ok || cid <= 0 {
			return
		}
		out = AppendEvent(nil, p.Event, p.Data, cid)
	case PacketResponse:
		if p.Error != nil {
			return
		}
		out = AppendResponse(nil, p.RID, p.Data)
	default:
		return
	}
	again, err := DecodePackets(out)
	if err != nil || len(again) != 1 {
		t.Fatalf("re-encoding %q as %q: %v", msg, out, err)
	}
	q := again[0]
	sameRID := p.Kind() != PacketResponse || bytes.Equal(q.RID, p.RID)
	if q.Kind() != p.Kind() || q.Event != p.Event || !bytes.Equal(q.Data, p.Data) || !sameRID {
		t.Fatalf("re-encoding %q as %q gives %+v, want %+v", msg, out, q, p)
	}
}

func hasStringChannel(data []byte) bool {
	obj, _ := genericObject(data)
	_, ok := obj["channel"].(string)
	return ok
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

func isJSONNumber(v any) bool { _, ok := v.(json.Number); return ok }

// packetSeeds are frames for the fuzz corpora beyond the captured ones.
var packetSeeds = []string{
	``, `#1`, `#2`, `raw`, ` {`, `[`, `[]`, `{}`, `null`,
	`{"event":"#handshake","data":{"authToken":null},"cid":1}`,
	`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi"}},"cid":5}`,
	`{"event":"#subscribe","data":{"channel":"private","waitForAuth":true,"data":{"k":"v"}},"cid":3}`,
	`{"event":"#unsubscribe","data":"room2"}`,
	`{"rid":17,"error":{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}}`,
	`[{"event":"b1","data":1},5,"s",{"rid":2}]`,
	`{"Event":"x","event":"y","CID":1,"cid":1e400}`,
	" \t\r\n[ {\"event\" : \"a\" , \"data\" : [ 1 ] } ] ",
	`{"event":"\ud800","data":"\u0000"}`,
}

func addFrameSeeds(f *testing.F, pick func(capturedFrame) [][]byte) {
	for _, fr := range loadFrames(f) {
		for _, b := range pick(fr) {
			f.Add(b)
		}
	}
}

func FuzzDecodePackets(f *testing.F) {
	for _, s := range packetSeeds {
		f.Add([]byte(s))
	}
	addFrameSeeds(f, func(fr capturedFrame) [][]byte { return [][]byte{fr.msg} })
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkDecodePackets(t, msg)
	})
}

// packetData returns the data of every packet in captured frames whose
// event is one of events.
func packetData(events ...string) func(capturedFrame) [][]byte {
	return func(fr capturedFrame) [][]byte {
		pk, _ := DecodePackets(fr.msg)
		var out [][]byte
		for _, p := range pk {
			for _, ev := range events {
				if p.Event == ev && p.Data != nil {
					out = append(out, p.Data)
				}
			}
		}
		return out
	}
}

func FuzzDecodePublish(f *testing.F) {
	for _, s := range []string{
		`{"channel":"room1","data":{"text":"hi"}}`, `{"channel":"room1"}`, `{"channel":5}`,
		`{"channel":"a","data":null}`, `"room1"`, `null`, `{"Channel":"x","channel":"y"}`, `{"channel":"\u00e9\n"}`,
		`{"channel":"room1","data":{"t":1},"offset":42,"epoch":"AbCd"}`, `{"channel":"room1","offset":1,"epoch":"e"}`,
		`{"channel":"r","data":1,"offset":042,"epoch":"e"}`, `{"channel":"r","data":1,"offset":4,"epoch":"e\u0041"}`,
	} {
		f.Add([]byte(s))
	}
	addFrameSeeds(f, packetData(EventPublish))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePublish(data)
		if json.Valid(data) {
			// For valid JSON the unvalidating variant agrees exactly.
			v, verr := DecodePublishValid(data)
			if (verr == nil) != (err == nil) || v.Channel != p.Channel || !bytes.Equal(v.Data, p.Data) || (v.Data == nil) != (p.Data == nil) {
				t.Fatalf("DecodePublishValid(%q) = %+v, %v; DecodePublish = %+v, %v", data, v, verr, p, err)
			}
		}
		obj, isObj := genericObject(data)
		ch, isStr := obj["channel"].(string)
		if (err == nil) != (isObj && isStr) {
			t.Fatalf("DecodePublish(%q) err = %v; object=%v channel string=%v", data, err, isObj, isStr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadChannel) {
				t.Fatalf("DecodePublish(%q) err = %v, want ErrBadChannel", data, err)
			}
			return
		}
		if p.Channel != ch {
			t.Fatalf("DecodePublish(%q) channel = %q, want %q", data, p.Channel, ch)
		}
		if (p.Data != nil) != hasKey(obj, "data") || (p.Data != nil && !bytes.Contains(data, p.Data)) {
			t.Fatalf("DecodePublish(%q) data = %q", data, p.Data)
		}
		// What a subscriber receives decodes to the same channel and bytes.
		frame := AppendPublish(nil, p.Channel, p.Data)
		pk, err := DecodePackets(frame)
		if err != nil || len(pk) != 1 || pk[0].Kind() != PacketEvent || pk[0].Event != EventPublish {
			t.Fatalf("AppendPublish(%q, %q) = %q does not decode: %v", p.Channel, p.Data, frame, err)
		}
		q, err := DecodePublish(pk[0].Data)
		if err != nil || q.Channel != p.Channel || !bytes.Equal(q.Data, p.Data) {
			t.Fatalf("publish round trip of %q: %+v, %v", data, q, err)
		}
	})
}

func FuzzDecodeSubscribe(f *testing.F) {
	for _, s := range []string{
		`{"channel":"room1"}`, `{"channel":"room2","data":{"token":"x"}}`,
		`{"channel":"private","waitForAuth":true,"data":{"k":"v"}}`, `{"channel":"p","waitForAuth":1}`,
		`{"channel":null}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	addFrameSeeds(f, packetData(EventSubscribe))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSubscribe(data)
		obj, isObj := genericObject(data)
		ch, isStr := obj["channel"].(string)
		if (err == nil) != (isObj && isStr) {
			t.Fatalf("DecodeSubscribe(%q) err = %v; object=%v channel string=%v", data, err, isObj, isStr)
		}
		if err != nil {
			return
		}
		wfa, _ := obj["waitForAuth"].(bool)
		if s.Channel != ch || s.WaitForAuth != wfa || (s.Data != nil) != hasKey(obj, "data") {
			t.Fatalf("DecodeSubscribe(%q) = %+v", data, s)
		}
		// Re-encoding gives a request that decodes the same way (data that
		// is JSON null is left out by omitempty's rules only when absent).
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", s, err)
		}
		s2, err := DecodeSubscribe(b)
		if err != nil || s2.Channel != s.Channel || s2.WaitForAuth != s.WaitForAuth {
			t.Fatalf("subscribe round trip of %q via %s: %+v, %v", data, b, s2, err)
		}
	})
}

// genericObject decodes data as a JSON object with encoding/json's generic
// decoder, the way JSON.parse would read it.
func genericObject(data []byte) (map[string]any, bool) {
	if !json.Valid(data) {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

func FuzzSplitMessages(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := AppendMessage(nil, m.t, m.body)
		f.Add(b)
	}
	f.Add(AppendDeliverMsg(AppendPubAckMsg(nil, 7), "room1", []byte(`{"a":1}`)))
	f.Add([]byte{byte(MsgSubscribe), 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{byte(MsgPing), 0x91, 0x91, 0x91, 0x01})
	f.Add([]byte{byte(MsgPublish), 0xc7, 0x01, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkSplit(t, frame)
	})
}

func FuzzErrorUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}`,
		`{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"2026-11-22T21:43:58.000Z","isBadToken":true}`,
		`"bare string"`, `{"message":5}`, `{"a":{"b":[1,2,{"c":null}]},"message":"m","message":"n"}`,
		`{"message":"x","k":1e400}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	addFrameSeeds(f, func(fr capturedFrame) [][]byte {
		pk, _ := DecodePackets(fr.msg)
		var out [][]byte
		for _, p := range pk {
			if p.Error != nil {
				out = append(out, p.Error)
			}
		}
		return out
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Error
		if err := json.Unmarshal(b, &e); err != nil {
			return
		}
		m1, err := e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of %+v (from %q): %v", e, b, err)
		}
		if !json.Valid(m1) {
			t.Fatalf("MarshalJSON of %q = %q is not valid JSON", b, m1)
		}
		var e2 Error
		if err := json.Unmarshal(m1, &e2); err != nil {
			t.Fatalf("Unmarshal(%q): %v", m1, err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("error round trip of %q: %#v then %#v", b, e, e2)
		}
		// An error response built from it is a response with that error.
		frame := AppendErrorResponse(nil, json.RawMessage("3"), &e)
		pk, err := DecodePackets(frame)
		if err != nil || len(pk) != 1 || pk[0].Kind() != PacketResponse || !bytes.Equal(pk[0].Error, m1) {
			t.Fatalf("AppendErrorResponse(%q) = %q: %v", b, frame, err)
		}
	})
}
