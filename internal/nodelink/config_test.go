package nodelink

import "testing"

// TestMessageLimit: a message that grows with data fits a frame and half
// the queue, with the defaults filled in for a zero Config.
func TestMessageLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   Config
		limit int64
	}{
		{"zero config: the default frame", Config{}, DefaultMaxFrameBytes},
		{"defaults", DefaultConfig(), DefaultMaxFrameBytes},
		{"a small frame", Config{MaxFrameBytes: 8 << 10}, 8 << 10},
		{"a frame above half the queue", Config{MaxFrameBytes: 64 << 10, QueueMaxBytes: 16 << 10}, 8 << 10},
	} {
		if got := c.cfg.MessageLimit(); got != c.limit {
			t.Errorf("%s: %d, want %d", c.name, got, c.limit)
		}
	}
}
