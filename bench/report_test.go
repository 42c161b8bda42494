package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func sampleResult() *Result {
	cfg := DefaultConfig()
	cfg.Scenario = Sweep
	cfg.Validate()
	r := &Result{Name: "fanout-sweep", Scenario: Sweep, Config: cfg, Start: time.Unix(1700000000, 0), Pass: true}
	for i := range 3 {
		st := Step{Rate: 1000 * float64(i+1), PublishedPerSec: 1000 * float64(i+1), DeliveredPerSec: 10000 * float64(i+1),
			Latency: LatencySummary{Count: 100, P50: 1, P90: 2, P99: 10 * float64(i+1), P999: 40 * float64(i+1), Max: 100}, Pass: i < 2}
		if !st.Pass {
			st.Reason = "p99 30.0ms > 20ms"
		}
		r.Steps = append(r.Steps, st)
		for j := range 4 {
			r.Series = append(r.Series, Sample{T: float64(i*4 + j + 1), Seconds: 1, Step: i + 1, Phase: "measure",
				Delivered: int64(10000 * (i + 1)), Published: int64(1000 * (i + 1)), P50: 1, P90: 2, P99: 5, Max: 20})
		}
	}
	best := r.Steps[1]
	r.Sustainable = &best
	r.DeliveredPerSec = best.DeliveredPerSec
	r.Latency = best.Latency
	r.Check = CheckResult{Expected: 5, Received: 5}
	return r
}

func TestWriteReports(t *testing.T) {
	r := sampleResult()
	var buf bytes.Buffer
	if err := WriteText(&buf, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sustainable", "20.0k msg/s delivered", "fail: p99", "result: PASS"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}

	buf.Reset()
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Count(page, "<svg") != 3 || strings.Contains(page, "src=") || strings.Contains(page, "href=") || strings.Contains(page, "<script") {
		t.Errorf("page not self-contained or charts missing: %d svgs", strings.Count(page, "<svg"))
	}

	buf.Reset()
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(&buf)
	if err != nil || back.Sustainable == nil || back.Sustainable.DeliveredPerSec != 20000 || len(back.Series) != 12 {
		t.Fatalf("round trip: %v %+v", err, back)
	}

	buf.Reset()
	if err := WriteMarkdownSummary(&buf, "# results", []*Result{r, back}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "| fanout-sweep |") != 2 || !strings.Contains(buf.String(), "sweep steps") {
		t.Errorf("markdown:\n%s", buf.String())
	}
}

func TestProgressPrinter(t *testing.T) {
	var buf bytes.Buffer
	pp := NewProgressPrinter(&buf, false)
	pp.Update(Progress{Phase: "connect", Total: 10, Connected: 3})
	pp.Update(Progress{Phase: "connect", Total: 10, Connected: 4}) // within PlainEvery: skipped
	pp.Update(Progress{Phase: "measure", Rate: 1000, Done: 1, Total: 10, Delivered: 12345, P99: 1.5})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "12.3k msg/s") || strings.Contains(buf.String(), "\r") {
		t.Fatalf("plain:\n%s", buf.String())
	}
	buf.Reset()
	pp = NewProgressPrinter(&buf, true)
	pp.Update(Progress{Phase: "measure", Done: 5, Total: 10})
	pp.Done()
	if !strings.HasPrefix(buf.String(), "\r\x1b[K") || !strings.Contains(buf.String(), " 50% ") || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("tty: %q", buf.String())
	}
}

func TestProcessCPU(t *testing.T) {
	c, err := processCPU(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if c < 0 {
		t.Fatalf("cpu %v", c)
	}
}
