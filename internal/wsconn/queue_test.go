package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type owner struct {
	overflow atomic.Value
	werr     atomic.Value
}

func (o *owner) QueueOverflow(reason string) { o.overflow.Store(reason) }
func (o *owner) QueueWriteError(err error)   { o.werr.Store(err) }

// pair returns a server-side queue and the client connection reading it.
func pair(t *testing.T, eng *Engine) (*Queue, *owner, *websocket.Conn, *Raw) {
	t.Helper()
	addr, conns, stop := serveAccept(t, AcceptOptions{ReadBufferSize: 64, WriteBufferSize: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cws, _, err := websocket.Dial(ctx, "ws://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	cws.SetReadLimit(-1)
	a := <-conns
	o := &owner{}
	q := NewQueue(eng, a.ws, a.raw, o)
	t.Cleanup(func() {
		cws.CloseNow()
		a.ws.CloseNow()
		eng.WG.Wait()
		stop()
	})
	return q, o, cws, a.raw
}

type accepted struct {
	ws  *websocket.Conn
	raw *Raw
}

// serveAccept serves upgrades with Accept on 127.0.0.1:0 and hands each
// accepted connection to the returned channel; stop closes the server.
func serveAccept(t *testing.T, opts AcceptOptions) (addr string, conns <-chan accepted, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan accepted, 1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, raw, err := Accept(w, r, opts)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- accepted{ws, raw}
	})}
	go hs.Serve(ln)
	return ln.Addr().String(), ch, func() { hs.Close() }
}

func batch(dst []byte, pkts [][]byte) []byte {
	dst = append(dst, '[')
	for i, p := range pkts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, p...)
	}
	return append(dst, ']')
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestQueueBatchesAndPings(t *testing.T) {
	var wg sync.WaitGroup
	var frames, packets atomic.Int64
	eng := &Engine{Batch: batch, WG: &wg, OnFrame: func(p, _ int) { frames.Add(1); packets.Add(int64(p)) }}
	q, _, c, _ := pair(t, eng)

	if !q.Enqueue([]byte(`1`)) {
		t.Fatal("enqueue refused")
	}
	if got := read(t, c); got != `1` {
		t.Fatalf("single packet sent as %q", got)
	}
	// Let the first writer exit (no Linger), then fill the queue under its
	// lock, the way a busy writer would find it: everything queued goes
	// in one frame.
	wg.Wait()
	q.mu.Lock()
	q.running = true
	q.pkts = append(q.pkts, []byte(`2`), []byte(`3`), []byte(`4`))
	q.bytes = 3
	q.ping, q.hasPing = []byte{}, true
	q.mu.Unlock()
	wg.Go(q.run)
	if got := read(t, c); got != `` {
		t.Fatalf("ping first, got %q", got)
	}
	if got := read(t, c); got != `[2,3,4]` {
		t.Fatalf("batch %q", got)
	}
	wg.Wait()
	if frames.Load() != 2 || packets.Load() != 4 {
		t.Fatalf("frames %d packets %d", frames.Load(), packets.Load())
	}
	if n, b := q.Len(); n != 0 || b != 0 {
		t.Fatalf("left %d/%d", n, b)
	}
	// An idle queue holds no writer goroutine.
	q.mu.Lock()
	running := q.running
	q.mu.Unlock()
	if running {
		t.Fatal("writer still running on an empty queue")
	}
}

func TestQueueOverflow(t *testing.T) {
	var wg sync.WaitGroup
	eng := &Engine{MaxMessages: 3, MaxBytes: 100, Batch: batch, WG: &wg}
	q, o, _, _ := pair(t, eng)
	q.mu.Lock()
	q.running = true // no writer: the queue only fills
	q.mu.Unlock()
	for i := range 3 {
		if !q.Enqueue([]byte(`"x"`)) {
			t.Fatalf("packet %d refused", i)
		}
	}
	if q.Enqueue([]byte(`"y"`)) || o.overflow.Load() != OverflowMessages {
		t.Fatalf("message bound: %v", o.overflow.Load())
	}
	if q.Enqueue([]byte(`"z"`)) {
		t.Fatal("closed queue accepted a packet")
	}

	q2, o2, _, _ := pair(t, eng)
	q2.mu.Lock()
	q2.running = true
	q2.mu.Unlock()
	if q2.Enqueue(make([]byte, 101)) || o2.overflow.Load() != OverflowBytes {
		t.Fatalf("byte bound: %v", o2.overflow.Load())
	}
}

func TestCloseAfterFlush(t *testing.T) {
	var wg sync.WaitGroup
	eng := &Engine{Batch: batch, WG: &wg}
	q, _, c, _ := pair(t, eng)
	q.Enqueue([]byte(`"last words"`))
	closed := make(chan struct{})
	q.CloseAfterFlush(func() { close(closed) })
	if q.Enqueue([]byte(`"too late"`)) {
		t.Fatal("accepted after CloseAfterFlush")
	}
	if got := read(t, c); got != `"last words"` {
		t.Fatalf("got %q", got)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close callback not called")
	}
}

func TestQueueWriteError(t *testing.T) {
	var wg sync.WaitGroup
	eng := &Engine{Batch: batch, WG: &wg}
	q, o, _, raw := pair(t, eng)
	raw.Close()
	q.Enqueue([]byte(`1`))
	wg.Wait()
	if err, _ := o.werr.Load().(error); err == nil || errors.Is(err, nil) {
		t.Fatal("write error not reported")
	}
	if q.Enqueue([]byte(`2`)) {
		t.Fatal("failed queue accepted a packet")
	}
}

func TestQueueCoalescesBusySocket(t *testing.T) {
	var wg sync.WaitGroup
	var frames atomic.Int64
	const gap = 300 * time.Millisecond
	eng := &Engine{Batch: batch, WG: &wg, Coalesce: gap, Linger: time.Second, OnFrame: func(int, int) { frames.Add(1) }}
	q, _, c, _ := pair(t, eng)

	// A socket that has not been written to lately gets its packet at once.
	start := time.Now()
	q.EnqueueCoalesced([]byte(`1`))
	if got := read(t, c); got != `1` {
		t.Fatalf("first packet sent as %q", got)
	}
	first := time.Since(start)
	// Packets right behind it wait out the gap and leave in one frame.
	q.EnqueueCoalesced([]byte(`2`))
	q.EnqueueCoalesced([]byte(`3`))
	q.EnqueueCoalesced([]byte(`4`))
	if got := read(t, c); got != `[2,3,4]` {
		t.Fatalf("coalesced frame %q", got)
	}
	if waited := time.Since(start); waited < gap-first {
		t.Fatalf("second frame %v after the first was queued; the gap is %v", waited, gap)
	}
	if n := frames.Load(); n != 2 {
		t.Fatalf("%d frames for two bursts", n)
	}
}

func TestQueueCoalesceEndsEarly(t *testing.T) {
	var wg sync.WaitGroup
	// A gap far beyond the read deadline: only the byte bound or a close
	// can end the wait in time.
	eng := &Engine{Batch: batch, WG: &wg, Coalesce: time.Hour, CoalesceBytes: 100}
	q, _, c, _ := pair(t, eng)
	q.EnqueueCoalesced([]byte(`1`))
	if got := read(t, c); got != `1` {
		t.Fatalf("first packet sent as %q", got)
	}
	pad := `"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`
	for range 3 { // 3×40 bytes passes CoalesceBytes
		q.EnqueueCoalesced([]byte(pad))
	}
	if got := read(t, c); got != "["+pad+","+pad+","+pad+"]" {
		t.Fatalf("frame %q", got)
	}

	// Closing ends the wait too: the writer goroutine exits (the cleanup's
	// WaitGroup.Wait would hang otherwise), and CloseAfterFlush still
	// writes what was queued.
	q.EnqueueCoalesced([]byte(`"held"`))
	closed := make(chan struct{})
	q.CloseAfterFlush(func() { close(closed) })
	if got := read(t, c); got != `"held"` {
		t.Fatalf("flushed %q", got)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close callback not called during a coalescing wait")
	}

	// A reply someone waits for ends the wait at once and takes the
	// deliveries queued before it along, in order.
	q3, _, c3, _ := pair(t, eng)
	q3.EnqueueCoalesced([]byte(`1`))
	read(t, c3)
	q3.EnqueueCoalesced([]byte(`2`))
	q3.Enqueue([]byte(`"ack"`))
	if got := read(t, c3); got != `[2,"ack"]` {
		t.Fatalf("frame with a reply %q", got)
	}

	q2, _, c2, _ := pair(t, eng)
	q2.EnqueueCoalesced([]byte(`1`))
	read(t, c2)
	q2.EnqueueCoalesced([]byte(`2`))
	q2.Close()
	wg.Wait()
}

// countConn counts the writes that reach the network.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestCorkJoinsWrites(t *testing.T) {
	cc := &countConn{}
	cw := &corkWriter{Conn: cc}
	bw := bufio.NewWriterSize(cw, 16)

	// Uncorked, the small buffer flushes a header and a big payload in
	// pieces, the way a frame larger than the write buffer goes out.
	bw.Write([]byte("hd"))
	bw.Write([]byte("0123456789abcdefghij"))
	bw.Flush()
	if len(cc.writes) < 2 {
		t.Fatalf("uncorked: %d writes, want the buffer's pieces", len(cc.writes))
	}
	cc.writes = nil

	cw.corkOn()
	bw.Write([]byte("hd"))
	bw.Write([]byte("0123456789abcdefghij"))
	bw.Flush()
	cw.Write([]byte("+ctl")) // a control frame from another goroutine
	if len(cc.writes) != 0 {
		t.Fatalf("corked: %d writes reached the network", len(cc.writes))
	}
	if err := cw.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(cc.writes) != 1 || string(cc.writes[0]) != "hd0123456789abcdefghij+ctl" {
		t.Fatalf("uncork wrote %q", cc.writes)
	}
	// Nothing held: uncork writes nothing, and writes pass through again.
	if err := cw.uncork(); err != nil || len(cc.writes) != 1 {
		t.Fatalf("empty uncork: %v, %d writes", err, len(cc.writes))
	}
	cw.Write([]byte("x"))
	if len(cc.writes) != 2 {
		t.Fatalf("after uncork: %d writes", len(cc.writes))
	}
}

func TestQueueDynamicCoalesce(t *testing.T) {
	var wg sync.WaitGroup
	var frames atomic.Int64
	eng := &Engine{Batch: batch, WG: &wg, Coalesce: time.Hour, CoalesceDynamic: true, Linger: time.Second,
		OnFrame: func(int, int) { frames.Add(1) }}
	if got := eng.CurrentCoalesce(); got != 0 {
		t.Fatalf("dynamic gap starts at %v, want 0", got)
	}
	q, _, c, _ := pair(t, eng)
	// Gap 0 (an unloaded server): every packet leaves at once, alone.
	for _, p := range []string{`1`, `2`, `3`} {
		q.EnqueueCoalesced([]byte(p))
		if got := read(t, c); got != p {
			t.Fatalf("with no gap got %q, want %q", got, p)
		}
	}
	// A gap set later (the server got busy) holds what follows a frame.
	eng.SetCoalesce(300 * time.Millisecond)
	if got := eng.CurrentCoalesce(); got != 300*time.Millisecond {
		t.Fatalf("gap %v after SetCoalesce", got)
	}
	q.EnqueueCoalesced([]byte(`4`))
	read(t, c)
	q.EnqueueCoalesced([]byte(`5`))
	q.EnqueueCoalesced([]byte(`6`))
	if got := read(t, c); got != `[5,6]` {
		t.Fatalf("with a gap got %q, want one frame", got)
	}
}

func TestReadAppend(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), 100)
	for _, start := range [][]byte{nil, make([]byte, 0, 7), []byte("head:")} {
		want := append(append([]byte(nil), start...), src...)
		got, err := ReadAppend(start, iotest.OneByteReader(bytes.NewReader(src)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadAppend(%q...): %q, %v", start, got, err)
		}
	}
	boom := errors.New("boom")
	got, err := ReadAppend(nil, io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || string(got) != "abc" {
		t.Fatalf("with a failing reader: %q, %v", got, err)
	}
}

func TestTotalsLeaveOutCoalescingWaits(t *testing.T) {
	var wg sync.WaitGroup
	const gap = 300 * time.Millisecond
	eng := &Engine{Batch: batch, WG: &wg, Coalesce: gap, Linger: time.Second}
	q, _, c, _ := pair(t, eng)
	q.EnqueueCoalesced([]byte(`1`))
	read(t, c)
	// Held for the gap: the wait counted is the writer's, not the gap.
	q.EnqueueCoalescedAt([]byte(`2`), Now())
	if got := read(t, c); got != `2` {
		t.Fatalf("held frame %q", got)
	}
	// The writer counts a frame once its write has returned.
	tot := eng.Totals()
	for deadline := time.Now().Add(5 * time.Second); tot.Frames < 2 && time.Now().Before(deadline); tot = eng.Totals() {
		time.Sleep(time.Millisecond)
	}
	if tot.Frames != 2 {
		t.Fatalf("%d frames counted, want 2", tot.Frames)
	}
	if tot.Wait >= gap {
		t.Fatalf("frames waited %v for their writer, counting the %v gap they were held for", tot.Wait, gap)
	}
	if tot.Busy <= 0 {
		t.Fatalf("writing took %v", tot.Busy)
	}
}

// An idle connection keeps nothing of its last writer: the wake channel
// a lingering writer parked on goes back to the pool when it exits, and
// the next writer gets one again.
func TestIdleQueueHoldsNoWakeChannel(t *testing.T) {
	var wg sync.WaitGroup
	eng := &Engine{Batch: batch, WG: &wg, Linger: 5 * time.Millisecond}
	q, _, c, _ := pair(t, eng)
	for round := range 3 {
		if !q.Enqueue([]byte(`1`)) {
			t.Fatal("enqueue refused")
		}
		if got := read(t, c); got != `1` {
			t.Fatalf("round %d: got %q", round, got)
		}
		wg.Wait() // the writer lingered, then exited
		q.mu.Lock()
		running, wake := q.running, q.wake
		q.mu.Unlock()
		if running || wake != nil {
			t.Fatalf("round %d: idle queue: writer running %v, wake channel %v", round, running, wake)
		}
	}
}
