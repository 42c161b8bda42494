package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		msg  string
		want Kind
	}{
		{"", KindEmpty},
		{"#1", KindV1Ping},
		{"#2", KindV1Pong},
		{"#3", KindRaw},
		{"#1 ", KindRaw},
		{" #1", KindRaw},
		{"#", KindRaw},
		{"hello", KindRaw},
		{"1", KindRaw},
		{`"a string"`, KindRaw},
		{"null", KindRaw},
		{" ", KindRaw},
		{" \n\r\t", KindRaw},
		{"{", KindJSON},
		{"[", KindJSON},
		{`{"event":"x"}`, KindJSON},
		{`[{"event":"x"}]`, KindJSON},
		{" \n\r\t{}", KindJSON},
		{"\t[1]", KindJSON},
		// sc-formatter's regex is /^[ \n\r\t]*[{\[]/: no other whitespace.
		{"\v{}", KindRaw},
		{"\f{}", KindRaw},
		{"\u00a0{}", KindRaw},
		{"\ufeff{}", KindRaw},
		{"x{}", KindRaw},
	}
	for _, c := range cases {
		if got := Classify([]byte(c.msg)); got != c.want {
			t.Errorf("Classify(%q) = %d, want %d", c.msg, got, c.want)
		}
	}
}

// wantPacket is what a decoded packet must hold; raw fields are compared as
// exact bytes.
type wantPacket struct {
	kind  PacketKind
	event string
	data  string
	cid   string
	rid   string
	err   string
}

func checkPacket(t *testing.T, msg string, i int, got Packet, want wantPacket) {
	t.Helper()
	if k := got.Kind(); k != want.kind {
		t.Errorf("%s: packet %d kind = %d, want %d", msg, i, k, want.kind)
	}
	if got.Event != want.event {
		t.Errorf("%s: packet %d event = %q, want %q", msg, i, got.Event, want.event)
	}
	for _, f := range []struct {
		name      string
		got, want string
		gotNil    bool
	}{
		{"data", string(got.Data), want.data, got.Data == nil},
		{"cid", string(got.CID), want.cid, got.CID == nil},
		{"rid", string(got.RID), want.rid, got.RID == nil},
		{"error", string(got.Error), want.err, got.Error == nil},
	} {
		if f.got != f.want {
			t.Errorf("%s: packet %d %s = %q, want %q", msg, i, f.name, f.got, f.want)
		}
		if f.want == "" && !f.gotNil {
			t.Errorf("%s: packet %d %s is empty but not nil", msg, i, f.name)
		}
	}
}

// TestDecodePacketsReference decodes the literal frames of the SocketCluster
// reference (§1.4–§1.9).
func TestDecodePacketsReference(t *testing.T) {
	cases := []struct {
		msg  string
		want []wantPacket
	}{
		// §1.4 handshake
		{`{"event":"#handshake","data":{"authToken":null},"cid":1}`,
			[]wantPacket{{kind: PacketRequest, event: "#handshake", data: `{"authToken":null}`, cid: "1"}}},
		{`{"rid":1,"data":{"id":"X7aBtfnPJrbHTRPZAAAA","pingTimeout":30000,"isAuthenticated":false}}`,
			[]wantPacket{{kind: PacketResponse, rid: "1", data: `{"id":"X7aBtfnPJrbHTRPZAAAA","pingTimeout":30000,"isAuthenticated":false}`}}},
		{`{"rid":1,"data":{"id":"utsFs5BXbPYX8yS2AAAC","pingTimeout":30000,"authError":{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"2026-11-22T21:43:58.000Z","isBadToken":true},"isAuthenticated":false}}`,
			[]wantPacket{{kind: PacketResponse, rid: "1", data: `{"id":"utsFs5BXbPYX8yS2AAAC","pingTimeout":30000,"authError":{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"2026-11-22T21:43:58.000Z","isBadToken":true},"isAuthenticated":false}`}}},
		{`{"event":"#removeAuthToken"}`,
			[]wantPacket{{kind: PacketEvent, event: "#removeAuthToken"}}},
		{`{"rid":1,"error":{"message":"sc handshake blocked","name":"ScBlocked","statusCode":4008}}`,
			[]wantPacket{{kind: PacketResponse, rid: "1", err: `{"message":"sc handshake blocked","name":"ScBlocked","statusCode":4008}`}}},
		// §1.6 custom events and RPC
		{`{"event":"hello","data":{"a":1}}`,
			[]wantPacket{{kind: PacketEvent, event: "hello", data: `{"a":1}`}}},
		{`{"event":"echo","data":{"b":2},"cid":7}`,
			[]wantPacket{{kind: PacketRequest, event: "echo", data: `{"b":2}`, cid: "7"}}},
		{`{"rid":7,"data":{"youSent":{"b":2}}}`,
			[]wantPacket{{kind: PacketResponse, rid: "7", data: `{"youSent":{"b":2}}`}}},
		{`{"event":"fail","data":null,"cid":8}`,
			[]wantPacket{{kind: PacketRequest, event: "fail", data: `null`, cid: "8"}}},
		{`{"rid":8,"error":{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}}`,
			[]wantPacket{{kind: PacketResponse, rid: "8", err: `{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}`}}},
		{`{"event":"clientProc","cid":1,"data":{"q":1}}`,
			[]wantPacket{{kind: PacketRequest, event: "clientProc", data: `{"q":1}`, cid: "1"}}},
		{`{"event":"login","cid":13}`,
			[]wantPacket{{kind: PacketRequest, event: "login", cid: "13"}}},
		// §1.7 pub/sub
		{`{"event":"#subscribe","data":{"channel":"private","waitForAuth":true,"data":{"k":"v"}},"cid":3}`,
			[]wantPacket{{kind: PacketRequest, event: "#subscribe", data: `{"channel":"private","waitForAuth":true,"data":{"k":"v"}}`, cid: "3"}}},
		{`{"rid":2}`,
			[]wantPacket{{kind: PacketResponse, rid: "2"}}},
		{`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via transmitPublish"}}}`,
			[]wantPacket{{kind: PacketEvent, event: "#publish", data: `{"channel":"room1","data":{"text":"hi via transmitPublish"}}`}}},
		{`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via invokePublish"}},"cid":5}`,
			[]wantPacket{{kind: PacketRequest, event: "#publish", data: `{"channel":"room1","data":{"text":"hi via invokePublish"}}`, cid: "5"}}},
		{`{"event":"#unsubscribe","data":"room2"}`,
			[]wantPacket{{kind: PacketEvent, event: "#unsubscribe", data: `"room2"`}}},
		{`{"event":"#kickOut","data":{"channel":"room1","message":"bye"}}`,
			[]wantPacket{{kind: PacketEvent, event: "#kickOut", data: `{"channel":"room1","message":"bye"}`}}},
		// §1.8 authentication
		{`{"event":"#authenticate","data":"garbage.token.value","cid":17}`,
			[]wantPacket{{kind: PacketRequest, event: "#authenticate", data: `"garbage.token.value"`, cid: "17"}}},
		{`{"rid":16,"data":{"isAuthenticated":true,"authError":null}}`,
			[]wantPacket{{kind: PacketResponse, rid: "16", data: `{"isAuthenticated":true,"authError":null}`}}},
		{`{"rid":17,"error":{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}}`,
			[]wantPacket{{kind: PacketResponse, rid: "17", err: `{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}`}}},
		// §1.9 batches
		{`[{"event":"b1","data":1},{"event":"b2","data":2},{"event":"#publish","data":{"channel":"room2","data":"batched-pub"}}]`,
			[]wantPacket{
				{kind: PacketEvent, event: "b1", data: `1`},
				{kind: PacketEvent, event: "b2", data: `2`},
				{kind: PacketEvent, event: "#publish", data: `{"channel":"room2","data":"batched-pub"}`},
			}},
	}
	for _, c := range cases {
		got, err := DecodePackets([]byte(c.msg))
		if err != nil {
			t.Errorf("DecodePackets(%s): %v", c.msg, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("DecodePackets(%s): %d packets, want %d", c.msg, len(got), len(c.want))
			continue
		}
		for i := range got {
			checkPacket(t, c.msg, i, got[i], c.want[i])
		}
	}
}

// TestDecodePacketsTypeof checks SocketCluster v20's typeof rules and the
// edges of the grammar.
func TestDecodePacketsTypeof(t *testing.T) {
	cases := []struct {
		msg  string
		want []wantPacket
	}{
		{`{"event":5,"cid":1}`, []wantPacket{{kind: PacketOther, cid: "1"}}},
		{`{"event":null}`, []wantPacket{{kind: PacketOther}}},
		{`{"event":"x","cid":"1"}`, []wantPacket{{kind: PacketEvent, event: "x"}}},
		{`{"event":"x","cid":null}`, []wantPacket{{kind: PacketEvent, event: "x"}}},
		{`{"event":"x","cid":true}`, []wantPacket{{kind: PacketEvent, event: "x"}}},
		{`{"event":"x","cid":-3}`, []wantPacket{{kind: PacketRequest, event: "x", cid: "-3"}}},
		{`{"event":"x","cid":1.5e3}`, []wantPacket{{kind: PacketRequest, event: "x", cid: "1.5e3"}}},
		{`{"event":"","cid":0}`, []wantPacket{{kind: PacketRequest, event: "", cid: "0"}}},
		{`{"rid":"1","data":1}`, []wantPacket{{kind: PacketOther, data: "1"}}},
		{`{"rid":1,"error":null}`, []wantPacket{{kind: PacketResponse, rid: "1", err: "null"}}},
		{`{"event":"x","rid":1}`, []wantPacket{{kind: PacketEvent, event: "x", rid: "1"}}},
		{`{}`, []wantPacket{{kind: PacketOther}}},
		{`{"data":1}`, []wantPacket{{kind: PacketOther, data: "1"}}},
		// Escapes in the event name decode like JSON.parse does.
		{`{"event":"\u0023publish"}`, []wantPacket{{kind: PacketEvent, event: "#publish"}}},
		// Duplicate keys: the last one wins, as in JSON.parse.
		{`{"event":"a","event":"b"}`, []wantPacket{{kind: PacketEvent, event: "b"}}},
		{`{"event":"a","event":1}`, []wantPacket{{kind: PacketOther}}},
		// Keys match exactly: JavaScript property names are case-sensitive.
		{`{"Event":"x","CID":1}`, []wantPacket{{kind: PacketOther}}},
		{`{"EVENT":"x"}`, []wantPacket{{kind: PacketOther}}},
		{`{"rId":1}`, []wantPacket{{kind: PacketOther}}},
		{`{"event":"x","Data":1}`, []wantPacket{{kind: PacketEvent, event: "x"}}},
		{`{"event":"a","Event":"b"}`, []wantPacket{{kind: PacketEvent, event: "a"}}},
		// Whitespace is kept inside raw values and trimmed around them.
		{" \n{ \"event\" : \"x\" , \"data\" : { \"k\" : [ 1 , 2 ] } , \"cid\" : 9 }\n ",
			[]wantPacket{{kind: PacketRequest, event: "x", data: `{ "k" : [ 1 , 2 ] }`, cid: "9"}}},
		// Batch elements that are not objects are PacketOther.
		{`[{"event":"a"},5,"s",null,[],{"rid":2}]`, []wantPacket{
			{kind: PacketEvent, event: "a"},
			{kind: PacketOther},
			{kind: PacketOther},
			{kind: PacketOther},
			{kind: PacketOther},
			{kind: PacketResponse, rid: "2"},
		}},
		{`[]`, nil},
		{"\t[ {\"event\":\"a\"} ]", []wantPacket{{kind: PacketEvent, event: "a"}}},
	}
	for _, c := range cases {
		got, err := DecodePackets([]byte(c.msg))
		if err != nil {
			t.Errorf("DecodePackets(%s): %v", c.msg, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("DecodePackets(%s): %d packets, want %d", c.msg, len(got), len(c.want))
			continue
		}
		for i := range got {
			checkPacket(t, c.msg, i, got[i], c.want[i])
		}
	}
}

func TestDecodePacketsNotJSON(t *testing.T) {
	for _, msg := range []string{
		"", "#1", "#2", "hello", `"str"`, "123", "null", "true",
		"{", "[", "{]", `{"event":"x"`, `{"event":"x"} trailing`, `{"event":"x"}{}`,
		`[{"event":"x"},]`, `{"event":'x'}`,
	} {
		got, err := DecodePackets([]byte(msg))
		if !errors.Is(err, ErrNotJSON) {
			t.Errorf("DecodePackets(%q) = %v, %v; want ErrNotJSON", msg, got, err)
		}
	}
}

func TestParseCallID(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want int64
		ok   bool
	}{
		{"1", 1, true}, {"57", 57, true}, {"-2", -2, true}, {"0", 0, true},
		{"9007199254740991", 9007199254740991, true},
		{"1.5", 0, false}, {"1e3", 0, false}, {"", 0, false}, {`"1"`, 0, false},
	} {
		got, ok := ParseCallID(json.RawMessage(c.raw))
		if got != c.want || ok != c.ok {
			t.Errorf("ParseCallID(%q) = %d, %v; want %d, %v", c.raw, got, ok, c.want, c.ok)
		}
	}
}

func TestDecodePublish(t *testing.T) {
	cases := []struct {
		data    string
		channel string
		raw     string
		ok      bool
	}{
		{`{"channel":"room1","data":{"text":"hi"}}`, "room1", `{"text":"hi"}`, true},
		{`{"channel":"room1"}`, "room1", "", true},
		{`{"channel":"room1","data":null}`, "room1", "null", true},
		{`{"channel":"","data":1}`, "", "1", true},
		{`{"channel":"a\"b\u00e9","data":[1, 2 ,3]}`, "a\"b\u00e9", `[1, 2 ,3]`, true},
		{`{"data":1,"channel":"z"}`, "z", "1", true},
		{`{"channel":5,"data":1}`, "", "", false},
		{`{"channel":null}`, "", "", false},
		{`{"data":1}`, "", "", false},
		{`{"Channel":"x","data":1}`, "", "", false},
		{`"room1"`, "", "", false},
		{`null`, "", "", false},
		{`5`, "", "", false},
		{`[]`, "", "", false},
		{`{`, "", "", false},
	}
	for _, c := range cases {
		p, err := DecodePublish(json.RawMessage(c.data))
		if (err == nil) != c.ok {
			t.Errorf("DecodePublish(%s) err = %v, want ok=%v", c.data, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadChannel) {
				t.Errorf("DecodePublish(%s) err = %v, want ErrBadChannel", c.data, err)
			}
			continue
		}
		if p.Channel != c.channel || string(p.Data) != c.raw {
			t.Errorf("DecodePublish(%s) = %q, %q; want %q, %q", c.data, p.Channel, p.Data, c.channel, c.raw)
		}
	}
}

func TestDecodeSubscribe(t *testing.T) {
	cases := []struct {
		data string
		want SubscribeRequest
		ok   bool
	}{
		{`{"channel":"room1"}`, SubscribeRequest{Channel: "room1"}, true},
		{`{"channel":"room2","data":{"token":"x"}}`, SubscribeRequest{Channel: "room2", Data: json.RawMessage(`{"token":"x"}`)}, true},
		{`{"channel":"private","waitForAuth":true,"data":{"k":"v"}}`, SubscribeRequest{Channel: "private", WaitForAuth: true, Data: json.RawMessage(`{"k":"v"}`)}, true},
		{`{"channel":"p","waitForAuth":false}`, SubscribeRequest{Channel: "p"}, true},
		{`{"channel":"p","waitForAuth":"true"}`, SubscribeRequest{Channel: "p"}, true},
		{`{"channel":1}`, SubscribeRequest{}, false},
		{`{}`, SubscribeRequest{}, false},
		{`"room1"`, SubscribeRequest{}, false},
		{`{"CHANNEL":"x"}`, SubscribeRequest{}, false},
	}
	for _, c := range cases {
		got, err := DecodeSubscribe(json.RawMessage(c.data))
		if (err == nil) != c.ok {
			t.Errorf("DecodeSubscribe(%s) err = %v, want ok=%v", c.data, err, c.ok)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("DecodeSubscribe(%s) = %+v, want %+v", c.data, got, c.want)
		}
	}
}

func TestDecodeString(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want string
		ok   bool
	}{
		{`"room2"`, "room2", true},
		{`""`, "", true},
		{`"a\nb\u0000"`, "a\nb\x00", true},
		{`"eyJ.x.y"`, "eyJ.x.y", true},
		{`null`, "", false},
		{`5`, "", false},
		{``, "", false},
		{`"unterminated`, "", false},
		{`{"a":1}`, "", false},
	} {
		got, ok := DecodeString(json.RawMessage(c.raw))
		if got != c.want || ok != c.ok {
			t.Errorf("DecodeString(%s) = %q, %v; want %q, %v", c.raw, got, ok, c.want, c.ok)
		}
	}
}

func TestAppendPublish(t *testing.T) {
	cases := []struct {
		channel, data, want string
	}{
		{"room1", `{"text":"hi via transmitPublish"}`, `{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via transmitPublish"}}}`},
		{"room2", `"batched-pub"`, `{"event":"#publish","data":{"channel":"room2","data":"batched-pub"}}`},
		{"c", `null`, `{"event":"#publish","data":{"channel":"c","data":null}}`},
		{"c", ``, `{"event":"#publish","data":{"channel":"c"}}`},
		{"we\"ird\n", `1`, `{"event":"#publish","data":{"channel":"we\"ird\n","data":1}}`},
		{"c", `{ "spaced" : true }`, `{"event":"#publish","data":{"channel":"c","data":{ "spaced" : true }}}`},
	}
	for _, c := range cases {
		prefix := []byte("keep")
		got := AppendPublish(prefix, c.channel, []byte(c.data))
		if string(got) != "keep"+c.want {
			t.Errorf("AppendPublish(%q, %s) = %s, want %s", c.channel, c.data, got[4:], c.want)
		}
		// The frame decodes back to the same channel and data bytes.
		pk, err := DecodePackets(got[4:])
		if err != nil || len(pk) != 1 || pk[0].Kind() != PacketEvent || pk[0].Event != EventPublish {
			t.Fatalf("AppendPublish output %s does not decode: %v %+v", got[4:], err, pk)
		}
		p, err := DecodePublish(pk[0].Data)
		if err != nil || p.Channel != c.channel || string(p.Data) != c.data {
			t.Errorf("round trip of %s = %q %q %v", got[4:], p.Channel, p.Data, err)
		}
	}
}

func TestAppendEvent(t *testing.T) {
	cases := []struct {
		event, data string
		cid         int64
		want        string
	}{
		{"#removeAuthToken", "", 0, `{"event":"#removeAuthToken"}`},
		{"#setAuthToken", `{"token":"a.b.c"}`, 0, `{"event":"#setAuthToken","data":{"token":"a.b.c"}}`},
		{"#setAuthToken", `{"token":"a.b.c"}`, 3, `{"event":"#setAuthToken","data":{"token":"a.b.c"},"cid":3}`},
		{"#kickOut", `{"channel":"room1","message":"bye"}`, 0, `{"event":"#kickOut","data":{"channel":"room1","message":"bye"}}`},
		{"serverEvent", `{"hello":"world"}`, 0, `{"event":"serverEvent","data":{"hello":"world"}}`},
		{"clientProc", "", 1, `{"event":"clientProc","cid":1}`},
		{"neg", "1", -1, `{"event":"neg","data":1}`},
	}
	for _, c := range cases {
		got := AppendEvent(nil, c.event, []byte(c.data), c.cid)
		if string(got) != c.want {
			t.Errorf("AppendEvent(%q, %s, %d) = %s, want %s", c.event, c.data, c.cid, got, c.want)
		}
	}
}

func TestAppendResponse(t *testing.T) {
	cases := []struct {
		rid, data, want string
	}{
		{"2", "", `{"rid":2}`},
		{"5", "", `{"rid":5}`},
		{"7", `{"youSent":{"b":2}}`, `{"rid":7,"data":{"youSent":{"b":2}}}`},
		{"16", `{"isAuthenticated":true,"authError":null}`, `{"rid":16,"data":{"isAuthenticated":true,"authError":null}}`},
		{"57", `null`, `{"rid":57,"data":null}`},
		{"1.5e3", `1`, `{"rid":1.5e3,"data":1}`},
	}
	for _, c := range cases {
		got := AppendResponse(nil, json.RawMessage(c.rid), []byte(c.data))
		if string(got) != c.want {
			t.Errorf("AppendResponse(%s, %s) = %s, want %s", c.rid, c.data, got, c.want)
		}
	}
}

func TestAppendErrorResponse(t *testing.T) {
	cases := []struct {
		rid  string
		err  *Error
		want string
	}{
		{"8", NewError("MyAppError", "Procedure failed on purpose", "extra", 42),
			`{"rid":8,"error":{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}}`},
		{"9", NewError(ErrNameSilentMiddleware, "The invoke AGAction was blocked by inbound middleware", "type", "inbound"),
			`{"rid":9,"error":{"message":"The invoke AGAction was blocked by inbound middleware","name":"SilentMiddlewareBlockedError","type":"inbound"}}`},
		{"17", NewError(ErrNameAuthTokenInvalid, "invalid token", "isBadToken", true),
			`{"rid":17,"error":{"message":"invalid token","name":"AuthTokenInvalidError","isBadToken":true}}`},
		{"4", NewError(ErrNameInvalidAction, "Client publish feature is disabled"),
			`{"rid":4,"error":{"message":"Client publish feature is disabled","name":"InvalidActionError"}}`},
		{"1", &Error{Message: "The server is waiting for initial broker connections"},
			`{"rid":1,"error":{"message":"The server is waiting for initial broker connections"}}`},
		// A field that cannot be encoded falls back to name and message.
		{"3", NewError("BadField", "m", "fn", func() {}),
			`{"rid":3,"error":{"message":"m","name":"BadField"}}`},
	}
	for _, c := range cases {
		got := AppendErrorResponse(nil, json.RawMessage(c.rid), c.err)
		if string(got) != c.want {
			t.Errorf("AppendErrorResponse(%s, %v) =\n %s\nwant\n %s", c.rid, c.err, got, c.want)
		}
	}
}

func TestAppendBatch(t *testing.T) {
	got := AppendBatch(nil, [][]byte{
		[]byte(`{"event":"b1","data":1}`),
		[]byte(`{"event":"b2","data":2}`),
		AppendPublish(nil, "room2", []byte(`"batched-pub"`)),
	})
	want := `[{"event":"b1","data":1},{"event":"b2","data":2},{"event":"#publish","data":{"channel":"room2","data":"batched-pub"}}]`
	if string(got) != want {
		t.Errorf("AppendBatch = %s, want %s", got, want)
	}
	if got := AppendBatch(nil, nil); string(got) != "[]" {
		t.Errorf("empty AppendBatch = %s", got)
	}
}

func TestHandshakeResponseMarshal(t *testing.T) {
	cases := []struct {
		r    HandshakeResponse
		want string
	}{
		{HandshakeResponse{ID: "X7aBtfnPJrbHTRPZAAAA", PingTimeout: 30000},
			`{"id":"X7aBtfnPJrbHTRPZAAAA","pingTimeout":30000,"isAuthenticated":false}`},
		{HandshakeResponse{ID: "SaI4Vef4FOJjlDy3AAAB", PingTimeout: 30000, IsAuthenticated: true},
			`{"id":"SaI4Vef4FOJjlDy3AAAB","pingTimeout":30000,"isAuthenticated":true}`},
		{HandshakeResponse{ID: "utsFs5BXbPYX8yS2AAAC", PingTimeout: 30000,
			AuthError: NewError(ErrNameAuthTokenExpired, "jwt expired", "expiry", "2026-11-22T21:43:58.000Z", "isBadToken", true)},
			`{"id":"utsFs5BXbPYX8yS2AAAC","pingTimeout":30000,"authError":{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"2026-11-22T21:43:58.000Z","isBadToken":true},"isAuthenticated":false}`},
		{HandshakeResponse{ID: "adFlt791gcj0ocP4AAAD", PingTimeout: 30000,
			AuthError: NewError(ErrNameAuthTokenInvalid, "invalid signature", "isBadToken", true)},
			`{"id":"adFlt791gcj0ocP4AAAD","pingTimeout":30000,"authError":{"message":"invalid signature","name":"AuthTokenInvalidError","isBadToken":true},"isAuthenticated":false}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("Marshal(%+v) =\n %s\nwant\n %s", c.r, got, c.want)
		}
		// The full response frame.
		frame := AppendResponse(nil, json.RawMessage("1"), got)
		if want := `{"rid":1,"data":` + c.want + `}`; string(frame) != want {
			t.Errorf("response frame = %s, want %s", frame, want)
		}
	}
}

func TestOtherDataMarshal(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{AuthenticateResponse{IsAuthenticated: true}, `{"isAuthenticated":true,"authError":null}`},
		{AuthenticateResponse{AuthError: NewError(ErrNameAuthTokenNotBefore, "jwt not active", "date", "2030-01-01T00:00:00.000Z")},
			`{"isAuthenticated":false,"authError":{"message":"jwt not active","name":"AuthTokenNotBeforeError","date":"2030-01-01T00:00:00.000Z"}}`},
		{SetAuthTokenData{Token: "a.b.c"}, `{"token":"a.b.c"}`},
		{KickOutData{Channel: "room1", Message: "bye"}, `{"channel":"room1","message":"bye"}`},
		{KickOutData{Channel: "room1"}, `{"channel":"room1"}`},
		{SubscribeRequest{Channel: "room1"}, `{"channel":"room1"}`},
		{SubscribeRequest{Channel: "private", WaitForAuth: true, Data: json.RawMessage(`{"k":"v"}`)}, `{"channel":"private","waitForAuth":true,"data":{"k":"v"}}`},
		{PublishData{Channel: "room1", Data: json.RawMessage(`{"text":"hi"}`)}, `{"channel":"room1","data":{"text":"hi"}}`},
		{HandshakeRequest{}, `{"authToken":null}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("Marshal(%T) = %s, want %s", c.v, got, c.want)
		}
	}
}

func TestErrorMarshal(t *testing.T) {
	cases := []struct {
		e    *Error
		want string
	}{
		{&Error{Message: "x"}, `{"message":"x"}`},
		{&Error{Name: "N", Message: ""}, `{"message":"","name":"N"}`},
		{NewError(ErrNameBroker, "Failed to subscribe socket to the b channel - InvalidActionError: Socket VXBtylIVSrJP-mIVAAAJ tried to exceed the channel subscription limit of 1"),
			`{"message":"Failed to subscribe socket to the b channel - InvalidActionError: Socket VXBtylIVSrJP-mIVAAAJ tried to exceed the channel subscription limit of 1","name":"BrokerError"}`},
		{NewError("BadConnectionError", "Event #x was aborted", "type", "disconnect", "code", 1006, "reason", "Socket hung up"),
			`{"message":"Event #x was aborted","name":"BadConnectionError","type":"disconnect","code":1006,"reason":"Socket hung up"}`},
		// Fields named message or name cannot override the real ones.
		{NewError("N", "m", "message", "other", "name", "other", "k", nil), `{"message":"m","name":"N","k":null}`},
		// An odd trailing key has no value and is dropped.
		{NewError("N", "m", "k"), `{"message":"m","name":"N"}`},
		{NewError("N", "quote\" <tag> \u2028", "nested", map[string]any{"a": []int{1, 2}}),
			"{\"message\":\"quote\\\" <tag> \u2028\",\"name\":\"N\",\"nested\":{\"a\":[1,2]}}"},
	}
	for _, c := range cases {
		// MarshalJSON gives JSON.stringify's exact bytes; AppendErrorResponse
		// uses it directly.
		got, err := c.e.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%v): %v", c.e, err)
		}
		if string(got) != c.want {
			t.Errorf("MarshalJSON(%v) =\n %s\nwant\n %s", c.e, got, c.want)
		}
		// Through encoding/json (as inside HandshakeResponse) the output is
		// re-compacted and HTML-escaped: the same JSON value.
		std, err := json.Marshal(c.e)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", c.e, err)
		}
		if !jsonEqual(t, std, got) {
			t.Errorf("Marshal(%v) = %s, not the same value as %s", c.e, std, got)
		}
	}
	if _, err := json.Marshal(NewError("N", "m", "ch", make(chan int))); err == nil {
		t.Error("Marshal of an unencodable field succeeded")
	}
}

func TestErrorUnmarshal(t *testing.T) {
	cases := []struct {
		in   string
		want Error
	}{
		{`{"message":"Procedure failed on purpose","name":"MyAppError","extra":42}`,
			Error{Name: "MyAppError", Message: "Procedure failed on purpose", Fields: []Field{{"extra", json.Number("42")}}}},
		{`{"message":"jwt expired","name":"AuthTokenExpiredError","expiry":"2026-11-22T21:43:58.000Z","isBadToken":true}`,
			Error{Name: ErrNameAuthTokenExpired, Message: "jwt expired", Fields: []Field{{"expiry", "2026-11-22T21:43:58.000Z"}, {"isBadToken", true}}}},
		{`{"name":"N","message":"m"}`, Error{Name: "N", Message: "m"}},
		{`{"message":"only"}`, Error{Message: "only"}},
		{`"a string error"`, Error{Message: "a string error"}},
		{` {"message":"m","nested":{"a":[1,"x"]},"n":null} `,
			Error{Message: "m", Fields: []Field{{"nested", map[string]any{"a": []any{json.Number("1"), "x"}}}, {"n", nil}}}},
		// Non-string name or message are ignored, as hydrateError would
		// produce something unusable anyway.
		{`{"message":5,"name":true}`, Error{}},
	}
	for _, c := range cases {
		var e Error
		if err := json.Unmarshal([]byte(c.in), &e); err != nil {
			t.Errorf("Unmarshal(%s): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(e, c.want) {
			t.Errorf("Unmarshal(%s) = %#v, want %#v", c.in, e, c.want)
		}
	}
	for _, in := range []string{`null`, `5`, `[]`, `{"message":}`, `{`} {
		var e Error
		if err := json.Unmarshal([]byte(in), &e); err == nil {
			t.Errorf("Unmarshal(%s) succeeded: %#v", in, e)
		}
	}
	// Reusing an Error value does not keep old fields.
	e := Error{Name: "Old", Fields: []Field{{"x", 1}}}
	if err := json.Unmarshal([]byte(`{"message":"new"}`), &e); err != nil || e.Name != "" || len(e.Fields) != 0 {
		t.Errorf("reused Error = %#v, %v", e, err)
	}
	e = Error{Name: "Old", Fields: []Field{{"x", 1}}}
	if err := json.Unmarshal([]byte(`"bare"`), &e); err != nil || !reflect.DeepEqual(e, Error{Message: "bare"}) {
		t.Errorf("reused Error with a string = %#v, %v", e, err)
	}
	var ie Error
	_ = json.Unmarshal([]byte(`{"message":"m","isBadToken":true}`), &ie)
	if !ie.IsBadToken() {
		t.Error("IsBadToken() = false for isBadToken:true")
	}
	_ = json.Unmarshal([]byte(`{"message":"m","isBadToken":"yes"}`), &ie)
	if ie.IsBadToken() {
		t.Error("IsBadToken() = true for a non-boolean isBadToken")
	}
	if got := NewError("N", "m").Error(); got != "N: m" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&Error{Message: "m"}).Error(); got != "m" {
		t.Errorf("Error() = %q", got)
	}
}

// jsStringify holds JSON.stringify(s) as Node 20 prints it, for strings Go
// can hold as valid UTF-8.
var jsStringify = []struct{ in, want string }{
	{"", `""`},
	{"abc", `"abc"`},
	{`a"b`, `"a\"b"`},
	{`back\slash`, `"back\\slash"`},
	{"\n\r\t\b\f", `"\n\r\t\b\f"`},
	{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
	{"\x7f", "\"\x7f\""},
	{"<>&", `"<>&"`},
	{"\u2028\u2029", "\"\u2028\u2029\""},
	{"héllo wörld", `"héllo wörld"`},
	{"日本語", `"日本語"`},
	{"😀", `"😀"`},
	{"e\u0301", "\"e\u0301\""},
	{"/slash", `"/slash"`},
	{"\x0b\x0e\x10\x1a", `"\u000b\u000e\u0010\u001a"`},
}

func TestAppendStringMatchesJSONStringify(t *testing.T) {
	for _, c := range jsStringify {
		got := AppendString([]byte("x"), c.in)
		if string(got) != "x"+c.want {
			t.Errorf("AppendString(%q) = %s, want %s", c.in, got[1:], c.want)
		}
	}
}

func TestAppendStringInvalidUTF8(t *testing.T) {
	cases := []struct{ in, want string }{
		{"\xff", "\"\ufffd\""},
		{"a\xffb", "\"a\ufffdb\""},
		{"\xc3", "\"\ufffd\""},                               // truncated 2-byte sequence
		{"\xc3(", "\"\ufffd(\""},                             // bad continuation
		{"\xed\xa0\x80", "\"\ufffd\ufffd\ufffd\""},           // a UTF-16 surrogate
		{"\xf4\x90\x80\x80", "\"\ufffd\ufffd\ufffd\ufffd\""}, // above U+10FFFF
		{"ok\xe2\x82", "\"ok\ufffd\ufffd\""},
		{"\"\xff\n", "\"\\\"\ufffd\\n\""},
	}
	for _, c := range cases {
		got := AppendString(nil, c.in)
		if string(got) != c.want {
			t.Errorf("AppendString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestAppendStringAgreesWithEncodingJSON checks that for every string
// AppendString's output is valid JSON that decodes to the same string that
// encoding/json's output decodes to.
func TestAppendStringAgreesWithEncodingJSON(t *testing.T) {
	inputs := []string{"\xff\xfe", "a\x00b", strings.Repeat("é", 40), "tab\there", "\ufffd", "\xef\xbf\xbd"}
	for _, c := range jsStringify {
		inputs = append(inputs, c.in)
	}
	for i := 0; i < 256; i++ {
		inputs = append(inputs, string([]byte{byte(i)}), "a"+string([]byte{byte(i)})+"z")
	}
	for _, in := range inputs {
		checkAppendString(t, in)
	}
}

func checkAppendString(t testing.TB, in string) {
	t.Helper()
	got := AppendString(nil, in)
	if !json.Valid(got) {
		t.Fatalf("AppendString(%q) = %q is not valid JSON", in, got)
	}
	if !utf8.Valid(got) {
		t.Fatalf("AppendString(%q) = %q is not valid UTF-8", in, got)
	}
	std, _ := json.Marshal(in)
	var a, b string
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(std, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("AppendString(%q) decodes to %q, encoding/json's to %q", in, a, b)
	}
	if utf8.ValidString(in) && a != in {
		t.Fatalf("AppendString(%q) decodes to %q", in, a)
	}
}

func TestVersionFrames(t *testing.T) {
	if string(V1.PingFrame()) != "#1" || string(V1.PongFrame()) != "#2" {
		t.Errorf("v1 frames = %q %q", V1.PingFrame(), V1.PongFrame())
	}
	if p := V2.PingFrame(); p == nil || len(p) != 0 {
		t.Errorf("v2 ping = %q, want an empty non-nil frame", p)
	}
	if p := V2.PongFrame(); p == nil || len(p) != 0 {
		t.Errorf("v2 pong = %q, want an empty non-nil frame", p)
	}
	if Classify(V1.PingFrame()) != KindV1Ping || Classify(V1.PongFrame()) != KindV1Pong || Classify(V2.PingFrame()) != KindEmpty {
		t.Error("ping frames do not classify as pings")
	}
}

func TestCloseReason(t *testing.T) {
	for _, code := range []int{
		CloseNormal, CloseGoingAway, CloseUnsupportedData, CloseNoStatus, CloseAbnormal, CloseMessageTooBig,
		ClosePingTimeout, ClosePongTimeout, CloseAuthSignFailed, CloseHandshakeFailed, CloseAuthSaveFailed,
		CloseHandshakeTimeout, CloseBrokerBindFailed, CloseConnectTimeout, CloseHandshakeRejected,
		CloseMessageBeforeHandshake, CloseSlowConsumer, CloseRateLimited, CloseServerOverloaded,
	} {
		if CloseReason(code) == "" {
			t.Errorf("CloseReason(%d) is empty", code)
		}
		// sccgo's own codes must stay on the client's reconnect path.
		if code >= ClosePermanentMin {
			t.Errorf("code %d is permanent", code)
		}
	}
	// The texts of sc-errors' socketProtocolErrorStatuses.
	for code, want := range map[int]string{
		1001: "Socket was disconnected",
		1006: "Socket hung up",
		4000: "Server ping timed out",
		4001: "Client pong timed out",
		4005: "Did not receive #handshake from client before timeout",
		4008: "Server rejected handshake from client",
		4009: "Server received a message before the client handshake",
	} {
		if got := CloseReason(code); got != want {
			t.Errorf("CloseReason(%d) = %q, want %q", code, got, want)
		}
	}
	if CloseReason(4999) != "" || CloseReason(0) != "" {
		t.Error("CloseReason of an unknown code is not empty")
	}
}

// BenchmarkDecodePackets measures the inbound path of a publish.
func BenchmarkDecodePackets(b *testing.B) {
	msg := []byte(`{"event":"#publish","data":{"channel":"room1","data":{"text":"hi via invokePublish","n":12345}},"cid":5}`)
	b.ReportAllocs()
	for b.Loop() {
		p, err := DecodePackets(msg)
		if err != nil || len(p) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendPublish measures the fan-out encoding of a publish.
func BenchmarkAppendPublish(b *testing.B) {
	data := []byte(`{"text":"hi via invokePublish","n":12345}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublish(buf[:0], "room1", data)
	}
	if !bytes.HasPrefix(buf, []byte(`{"event":"#publish"`)) {
		b.Fatal(string(buf))
	}
}

func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func BenchmarkDecodePublishBatch(b *testing.B) {
	var pkts [][]byte
	for i := 0; i < 8; i++ {
		pkts = append(pkts, AppendPublish(nil, "room-1", []byte(`{"p":1,"s":42,"t":1795383845000000000,"x":"xxxxxxxxxxxxxxxx"}`)))
	}
	frame := AppendBatch(nil, pkts)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		ps, err := DecodePackets(frame)
		if err != nil || len(ps) != 8 {
			b.Fatal(err)
		}
		if _, err := DecodePublish(ps[7].Data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSubscribeBatch measures a client's resubscribe on
// reconnect: 100 #subscribe packets in one frame, each with its data
// decoded.
func BenchmarkDecodeSubscribeBatch(b *testing.B) {
	pkts := make([][]byte, 100)
	for j := range pkts {
		pkts[j] = AppendEvent(nil, EventSubscribe, []byte(fmt.Sprintf(`{"channel":"room-%d"}`, j)), int64(10+j))
	}
	frame := AppendBatch(nil, pkts)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		ps, err := DecodePacketsMax(frame, 100)
		if err != nil || len(ps) != 100 {
			b.Fatal(err)
		}
		for i := range ps {
			if _, err := DecodeSubscribe(ps[i].Data); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestFastPathMatchesGeneral checks that the #publish fast paths decode
// exactly what the general decoder does, and fall back on anything else.
func TestFastPathMatchesGeneral(t *testing.T) {
	for _, msg := range fastPathCases {
		compareFastGeneral(t, msg)
	}
}

// FuzzFastPath holds the fast paths to the general decoder on any input.
func FuzzFastPath(f *testing.F) {
	for _, msg := range fastPathCases {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		if Classify([]byte(msg)) != KindJSON || (msg[0] != '{' && msg[0] != '[') {
			return
		}
		compareFastGeneral(t, msg)
	})
}

var fastPathCases = []string{
	`{"event":"#publish","data":{"channel":""},"cid":00000000}`,
	`{"event":"#publish","data":{"channel":"a"},"cid":-}`,
	`{"event":"#publish","data":{"channel":"room1","data":{"a":[1,2,{"b":"}"}]}}}`,
	`{"event":"#publish","data":{"channel":"room1","data":"x\"y"},"cid":17}`,
	`{"event":"#publish","data":{"channel":"room1"}}`,
	`{"event":"#publish","data":{"channel":"r\u00e9","data":1}}`,
	`{"event":"#publish","data":{"channel":"room1","data":1},"cid":1.5}`,
	`{"event":"#publish","data":{"channel":"room1","data":tru}}`,
	`{"event":"#publish","data":{"channel":"room1","data":{"a":1}},"rid":3}`,
	`[{"event":"#publish","data":{"channel":"a","data":1}},{"event":"#publish","data":{"channel":"b","data":[2]}}]`,
	`[{"event":"#publish","data":{"channel":"a","data":1}},{"rid":4}]`,
	`[{"event":"#publish","data":{"channel":"a","data":1}},]`,
	`{"event":"#publish","data":{"channel":"a","data":1,"offset":1,"epoch":0"}}`,
	`{"event":"#publish","data":{"channel":"a","data":1,"offset":1,"epoch":"e"}}`,
	`{"event":"#subscribe","data":{"channel":"room-1"},"cid":2}`,
	`{"event":"#subscribe","data":{"channel":"room-1","waitForAuth":true,"data":null},"cid":2}`,
	`{"event":"#unsubscribe","data":"room-1","cid":3}`,
	`{"event":"#removeAuthToken"}`,
	`{"event":"custom","cid":4}`,
	`{"event":"custom","data":null}`,
	`{"event":"cu\"stom","data":1,"cid":4}`,
	`{"event":"custom","data":1,"cid":04}`,
	`{"event":"custom","data":1,"cid":4,"rid":5}`,
	`{"event":"custom","data":1 ,"cid":4}`,
	`{"event":"custom","data":[1,2}`,
	`{"event":"custom","data":tru,"cid":4}`,
	`{"event":"\u00e9","data":{}}`,
	"{\"event\":\"\xff\",\"data\":1}",
	"{\"event\":\"a\x01\",\"data\":1}",
	`[{"event":"#subscribe","data":{"channel":"a"},"cid":10},{"event":"#subscribe","data":{"channel":"b"},"cid":11}]`,
	`[{"event":"#subscribe","data":{"channel":"a"},"cid":10},{"event":"#publish","data":{"channel":"b","data":2}}]`,
	`[{"event":"#subscribe","data":{"channel":"a"},"cid":10},{"event":"x","data":01}]`,
}

func compareFastGeneral(t *testing.T, msg string) {
	t.Helper()
	fast, ferr := DecodePackets([]byte(msg))
	// The general decoder, as the fast path must agree with it.
	var general []Packet
	var gerr error
	trimmed := []byte(msg)
	if trimmed[0] == '{' {
		var p Packet
		if w, err := objectFields(trimmed); err != nil {
			gerr = err
		} else {
			_ = w
			gerr = decodeGeneral(trimmed, &p)
			general = []Packet{p}
		}
	} else {
		var raws []json.RawMessage
		if gerr = json.Unmarshal(trimmed, &raws); gerr == nil {
			for _, r := range raws {
				var p Packet
				if len(r) > 0 && r[0] == '{' {
					_ = decodeGeneral(r, &p)
				}
				general = append(general, p)
			}
		}
	}
	if (ferr == nil) != (gerr == nil) {
		t.Errorf("%s: fast err %v, general err %v", msg, ferr, gerr)
		return
	}
	if len(fast) != len(general) {
		t.Errorf("%s: %d packets, general %d", msg, len(fast), len(general))
		return
	}
	for i := range fast {
		f, g := fast[i], general[i]
		if f.Event != g.Event || f.HasEvent != g.HasEvent || string(f.Data) != string(g.Data) ||
			string(f.CID) != string(g.CID) || string(f.RID) != string(g.RID) {
			t.Errorf("%s: packet %d fast %+v, general %+v", msg, i, f, g)
		}
		if f.Event == EventPublish {
			fp, ferr := DecodePublish(f.Data)
			gp, gerr := decodePublishGeneral(g.Data)
			if (ferr == nil) != (gerr == nil) || fp.Channel != gp.Channel || string(fp.Data) != string(gp.Data) {
				t.Errorf("%s: publish fast %+v %v, general %+v %v", msg, fp, ferr, gp, gerr)
			}
		}
	}
}

func TestDecodePacketsMax(t *testing.T) {
	batch := func(n int) []byte {
		b := []byte{'['}
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"event":"e","data":[1,{"a":"]"}]}`...)
		}
		return append(b, ']')
	}
	for _, tc := range []struct {
		n, max  int
		tooMany bool
	}{
		{1, 1, false}, {3, 3, false}, {4, 3, true}, {300000, 100, true}, {5, 0, false},
	} {
		pkts, err := DecodePacketsMax(batch(tc.n), tc.max)
		if tc.tooMany {
			if !errors.Is(err, ErrTooManyPackets) {
				t.Errorf("%d packets, max %d: err %v, want ErrTooManyPackets", tc.n, tc.max, err)
			}
			continue
		}
		if err != nil || len(pkts) != tc.n {
			t.Errorf("%d packets, max %d: %d packets, err %v", tc.n, tc.max, len(pkts), err)
		}
	}
	// A single packet is never a batch.
	if _, err := DecodePacketsMax([]byte(`{"event":"e"}`), 1); err != nil {
		t.Fatal(err)
	}
	// Past the fast scan's depth, the general decoder counts.
	deep := `[` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,{},{}]`
	if _, err := DecodePacketsMax([]byte(deep), 2); !errors.Is(err, ErrTooManyPackets) {
		t.Fatalf("deep batch: err %v, want ErrTooManyPackets", err)
	}
}

func TestPublishPos(t *testing.T) {
	f := AppendPublishPos(nil, "room", []byte(`{"t":1}`), 42, "AbCd")
	want := `{"event":"#publish","data":{"channel":"room","data":{"t":1},"offset":42,"epoch":"AbCd"}}`
	if string(f) != want {
		t.Fatalf("frame %s", f)
	}
	pk, err := DecodePackets(f)
	if err != nil || len(pk) != 1 {
		t.Fatal(pk, err)
	}
	pd, err := DecodePublishValid(pk[0].Data)
	if err != nil || pd.Channel != "room" || string(pd.Data) != `{"t":1}` {
		t.Fatalf("publish %+v %v", pd, err)
	}
	if pos, ok := DecodePublishPos(pk[0].Data); !ok || pos != (StreamPosition{42, "AbCd"}) {
		t.Fatalf("pos %+v %v", pos, ok)
	}
	if string(AppendPublishPos(nil, "c", nil, 0, "e")) != string(AppendPublish(nil, "c", nil)) {
		t.Fatal("offset 0 is not the plain frame")
	}
	if _, ok := DecodePublishPos([]byte(`{"channel":"c","data":{"offset":3,"epoch":"x"}}`)); ok {
		t.Fatal("an offset inside the application's data was taken for the position")
	}
}

func TestRecoverRequest(t *testing.T) {
	for in, want := range map[string]bool{
		`{"recover":{"offset":5,"epoch":"e"}}`:             true,
		`{"token":"t","recover":{"offset":0,"epoch":"e"}}`: true,
		`{"recover":{"offset":5}}`:                         false,
		`{"recover":{"epoch":"e"}}`:                        false,
		`{"recover":null}`:                                 false,
		`"recover"`:                                        false,
		`{"recover":{"offset":-1,"epoch":"e"}}`:            false,
		``:                                                 false,
	} {
		if _, ok := RecoverRequest([]byte(in)); ok != want {
			t.Errorf("RecoverRequest(%s) ok=%v", in, ok)
		}
	}
}

func FuzzRecoverRequest(f *testing.F) {
	for _, s := range []string{`{"recover":{"offset":5,"epoch":"e"}}`, `{"recover":{"offset":1e3,"epoch":""}}`, `{"channel":"c","offset":1,"epoch":"e"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if pos, ok := RecoverRequest(b); ok && pos.Epoch == "" {
			t.Fatalf("%q: recover without an epoch", b)
		}
		if pos, ok := DecodePublishPos(b); ok && pos.Epoch == "" {
			t.Fatalf("%q: position without an epoch", b)
		}
	})
}
