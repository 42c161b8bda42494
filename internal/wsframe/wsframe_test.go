package wsframe

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFramesReadByCoderWebsocket sends hand-made frames of every length
// encoding, fragmented and whole, to a coder/websocket server and checks
// that it reads the same messages back.
func TestFramesReadByCoderWebsocket(t *testing.T) {
	got := make(chan []byte, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(1 << 20)
		for {
			_, b, err := c.Read(r.Context())
			if err != nil {
				close(got)
				return
			}
			got <- b
		}
	}))
	defer srv.Close()

	nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := nc.Read(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte(" 101 ")) {
		t.Fatalf("upgrade: %q %v", buf[:n], err)
	}

	want := [][]byte{
		[]byte("short"),
		bytes.Repeat([]byte("m"), 300),    // 16-bit length
		bytes.Repeat([]byte("l"), 70_000), // 64-bit length
		[]byte("fragmented message"),
	}
	var out []byte
	out = AppendText(out, string(want[0]))
	out = AppendClient(out, OpBinary, true, want[1])
	out = AppendClient(out, OpText, true, want[2])
	out = AppendClient(out, OpText, false, want[3][:5])
	out = AppendClient(out, OpPing, true, nil) // control frames may interleave
	out = AppendClient(out, OpContinuation, true, want[3][5:])
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, w := range want {
		select {
		case b := <-got:
			if !bytes.Equal(b, w) {
				t.Fatalf("message %d: got %d bytes, want %d", i, len(b), len(w))
			}
		case <-ctx.Done():
			t.Fatalf("message %d not read", i)
		}
	}
}
