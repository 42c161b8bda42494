package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"5s", 5 * time.Second, true},
		{"250ms", 250 * time.Millisecond, true},
		{"5000", 5 * time.Second, true}, // SCC's bare milliseconds
		{"0", 0, true},
		{" 1500 ", 1500 * time.Millisecond, true},
		{"-1", 0, false},
		{"-5s", 0, false},
		{"soon", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
		"0": slog.LevelError, "1": slog.LevelError, "2": slog.LevelWarn, "3": slog.LevelInfo, "4": slog.LevelDebug,
	} {
		if got, err := ParseLogLevel(in); err != nil || got != want {
			t.Errorf("ParseLogLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLogLevel("loud"); err == nil {
		t.Error("ParseLogLevel(loud) succeeded")
	}
}

func TestReaderPrecedenceAndErrors(t *testing.T) {
	r := NewReader(env(map[string]string{
		"A_INT": "7", "A_DUR": "1500", "A_BOOL": "yes", "A_LIST": " x, ,y ",
		"BAD_INT": "seven", "SCC_LOG_LEVEL": "warn", "SCC_STATE_LOG_LEVEL": "3",
	}))
	if got := r.Int("A_INT", 1, ""); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("UNSET", 3, ""); got != 3 {
		t.Errorf("default Int = %d", got)
	}
	if got := r.Duration("A_DUR", time.Second, ""); got != 1500*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if !r.Bool("A_BOOL", false, "") {
		t.Error("Bool = false")
	}
	if got := r.List("A_LIST", nil, ""); strings.Join(got, "|") != "x|y" {
		t.Errorf("List = %q", got)
	}
	// The first name set wins: SCC's own variable before the generic one.
	if got := r.LogLevel("info", "SCC_STATE_LOG_LEVEL", "SCC_LOG_LEVEL"); got != slog.LevelInfo {
		t.Errorf("LogLevel = %v", got)
	}
	if got := r.LogLevel("info", "UNSET_LEVEL", "SCC_LOG_LEVEL"); got != slog.LevelWarn {
		t.Errorf("fallback LogLevel = %v", got)
	}
	if r.Err() != nil {
		t.Fatalf("unexpected error: %v", r.Err())
	}
	r.Int("BAD_INT", 1, "")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BAD_INT") {
		t.Fatalf("Err = %v, want it to name BAD_INT", err)
	}
	var names []string
	for _, v := range r.Vars() {
		names = append(names, v.Name)
	}
	var b strings.Builder
	Usage(&b, r.Vars())
	for _, n := range []string{"A_INT", "SCC_STATE_LOG_LEVEL", "SCC_LOG_LEVEL", "BAD_INT"} {
		if !strings.Contains(b.String(), n) {
			t.Errorf("usage lacks %s:\n%s", n, b.String())
		}
	}
}
