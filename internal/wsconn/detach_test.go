package wsconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/wsframe"
)

var testAccept = websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled}

// rawPair accepts one connection with Accept and returns its server side
// with the client's raw TCP connection (after the upgrade), so a test
// can send any bytes in any pieces.
func rawPair(t *testing.T) (*websocket.Conn, *Raw, net.Conn, *bufio.Reader) {
	t.Helper()
	addr, conns, stop := serveAccept(t, AcceptOptions{ReadBufferSize: 64, WriteBufferSize: 64, WebSocket: testAccept})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	a := <-conns
	raw := a.raw // the cleanup must not keep the Conn
	t.Cleanup(func() {
		c.Close()
		raw.Close()
		stop()
	})
	return a.ws, a.raw, c, br
}

// readServerText reads one unmasked text frame (of under 126 bytes) from
// the server.
func readServerText(t *testing.T, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[0] != 0x81 || h[1] > 125 {
		t.Fatalf("frame header % x, want a short text frame", h)
	}
	p := make([]byte, h[1])
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return string(p)
}

func isTestPong(p []byte) bool { return string(p) == "#2" || len(p) == 0 }

// takeUntil calls TakeFrames until it has taken n frames or reports
// more, failing after a deadline.
func takeUntil(t *testing.T, raw *Raw, n int) (taken int, more bool, err error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		k, m, err := raw.TakeFrames(isTestPong)
		taken += k
		if m || err != nil || (n > 0 && taken >= n) {
			return taken, m, err
		}
		raw.WaitReadable()
	}
	t.Fatalf("took %d frames, want %d", taken, n)
	return
}

// A Conn dropped with Detach leaves the connection open, and the one
// Reattach builds reads what was already buffered first, then what
// follows, and writes.
func TestDetachAndReattach(t *testing.T) {
	ws, raw, c, br := rawPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Two messages in one write: the second is buffered once the first
	// is read.
	c.Write(wsframe.AppendClient(wsframe.AppendClient(nil, 1, true, []byte("one")), 1, true, []byte("two")))
	// (Without a deadline: one would keep the Conn referenced from ctx.)
	if _, b, err := ws.Read(context.Background()); err != nil || string(b) != "one" {
		t.Fatalf("read %q, %v", b, err)
	}
	if !raw.Buffered() {
		t.Fatal("the second message is not buffered")
	}
	Detach(ws)
	dropped := []weak.Pointer[websocket.Conn]{weak.Make(ws)}
	for range 3 {
		ws, err := raw.Reattach(&testAccept)
		if err != nil {
			t.Fatal(err)
		}
		Detach(ws)
		dropped = append(dropped, weak.Make(ws))
	}
	// The dropped Conns are freed (a Conn refers to itself, so with
	// coder/websocket's finalizer still set it never would be), and the
	// connection stays open.
	ws = nil
	runtime.GC()
	runtime.GC()
	for i, p := range dropped {
		if p.Value() != nil {
			t.Fatalf("dropped Conn %d was not freed", i)
		}
	}
	ws, err := raw.Reattach(&testAccept)
	if err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "two" {
		t.Fatalf("after reattaching: read %q, %v", b, err)
	}
	// A message split over two writes.
	f := wsframe.AppendClient(nil, 1, true, []byte("three"))
	c.Write(f[:3])
	done := make(chan string, 1)
	go func() {
		_, b, err := ws.Read(ctx)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- string(b)
	}()
	c.Write(f[3:])
	if got := <-done; got != "three" {
		t.Fatalf("read %q, want three", got)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	if got := readServerText(t, c, br); got != "reply" {
		t.Fatalf("client read %q, want reply", got)
	}
	// A close from the client ends the reattached Conn's reads with its
	// status.
	c.Write(wsframe.AppendClient(nil, 8, true, []byte{0x03, 0xe8}))
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("read after the client's close: %v", err)
	}
}

// TakeFrames takes whole masked pongs and leaves everything else, whole
// or not, to a Conn, without blocking.
func TestTakeFrames(t *testing.T) {
	pong := wsframe.AppendClient(nil, 1, true, []byte("#2"))
	empty := wsframe.AppendClient(nil, 1, true, nil)
	hello := wsframe.AppendClient(nil, 1, true, []byte("hello"))
	for _, tc := range []struct {
		name  string
		sends [][]byte // each its own write; TakeFrames runs after the first
		taken int
		more  bool
		next  string // the message a Conn then reads ("" for none)
	}{
		{"pongs", [][]byte{append(append(append([]byte{}, pong...), empty...), pong...)}, 3, false, ""},
		{"pong then message", [][]byte{append(append([]byte{}, pong...), hello...)}, 1, true, "hello"},
		{"message", [][]byte{hello}, 0, true, "hello"},
		{"split pong", [][]byte{pong[:3], pong[3:]}, 0, true, "#2"},
		{"not a pong", [][]byte{wsframe.AppendClient(nil, 1, true, []byte("#1"))}, 0, true, "#1"},
		{"fragment", [][]byte{wsframe.AppendClient(nil, 1, false, []byte("#2")), wsframe.AppendClient(nil, 0, true, []byte("x"))}, 0, true, "#2x"},
		{"ping control frame", [][]byte{wsframe.AppendClient(nil, 9, true, nil), hello}, 0, true, "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, raw, c, _ := rawPair(t)
			if taken, more, err := raw.TakeFrames(isTestPong); taken != 0 || more || err != nil {
				t.Fatalf("with nothing sent: %d %v %v", taken, more, err)
			}
			c.Write(tc.sends[0])
			taken, more, err := takeUntil(t, raw, tc.taken)
			if taken != tc.taken || more != tc.more || err != nil {
				t.Fatalf("took %d, more %v, err %v; want %d, %v", taken, more, err, tc.taken, tc.more)
			}
			for _, b := range tc.sends[1:] {
				c.Write(b)
			}
			if tc.next == "" {
				if raw.Buffered() {
					t.Fatal("bytes left buffered")
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, b, err := ws.Read(ctx); err != nil || string(b) != tc.next {
				t.Fatalf("Conn read %q, %v; want %q", b, err, tc.next)
			}
		})
	}
	t.Run("peer gone", func(t *testing.T) {
		_, raw, c, _ := rawPair(t)
		c.Close()
		raw.WaitReadable()
		if _, more, err := raw.TakeFrames(isTestPong); !more || !errors.Is(err, io.EOF) {
			t.Fatalf("more %v, err %v; want true, EOF", more, err)
		}
	})
}

// TryWrite writes a frame whole when the send buffer takes it, and
// returns ErrWouldBlock instead of blocking when it is full.
func TestTryWrite(t *testing.T) {
	_, raw, c, br := rawPair(t)
	if n, err := raw.TryWrite([]byte{0x81, 2, '#', '1'}); n != 4 || err != nil {
		t.Fatalf("TryWrite: %d, %v", n, err)
	}
	if got := readServerText(t, c, br); got != "#1" {
		t.Fatalf("client read %q, want #1", got)
	}
	// The client stops reading: the buffers fill, and TryWrite returns.
	chunk := make([]byte, 64<<10)
	var err error
	for i := 0; i < 10000; i++ {
		var n int
		if n, err = raw.TryWrite(chunk); err != nil || n < len(chunk) {
			break
		}
	}
	if err != nil && !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryWrite on a full buffer: %v", err)
	}
	n, err := raw.TryWrite(chunk)
	if n != 0 || !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryWrite on a full buffer: %d, %v; want 0, ErrWouldBlock", n, err)
	}
}

type countingLender struct {
	ws                *websocket.Conn
	acquired, release atomic.Int32
}

func (l *countingLender) AcquireConn() (*websocket.Conn, error) {
	l.acquired.Add(1)
	return l.ws, nil
}
func (l *countingLender) ReleaseConn(data bool) {
	if data {
		l.release.Add(1)
	}
}

// A queue with a Lender borrows the Conn for each writer run and gives
// it back, saying it wrote data, when the writer exits.
func TestQueueLender(t *testing.T) {
	eng := &Engine{WG: &sync.WaitGroup{}}
	_, o, cws, raw := pair(t, eng)
	ws, err := raw.Reattach(&testAccept) // the one pair made is not used
	if err != nil {
		t.Fatal(err)
	}
	l := &countingLender{ws: ws}
	q := NewQueue(eng, nil, raw, o)
	q.SetLender(l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		msg := fmt.Sprintf("m%d", i)
		if !q.Enqueue([]byte(msg)) {
			t.Fatal("enqueue refused")
		}
		if _, b, err := cws.Read(ctx); err != nil || string(b) != msg {
			t.Fatalf("read %q, %v", b, err)
		}
		eng.WG.Wait() // the writer has exited
		if a, r := l.acquired.Load(), l.release.Load(); a != int32(i+1) || r != a {
			t.Fatalf("after run %d: acquired %d, released %d", i, a, r)
		}
	}
}

// BenchmarkReattach is what a detached connection costs to use again: a
// Conn built over it, then dropped.
func BenchmarkReattach(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan *Raw, 1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, raw, err := Accept(w, r, AcceptOptions{WebSocket: testAccept})
		if err != nil {
			b.Error(err)
			return
		}
		ch <- raw
	})}
	go hs.Serve(ln)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cws.CloseNow()
	raw := <-ch
	b.ReportAllocs()
	for b.Loop() {
		ws, err := raw.Reattach(&testAccept)
		if err != nil {
			b.Fatal(err)
		}
		Detach(ws)
	}
}
