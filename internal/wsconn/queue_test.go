package wsconn

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type accepted struct {
		ws  *websocket.Conn
		raw *Raw
	}
	ch := make(chan accepted, 1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, raw, err := Accept(w, r, AcceptOptions{ReadBufferSize: 64, WriteBufferSize: 64})
		if err != nil {
			t.Error(err)
			return
		}
		ch <- accepted{ws, raw}
	})}
	go hs.Serve(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cws.SetReadLimit(-1)
	a := <-ch
	o := &owner{}
	q := NewQueue(eng, a.ws, a.raw, o)
	t.Cleanup(func() {
		cws.CloseNow()
		a.ws.CloseNow()
		eng.WG.Wait()
		hs.Close()
	})
	return q, o, cws, a.raw
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
	// Hold the writer off by filling the queue under its lock, the way a
	// busy writer would find it: everything queued goes in one frame.
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
