package bench

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	at := time.Unix(1732312312, 123456789)
	for _, size := range []int{0, 10, 47, 64, 65, 200, 4096} {
		b := EncodePayload(12, 34567, at, size)
		if !json.Valid(b) {
			t.Fatalf("size %d: invalid JSON %s", size, b)
		}
		if size >= 64 && len(b) != size {
			t.Errorf("size %d: got %d bytes: %s", size, len(b), b)
		}
		p, err := DecodePayload(b)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if p.Publisher != 12 || p.Seq != 34567 || !p.SentAt.Equal(at) {
			t.Errorf("size %d: got %+v", size, p)
		}
	}
}

func TestDecodePayloadReencoded(t *testing.T) {
	// A server may re-encode JSON data: other key order, spacing.
	p, err := DecodePayload([]byte(`{ "t": 5, "x": "xx", "s": 2, "p": -1 }`))
	if err != nil || p.Publisher != -1 || p.Seq != 2 || p.SentAt.UnixNano() != 5 {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	for _, in := range []string{
		``, `null`, `"x"`, `{}`, `{"p":1,"s":2}`, `{"p":1,"s":0,"t":3}`,
		`{"p":1,"s":2,"t":3`, `{"p":1,"s":2,"t":99999999999999999999}`,
		`{"p":1,"s":2,"t":3,"x":"yy}`, `[1,2]`,
	} {
		if _, err := DecodePayload([]byte(in)); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%q: got %v, want ErrBadPayload", in, err)
		}
	}
}

func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte(EncodePayload(1, 2, time.Unix(3, 4), 64)))
	f.Add([]byte(`{"t":5,"s":2,"p":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePayload(b)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to something that decodes the same.
		q, err := DecodePayload(EncodePayload(p.Publisher, p.Seq, p.SentAt, 0))
		if err != nil || q != p {
			t.Fatalf("%q: %+v then %+v, %v", b, p, q, err)
		}
	})
}

func BenchmarkDecodePayload(b *testing.B) {
	buf := EncodePayload(7, 123456, time.Now(), 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePayload(buf); err != nil {
			b.Fatal(err)
		}
	}
}
