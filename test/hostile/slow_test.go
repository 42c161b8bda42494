package hostile

import (
	"context"
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// halfOpen connects over raw TCP, upgrades, handshakes and subscribes to
// channel in one write, and then never reads a byte.
func halfOpen(t testing.TB, addr, path, channel string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// A small receive window so the server's side fills sooner.
	_ = nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	b := []byte(req)
	b = wsframe.AppendText(b, `{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	b = wsframe.AppendText(b, `{"event":"#subscribe","data":{"channel":"`+channel+`"},"cid":2}`)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	return nc
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestHalfOpenClient subscribes with a client that never reads and floods
// its channel: the server must close it with 4010 once its queue is full,
// count the drop, keep its memory bounded, and go on serving the healthy
// pair.
func TestHalfOpenClient(t *testing.T) {
	const queueBytes = 128 << 10
	f := startFrontend(t, func(c *frontend.Config) {
		c.QueueMaxBytes = queueBytes
		c.QueueMaxMessages = 1 << 20 // the byte bound is the one under test
		c.WriteTimeout = 30 * time.Second
	})
	h := startHealthy(t, f.url, "healthy")
	reg := f.srv.Registry()

	base := heapInUse()
	subsBefore := f.srv.Stats().Subscriptions
	nc := halfOpen(t, f.srv.Addr().String(), "/socketcluster/", "firehose")
	waitFor(t, waitTimeout, "the half-open client's subscription", func() bool {
		return f.srv.Stats().Subscriptions == subsBefore+1
	})

	payload := json.RawMessage(`"` + strings.Repeat("x", 4000) + `"`)
	var peak uint64
	sent := 0
	closed := func() bool { return metric(t, reg, "scc_frontend_closes_total", "reason", "slow_consumer") == 1 }
	for !closed() {
		if sent == 20000 {
			t.Fatalf("still not closed after %d publishes of 4 KB", sent)
		}
		if err := f.srv.Publish(context.Background(), "firehose", payload); err != nil {
			t.Fatal(err)
		}
		sent++
		if sent%200 == 0 {
			peak = max(peak, heapInUse())
		}
	}
	t.Logf("half-open client closed after %d publishes of 4 KB", sent)
	if got := metric(t, reg, "scc_frontend_queue_drops_total", "reason", "bytes"); got != 1 {
		t.Fatalf("queue drops {bytes} = %v, want 1", got)
	}
	// The code sent (or, as the peer never reads, attempted) was 4010.
	waitFor(t, waitTimeout, "the socket torn down", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, code := range f.closes {
			if code == protocol.CloseSlowConsumer {
				return true
			}
		}
		return false
	})
	waitFor(t, waitTimeout, "its subscription dropped", func() bool { return f.srv.Stats().Subscriptions == subsBefore })
	// Publishing on is free: nobody is left to queue for.
	for range 200 {
		if err := f.srv.Publish(context.Background(), "firehose", payload); err != nil {
			t.Fatal(err)
		}
	}
	after := heapInUse()
	// What one slow client may pin is its queue plus what is being
	// written; allow generous slack for the runtime and the race detector.
	const bound = 8 << 20
	if peak > base+bound || after > base+bound {
		t.Fatalf("heap in use grew from %d to a peak of %d (%d after): more than %d", base, peak, after, bound)
	}
	t.Logf("heap in use: %d KiB before, %d KiB peak, %d KiB after", base>>10, peak>>10, after>>10)
	nc.Close()
	h.check()
}
