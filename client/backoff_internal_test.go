package client

import (
	"testing"
	"time"
)

func TestReconnectDelay(t *testing.T) {
	c := &Client{opts: Options{Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}}.withDefaults()}
	for _, tc := range []struct {
		attempt   int
		immediate bool
		ceil      time.Duration
	}{
		{0, true, DefaultImmediateJitter},
		{0, false, 100 * time.Millisecond},
		{1, false, 200 * time.Millisecond},
		{3, false, 800 * time.Millisecond},
		{4, false, time.Second},
		{1000, false, time.Second},
	} {
		var maxSeen time.Duration
		for range 2000 {
			d := c.delay(tc.attempt, tc.immediate)
			if d < 0 || d >= tc.ceil {
				t.Fatalf("attempt %d immediate %v: delay %v outside [0, %v)", tc.attempt, tc.immediate, d, tc.ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range.
		if maxSeen < tc.ceil/2 {
			t.Fatalf("attempt %d: largest of 2000 delays %v, ceiling %v", tc.attempt, maxSeen, tc.ceil)
		}
	}
}

func TestEncodeData(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{nil, ""},
		{[]byte(`{"a":1}`), `{"a":1}`},
		{"s\"", `"s\""`},
		{map[string]int{"x": 2}, `{"x":2}`},
		{3, `3`},
	} {
		got, err := encodeData(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("encodeData(%#v) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := encodeData(make(chan int)); err == nil {
		t.Error("encoding a channel succeeded")
	}
	if got := string(appendPublish(nil, "c\"h", []byte(`1`), 12)); got != `{"event":"#publish","data":{"channel":"c\"h","data":1},"cid":12}` {
		t.Errorf("appendPublish: %s", got)
	}
	if got := string(appendHandshake(nil, "", 1)); got != `{"event":"#handshake","data":{"authToken":null},"cid":1}` {
		t.Errorf("appendHandshake: %s", got)
	}
}
