package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Payload is what every bench message carries: who sent it, its place in
// that publisher's sequence on one channel, and when it was due to be sent.
type Payload struct {
	// Publisher is the publisher's id, unique within a run.
	Publisher int
	// Seq is the sequence number per publisher and channel, from 1.
	Seq uint64
	// SentAt is the time the message was scheduled to be sent.
	SentAt time.Time
}

// ErrBadPayload means a delivery did not carry a bench payload.
var ErrBadPayload = errors.New("bench: not a bench payload")

// payloadPad is the padding field around an empty string.
const payloadPad = `,"x":""`

// EncodePayload returns the JSON object {"p":pubID,"s":seq,"t":unixNanos}
// padded with an "x" string so that it is size bytes long (or just the
// object if size is smaller). It is valid SocketCluster data.
func EncodePayload(pubID int, seq uint64, sentAt time.Time, size int) json.RawMessage {
	return AppendPayload(make([]byte, 0, max(size, 64)), pubID, seq, sentAt, size)
}

// AppendPayload appends the payload EncodePayload returns to dst.
func AppendPayload(dst []byte, pubID int, seq uint64, sentAt time.Time, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"p":`...)
	dst = strconv.AppendInt(dst, int64(pubID), 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, sentAt.UnixNano(), 10)
	n := len(dst) - start
	if pad := size - n - len(payloadPad) - 1; pad >= 0 {
		dst = append(dst, `,"x":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// DecodePayload parses a payload written by EncodePayload. It takes a fast
// path for the encoder's own layout and falls back to encoding/json for
// payloads a server re-encoded (with other spacing or key order). It never
// panics.
func DecodePayload(b []byte) (Payload, error) {
	if p, ok := decodeFast(b); ok {
		return p, nil
	}
	var w struct {
		P *int64  `json:"p"`
		S *uint64 `json:"s"`
		T *int64  `json:"t"`
	}
	if err := json.Unmarshal(b, &w); err != nil || w.P == nil || w.S == nil || w.T == nil {
		return Payload{}, ErrBadPayload
	}
	if *w.S == 0 {
		return Payload{}, fmt.Errorf("%w: sequence 0", ErrBadPayload)
	}
	return Payload{Publisher: int(*w.P), Seq: *w.S, SentAt: time.Unix(0, *w.T)}, nil
}

func decodeFast(b []byte) (Payload, bool) {
	var p Payload
	rest, ok := cutPrefix(b, `{"p":`)
	if !ok {
		return p, false
	}
	pub, rest, ok := cutInt(rest)
	if !ok {
		return p, false
	}
	if rest, ok = cutPrefix(rest, `,"s":`); !ok {
		return p, false
	}
	seq, rest, ok := cutInt(rest)
	if !ok || seq <= 0 {
		return p, false
	}
	if rest, ok = cutPrefix(rest, `,"t":`); !ok {
		return p, false
	}
	t, rest, ok := cutInt(rest)
	if !ok || !(len(rest) == 1 && rest[0] == '}' || validPad(rest)) {
		return p, false
	}
	return Payload{Publisher: int(pub), Seq: uint64(seq), SentAt: time.Unix(0, t)}, true
}

// validPad accepts the encoder's own padding, `,"x":"xxx…"}`, without a
// full JSON validation.
func validPad(rest []byte) bool {
	r, ok := cutPrefix(rest, `,"x":"`)
	if !ok || len(r) < 2 || r[len(r)-1] != '}' || r[len(r)-2] != '"' {
		return false
	}
	for _, c := range r[:len(r)-2] {
		if c != 'x' {
			return false
		}
	}
	return true
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// cutInt parses a decimal integer (optionally negative) at the start of b.
func cutInt(b []byte) (int64, []byte, bool) {
	i := 0
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var n uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 19 {
			return 0, b, false
		}
		n = n*10 + uint64(b[i]-'0')
		i++
	}
	if n > math.MaxInt64 {
		return 0, b, false
	}
	if i == start {
		return 0, b, false
	}
	if neg {
		return -int64(n), b[i:], true
	}
	return int64(n), b[i:], true
}
