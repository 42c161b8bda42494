package localcluster

import (
	"bytes"
	"strings"
	"testing"
)

func TestLineWriterSplitsAndPrefixes(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput(&buf, ColorNever)
	lw := &lineWriter{out: o, prefix: o.prefix("broker-1", 0)}
	for _, chunk := range []string{"he", "llo\nwor", "ld\r\n\nlast"} {
		lw.Write([]byte(chunk))
	}
	lw.flush()
	want := "broker-1   | hello\nbroker-1   | world\nbroker-1   | \nbroker-1   | last\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

func TestLineWriterBoundsLongLines(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput(&buf, ColorNever)
	lw := &lineWriter{out: o, prefix: []byte("x | ")}
	lw.Write(bytes.Repeat([]byte("a"), maxLineBytes+10))
	if n := strings.Count(buf.String(), "x | "); n != 1 {
		t.Fatalf("a line over the bound was written %d times, want 1 (flushed early)", n)
	}
	if cap(lw.buf) > 2*maxLineBytes+10 {
		t.Fatalf("buffer grew to %d", cap(lw.buf))
	}
}

func TestColorPrefix(t *testing.T) {
	var buf bytes.Buffer
	o := newOutput(&buf, ColorAlways)
	p := string(o.prefix("state", 1))
	if !strings.HasPrefix(p, palette[1]) || !strings.Contains(p, colorReset) || !strings.Contains(p, "state") {
		t.Fatalf("colored prefix = %q", p)
	}
	if newOutput(&buf, ColorAuto).color {
		t.Fatal("ColorAuto colors a buffer")
	}
}
