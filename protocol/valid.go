package protocol

import (
	"encoding/json"
	"unicode/utf8"
)

// validJSON reports whether b is exactly one JSON value, with optional
// surrounding whitespace; its answer is always encoding/json.Valid's. It
// is a single pass without the per-byte state-function calls of the
// standard scanner, which made validation the largest cost of decoding a
// batch of publishes. Values nested deeper than maxJSONDepth are left to
// json.Valid.
func validJSON(b []byte) bool {
	v := validator{b: b}
	if !v.value() {
		if v.deep {
			return json.Valid(b)
		}
		return false
	}
	v.space()
	return v.i == len(v.b)
}

type validator struct {
	b     []byte
	i     int
	depth int
	deep  bool // maxJSONDepth was exceeded: the answer is unknown
}

func (v *validator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *validator) value() bool {
	v.space()
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; c {
	case '{':
		return v.container('}')
	case '[':
		return v.container(']')
	case '"':
		return v.str()
	case 't':
		return v.literal("true")
	case 'f':
		return v.literal("false")
	case 'n':
		return v.literal("null")
	default:
		return v.number()
	}
}

// container accepts an object (close '}') or an array (close ']') whose
// opening byte is at v.i: members separated by commas, each a key and a
// colon before its value in an object.
func (v *validator) container(close byte) bool {
	v.depth++
	if v.depth > maxJSONDepth {
		v.deep = true
		return false
	}
	v.i++
	v.space()
	if v.i < len(v.b) && v.b[v.i] == close {
		v.i++
		v.depth--
		return true
	}
	for {
		if close == '}' {
			v.space()
			if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
				return false
			}
			v.space()
			if v.i >= len(v.b) || v.b[v.i] != ':' {
				return false
			}
			v.i++
		}
		if !v.value() {
			return false
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
		case close:
			v.i++
			v.depth--
			return true
		default:
			return false
		}
	}
}

// str accepts a string starting at the opening quote. Like encoding/json it
// checks escapes and control characters, not UTF-8.
func (v *validator) str() bool {
	b := v.b
	for i := v.i + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			v.i = i + 1
			return true
		case c == '\\':
			i++
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		case c < 0x20:
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (v *validator) literal(lit string) bool {
	if len(v.b)-v.i < len(lit) || string(v.b[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}

// number accepts -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (v *validator) number() bool {
	b, i := v.b, v.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	v.i = i
	return true
}

// Reasons CheckData gives for data that cannot go into a client's text
// frame; they are metric labels.
const (
	InvalidUTF8 = "invalid_utf8"
	InvalidJSON = "invalid_json"
)

// CheckData reports why data cannot be the data of a #publish text frame:
// InvalidUTF8 when it is not UTF-8 (a browser fails the whole WebSocket
// on such a text frame), InvalidJSON when it is not exactly one JSON
// value, and "" when it is fine. Empty data (a publish without data) is
// fine. It reads data twice at most, so it costs a few nanoseconds per
// byte: callers check a publication once, before it is fanned out.
func CheckData(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	if !utf8.Valid(data) {
		return InvalidUTF8
	}
	if !validJSON(data) {
		return InvalidJSON
	}
	return ""
}
