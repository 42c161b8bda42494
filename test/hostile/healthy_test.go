package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// healthyPair is a well-behaved subscriber and publisher on one channel,
// running while a test attacks the same server. The publisher invokes one
// #publish at a time with a sequence number and waits for its ack; check
// asserts the subscriber received every acknowledged number exactly once and
// in order.
type healthyPair struct {
	t       testing.TB
	channel string
	sub     *scClient
	pub     *scClient
	stop    chan struct{}
	done    chan struct{}

	mu   sync.Mutex
	sent int
	err  error
	rtts []time.Duration // publish to ack, per publish
}

// healthyPace is the pause between two publishes of the healthy publisher,
// so it stays far below any inbound rate limit the tests configure.
const healthyPace = 10 * time.Millisecond

func startHealthy(t testing.TB, url, channel string) *healthyPair {
	t.Helper()
	h := &healthyPair{t: t, channel: channel, stop: make(chan struct{}), done: make(chan struct{})}
	h.sub = dialSC(t, url)
	h.sub.handshake("")
	h.sub.subscribe(channel, 2)
	h.pub = dialSC(t, url)
	h.pub.handshake("")
	go h.run()
	t.Cleanup(h.halt)
	h.progress()
	return h
}

func (h *healthyPair) halt() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

func (h *healthyPair) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
}

func (h *healthyPair) run() {
	defer close(h.done)
	tick := time.NewTicker(healthyPace)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		cid := i + 10
		began := time.Now()
		frame := fmt.Sprintf(`{"event":"#publish","data":{"channel":%q,"data":%d},"cid":%d}`, h.channel, i, cid)
		if err := h.pub.write(websocket.MessageText, []byte(frame)); err != nil {
			h.fail(fmt.Errorf("healthy publish %d: %w", i, err))
			return
		}
		want := fmt.Sprintf(`{"rid":%d}`, cid)
		select {
		case p := <-h.pub.packets:
			if p != want {
				h.fail(fmt.Errorf("healthy publish %d: got %s, want %s", i, p, want))
				return
			}
		case <-h.pub.done:
			h.fail(fmt.Errorf("healthy publisher disconnected: %v", h.pub.readErr()))
			return
		case <-time.After(waitTimeout):
			h.fail(fmt.Errorf("healthy publish %d: no ack within %v", i, waitTimeout))
			return
		case <-h.stop:
			return
		}
		h.mu.Lock()
		h.sent = i
		h.rtts = append(h.rtts, time.Since(began))
		h.mu.Unlock()
	}
}

// mark returns the number of round trips measured so far, for p99.
func (h *healthyPair) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rtts)
}

// p99 returns the 99th percentile of the publish round trips (publish to
// ack) measured since mark, and how many there were. Chaos measures
// delivery latency the same way, as a percentile over a window.
func (h *healthyPair) p99(mark int) (time.Duration, int) {
	h.mu.Lock()
	d := append([]time.Duration(nil), h.rtts[mark:]...)
	h.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[(len(d)*99+99)/100-1], len(d)
}

func (h *healthyPair) state() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent, h.err
}

// progress waits until the publisher has had a few more publishes
// acknowledged, failing the test if it stopped working.
func (h *healthyPair) progress() {
	h.t.Helper()
	start, _ := h.state()
	waitFor(h.t, waitTimeout, "healthy publisher progress", func() bool {
		n, err := h.state()
		if err != nil {
			h.t.Fatalf("healthy pair: %v", err)
		}
		return n >= start+3
	})
}

// check stops the publisher and asserts the subscriber saw every
// acknowledged publish, once and in order.
func (h *healthyPair) check() {
	h.t.Helper()
	h.halt()
	n, err := h.state()
	if err != nil {
		h.t.Fatalf("healthy pair: %v", err)
	}
	if !h.pub.open() || !h.sub.open() {
		h.t.Fatalf("healthy pair disconnected: pub %v, sub %v", h.pub.readErr(), h.sub.readErr())
	}
	prefix := fmt.Sprintf(`{"event":"#publish","data":{"channel":%q,"data":`, h.channel)
	for want := 1; want <= n; want++ {
		p := h.sub.next(waitTimeout)
		if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, "}}") {
			h.t.Fatalf("healthy subscriber got %s, want publish %d", p, want)
		}
		got, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(p, prefix), "}}"))
		if err != nil || got != want {
			h.t.Fatalf("healthy subscriber got %s, want publish %d", p, want)
		}
	}
	// Nothing beyond what was acknowledged, and no stray packet. The one
	// publish in flight when the publisher was halted (sent, its ack not
	// yet read) may have been delivered: it is the only allowed extra.
	inflight := fmt.Sprintf("%s%d}}", prefix, n+1)
	select {
	case p := <-h.sub.packets:
		if p == inflight {
			break
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(p), &m)
		h.t.Fatalf("healthy subscriber got an extra packet after %d publishes: %s", n, p)
	default:
	}
	h.t.Logf("healthy pair: %d publishes, all received in order", n)
}

// keepsWorking is a quick check that a connection still answers: an
// invoke of a procedure with no handler must come back as
// NoMatchingProcedureError.
func keepsWorking(t testing.TB, c *scClient, cid int) {
	t.Helper()
	c.sendf(`{"event":"still-there?","cid":%d}`, cid)
	if e := c.replyError(cid); e["name"] != "NoMatchingProcedureError" {
		t.Fatalf("follow-up call: %v", e)
	}
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
