package frontend

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestLargeMessagesReuseReadBuffers: a stream of large messages is read
// into pooled buffers, not into a new buffer grown by doubling for each
// one (about twice the message's size allocated per message, which kept
// the collector running under a flood of large batches and charged its
// assists to the socket readers).
func TestLargeMessagesReuseReadBuffers(t *testing.T) {
	cfg := testConfig()
	cfg.InboundByteRate = 0 // this socket sends 14 MB at once
	srv := startServer(t, cfg)
	c := dial(t, srv)
	c.handshake("")
	const size = 600 << 10
	data := strings.Repeat("a", size)
	frames := make([]string, 30)
	for cid := range frames {
		frames[cid] = fmt.Sprintf(`{"event":"#publish","data":{"channel":"big","data":%q},"cid":%d}`, data, cid)
	}
	send := func(cid int) {
		c.send(frames[cid])
		if p := c.packet2(); !strings.Contains(p, fmt.Sprintf(`"rid":%d`, cid)) || !strings.Contains(p, "exceeds the limit") {
			t.Fatalf("reply to publish %d: %.200s", cid, p)
		}
	}
	for cid := 2; cid < 5; cid++ { // warm the pools
		send(cid)
	}
	const n = 20
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for cid := 5; cid < 5+n; cid++ {
		send(cid)
	}
	runtime.ReadMemStats(&m1)
	// The test's client copies each message once as it sends it; a
	// fresh read buffer grown by doubling adds about 2 × size.
	per := float64(m1.TotalAlloc-m0.TotalAlloc) / n
	t.Logf("allocated %.0f KB per %d KB message", per/1024, size>>10)
	// The race detector's sync.Pool drops a quarter of what is put back,
	// which costs about one more message's size.
	limit := 1.5 * size
	if raceOn {
		limit = 3 * size
	}
	if per > limit {
		t.Fatalf("allocated %.0f KB per %d KB message: the read buffer is not reused", per/1024, size>>10)
	}
}
