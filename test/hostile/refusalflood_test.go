package hostile

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/wsframe"
)

// TestRefusedPublishFloodsPaced: three hundred sockets each send two
// hundred publishes that are refused (no channel name). Each gets
// its refusal burst at once and the rest at the refusal rate: its reader
// waits between messages, holding no message buffer, while the healthy
// pair keeps publishing and receiving, and the heap stays flat (what the
// paced sockets have not been answered for waits in their kernel
// buffers, not in the server).
func TestRefusedPublishFloodsPaced(t *testing.T) {
	const (
		n, per      = 300, 200
		rate, burst = 50, 10
	)
	f := startFrontend(t, func(c *frontend.Config) {
		c.PublishRefusalRate, c.PublishRefusalBurst = rate, burst
		c.InboundRate, c.InboundBurst = 100000, 10000
		c.MaxConnectionsPerIP = 0
	})
	h := startHealthy(t, f.url, "healthy")
	base := baseline(h)
	heap0 := heapAfterGC()

	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRawClient(t, f)
		conns[i].write(wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`))
	}
	var flood []byte
	for j := range per {
		flood = wsframe.AppendText(flood, fmt.Sprintf(`{"event":"#publish","data":{"channel":"","data":%d},"cid":%d}`, j, 10+j))
	}
	mark := h.mark()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.write(flood) })
	}
	paced := func() float64 { return metric(t, f.srv.Registry(), "scc_frontend_publish_refusals_paced_total") }
	want := float64(n * (per - burst))
	waitFor(t, waitTimeout, "pacing under way", func() bool { return paced() >= float64(n) })
	// While most of the refusals are still to be paced: the healthy pair
	// is served, and the paced readers hold no message buffers.
	h.progress()
	h.progress()
	if got := paced(); got >= want/2 {
		t.Fatalf("%v of %v refusals already paced when the healthy pair was served: not paced, or it waited for them", got, want)
	}
	if got := metric(t, f.srv.Registry(), "scc_frontend_read_held_bytes"); got != 0 {
		t.Fatalf("%v bytes of messages held while the readers wait", got)
	}
	heap1 := heapAfterGC()
	t.Logf("heap %.1f MiB before, %.1f MiB with %d sockets paced", mib(heap0), mib(heap1), n)
	if heap1 > heap0+16<<20 {
		t.Fatalf("heap grew by %.1f MiB while %d sockets were paced", mib(heap1-heap0), n)
	}
	logP99(t, h, fmt.Sprintf("refused-publish floods from %d connections", n), base, mark)
	// Every publish is refused and answered in the end (the count comes
	// before each one's wait; a late timer refills a bucket a little, so
	// fewer than want may have waited), and no socket was closed for it.
	waitFor(t, 3*waitTimeout+time.Duration(per/rate)*time.Second, "every publish refused", func() bool {
		return metric(t, f.srv.Registry(), "scc_frontend_publish_errors_total", "reason", "malformed") >= float64(n*per)
	})
	if got := paced(); got < want/2 {
		t.Fatalf("%v refusals paced, want about %v", got, want)
	}
	for _, c := range conns {
		c.nc.Close()
	}
	wg.Wait()
	if got := f.closesTotal(t, "rate_limited"); got != 0 {
		t.Fatalf("%v sockets closed for their rate", got)
	}
	h.check()
}
