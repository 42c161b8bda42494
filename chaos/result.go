package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
)

// Result is one scenario's outcome, written as <results>/<scenario>.json.
type Result struct {
	Scenario string `json:"scenario"`
	Pass     bool   `json:"pass"`
	// Delivery check over every sequence-checked stream of the scenario.
	Expected   int64 `json:"expected"`
	Received   int64 `json:"received"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	OutOfOrder int64 `json:"out_of_order"`
	Unexpected int64 `json:"unexpected"`
	// RecoveryMS is the longest time from a fault until delivery resumed
	// on every channel (0 when the scenario has no recovery to measure).
	RecoveryMS float64 `json:"recovery_ms,omitempty"`
	// Figures are scenario-specific measurements (also on the line).
	Figures map[string]any `json:"figures,omitempty"`
	// Details are scenario-specific data too long for the line.
	Details map[string]any `json:"details,omitempty"`
	// Failures are the broken promises (empty on a pass).
	Failures []string  `json:"failures,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	// Command reruns just this scenario.
	Command string `json:"command"`
	// Log is the cluster's output.
	Log string `json:"log,omitempty"`
	// Counters are the cluster's non-zero drop, close, reject, timeout
	// and error counters at the end (see Cluster.Counters).
	Counters map[string]float64 `json:"counters,omitempty"`
	// Streams are a few of the streams that lost, duplicated or
	// reordered messages.
	Streams []bench.StreamResult `json:"streams,omitempty"`
}

// Line is the one-line summary printed for a scenario.
func (r Result) Line() string {
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	rec := "-"
	if r.RecoveryMS > 0 {
		rec = fmt.Sprintf("%.0fms", r.RecoveryMS)
	}
	line := fmt.Sprintf("chaos %-27s %s lost=%d duplicated=%d out_of_order=%d recovery=%s expected=%d",
		r.Scenario, verdict, r.Lost, r.Duplicated, r.OutOfOrder, rec, r.Expected)
	keys := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		line += fmt.Sprintf(" %s=%v", k, r.Figures[k])
	}
	if len(r.Failures) > 0 {
		line += " failures=" + fmt.Sprintf("%q", strings.Join(r.Failures, "; "))
	}
	return line
}

var (
	linesMu sync.Mutex
	lines   []string
)

// Lines returns the result lines printed so far in this process.
func Lines() []string {
	linesMu.Lock()
	defer linesMu.Unlock()
	return slices.Clone(lines)
}

// Report collects a scenario's result; when the test ends it prints the
// result line and writes the JSON file.
type Report struct {
	t     testing.TB
	mu    sync.Mutex
	r     Result
	start time.Time
}

// NewReport starts the report of scenario; call it first in the test so
// the report is written last, after the cluster has stopped.
func NewReport(t testing.TB, scenario, runPattern string) *Report {
	rp := &Report{t: t, start: time.Now(), r: Result{
		Scenario: scenario,
		Started:  time.Now().UTC(),
		Figures:  map[string]any{},
		Command:  fmt.Sprintf("SCC_CHAOS=1 go test -count=1 -v -run '%s' ./chaos/", runPattern),
	}}
	t.Cleanup(rp.finish)
	return rp
}

// Attach records where the cluster's output goes and, when the test ends
// but before the cluster stops, its counters. Call it right after
// StartCluster.
func (rp *Report) Attach(c *Cluster) {
	rp.mu.Lock()
	rp.r.Log = c.LogPath
	rp.mu.Unlock()
	rp.t.Cleanup(func() {
		counters := c.Counters()
		rp.mu.Lock()
		rp.r.Counters = counters
		rp.mu.Unlock()
	})
}

// Check adds a delivery check to the totals.
func (rp *Report) Check(c bench.CheckResult) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.r.Expected += c.Expected
	rp.r.Received += c.Received
	rp.r.Lost += c.Lost
	rp.r.Duplicated += c.Duplicated
	rp.r.OutOfOrder += c.OutOfOrder
	rp.r.Unexpected += c.Unexpected
	for _, st := range c.Streams {
		if len(rp.r.Streams) < 10 {
			rp.r.Streams = append(rp.r.Streams, st)
		}
	}
}

// Recovery records a recovery time; the longest one is reported.
func (rp *Report) Recovery(d time.Duration) {
	ms := float64(d.Microseconds()) / 1000
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if ms > rp.r.RecoveryMS {
		rp.r.RecoveryMS = ms
	}
}

// Figure records a named measurement.
func (rp *Report) Figure(key string, v any) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.r.Figures[key] = v
}

// Detail records data kept in the JSON result only.
func (rp *Report) Detail(key string, v any) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.r.Details == nil {
		rp.r.Details = map[string]any{}
	}
	rp.r.Details[key] = v
}

// Failf records a broken promise and marks the test failed.
func (rp *Report) Failf(format string, args ...any) {
	rp.t.Helper()
	msg := fmt.Sprintf(format, args...)
	rp.mu.Lock()
	rp.r.Failures = append(rp.r.Failures, msg)
	rp.mu.Unlock()
	rp.t.Error(msg)
}

// Fatalf records a broken promise and stops the test.
func (rp *Report) Fatalf(format string, args ...any) {
	rp.t.Helper()
	msg := fmt.Sprintf(format, args...)
	rp.mu.Lock()
	rp.r.Failures = append(rp.r.Failures, msg)
	rp.mu.Unlock()
	rp.t.Fatal(msg)
}

// Notef logs an observation and keeps it in the result.
func (rp *Report) Notef(format string, args ...any) {
	rp.t.Helper()
	msg := fmt.Sprintf(format, args...)
	rp.mu.Lock()
	rp.r.Notes = append(rp.r.Notes, msg)
	rp.mu.Unlock()
	rp.t.Log(msg)
}

// Result returns a copy of the result so far.
func (rp *Report) Result() Result {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	r := rp.r
	r.Figures = make(map[string]any, len(rp.r.Figures))
	for k, v := range rp.r.Figures {
		r.Figures[k] = v
	}
	return r
}

func (rp *Report) finish() {
	if rp.t.Skipped() {
		return
	}
	rp.mu.Lock()
	rp.r.Seconds = time.Since(rp.start).Round(100 * time.Millisecond).Seconds()
	rp.r.Pass = !rp.t.Failed() && len(rp.r.Failures) == 0
	if !rp.r.Pass && len(rp.r.Failures) == 0 {
		rp.r.Failures = []string{"the scenario could not run (see the test log)"}
	}
	r := rp.r
	rp.mu.Unlock()
	line := r.Line()
	fmt.Println(line)
	linesMu.Lock()
	lines = append(lines, line)
	linesMu.Unlock()
	dir, err := ResultsDir()
	if err != nil {
		rp.t.Errorf("results: %v", err)
		return
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		rp.t.Errorf("results: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, r.Scenario+".json"), append(b, '\n'), 0o644); err != nil {
		rp.t.Errorf("results: %v", err)
	}
}
