package chaos_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/chaos"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP scc_frontend_closes_total Client connections closed, by reason.
# TYPE scc_frontend_closes_total counter
scc_frontend_closes_total{reason="slow_consumer"} 3
scc_frontend_closes_total{reason="normal"} 10
scc_frontend_closes_total{code="4010",reason="odd \"quoted\" value"} 2.5
go_goroutines 42
process_open_fds 17 1700000000000
`
	s, err := chaos.ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"scc_frontend_closes_total", nil, 15.5},
		{"scc_frontend_closes_total", []string{"reason", "slow_consumer"}, 3},
		{"scc_frontend_closes_total", []string{"reason", `odd "quoted" value`}, 2.5},
		{"scc_frontend_closes_total", []string{"reason", "none"}, 0},
		{"go_goroutines", nil, 42},
		{"process_open_fds", nil, 17},
		{"missing", nil, 0},
	} {
		if got := s.Sum(tc.name, tc.labels...); got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := s.ByLabel("scc_frontend_closes_total", "reason")["normal"]; got != 10 {
		t.Errorf("ByLabel normal = %v, want 10", got)
	}
	if _, err := chaos.ParseMetrics(strings.NewReader("bad{label 1\n")); err == nil {
		t.Error("a broken label set parsed")
	}
}

func TestFailoverHTTPClient(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "live")
	}))
	defer live.Close()
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	hc := chaos.FailoverHTTPClient([]string{dead, strings.TrimPrefix(live.URL, "http://")}, nil)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + dead + "/")
	if err != nil {
		t.Fatalf("no failover to the live address: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "live" {
		t.Fatalf("got %q", b)
	}
	if _, err := chaos.FailoverHTTPClient([]string{dead}, nil).Get("http://" + dead + "/"); err == nil {
		t.Fatal("a dial with every address dead succeeded")
	}
}

func TestLatencyPhases(t *testing.T) {
	l := chaos.NewLatency()
	now := time.Now()
	l.Observe(bench.Payload{SentAt: now}, now.Add(2*time.Millisecond))
	l.Observe(bench.Payload{SentAt: now.Add(-time.Hour)}, now) // sent before the phase: not counted
	s := l.Cut()
	if s.Count != 1 || s.P99 < 1.9 || s.P99 > 2.1 {
		t.Fatalf("first phase: %+v", s)
	}
	l.Observe(bench.Payload{SentAt: now}, now.Add(time.Millisecond)) // sent before the cut
	if s := l.Cut(); s.Count != 0 {
		t.Fatalf("a message sent in the previous phase counted in the next: %+v", s)
	}
}

func TestSoakTable(t *testing.T) {
	s := []soakSample{
		{T: 0, Proc: "flat", PID: 1, Goroutines: 10, RSS: 10 << 20, FDs: 10},
		{T: 30, Proc: "flat", PID: 1, Goroutines: 40, RSS: 20 << 20, FDs: 12},
		{T: 60, Proc: "flat", PID: 1, Goroutines: 45, RSS: 25 << 20, FDs: 12},
		{T: 0, Proc: "leaky", PID: 2, Goroutines: 10, RSS: 10 << 20, FDs: 10},
		{T: 30, Proc: "leaky", PID: 2, Goroutines: 200, RSS: 20 << 20, FDs: 12},
		{T: 60, Proc: "leaky", PID: 2, Goroutines: 400, RSS: 20 << 20, FDs: 12},
		{T: 0, Proc: "restarted", PID: 3, Goroutines: 10},
		{T: 60, Proc: "restarted", PID: 4, Goroutines: 1000},
	}
	table, problems := soakTable(s, 30)
	if len(problems) != 1 || !strings.Contains(problems[0], "leaky") || !strings.Contains(problems[0], "goroutines") {
		t.Fatalf("problems = %q\n%s", problems, table)
	}
	if !strings.Contains(table, "restarted (not judged)") {
		t.Fatalf("a restarted process was judged:\n%s", table)
	}
}
