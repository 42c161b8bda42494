// Package config reads sccgo's settings from flags and environment
// variables. Precedence is flag > environment > default. Library packages
// never call os.Getenv: mains pass a Getenv function in, so tests can too.
//
// Every setting is declared once as a Var, which gives it a name, a default
// and a help text; Usage prints them all for each binary's -h.
package config

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Getenv looks up an environment variable; os.Getenv in mains.
type Getenv func(string) string

// Var documents one environment variable a binary reads.
type Var struct {
	Name    string
	Default string
	Help    string
}

// Reader reads typed values from the environment, remembering every
// variable it was asked for (for -h) and the first error it met.
type Reader struct {
	get  Getenv
	vars []Var
	errs []error
}

// NewReader returns a Reader over getenv; nil reads nothing.
func NewReader(getenv Getenv) *Reader {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &Reader{get: getenv}
}

// Fail records err (a value that parsed but does not make sense) so that
// Err reports it with the others; nil is ignored.
func (r *Reader) Fail(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// Vars returns every variable read so far, in order.
func (r *Reader) Vars() []Var { return r.vars }

// Err returns the errors met while reading, joined, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	msgs := make([]string, len(r.errs))
	for i, e := range r.errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("config: %s", strings.Join(msgs, "; "))
}

func (r *Reader) note(name, def, help string) string {
	r.vars = append(r.vars, Var{Name: name, Default: def, Help: help})
	return strings.TrimSpace(r.get(name))
}

// String reads a string.
func (r *Reader) String(name, def, help string) string {
	if v := r.note(name, def, help); v != "" {
		return v
	}
	return def
}

// Int reads an integer.
func (r *Reader) Int(name string, def int, help string) int {
	v := r.note(name, strconv.Itoa(def), help)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not an integer", name, v))
		return def
	}
	return n
}

// Int64 reads a 64-bit integer.
func (r *Reader) Int64(name string, def int64, help string) int64 {
	v := r.note(name, strconv.FormatInt(def, 10), help)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not an integer", name, v))
		return def
	}
	return n
}

// Float reads a floating-point number.
func (r *Reader) Float(name string, def float64, help string) float64 {
	v := r.note(name, strconv.FormatFloat(def, 'g', -1, 64), help)
	if v == "" {
		return def
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not a number", name, v))
		return def
	}
	return n
}

// Bool reads a boolean (1/0, true/false, yes/no, on/off).
func (r *Reader) Bool(name string, def bool, help string) bool {
	v := r.note(name, strconv.FormatBool(def), help)
	if v == "" {
		return def
	}
	b, ok := ParseBool(v)
	if !ok {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: not a boolean", name, v))
		return def
	}
	return b
}

// Duration reads a duration in Go syntax ("5s", "250ms") or bare
// milliseconds ("5000"), which is SCC's form.
func (r *Reader) Duration(name string, def time.Duration, help string) time.Duration {
	v := r.note(name, def.String(), help)
	if v == "" {
		return def
	}
	d, err := ParseDuration(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: %v", name, v, err))
		return def
	}
	return d
}

// List reads a comma-separated list, dropping empty items.
func (r *Reader) List(name string, def []string, help string) []string {
	v := r.note(name, strings.Join(def, ","), help)
	if v == "" {
		return def
	}
	return SplitList(v)
}

// Port reads a TCP port number (0 means any free port).
func (r *Reader) Port(name string, def int, help string) int {
	p := r.Int(name, def, help)
	if p < 0 || p > 65535 {
		r.errs = append(r.errs, fmt.Errorf("%s=%d: not a port", name, p))
		return def
	}
	return p
}

// SplitList splits a comma-separated list, trimming and dropping empties.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseDuration parses Go duration syntax or bare milliseconds.
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration")
		}
		return time.Duration(n * float64(time.Millisecond)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration (use 5s, 250ms or milliseconds)")
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration")
	}
	return d, nil
}

// ParseBool parses 1/0, true/false, yes/no and on/off.
func ParseBool(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on", "t", "y":
		return true, true
	case "0", "false", "no", "off", "f", "n":
		return false, true
	}
	return false, false
}

// HostPort joins a host and port, defaulting the host to all interfaces.
func HostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Usage writes a table of every variable with its default and help.
func Usage(w io.Writer, vars []Var) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Help)
	}
	tw.Flush()
}

// LogLevel reads the first of names that is set (each listed for -h) and
// parses it with ParseLogLevel; def applies when none is set.
func (r *Reader) LogLevel(def string, names ...string) slog.Level {
	v := ""
	for i, name := range names {
		help := "log level: debug, info, warn, error, or SCC's 0-3"
		if i < len(names)-1 {
			help += " (default: " + names[len(names)-1] + ")"
		}
		d := ""
		if i == len(names)-1 {
			d = def
		}
		if got := r.note(name, d, help); got != "" && v == "" {
			v = got
		}
	}
	if v == "" {
		v = def
	}
	l, err := ParseLogLevel(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: %v", names[0], v, err))
		return slog.LevelInfo
	}
	return l
}

// ParseLogLevel parses debug, info, warn or error, or SCC's numeric levels:
// 0 nothing but errors, 1 errors, 2 warnings, 3 everything (info), 4 and
// above debug.
func ParseLogLevel(v string) (slog.Level, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		switch {
		case n <= 1:
			return slog.LevelError, nil
		case n == 2:
			return slog.LevelWarn, nil
		case n == 3:
			return slog.LevelInfo, nil
		default:
			return slog.LevelDebug, nil
		}
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(v))); err != nil {
		return 0, fmt.Errorf("not a log level (debug, info, warn, error or 0-3)")
	}
	return l, nil
}

// ParseArgs parses a binary's command line, which takes no arguments but
// -h: -h prints about and every variable read so far (returning
// flag.ErrHelp), and anything else is an error.
func ParseArgs(name, about string, args []string, r *Reader, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-h]\n\n%s It reads these environment variables:\n", name, about)
		Usage(stderr, r.Vars())
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}
