package protocol

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckData(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{``, ""},
		{`{"a":[1,2,{"b":null}]}`, ""},
		{`"héllo ✓"`, ""},
		{" 42 ", ""},
		{"\"\xff\"", InvalidUTF8},
		{"\"\xed\xa0\x80\"", InvalidUTF8}, // an encoded surrogate
		{`{"a":`, InvalidJSON},
		{`1 2`, InvalidJSON},
		{"\"a\x01\"", InvalidJSON},
		{`</script>`, InvalidJSON},
	} {
		if got := CheckData([]byte(tc.data)); got != tc.want {
			t.Errorf("CheckData(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

// BenchmarkCheckData is the cost a frontend pays once per publication it
// receives from a broker, whatever the number of subscribers.
func BenchmarkCheckData(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10} {
		data := []byte(`{"user":"alice","text":"` + strings.Repeat("héllo ", size/7) + `","n":12345}`)
		b.Run(fmt.Sprintf("%dB", len(data)), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if CheckData(data) != "" {
					b.Fatal("invalid")
				}
			}
		})
	}
}
