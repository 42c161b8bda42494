package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Reserved SocketCluster event names.
const (
	EventHandshake       = "#handshake"
	EventSubscribe       = "#subscribe"
	EventUnsubscribe     = "#unsubscribe"
	EventPublish         = "#publish"
	EventAuthenticate    = "#authenticate"
	EventRemoveAuthToken = "#removeAuthToken"
	EventSetAuthToken    = "#setAuthToken"
	EventKickOut         = "#kickOut"
)

// Version is a SocketCluster protocol version. It only changes the ping and
// pong frames, and it is configured on both ends, never negotiated.
type Version int

// Protocol versions.
const (
	V1 Version = 1 // ping "#1", pong "#2"
	V2 Version = 2 // ping and pong are empty frames
)

// PingFrame returns the ping a server sends in version v.
func (v Version) PingFrame() []byte {
	if v == V1 {
		return []byte("#1")
	}
	return []byte{}
}

// PongFrame returns the pong a client sends in version v.
func (v Version) PongFrame() []byte {
	if v == V1 {
		return []byte("#2")
	}
	return []byte{}
}

// Kind says what a text message is, by sc-formatter's rules.
type Kind uint8

// Message kinds.
const (
	KindEmpty  Kind = iota // "": a v2 ping or pong
	KindV1Ping             // "#1"
	KindV1Pong             // "#2"
	KindRaw                // not JSON-looking: a raw string
	KindJSON               // starts with optional whitespace then '{' or '['
)

// Classify returns the kind of a text message. It looks at the first bytes
// only; a KindJSON message may still fail to parse, and is then raw.
func Classify(msg []byte) Kind {
	switch {
	case len(msg) == 0:
		return KindEmpty
	case len(msg) == 2 && msg[0] == '#' && msg[1] == '1':
		return KindV1Ping
	case len(msg) == 2 && msg[0] == '#' && msg[1] == '2':
		return KindV1Pong
	}
	for _, c := range msg {
		switch c {
		case ' ', '\n', '\r', '\t':
			continue
		case '{', '[':
			return KindJSON
		}
		return KindRaw
	}
	return KindRaw
}

// Packet is one decoded SocketCluster packet. Exactly one of these holds:
// an event (Event set, CID nil), an RPC request (Event set, CID set), or a
// response (RID set). Anything else has Kind() == PacketOther.
type Packet struct {
	// Event is the event or procedure name, when "event" was a string.
	Event string
	// HasEvent is true when "event" was a string.
	HasEvent bool
	// Data is the raw "data" value, or nil when absent.
	Data json.RawMessage
	// CID is the raw numeric "cid", or nil when absent or not a number.
	CID json.RawMessage
	// RID is the raw numeric "rid", or nil when absent or not a number.
	RID json.RawMessage
	// Error is the raw "error" value of a response, or nil.
	Error json.RawMessage
}

// PacketKind classifies a Packet the way SocketCluster v20 does, with typeof
// checks.
type PacketKind uint8

// Packet kinds.
const (
	PacketOther PacketKind = iota
	PacketEvent
	PacketRequest
	PacketResponse
)

// Kind returns what the packet is.
func (p *Packet) Kind() PacketKind {
	switch {
	case p.HasEvent && p.CID != nil:
		return PacketRequest
	case p.HasEvent:
		return PacketEvent
	case p.RID != nil:
		return PacketResponse
	}
	return PacketOther
}

// ErrNotJSON means a message is not a JSON packet or batch: by sc-formatter's
// rules it is a raw string.
var ErrNotJSON = errors.New("protocol: message is not a JSON packet")

// objectFields decodes a JSON object into its raw values by exact key.
// encoding/json matches struct fields case-insensitively, but JavaScript
// property names are case-sensitive: {"Event":"x"} has no event. A repeated
// key keeps its last value, as JSON.parse does.
func objectFields(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodePackets decodes a message that is one packet object or an array of
// them. Elements of an array that are not objects come back as packets of
// kind PacketOther, so the caller can treat them as raw messages. It returns
// ErrNotJSON (wrapped) when the message does not parse; it never panics.
func DecodePackets(msg []byte) ([]Packet, error) { return DecodePacketsMax(msg, 0) }

// ErrTooManyPackets means a batch holds more packets than the caller
// allows.
var ErrTooManyPackets = errors.New("protocol: batch has too many packets")

// DecodePacketsMax is DecodePackets for a batch of at most max packets (0:
// no limit). A longer batch is refused with ErrTooManyPackets after a scan
// of no more than its first max+1 elements, before any of them is decoded,
// so a huge batch of tiny packets costs little.
func DecodePacketsMax(msg []byte, max int) ([]Packet, error) {
	if Classify(msg) != KindJSON {
		return nil, ErrNotJSON
	}
	trimmed := bytes.TrimLeft(msg, " \n\r\t")
	if max > 0 && trimmed[0] == '[' && arrayLonger(trimmed, max) {
		return nil, ErrTooManyPackets
	}
	if trimmed[0] == '{' {
		var p Packet
		if err := decodeOne(trimmed, &p); err != nil {
			return nil, err
		}
		return []Packet{p}, nil
	}
	// Fast path: a batch of canonical packets (#publish batches that a
	// busy subscriber receives, #subscribe batches of a client that
	// resubscribes) decodes without encoding/json.
	if raws, ok := splitArray(trimmed); ok && len(raws) > 0 {
		out := make([]Packet, len(raws))
		fast := true
		for i, r := range raws {
			if !fastPacket(r, &out[i]) {
				fast = false
				break
			}
		}
		if fast {
			return out, nil
		}
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, errors.Join(ErrNotJSON, err)
	}
	if max > 0 && len(raws) > max {
		// An array the scan could not follow (too deep for it); the
		// general decoder has counted it exactly.
		return nil, ErrTooManyPackets
	}
	out := make([]Packet, len(raws))
	for i, r := range raws {
		if len(r) > 0 && r[0] == '{' {
			if err := decodeOne(r, &out[i]); err != nil {
				out[i] = Packet{}
			}
		}
	}
	return out, nil
}

func decodeOne(b []byte, p *Packet) error {
	if fastPacket(b, p) {
		return nil
	}
	return decodeGeneral(b, p)
}

// decodeGeneral decodes any packet object with encoding/json.
func decodeGeneral(b []byte, p *Packet) error {
	w, err := objectFields(b)
	if err != nil {
		return errors.Join(ErrNotJSON, err)
	}
	*p = Packet{}
	if ev := w["event"]; len(ev) > 0 && ev[0] == '"' {
		if err := json.Unmarshal(ev, &p.Event); err == nil {
			p.HasEvent = true
		}
	}
	if d := w["data"]; !isNull(d) {
		p.Data = d
	}
	if c := w["cid"]; isNumber(c) {
		p.CID = c
	}
	if r := w["rid"]; isNumber(r) {
		p.RID = r
	}
	if e := w["error"]; !isNull(e) {
		p.Error = e
	}
	return nil
}

// isNull reports whether a raw value is absent. A JSON null is kept as data
// (SocketCluster sends "data":null), so only a missing value counts.
func isNull(b json.RawMessage) bool { return len(b) == 0 }

func isNumber(b json.RawMessage) bool {
	if len(b) == 0 {
		return false
	}
	c := b[0]
	return c == '-' || (c >= '0' && c <= '9')
}

// ParseCallID returns a raw cid or rid as an int64, for tables keyed by id.
// Non-integral ids return ok == false.
func ParseCallID(b json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// HandshakeRequest is the data of a #handshake.
type HandshakeRequest struct {
	AuthToken *string `json:"authToken"`
}

// HandshakeResponse is the data of the reply to #handshake. The field order
// matches socketcluster-server's.
type HandshakeResponse struct {
	ID              string `json:"id"`
	PingTimeout     int64  `json:"pingTimeout"`
	AuthError       *Error `json:"authError,omitempty"`
	IsAuthenticated bool   `json:"isAuthenticated"`
}

// SubscribeRequest is the data of a #subscribe.
type SubscribeRequest struct {
	Channel     string          `json:"channel"`
	WaitForAuth bool            `json:"waitForAuth,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
}

// PublishData is the data of a #publish, in both directions. Data is passed
// through as raw JSON.
type PublishData struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// AuthenticateResponse is the data of a successful or soft-failed
// #authenticate reply.
type AuthenticateResponse struct {
	IsAuthenticated bool   `json:"isAuthenticated"`
	AuthError       *Error `json:"authError"`
}

// SetAuthTokenData is the data of #setAuthToken.
type SetAuthTokenData struct {
	Token string `json:"token"`
}

// KickOutData is the data of #kickOut.
type KickOutData struct {
	Channel string `json:"channel"`
	Message string `json:"message,omitempty"`
}

// ErrBadChannel means a channel name is not a valid JSON string.
var ErrBadChannel = errors.New("protocol: channel name is not a string")

// DecodePublish decodes #publish data, keeping Data as the raw bytes of the
// input (no copy, no re-encoding).
func DecodePublish(data json.RawMessage) (PublishData, error) {
	if ch, d, n, ok := fastPublishData(data); ok && n == len(data) {
		return PublishData{Channel: ch, Data: d}, nil
	}
	return decodePublishGeneral(data)
}

// DecodePublishValid is DecodePublish for data already known to be valid
// JSON, as every Packet.Data that DecodePackets returns is: it does not
// validate the payload a second time. Given invalid JSON its result is
// unspecified (but it never panics).
func DecodePublishValid(data json.RawMessage) (PublishData, error) {
	if ch, d, n, ok := fastPublish(data, false); ok && n == len(data) {
		return PublishData{Channel: ch, Data: d}, nil
	}
	return decodePublishGeneral(data)
}

// decodePublishGeneral decodes any #publish data with encoding/json.
func decodePublishGeneral(data json.RawMessage) (PublishData, error) {
	p, err := objectFields(data)
	if err != nil {
		return PublishData{}, errors.Join(ErrBadChannel, err)
	}
	ch, ok := decodeString(p["channel"])
	if !ok {
		return PublishData{}, ErrBadChannel
	}
	return PublishData{Channel: ch, Data: p["data"]}, nil
}

// DecodeSubscribe decodes #subscribe data.
func DecodeSubscribe(data json.RawMessage) (SubscribeRequest, error) {
	// Fast path: {"channel":"C"}, what socketcluster-client sends.
	if name, _, n, ok := fastPublishSpan(data, false); ok && n == len(data) && len(name)+len(pubDataPrefix)+2 == n {
		return SubscribeRequest{Channel: string(name)}, nil
	}
	p, err := objectFields(data)
	if err != nil {
		return SubscribeRequest{}, errors.Join(ErrBadChannel, err)
	}
	ch, ok := decodeString(p["channel"])
	if !ok {
		return SubscribeRequest{}, ErrBadChannel
	}
	return SubscribeRequest{Channel: ch, WaitForAuth: string(p["waitForAuth"]) == "true", Data: p["data"]}, nil
}

// DecodeString decodes a raw JSON string, such as the data of #unsubscribe
// or #authenticate.
func DecodeString(raw json.RawMessage) (string, bool) { return decodeString(raw) }

func decodeString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// AppendPublish appends the frame a subscriber receives:
// {"event":"#publish","data":{"channel":C,"data":D}}. data must be valid JSON
// (or empty, which leaves the field out). This is the hot path: it encodes
// once and the bytes are shared by every subscriber.
func AppendPublish(dst []byte, channel string, data []byte) []byte {
	dst = append(dst, `{"event":"#publish","data":{"channel":`...)
	dst = AppendString(dst, channel)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, "}}"...)
}

// AppendEvent appends {"event":E,"data":D,"cid":N}. An empty data leaves the
// data field out; cid <= 0 leaves the cid out (a transmit).
func AppendEvent(dst []byte, event string, data []byte, cid int64) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, event)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	if cid > 0 {
		dst = append(dst, `,"cid":`...)
		dst = strconv.AppendInt(dst, cid, 10)
	}
	return append(dst, '}')
}

// AppendResponse appends {"rid":R,"data":D}; an empty data leaves the data
// field out, as ag-request's end() does.
func AppendResponse(dst []byte, rid json.RawMessage, data []byte) []byte {
	dst = append(dst, `{"rid":`...)
	dst = append(dst, rid...)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

// AppendErrorResponse appends {"rid":R,"error":{…}}.
func AppendErrorResponse(dst []byte, rid json.RawMessage, e *Error) []byte {
	dst = append(dst, `{"rid":`...)
	dst = append(dst, rid...)
	dst = append(dst, `,"error":`...)
	eb, err := e.MarshalJSON()
	if err != nil {
		eb, _ = (&Error{Name: e.Name, Message: e.Message}).MarshalJSON()
	}
	dst = append(dst, eb...)
	return append(dst, '}')
}

// AppendBatch appends the packets as one JSON array. Each packet must be a
// complete JSON value.
func AppendBatch(dst []byte, packets [][]byte) []byte {
	dst = append(dst, '[')
	for i, p := range packets {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, p...)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping as JSON.stringify does:
// quotes, backslashes and control characters. Invalid UTF-8 becomes U+FFFD,
// so the output is always valid JSON.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendPublishPos appends the #publish frame of a publication on a
// channel with history: AppendPublish's frame with the publication's
// stream position in two more fields of its data object,
// {"channel":C,"data":D,"offset":N,"epoch":E}. socketcluster-client reads
// only channel and data, so stock clients are unaffected; clients that
// recover (the Go client, the JS helper) keep the last offset and epoch.
// offset 0 gives AppendPublish's frame.
func AppendPublishPos(dst []byte, channel string, data []byte, offset uint64, epoch string) []byte {
	if offset == 0 {
		return AppendPublish(dst, channel, data)
	}
	dst = append(dst, `{"event":"#publish","data":{"channel":`...)
	dst = AppendString(dst, channel)
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, `,"epoch":`...)
	dst = AppendString(dst, epoch)
	return append(dst, "}}"...)
}

// StreamPosition is a publication's or a subscription's place in a
// channel's history: the fields AppendPublishPos adds to #publish data,
// and the ones a #subscribe acknowledgement of such a channel carries.
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// DecodePublishPos reads the stream position of #publish data; ok is
// false when the publication carries none (a channel without history).
func DecodePublishPos(data json.RawMessage) (pos StreamPosition, ok bool) {
	if len(data) == 0 || data[len(data)-1] != '}' || !bytes.Contains(data, []byte(`"offset"`)) {
		return StreamPosition{}, false
	}
	// The form AppendPublishPos writes: the position ends the object.
	if i := bytes.LastIndex(data, []byte(posOffsetKey)); i > 0 {
		if n, off, ep, ok := posSuffix(data, i); ok && n == len(data) && len(ep) > 0 {
			return StreamPosition{Offset: off, Epoch: string(ep)}, true
		}
	}
	var v struct {
		Offset *uint64 `json:"offset"`
		Epoch  string  `json:"epoch"`
	}
	if json.Unmarshal(data, &v) != nil || v.Offset == nil || v.Epoch == "" {
		return StreamPosition{}, false
	}
	return StreamPosition{Offset: *v.Offset, Epoch: v.Epoch}, true
}

// SubscribeRecovery is what a #subscribe of a channel with history says
// in its acknowledgement's data: the channel, whether the publications
// missed since the asked position follow (Recovered; false when no
// recovery was asked or it was impossible: then the client has missed
// publications and must reload its state), and the stream position the
// client continues from.
type SubscribeRecovery struct {
	Channel   string `json:"channel"`
	Recovered bool   `json:"recovered"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	// Reason says why not Recovered when recovery was asked: "epoch"
	// (the history was lost), "gone" (the missed publications were
	// dropped), "limit" (too many missed), "ahead", "disabled" (the
	// channel has no recovery).
	Reason string `json:"reason,omitempty"`
}

// RecoverRequest reads the recovery a #subscribe asks for in its data:
// {"recover":{"offset":N,"epoch":E}}. ok is false when it asks none.
func RecoverRequest(data json.RawMessage) (pos StreamPosition, ok bool) {
	if len(data) == 0 || data[0] != '{' || !bytes.Contains(data, []byte(`"recover"`)) {
		return StreamPosition{}, false
	}
	var v struct {
		Recover *struct {
			Offset *uint64 `json:"offset"`
			Epoch  string  `json:"epoch"`
		} `json:"recover"`
	}
	if json.Unmarshal(data, &v) != nil || v.Recover == nil || v.Recover.Offset == nil || v.Recover.Epoch == "" {
		return StreamPosition{}, false
	}
	return StreamPosition{Offset: *v.Recover.Offset, Epoch: v.Recover.Epoch}, true
}
