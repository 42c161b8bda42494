package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

var validJSONCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-`, `1e`, `-01`, `123456789012345678901234567890`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `"`, `""`, `"a"`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\u00"`,
	`"\x"`, "\"\x01\"", "\"\x7f\"", "\"\xff\xfe\"", `"é"`, `{}`, `{ }`, `[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[1,2]`,
	`{"a":1}`, `{"a" : 1 , "b":[true,null,{"c":"d"}]}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1,}`, `{,}`, `{"a":1}}`,
	`[[[]]]`, `[[[]]`, ` {"p":1,"s":2,"t":3,"x":"xxxx"} `, "\t\r\n[1]\n", `1 2`, `{"a":1}x`, `"abc`, `[`, `{`, `{"a":1`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat(`{"a":`, maxJSONDepth+3) + "1" + strings.Repeat("}", maxJSONDepth+3),
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range validJSONCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	payload := []byte(`{"p":3,"s":123456,"t":1763866800123456789,"x":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	b.Run("validJSON", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			validJSON(payload)
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			json.Valid(payload)
		}
	})
}
