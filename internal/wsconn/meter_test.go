package wsconn

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

type frameLog struct {
	frames []string
	bytes  int
	failAt int // fail the frame with this index (1-based); 0 never
}

func (l *frameLog) InboundBytes(n int) error { l.bytes += n; return nil }

func (l *frameLog) InboundFrame(op byte, fin bool) error {
	f := "F"
	if !fin {
		f = "-"
	}
	l.frames = append(l.frames, string("0123456789abcdef"[op])+f)
	if len(l.frames) == l.failAt {
		return errors.New("limit")
	}
	return nil
}

// frame builds one frame; masked as a client sends it.
func frame(op byte, fin bool, n int, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	out := []byte{b0}
	switch {
	case n < 126:
		out = append(out, m|byte(n))
	case n < 1<<16:
		out = append(out, m|126, byte(n>>8), byte(n))
	default:
		out = append(out, m|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	if masked {
		out = append(out, 1, 2, 3, 4)
	}
	return append(out, bytes.Repeat([]byte{'x'}, n)...)
}

type chunkConn struct {
	net.Conn
	data  []byte
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	n := min(len(p), c.chunk, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestMeterFollowsFrames feeds a stream of frames of every header size,
// masked and not, control frames and empty fragments among them, in
// chunks of every size up to the largest frame: the meter must see every
// frame header once, in order.
func TestMeterFollowsFrames(t *testing.T) {
	var stream []byte
	var want []string
	add := func(op byte, fin bool, n int, masked bool, tag string) {
		stream = append(stream, frame(op, fin, n, masked)...)
		want = append(want, tag)
	}
	add(1, false, 0, true, "1-")
	add(0xa, true, 0, true, "aF") // an unsolicited pong between fragments
	add(0, false, 0, true, "0-")
	add(0, false, 125, true, "0-")
	add(0, true, 126, true, "0F")
	add(1, true, 70000, true, "1F")
	add(9, true, 3, false, "9F")
	add(2, true, 65535, false, "2F")
	for _, chunk := range []int{1, 2, 3, 7, 13, 256, 4096, 1 << 20} {
		l := &frameLog{}
		c := &meterConn{Conn: &chunkConn{data: stream, chunk: chunk}, m: l}
		buf := make([]byte, 1<<20)
		for total := 0; total < len(stream); {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			total += n
		}
		if l.bytes != len(stream) {
			t.Fatalf("chunk %d: %d bytes charged, want %d", chunk, l.bytes, len(stream))
		}
		if got := len(l.frames); got != len(want) {
			t.Fatalf("chunk %d: frames %v, want %v", chunk, l.frames, want)
		}
		for i := range want {
			if l.frames[i] != want[i] {
				t.Fatalf("chunk %d: frames %v, want %v", chunk, l.frames, want)
			}
		}
	}
}

// TestMeterErrorSticks: once the meter refuses, the read fails and so does
// every later one, without reading on.
func TestMeterErrorSticks(t *testing.T) {
	var stream []byte
	for range 10 {
		stream = append(stream, frame(0xa, true, 0, true)...)
	}
	l := &frameLog{failAt: 3}
	cc := &chunkConn{data: stream, chunk: 1 << 10}
	c := &meterConn{Conn: cc, m: l}
	if n, err := c.Read(make([]byte, 64)); err == nil || n != 0 {
		t.Fatalf("read = %d, %v; want 0 and the meter's error", n, err)
	}
	left := len(cc.data)
	if _, err := c.Read(make([]byte, 64)); err == nil || len(cc.data) != left {
		t.Fatalf("a later read passed or read on: %v", err)
	}
}
