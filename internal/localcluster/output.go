package localcluster

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// ColorMode says whether output prefixes are colored.
type ColorMode int

// Color modes.
const (
	// ColorAuto colors prefixes only when Options.Stdout is a terminal.
	ColorAuto ColorMode = iota
	// ColorAlways always colors prefixes.
	ColorAlways
	// ColorNever never colors prefixes.
	ColorNever
)

// maxLineBytes bounds how much of one unterminated line is buffered before
// it is written out anyway, so a child that never prints a newline cannot
// grow the supervisor's memory.
const maxLineBytes = 64 << 10

// ANSI colors for prefixes, cycled by process index.
var palette = []string{
	"\x1b[36m", // cyan
	"\x1b[33m", // yellow
	"\x1b[32m", // green
	"\x1b[35m", // magenta
	"\x1b[34m", // blue
	"\x1b[91m", // bright red
	"\x1b[96m", // bright cyan
	"\x1b[93m", // bright yellow
}

const colorReset = "\x1b[0m"

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// output serialises whole lines from every child onto one writer.
type output struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	width int // prefix names are padded to this width
}

func newOutput(w io.Writer, mode ColorMode) *output {
	if w == nil {
		w = io.Discard
	}
	color := mode == ColorAlways || (mode == ColorAuto && isTerminal(w))
	return &output{w: w, color: color, width: len("frontend-1")}
}

// prefix builds the "name | " prefix for a child.
func (o *output) prefix(name string, idx int) []byte {
	pad := o.width - len(name)
	if pad < 0 {
		pad = 0
	}
	var b bytes.Buffer
	if o.color {
		b.WriteString(palette[idx%len(palette)])
	}
	b.WriteString(name)
	b.Write(bytes.Repeat([]byte{' '}, pad))
	b.WriteString(" |")
	if o.color {
		b.WriteString(colorReset)
	}
	b.WriteByte(' ')
	return b.Bytes()
}

// writeLine writes prefix+line+"\n" atomically with respect to other lines.
// Write errors are ignored: losing log output must not stop the cluster.
func (o *output) writeLine(prefix, line []byte) {
	buf := make([]byte, 0, len(prefix)+len(line)+1)
	buf = append(buf, prefix...)
	buf = append(buf, line...)
	buf = append(buf, '\n')
	o.mu.Lock()
	_, _ = o.w.Write(buf)
	o.mu.Unlock()
}

// lineWriter splits a child's byte stream into lines and writes each with
// the child's prefix. exec.Cmd copies a pipe into it from one goroutine,
// which Cmd.Wait waits for, so it needs no lock of its own.
type lineWriter struct {
	out    *output
	prefix []byte
	buf    []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			lw.buf = append(lw.buf, p...)
			if len(lw.buf) >= maxLineBytes {
				lw.flush()
			}
			break
		}
		line := p[:i]
		if len(lw.buf) > 0 {
			lw.buf = append(lw.buf, line...)
			line = lw.buf
		}
		lw.out.writeLine(lw.prefix, bytes.TrimSuffix(line, []byte{'\r'}))
		lw.buf = lw.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush writes any unterminated tail as a line of its own.
func (lw *lineWriter) flush() {
	if len(lw.buf) > 0 {
		lw.out.writeLine(lw.prefix, lw.buf)
		lw.buf = lw.buf[:0]
	}
}
