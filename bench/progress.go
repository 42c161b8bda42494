package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// ProgressPrinter shows Progress: on a terminal one line redrawn in place
// with a progress bar, otherwise plain lines at each phase change and at
// most every PlainEvery.
type ProgressPrinter struct {
	w   io.Writer
	tty bool
	// PlainEvery spaces plain lines. Default 2s.
	PlainEvery time.Duration

	mu        sync.Mutex
	lastPhase string
	lastStep  int
	lastPlain time.Time
	drawn     bool
}

// NewProgressPrinter returns a printer to w; tty selects the redrawn line.
func NewProgressPrinter(w io.Writer, tty bool) *ProgressPrinter {
	return &ProgressPrinter{w: w, tty: tty, PlainEvery: 2 * time.Second}
}

// Update shows p. It is safe for concurrent use.
func (pp *ProgressPrinter) Update(p Progress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	changed := p.Phase != pp.lastPhase || p.Step != pp.lastStep
	pp.lastPhase, pp.lastStep = p.Phase, p.Step
	line := progressLine(p)
	if pp.tty {
		frac := 0.0
		if p.Total > 0 {
			frac = min(max(p.Done/p.Total, 0), 1)
		}
		const width = 24
		n := int(frac * width)
		bar := strings.Repeat("█", n) + strings.Repeat("░", width-n)
		fmt.Fprintf(pp.w, "\r\x1b[K%s %3.0f%% %s", bar, frac*100, line)
		pp.drawn = true
		return
	}
	if !changed && time.Since(pp.lastPlain) < pp.PlainEvery {
		return
	}
	pp.lastPlain = time.Now()
	fmt.Fprintln(pp.w, line)
}

// Done ends the redrawn line, so later output starts on its own line.
func (pp *ProgressPrinter) Done() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.tty && pp.drawn {
		fmt.Fprintln(pp.w)
		pp.drawn = false
	}
}

func progressLine(p Progress) string {
	var b strings.Builder
	b.WriteString(p.Phase)
	if p.Step > 0 {
		fmt.Fprintf(&b, " step %d", p.Step)
	}
	switch p.Phase {
	case "connect":
		fmt.Fprintf(&b, " %d/%.0f connected, %d failed", p.Connected, p.Total, p.ConnectFailed)
		return b.String()
	case "hold":
		fmt.Fprintf(&b, " %d connections, %.0f/%.0fs, errors %d", p.Connected, p.Done, p.Total, p.Errors)
		return b.String()
	}
	if p.Rate > 0 {
		fmt.Fprintf(&b, " at %s msg/s", fmtRate(p.Rate))
	}
	if p.Total > 0 && p.Phase != "drain" {
		fmt.Fprintf(&b, " %.0f/%.0fs", p.Done, p.Total)
	}
	fmt.Fprintf(&b, " | delivered %s msg/s, p99 %s, errors %d", fmtRate(p.Delivered), fmtMS(p.P99), p.Errors)
	return b.String()
}
