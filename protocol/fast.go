package protocol

import (
	"bytes"
	"unicode/utf8"
)

// Fast paths for the packets that dominate traffic: #publish in both
// directions, single and in batches, and the other events clients send
// (#subscribe above all). They accept only the canonical layout
// (no whitespace, keys in SocketCluster's order, a channel name without
// escapes) that socketcluster-client and sccgo produce, and fall back to
// the general decoder for anything else, so what they accept is exactly
// what the general decoder would make of it. Data is still validated.

const (
	pubPacketPrefix = `{"event":"#publish","data":`
	pubDataPrefix   = `{"channel":"`
	pubDataMid      = `,"data":`
	cidSuffix       = `,"cid":`
)

// skipString returns the index just past the JSON string that starts at
// b[i] (a '"'), and whether it contains a backslash.
func skipString(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, true
		}
	}
	return 0, false, false
}

// skipValue returns the index just past the JSON value that starts at
// b[i]. It checks nesting and strings only; callers validate the value.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, _, ok := skipString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
				if depth > maxJSONDepth {
					return 0, false
				}
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j, j > i
		}
		j++
	}
	return j, j > i
}

// maxJSONDepth bounds nesting on the fast paths; deeper values take the
// general decoder, whose limits then apply exactly.
const maxJSONDepth = 64

// fastPublishData parses canonical #publish data, {"channel":"C"} or
// {"channel":"C","data":D}, at the start of b. n is the length of the
// object.
func fastPublishData(b []byte) (channel string, data []byte, n int, ok bool) {
	return fastPublish(b, true)
}

// fastPublish is fastPublishData; validate false skips validating D, for
// input already known to be valid JSON.
func fastPublish(b []byte, validate bool) (channel string, data []byte, n int, ok bool) {
	name, data, n, ok := fastPublishSpan(b, validate)
	if !ok {
		return "", nil, 0, false
	}
	return string(name), data, n, true
}

// fastPublishSpan is fastPublish with the channel name left as bytes of b,
// for callers that only need the object's length.
func fastPublishSpan(b []byte, validate bool) (name, data []byte, n int, ok bool) {
	if !bytes.HasPrefix(b, []byte(pubDataPrefix)) {
		return nil, nil, 0, false
	}
	start := len(pubDataPrefix) - 1
	end, escaped, ok := skipString(b, start)
	if !ok || escaped {
		return nil, nil, 0, false
	}
	name = b[start+1 : end-1]
	for _, c := range name {
		if c < 0x20 {
			return nil, nil, 0, false
		}
	}
	if !utf8.Valid(name) {
		return nil, nil, 0, false
	}
	rest := b[end:]
	if len(rest) > 0 && rest[0] == '}' {
		return name, nil, end + 1, true
	}
	if pe, _, _, ok := posSuffix(b, end); ok {
		return name, nil, pe, true
	}
	if !bytes.HasPrefix(rest, []byte(pubDataMid)) {
		return nil, nil, 0, false
	}
	ds := end + len(pubDataMid)
	de, ok := skipValue(b, ds)
	if !ok || de >= len(b) {
		return nil, nil, 0, false
	}
	n = de + 1
	if b[de] != '}' {
		// The stream position AppendPublishPos writes after the data.
		if n, _, _, ok = posSuffix(b, de); !ok {
			return nil, nil, 0, false
		}
	}
	data = b[ds:de:de]
	if validate && !validJSON(data) {
		return nil, nil, 0, false
	}
	return name, data, n, true
}

const (
	posOffsetKey = `,"offset":`
	posEpochKey  = `,"epoch":`
)

// posSuffix reads `,"offset":N,"epoch":"E"}` at b[i:], exactly as
// AppendPublishPos writes it (N plain decimal, E a string without
// escapes), and returns the index after the closing brace.
func posSuffix(b []byte, i int) (n int, offset uint64, epoch []byte, ok bool) {
	if !bytes.HasPrefix(b[i:], []byte(posOffsetKey)) {
		return 0, 0, nil, false
	}
	i += len(posOffsetKey)
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start == 19 { // more digits than a uint64 is sure to hold
			return 0, 0, nil, false
		}
		offset = offset*10 + uint64(b[i]-'0')
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) || !bytes.HasPrefix(b[i:], []byte(posEpochKey)) {
		return 0, 0, nil, false
	}
	i += len(posEpochKey)
	if i >= len(b) || b[i] != '"' {
		return 0, 0, nil, false
	}
	end, escaped, ok := skipString(b, i)
	if !ok || escaped || end >= len(b) || b[end] != '}' {
		return 0, 0, nil, false
	}
	epoch = b[i+1 : end-1]
	for _, c := range epoch {
		if c < 0x20 || c >= 0x80 {
			return 0, 0, nil, false
		}
	}
	return end + 1, offset, epoch, true
}

// fastPublishPacket decodes a canonical #publish packet, with or without a
// cid.
func fastPublishPacket(b []byte, p *Packet) bool {
	if !bytes.HasPrefix(b, []byte(pubPacketPrefix)) {
		return false
	}
	inner := b[len(pubPacketPrefix):]
	_, _, n, ok := fastPublishSpan(inner, true)
	if !ok {
		return false
	}
	rest := inner[n:]
	*p = Packet{Event: EventPublish, HasEvent: true, Data: inner[:n:n]}
	if len(rest) == 1 && rest[0] == '}' {
		return true
	}
	if !bytes.HasPrefix(rest, []byte(cidSuffix)) || rest[len(rest)-1] != '}' {
		return false
	}
	cid := rest[len(cidSuffix) : len(rest)-1]
	if !canonicalInt(cid) {
		return false
	}
	p.CID = cid
	return true
}

const (
	eventPrefix = `{"event":"`
	dataKey     = `,"data":`
)

// fastEventPacket decodes any other canonical event packet:
// {"event":"E"}, followed by ,"data":D and ,"cid":N, each optional, in
// that order (what socketcluster-client sends for #subscribe,
// #unsubscribe and custom events). E must be a string without escapes,
// and D is validated.
func fastEventPacket(b []byte, p *Packet) bool {
	if !bytes.HasPrefix(b, []byte(eventPrefix)) || b[len(b)-1] != '}' {
		return false
	}
	start := len(eventPrefix) - 1
	end, escaped, ok := skipString(b, start)
	if !ok || escaped {
		return false
	}
	name := b[start+1 : end-1]
	for _, c := range name {
		if c < 0x20 {
			return false
		}
	}
	if !utf8.Valid(name) {
		return false
	}
	var data []byte
	rest := b[end:]
	if bytes.HasPrefix(rest, []byte(dataKey)) {
		ds := end + len(dataKey)
		de, ok := skipValue(b, ds)
		if !ok || de >= len(b) {
			return false
		}
		data = b[ds:de:de]
		if !validJSON(data) {
			return false
		}
		rest = b[de:]
	}
	*p = Packet{Event: string(name), HasEvent: true, Data: data}
	if len(rest) == 1 {
		return true // the closing brace
	}
	if !bytes.HasPrefix(rest, []byte(cidSuffix)) {
		return false
	}
	cid := rest[len(cidSuffix) : len(rest)-1]
	if !canonicalInt(cid) {
		return false
	}
	p.CID = cid
	return true
}

// canonicalInt reports whether b is a JSON integer of at most 20 bytes.
func canonicalInt(b []byte) bool {
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for i, c := range b {
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return false
		}
	}
	return validJSON(b) // leading zeros, a lone minus
}

// fastPacket decodes a canonical packet, or reports false.
func fastPacket(b []byte, p *Packet) bool {
	return fastPublishPacket(b, p) || fastEventPacket(b, p)
}

// splitArray splits a JSON array into its elements without decoding them.
// It allows whitespace between tokens.
func splitArray(b []byte) ([][]byte, bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, false
	}
	var out [][]byte
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return out, skipSpace(b, i+1) == len(b)
	}
	for {
		i = skipSpace(b, i)
		end, ok := skipValue(b, i)
		if !ok {
			return nil, false
		}
		out = append(out, b[i:end:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return out, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// arrayLonger reports whether the JSON array b has more than max
// elements, scanning at most max+1 of them. A malformed array, or one the
// scan cannot follow, reports false; the caller's decoder then decides.
func arrayLonger(b []byte, max int) bool {
	i := skipSpace(b, 1)
	if i >= len(b) || b[i] == ']' {
		return false
	}
	for n := 1; ; n++ {
		if n > max {
			return true
		}
		end, ok := skipValue(b, skipSpace(b, i))
		if !ok {
			return false
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}
