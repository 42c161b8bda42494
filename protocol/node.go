package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Inter-node protocol versions this build speaks. Peers exchange a range in
// the first messages and use the highest version both speak.
const (
	NodeProtoMin = 1
	NodeProtoMax = 1
)

// Node roles.
const (
	RoleState    = "state"
	RoleBroker   = "broker"
	RoleFrontend = "frontend"
)

// MsgType is the 1-byte type that precedes every inter-node message.
// Values are append-only: never renumber or reuse one.
type MsgType uint8

// Message types. The comment says who sends it.
const (
	MsgChallenge   MsgType = 1  // server → dialer: nonce and version range
	MsgHello       MsgType = 2  // dialer → server: identity, versions, HMAC over the nonce
	MsgWelcome     MsgType = 3  // server → dialer: chosen version, server identity, HMAC over the dialer's nonce
	MsgReject      MsgType = 4  // either way: reason, then close
	MsgSubscribe   MsgType = 10 // frontend → broker: add channels (acked)
	MsgUnsubscribe MsgType = 11 // frontend → broker: remove channels
	MsgSync        MsgType = 12 // frontend → broker: the full channel set, replaces (acked)
	MsgSubAck      MsgType = 13 // broker → frontend: Subscribe/Sync with this ID is in force
	MsgPublish     MsgType = 14 // frontend → broker: one publish
	MsgPubAck      MsgType = 15 // broker → frontend: every Publish up to Seq was forwarded
	MsgDeliver     MsgType = 16 // broker → frontend: a publish for a channel the frontend holds
	MsgRingFloor   MsgType = 17 // frontend → broker: the publishes that follow were routed by ring Version or later
	MsgRing        MsgType = 20 // state → node: the committed ring
	MsgPrepare     MsgType = 21 // state → frontend: subscribe at the owners of ring Version
	MsgPrepared    MsgType = 22 // frontend → state: done preparing Version
	MsgCommit      MsgType = 23 // state → node: ring Version is committed
	MsgLeave       MsgType = 24 // broker → state: reshard me out (drain)
	MsgReleased    MsgType = 25 // state → broker: you are out of the ring; exit
	MsgStats       MsgType = 26 // node → state: counters for the status page
	MsgPing        MsgType = 27 // either way: liveness
	MsgPong        MsgType = 28 // either way: liveness

	// Presence (docs/presence.md): frontends report the members of
	// presence channels to the broker that owns each channel, and ask it
	// for members and counts.
	MsgPresenceJoin   MsgType = 40 // frontend → broker: members of a channel on this link (idempotent)
	MsgPresenceLeave  MsgType = 41 // frontend → broker: members that left a channel
	MsgPresenceQuery  MsgType = 42 // frontend → broker: members or counts of a channel
	MsgPresenceResult MsgType = 43 // broker → frontend: the answer to PresenceQuery ID
	// History and recovery (30–34).
	MsgHistory      MsgType = 30 // frontend → broker: a channel's position and publications after an offset
	MsgHistoryReply MsgType = 31 // broker → frontend: answers History, in order with the channel's Delivers
	// Replication between brokers (docs/guarantees.md): the owner of a
	// channel with history sends each publication to the channel's
	// standby, which acknowledges it before the owner delivers it.
	MsgReplicate    MsgType = 35 // owner broker → standby broker: one publication
	MsgReplAck      MsgType = 36 // standby → owner: every Replicate/ReplSnapshot up to Seq is stored
	MsgReplSnapshot MsgType = 37 // owner → standby or new owner: a channel's whole history
	MsgReplHandoff  MsgType = 38 // old owner → every broker of a new ring: the histories it hands over are sent
	MsgReplLeaving  MsgType = 39 // broker → every broker it replicates to: it is leaving the cluster (drain)
)

func (t MsgType) String() string {
	switch t {
	case MsgChallenge:
		return "challenge"
	case MsgHello:
		return "hello"
	case MsgWelcome:
		return "welcome"
	case MsgReject:
		return "reject"
	case MsgSubscribe:
		return "subscribe"
	case MsgUnsubscribe:
		return "unsubscribe"
	case MsgSync:
		return "sync"
	case MsgSubAck:
		return "suback"
	case MsgPublish:
		return "publish"
	case MsgPubAck:
		return "puback"
	case MsgDeliver:
		return "deliver"
	case MsgRingFloor:
		return "ringfloor"
	case MsgRing:
		return "ring"
	case MsgPrepare:
		return "prepare"
	case MsgPrepared:
		return "prepared"
	case MsgCommit:
		return "commit"
	case MsgLeave:
		return "leave"
	case MsgReleased:
		return "released"
	case MsgStats:
		return "stats"
	case MsgPing:
		return "ping"
	case MsgPong:
		return "pong"
	case MsgPresenceJoin:
		return "presence_join"
	case MsgPresenceLeave:
		return "presence_leave"
	case MsgPresenceQuery:
		return "presence_query"
	case MsgPresenceResult:
		return "presence_result"
	case MsgHistory:
		return "history"
	case MsgHistoryReply:
		return "history_reply"
	case MsgReplicate:
		return "replicate"
	case MsgReplAck:
		return "replack"
	case MsgReplSnapshot:
		return "replsnapshot"
	case MsgReplHandoff:
		return "replhandoff"
	case MsgReplLeaving:
		return "replleaving"
	}
	return fmt.Sprintf("msg(%d)", uint8(t))
}

// Challenge opens every inter-node connection: the accepting side sends a
// fresh nonce, so a captured Hello cannot be replayed.
type Challenge struct {
	_msgpack struct{} `msgpack:",as_array"`
	Nonce    []byte
	MinProto int
	MaxProto int
	NodeID   string
	Role     string
}

// Hello is the dialer's first message. MAC is HMAC-SHA256 with SCC_AUTH_KEY
// over the server's nonce and the dialer's identity (see HelloMAC).
type Hello struct {
	_msgpack    struct{} `msgpack:",as_array"`
	MinProto    int
	MaxProto    int
	NodeID      string
	Role        string
	Addr        string // advertised address: a broker's ws URL host:port, "" otherwise
	GossipAddr  string // host:port of this node's memberlist
	RingVersion uint64 // highest ring version this node has seen
	Nonce       []byte // the dialer's nonce, which the Welcome's MAC covers
	MAC         []byte
	Draining    bool // a broker that is leaving
	// RulesDigest is the digest of the channel rules the node runs
	// (docs/channels.md), so the state server can show nodes whose rules
	// differ; "" from nodes that predate it.
	RulesDigest string
}

// Welcome accepts a Hello.
type Welcome struct {
	_msgpack struct{} `msgpack:",as_array"`
	Proto    int
	NodeID   string
	MAC      []byte // HMAC over the dialer's nonce (see WelcomeMAC)
	Seeds    []string
}

// Reject refuses a peer; the connection closes after it.
type Reject struct {
	_msgpack struct{} `msgpack:",as_array"`
	Reason   string
	Message  string
}

// Reject reasons (bounded: they are metric labels).
const (
	RejectAuth      = "auth"
	RejectVersion   = "version"
	RejectMalformed = "malformed"
	RejectRole      = "role"
	RejectState     = "state"
)

// Subscribe adds channels on a frontend→broker link. The broker answers
// SubAck{ID} once they are in force.
type Subscribe struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Channels []string
}

// Unsubscribe removes channels on a frontend→broker link.
type Unsubscribe struct {
	_msgpack struct{} `msgpack:",as_array"`
	Channels []string
}

// Sync replaces the whole channel set of a link; it is idempotent and sent
// after every (re)connect.
type Sync struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Channels []string
}

// SubAck acknowledges a Subscribe or Sync.
type SubAck struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
}

// Publish is one message from a frontend to the broker that owns Channel.
// Seq counts publishes on the link from 1; Data is raw JSON.
// IdempotencyKey, when not empty, asks the owning broker to deliver the
// publish only once per (Channel, key) within its dedupe window; it is
// left off the wire when empty, so older peers see the 3-field form.
type Publish struct {
	_msgpack       struct{} `msgpack:",as_array"`
	Seq            uint64
	Channel        string
	Data           []byte
	IdempotencyKey string
}

// PubAck says every Publish up to Seq on the link has been forwarded.
type PubAck struct {
	_msgpack struct{} `msgpack:",as_array"`
	Seq      uint64
}

// Deliver carries a publish from a broker to a subscribed frontend. On a
// channel with history, Offset and Epoch are the publication's position in
// the channel's stream (internal/history); both are left off the wire
// otherwise (Offset 0).
type Deliver struct {
	_msgpack struct{} `msgpack:",as_array"`
	Channel  string
	Data     []byte
	Offset   uint64
	Epoch    string
}

// History asks the broker that owns Channel for its position and, when
// Epoch is set, for every publication after Offset (at most Limit); or,
// when Latest > 0, for its Latest most recent publications. The broker
// answers HistoryReply{ID} on the same link, after every Deliver of the
// channel up to the returned position and before any later one, so the
// frontend can attach a subscriber between the two with nothing missed
// or repeated.
type History struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Channel  string
	Offset   uint64
	Epoch    string
	Limit    int
	Latest   int
}

// HistoryPub is one retained publication.
type HistoryPub struct {
	_msgpack struct{} `msgpack:",as_array"`
	Offset   uint64
	Time     int64 // Unix nanoseconds when the owner appended it
	Data     []byte
}

// HistoryReply answers History. Offset and Epoch are the channel's current
// position; Recovered says Pubs are exactly every publication after the
// asked offset; Reason (a history.Reason* word) says why not. For a
// Latest request Pubs are the most recent publications. An empty Epoch
// means the channel has no history at this broker.
type HistoryReply struct {
	_msgpack  struct{} `msgpack:",as_array"`
	ID        uint64
	Channel   string
	Offset    uint64
	Epoch     string
	Recovered bool
	Reason    string
	Pubs      []HistoryPub
}

// BrokerInfo names one broker in a ring.
type BrokerInfo struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       string
	Addr     string // host:port of its inter-node WebSocket endpoint
}

// Ring is a committed ring: the broker set at a version. Versions only grow.
type Ring struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  uint64
	Brokers  []BrokerInfo
}

// Prepare asks a frontend to subscribe its channels at their owners in Ring
// as well as their current owners, and answer Prepared.
type Prepare struct {
	_msgpack struct{} `msgpack:",as_array"`
	Ring     Ring
}

// Prepared answers Prepare.
type Prepared struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  uint64
}

// Commit makes ring Version the one publishes follow. A frontend that had
// not prepared it subscribes first and then switches.
type Commit struct {
	_msgpack struct{} `msgpack:",as_array"`
	Ring     Ring
}

// Leave asks the state server to reshard this broker out.
type Leave struct {
	_msgpack struct{} `msgpack:",as_array"`
	NodeID   string
}

// Released tells a leaving broker it is out of every ring in use.
type Released struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  uint64
}

// Stats carries a node's counters to the state server for the status page.
type Stats struct {
	_msgpack      struct{} `msgpack:",as_array"`
	Connections   int64
	Subscriptions int64
	MessagesIn    uint64
	MessagesOut   uint64
	RingVersion   uint64
}

// Ping and Pong are link liveness probes.
type Ping struct {
	_msgpack struct{} `msgpack:",as_array"`
	Seq      uint64
}

// Pong answers Ping.
type Pong struct {
	_msgpack struct{} `msgpack:",as_array"`
	Seq      uint64
}

// Replicate carries one publication of a channel with history from the
// broker that assigned its offset to a broker that keeps a copy (the
// channel's standby). With Offset 0 it is a publish forwarded to the
// channel's owner by a broker that no longer owns the channel (a
// frontend had not switched yet): the owner appends it as its own. Seq counts Replicate and ReplSnapshot messages on
// the broker→broker link and is what ReplAck acknowledges. Publisher and
// PubSeq identify the publish (the publishing frontend's node id and its
// sequence number), so a frontend that re-sends it after a failover is
// recognized; Time is when it was appended, in Unix nanoseconds.
type Replicate struct {
	_msgpack  struct{} `msgpack:",as_array"`
	Seq       uint64
	Channel   string
	Epoch     string
	Offset    uint64
	Time      int64
	Data      []byte
	Publisher string
	PubSeq    uint64
}

// ReplAck says every Replicate and ReplSnapshot up to Seq on the link is
// stored by the receiving broker.
type ReplAck struct {
	_msgpack struct{} `msgpack:",as_array"`
	Seq      uint64
}

// ReplPub is one retained publication in a ReplSnapshot.
type ReplPub struct {
	_msgpack struct{} `msgpack:",as_array"`
	Offset   uint64
	Time     int64
	Data     []byte
}

// ReplPublisher is the last sequence number a channel took from one
// publishing frontend: what a re-sent publish is compared with.
type ReplPublisher struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       string
	Seq      uint64
}

// ReplSnapshot is a channel's whole history: its position (Epoch,
// Offset, the last publication's Time), the retained publications in
// offset order, and the publishers' last sequence numbers. A broker sends
// it before the first Replicate of a channel on a link, so the receiver
// holds the same stream, and on a reshard to the channel's new owner.
type ReplSnapshot struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Seq        uint64
	Channel    string
	Epoch      string
	Offset     uint64
	Time       int64
	Pubs       []ReplPub
	Publishers []ReplPublisher
}

// ReplLeaving tells a broker, on a replication link, that the broker at
// the other end is leaving the cluster on purpose: when a ring without it
// commits, the new owners of its channels wait for its ReplHandoff. A
// broker that crashed or is cut off says nothing, and is not waited for.
type ReplLeaving struct {
	_msgpack struct{} `msgpack:",as_array"`
}

// RingFloor tells a broker, on a frontend's link, that the publishes
// that follow were routed by ring Version or a later one. A broker whose
// own ring is older holds them (bounded) until it has that version, so
// that it never forwards one to an owner the frontend's ring no longer
// names: two brokers would then number the same channel.
type RingFloor struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  uint64
}

// ReplHandoff follows, on a broker→broker link, the ReplSnapshots of
// every channel the sender owned under the previous ring and hands to the
// receiver under ring Version: the receiver holds publishes of such
// channels until it arrives, so it continues their streams instead of
// starting new ones.
type ReplHandoff struct {
	_msgpack struct{} `msgpack:",as_array"`
	Version  uint64
}

// AppendReplicateMsg appends a Replicate without reflection: one is sent
// for every publication of a replicated channel.
func AppendReplicateMsg(dst []byte, r *Replicate) []byte {
	dst = append(dst, byte(MsgReplicate), 0x98) // fixarray of 8
	dst = appendUint(dst, r.Seq)
	dst = appendStr(dst, r.Channel)
	dst = appendStr(dst, r.Epoch)
	dst = appendUint(dst, r.Offset)
	dst = appendInt(dst, r.Time)
	dst = appendBin(dst, r.Data)
	dst = appendStr(dst, r.Publisher)
	return appendUint(dst, r.PubSeq)
}

// AppendReplAckMsg appends a ReplAck without reflection.
func AppendReplAckMsg(dst []byte, seq uint64) []byte {
	dst = append(dst, byte(MsgReplAck), 0x91)
	return appendUint(dst, seq)
}

// ParseReplicate reads a Replicate body without reflection. r.Data
// aliases body.
func ParseReplicate(body []byte, r *Replicate) error {
	if !fixArrayAtLeast(body, 8) {
		return fmt.Errorf("replicate: %w", ErrMalformed)
	}
	var err error
	rest := body[1:]
	if r.Seq, rest, err = readUint(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Channel, rest, err = readStr(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Epoch, rest, err = readStr(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Offset, rest, err = readUint(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Time, rest, err = readInt(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Data, rest, err = readBin(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.Publisher, rest, err = readStr(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	if r.PubSeq, _, err = readUint(rest); err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	return nil
}

// ParseReplAck reads a ReplAck body without reflection.
func ParseReplAck(body []byte) (uint64, error) {
	if !fixArrayAtLeast(body, 1) {
		return 0, fmt.Errorf("replack: %w", ErrMalformed)
	}
	seq, _, err := readUint(body[1:])
	if err != nil {
		return 0, fmt.Errorf("replack: %w", err)
	}
	return seq, nil
}

// appendInt appends a signed integer: non-negative values as msgpack
// uints (what msgpack's encoder writes for them), negative ones as int64.
func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(dst, uint64(v))
	}
	u := uint64(v)
	return append(dst, 0xd3, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
}

// readInt reads a msgpack integer of any width and sign into an int64;
// a uint above the int64 range is malformed.
func readInt(b []byte) (int64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, ErrTruncated
	}
	c := b[0]
	switch {
	case c >= 0xe0: // negative fixint
		return int64(int8(c)), b[1:], nil
	case c == 0xd0 || c == 0xd1 || c == 0xd2 || c == 0xd3:
		n := 1 << (c - 0xd0)
		if len(b) < 1+n {
			return 0, nil, ErrTruncated
		}
		var u uint64
		for _, x := range b[1 : 1+n] {
			u = u<<8 | uint64(x)
		}
		shift := uint(64 - 8*n)
		return int64(u<<shift) >> shift, b[1+n:], nil
	}
	u, rest, err := readUint(b)
	if err != nil {
		return 0, nil, err
	}
	if u > 1<<63-1 {
		return 0, nil, ErrMalformed
	}
	return int64(u), rest, nil
}

// ErrUnknownType is returned for a message type this build does not know.
// Peers of a newer version may send it; callers skip it.
var ErrUnknownType = errors.New("protocol: unknown message type")

// ErrTruncated means a frame ended inside a message.
var ErrTruncated = errors.New("protocol: truncated message")

// AppendMessage appends one message (type byte, then msgpack body) to dst.
func AppendMessage(dst []byte, t MsgType, body any) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	buf.WriteByte(byte(t))
	enc := msgpack.GetEncoder()
	enc.Reset(buf)
	err := enc.Encode(body)
	msgpack.PutEncoder(enc)
	if err != nil {
		return dst, fmt.Errorf("encoding %v: %w", t, err)
	}
	return buf.Bytes(), nil
}

// AppendPublishMsg appends a Publish without reflection: it is on the hot
// path of every cluster publish.
func AppendPublishMsg(dst []byte, seq uint64, channel string, data []byte) []byte {
	dst = append(dst, byte(MsgPublish), 0x93) // fixarray of 3
	dst = appendUint(dst, seq)
	dst = appendStr(dst, channel)
	return appendBin(dst, data)
}

// AppendPublishKeyMsg appends a Publish that carries an idempotency key;
// with an empty key it is AppendPublishMsg.
func AppendPublishKeyMsg(dst []byte, seq uint64, channel string, data []byte, key string) []byte {
	if key == "" {
		return AppendPublishMsg(dst, seq, channel, data)
	}
	dst = append(dst, byte(MsgPublish), 0x94) // fixarray of 4
	dst = appendUint(dst, seq)
	dst = appendStr(dst, channel)
	dst = appendBin(dst, data)
	return appendStr(dst, key)
}

// AppendDeliverMsg appends a Deliver without reflection.
func AppendDeliverMsg(dst []byte, channel string, data []byte) []byte {
	dst = append(dst, byte(MsgDeliver), 0x92) // fixarray of 2
	dst = appendStr(dst, channel)
	return appendBin(dst, data)
}

// AppendDeliverPosMsg appends a Deliver with its stream position; with
// offset 0 it is AppendDeliverMsg.
func AppendDeliverPosMsg(dst []byte, channel string, data []byte, offset uint64, epoch string) []byte {
	if offset == 0 {
		return AppendDeliverMsg(dst, channel, data)
	}
	dst = append(dst, byte(MsgDeliver), 0x94) // fixarray of 4
	dst = appendStr(dst, channel)
	dst = appendBin(dst, data)
	dst = appendUint(dst, offset)
	return appendStr(dst, epoch)
}

// AppendPubAckMsg appends a PubAck without reflection.
func AppendPubAckMsg(dst []byte, seq uint64) []byte {
	dst = append(dst, byte(MsgPubAck), 0x91)
	return appendUint(dst, seq)
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v <= 0xff:
		return append(dst, 0xcc, byte(v))
	case v <= 0xffff:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(dst, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendStr(dst []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= 0xff:
		dst = append(dst, 0xd9, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	n := len(b)
	switch {
	case n <= 0xff:
		dst = append(dst, 0xc4, byte(n))
	case n <= 0xffff:
		dst = append(dst, 0xc5, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, b...)
}

// Message is one decoded inter-node message.
type Message struct {
	Type MsgType
	// Body is the raw msgpack body; use Decode to read it into the type's
	// struct.
	Body []byte
}

// Decode unmarshals the body into v, which should be a pointer to the struct
// of m.Type.
//
// Structs are append-only arrays: a body with more elements than v has
// fields (from a newer peer) decodes the known ones and ignores the rest,
// and a body with fewer (from an older peer) leaves the missing fields at
// their zero values.
func (m Message) Decode(v any) error {
	if err := decodeLenient(m.Body, v); err != nil {
		return fmt.Errorf("decoding %v: %w", m.Type, err)
	}
	return nil
}

// decodeLenient decodes an as_array struct position by position.
func decodeLenient(body []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return msgpack.Unmarshal(body, v)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(body))
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return ErrMalformed
	}
	st := rv.Elem()
	t := st.Type()
	field := 0
	for i := 0; i < n; i++ {
		for field < t.NumField() && !t.Field(field).IsExported() {
			field++
		}
		if field >= t.NumField() {
			if err := dec.Skip(); err != nil {
				return err
			}
			continue
		}
		if err := dec.DecodeValue(st.Field(field)); err != nil {
			return fmt.Errorf("field %s: %w", t.Field(field).Name, err)
		}
		field++
	}
	return nil
}

// SplitMessages splits one binary frame into its messages. Bodies alias
// frame. It never panics on hostile input: a frame that ends inside a
// message returns ErrTruncated with the messages before it.
func SplitMessages(frame []byte) ([]Message, error) {
	var out []Message
	for len(frame) > 0 {
		t := MsgType(frame[0])
		n, err := msgpackValueLen(frame[1:], 0)
		if err != nil {
			return out, err
		}
		out = append(out, Message{Type: t, Body: frame[1 : 1+n]})
		frame = frame[1+n:]
	}
	return out, nil
}

// maxNesting bounds how deep msgpackValueLen recurses on hostile input.
const maxNesting = 32

// msgpackValueLen returns the length in bytes of the msgpack value at the
// start of b.
func msgpackValueLen(b []byte, depth int) (int, error) {
	if depth > maxNesting {
		return 0, errors.New("protocol: msgpack nested too deep")
	}
	if len(b) == 0 {
		return 0, ErrTruncated
	}
	c := b[0]
	need := func(n int) (int, error) {
		if n < 0 || n > len(b) {
			return 0, ErrTruncated
		}
		return n, nil
	}
	be := func(off, size int) (int, bool) {
		if off+size > len(b) {
			return 0, false
		}
		v := 0
		for i := 0; i < size; i++ {
			v = v<<8 | int(b[off+i])
		}
		return v, true
	}
	items := func(hdr, count, per int) (int, error) {
		off := hdr
		for i := 0; i < count*per; i++ {
			if off > len(b) {
				return 0, ErrTruncated
			}
			n, err := msgpackValueLen(b[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += n
		}
		return need(off)
	}
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		return 1, nil
	case c&0xe0 == 0xa0: // fixstr
		return need(1 + int(c&0x1f))
	case c&0xf0 == 0x90: // fixarray
		return items(1, int(c&0x0f), 1)
	case c&0xf0 == 0x80: // fixmap
		return items(1, int(c&0x0f), 2)
	}
	switch c {
	case 0xcc, 0xd0:
		return need(2)
	case 0xcd, 0xd1:
		return need(3)
	case 0xce, 0xd2, 0xca:
		return need(5)
	case 0xcf, 0xd3, 0xcb:
		return need(9)
	case 0xd4:
		return need(3)
	case 0xd5:
		return need(4)
	case 0xd6:
		return need(6)
	case 0xd7:
		return need(10)
	case 0xd8:
		return need(18)
	case 0xc4, 0xd9: // bin8, str8
		n, ok := be(1, 1)
		if !ok {
			return 0, ErrTruncated
		}
		return need(2 + n)
	case 0xc5, 0xda:
		n, ok := be(1, 2)
		if !ok {
			return 0, ErrTruncated
		}
		return need(3 + n)
	case 0xc6, 0xdb:
		n, ok := be(1, 4)
		if !ok {
			return 0, ErrTruncated
		}
		return need(5 + n)
	case 0xc7: // ext8
		n, ok := be(1, 1)
		if !ok {
			return 0, ErrTruncated
		}
		return need(3 + n)
	case 0xc8:
		n, ok := be(1, 2)
		if !ok {
			return 0, ErrTruncated
		}
		return need(4 + n)
	case 0xc9:
		n, ok := be(1, 4)
		if !ok {
			return 0, ErrTruncated
		}
		return need(6 + n)
	case 0xdc:
		n, ok := be(1, 2)
		if !ok {
			return 0, ErrTruncated
		}
		return items(3, n, 1)
	case 0xdd:
		n, ok := be(1, 4)
		if !ok {
			return 0, ErrTruncated
		}
		if n > len(b) { // every item takes at least a byte
			return 0, ErrTruncated
		}
		return items(5, n, 1)
	case 0xde:
		n, ok := be(1, 2)
		if !ok {
			return 0, ErrTruncated
		}
		return items(3, n, 2)
	case 0xdf:
		n, ok := be(1, 4)
		if !ok {
			return 0, ErrTruncated
		}
		if n > len(b) {
			return 0, ErrTruncated
		}
		return items(5, n, 2)
	}
	return 0, fmt.Errorf("protocol: invalid msgpack byte 0x%02x", c)
}

// HelloMAC is the MAC a dialer puts in Hello: HMAC-SHA256(key, "sccgo-hello"
// | server nonce | role | node id | dialer nonce).
func HelloMAC(key []byte, serverNonce []byte, role, nodeID string, dialerNonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sccgo-hello\x00"))
	writeField(m, serverNonce)
	writeField(m, []byte(role))
	writeField(m, []byte(nodeID))
	writeField(m, dialerNonce)
	return m.Sum(nil)
}

// WelcomeMAC is the MAC a server puts in Welcome: HMAC-SHA256(key,
// "sccgo-welcome" | dialer nonce | server node id), so the dialer knows the
// server holds the key too.
func WelcomeMAC(key []byte, dialerNonce []byte, serverID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sccgo-welcome\x00"))
	writeField(m, dialerNonce)
	writeField(m, []byte(serverID))
	return m.Sum(nil)
}

func writeField(m interface{ Write([]byte) (int, error) }, b []byte) {
	var l [4]byte
	n := len(b)
	l[0], l[1], l[2], l[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	m.Write(l[:])
	m.Write(b)
}

// ParseDeliver reads a Deliver body without reflection (the frontend's hot
// path). data aliases body.
func ParseDeliver(body []byte) (channel string, data []byte, err error) {
	if !fixArrayAtLeast(body, 2) {
		return "", nil, fmt.Errorf("deliver: %w", ErrMalformed)
	}
	ch, rest, err := readStr(body[1:])
	if err != nil {
		return "", nil, fmt.Errorf("deliver: %w", err)
	}
	data, _, err = readBin(rest)
	if err != nil {
		return "", nil, fmt.Errorf("deliver: %w", err)
	}
	return ch, data, nil
}

// ParseDeliverPos reads a Deliver body and its stream position (0 and ""
// when the sender left them off). data aliases body.
func ParseDeliverPos(body []byte) (channel string, data []byte, offset uint64, epoch string, err error) {
	if !fixArrayAtLeast(body, 2) {
		return "", nil, 0, "", fmt.Errorf("deliver: %w", ErrMalformed)
	}
	channel, rest, err := readStr(body[1:])
	if err != nil {
		return "", nil, 0, "", fmt.Errorf("deliver: %w", err)
	}
	data, rest, err = readBin(rest)
	if err != nil {
		return "", nil, 0, "", fmt.Errorf("deliver: %w", err)
	}
	if int(body[0]&0x0f) >= 4 {
		offset, rest, err = readUint(rest)
		if err != nil {
			return "", nil, 0, "", fmt.Errorf("deliver offset: %w", err)
		}
		epoch, _, err = readStr(rest)
		if err != nil {
			return "", nil, 0, "", fmt.Errorf("deliver epoch: %w", err)
		}
	}
	return channel, data, offset, epoch, nil
}

// ParsePublish reads a Publish body without reflection (the broker's hot
// path). data aliases body.
func ParsePublish(body []byte) (seq uint64, channel string, data []byte, err error) {
	seq, channel, data, _, err = ParsePublishKey(body)
	return seq, channel, data, err
}

// ParsePublishKey reads a Publish body and its idempotency key ("" when
// the sender left it off). data aliases body.
func ParsePublishKey(body []byte) (seq uint64, channel string, data []byte, key string, err error) {
	if !fixArrayAtLeast(body, 3) {
		return 0, "", nil, "", fmt.Errorf("publish: %w", ErrMalformed)
	}
	seq, rest, err := readUint(body[1:])
	if err != nil {
		return 0, "", nil, "", fmt.Errorf("publish: %w", err)
	}
	channel, rest, err = readStr(rest)
	if err != nil {
		return 0, "", nil, "", fmt.Errorf("publish: %w", err)
	}
	data, rest, err = readBin(rest)
	if err != nil {
		return 0, "", nil, "", fmt.Errorf("publish: %w", err)
	}
	if int(body[0]&0x0f) >= 4 && len(rest) > 0 && rest[0] != 0xc0 { // 0xc0: nil
		key, _, err = readStr(rest)
		if err != nil {
			return 0, "", nil, "", fmt.Errorf("publish key: %w", err)
		}
	}
	return seq, channel, data, key, nil
}

// ParsePubAck reads a PubAck body without reflection.
func ParsePubAck(body []byte) (uint64, error) {
	if !fixArrayAtLeast(body, 1) {
		return 0, fmt.Errorf("puback: %w", ErrMalformed)
	}
	seq, _, err := readUint(body[1:])
	if err != nil {
		return 0, fmt.Errorf("puback: %w", err)
	}
	return seq, nil
}

// fixArrayAtLeast reports whether body starts with a msgpack fixarray of
// at least n elements: newer peers may append fields, which the fast
// parsers ignore.
func fixArrayAtLeast(body []byte, n int) bool {
	return len(body) > 0 && body[0]&0xf0 == 0x90 && int(body[0]&0x0f) >= n
}

// ErrMalformed means a message body does not have its type's shape.
var ErrMalformed = errors.New("protocol: malformed message")

func readUint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, ErrTruncated
	}
	c := b[0]
	if c <= 0x7f {
		return uint64(c), b[1:], nil
	}
	var n int
	switch c {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	default:
		return 0, nil, ErrMalformed
	}
	if len(b) < 1+n {
		return 0, nil, ErrTruncated
	}
	var v uint64
	for _, x := range b[1 : 1+n] {
		v = v<<8 | uint64(x)
	}
	return v, b[1+n:], nil
}

func readLen(b []byte, size int) (int, []byte, error) {
	if len(b) < size {
		return 0, nil, ErrTruncated
	}
	n := 0
	for _, x := range b[:size] {
		n = n<<8 | int(x)
	}
	return n, b[size:], nil
}

func readStr(b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", nil, ErrTruncated
	}
	c := b[0]
	var n int
	var err error
	rest := b[1:]
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9:
		n, rest, err = readLen(rest, 1)
	case c == 0xda:
		n, rest, err = readLen(rest, 2)
	case c == 0xdb:
		n, rest, err = readLen(rest, 4)
	default:
		return "", nil, ErrMalformed
	}
	if err != nil {
		return "", nil, err
	}
	if n < 0 || len(rest) < n {
		return "", nil, ErrTruncated
	}
	return string(rest[:n]), rest[n:], nil
}

func readBin(b []byte) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, nil, ErrTruncated
	}
	c := b[0]
	var n int
	var err error
	rest := b[1:]
	switch c {
	case 0xc4:
		n, rest, err = readLen(rest, 1)
	case 0xc5:
		n, rest, err = readLen(rest, 2)
	case 0xc6:
		n, rest, err = readLen(rest, 4)
	case 0xc0: // nil: empty data
		return nil, rest, nil
	default:
		return nil, nil, ErrMalformed
	}
	if err != nil {
		return nil, nil, err
	}
	if n < 0 || len(rest) < n {
		return nil, nil, ErrTruncated
	}
	return rest[:n:n], rest[n:], nil
}

// PresenceMember is one present client of a channel: the socket id, the
// user id from its auth token ("" when it has none) and optional
// connection info (raw JSON, from the token's info claim; nil for none).
type PresenceMember struct {
	_msgpack struct{} `msgpack:",as_array"`
	Client   string
	User     string
	Info     []byte
}

// PresenceJoin reports members of Channel held on this link. Joins are
// idempotent: a member reported twice is one member. Silent re-reports
// (a channel moving to this broker in a reshard) emit no join events.
// The broker ignores members of channels the link does not hold.
type PresenceJoin struct {
	_msgpack struct{} `msgpack:",as_array"`
	Channel  string
	Members  []PresenceMember
	Silent   bool
}

// PresenceLeave removes members of Channel reported on this link.
type PresenceLeave struct {
	_msgpack struct{} `msgpack:",as_array"`
	Channel  string
	Clients  []string
}

// PresenceQuery asks the owner of Channel for its counts and, unless
// StatsOnly, up to Limit members from Offset. The broker answers
// PresenceResult with the same ID.
type PresenceQuery struct {
	_msgpack  struct{} `msgpack:",as_array"`
	ID        uint64
	Channel   string
	StatsOnly bool
	Offset    int
	Limit     int
}

// PresenceResult answers PresenceQuery ID: the channel's present clients
// and unique users, and the page of members asked for. Error, when not
// empty, says why there is no answer.
type PresenceResult struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Clients  int
	Users    int
	Members  []PresenceMember
	Error    string
}
