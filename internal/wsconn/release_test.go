package wsconn

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A connection's read buffer released while idle comes back for the next
// message, which is read whole, whatever its size against the buffer's.
func TestReleaseReadBuffer(t *testing.T) {
	eng := &Engine{WG: &sync.WaitGroup{}}
	q, _, cws, raw := pair(t, eng)
	ws := q.ws
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, msg := range []string{"small", strings.Repeat("x", 1000), "", "after"} {
		if !raw.ReleaseReadBuffer() {
			t.Fatalf("message %d: buffer not released with nothing buffered", i)
		}
		if !raw.ReleaseReadBuffer() {
			t.Fatalf("message %d: second release refused", i)
		}
		if err := cws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		raw.RestoreReadBuffer()
		raw.RestoreReadBuffer()
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(b) != msg {
			t.Fatalf("message %d: read %q, want %q", i, b, msg)
		}
	}
	// Two messages: when the second is buffered after the first is read,
	// the buffer is kept.
	cws.Write(ctx, websocket.MessageText, []byte("one"))
	cws.Write(ctx, websocket.MessageText, []byte("two"))
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "one" {
		t.Fatalf("read %q, %v", b, err)
	}
	if raw.Buffered() && raw.ReleaseReadBuffer() {
		t.Fatal("released a buffer holding bytes")
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != "two" {
		t.Fatalf("read %q, %v", b, err)
	}
}
