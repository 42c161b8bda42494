package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a Result written by WriteJSON.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: reading result: %w", err)
	}
	return &r, nil
}

// Describe returns a one-line description of the load.
func (c Config) Describe() string {
	var b strings.Builder
	switch c.Scenario {
	case Conns:
		fmt.Fprintf(&b, "%d idle connections, %d subscription(s) each, held %s", c.Subscribers, c.SubsPerConn, c.Duration)
	default:
		fmt.Fprintf(&b, "%d subscribers over %d channel(s) (k=%d), %d publishers", c.Subscribers, c.Channels, c.SubsPerConn, c.Publishers)
		if c.Scenario == Sweep {
			fmt.Fprintf(&b, " from %s msg/s ×%g per step", fmtRate(c.Rate), c.SweepFactor)
		} else {
			fmt.Fprintf(&b, " at %s msg/s", fmtRate(c.Rate))
		}
		fmt.Fprintf(&b, ", %d B payloads, %s warm-up + %s", c.Size, c.Warmup, c.Duration)
		if c.Scenario == Sweep {
			fmt.Fprintf(&b, " per step, p99 bound %s", c.P99Bound)
		}
		if c.Ack {
			b.WriteString(", acknowledged publishes")
		}
	}
	return b.String()
}

// subsPerChannel is the mean number of subscribers of a channel: each
// publish is delivered that many times.
func (c Config) subsPerChannel() float64 {
	return float64(c.Subscribers*c.SubsPerConn) / float64(c.Channels)
}

// WriteText writes a human-readable report of r.
func WriteText(w io.Writer, r *Result) error {
	c := r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "scc-bench %s (%s): %s\n", r.Name, r.Scenario, c.Describe())
	fmt.Fprintf(&b, "targets: %s; %d process(es); %d CPUs", strings.Join(c.URLs, ", "), r.Host.Procs, r.Host.NumCPU)
	if r.Host.CPUAffinity != "" {
		fmt.Fprintf(&b, ", bench on CPU %s", r.Host.CPUAffinity)
	}
	fmt.Fprintf(&b, "; open-file limit %d\n\n", r.Host.FDLimit)

	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	cn := r.Connect
	fmt.Fprintf(tw, "connect\t%d of %d connected, %d failed, in %.2fs (%.0f/s); per connection p50 %s p99 %s max %s\n",
		cn.Connected, cn.Attempted, cn.Failed, cn.Seconds, cn.PerSec, fmtMS(cn.Latency.P50), fmtMS(cn.Latency.P99), fmtMS(cn.Latency.Max))
	if cn.FirstError != "" {
		fmt.Fprintf(tw, "\tfirst error: %s\n", cn.FirstError)
	}
	if r.Scenario != Conns {
		if r.Scenario == Sweep {
			if r.Sustainable != nil {
				fmt.Fprintf(tw, "sustainable\t%s msg/s published, %s msg/s delivered at p99 %s (bound %s)\n",
					fmtRate(r.Sustainable.PublishedPerSec), fmtRate(r.Sustainable.DeliveredPerSec), fmtMS(r.Sustainable.Latency.P99), c.P99Bound)
			} else {
				fmt.Fprintf(tw, "sustainable\tnone: no step met the bounds\n")
			}
		}
		fmt.Fprintf(tw, "published\t%d (%s/s in the window, target %s/s), %d errors\n", r.Published, fmtRate(r.PublishedPerSec), fmtRate(r.Rate), r.PublishErrors)
		fmt.Fprintf(tw, "delivered\t%d in the window: %s msg/s\n", r.Delivered, fmtRate(r.DeliveredPerSec))
		l := r.Latency
		fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d samples)\n",
			fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), l.Count)
		k := r.Check
		verdict := "OK"
		if !k.OK() {
			verdict = "FAILED"
		}
		fmt.Fprintf(tw, "check\texpected %d, received %d, lost %d, duplicated %d, out of order %d, unexpected %d: %s\n",
			k.Expected, k.Received, k.Lost, k.Duplicated, k.OutOfOrder, k.Unexpected, verdict)
		for i, s := range k.Streams {
			if i == 10 {
				fmt.Fprintf(tw, "\t… %d more streams with problems\n", len(k.Streams)-10+k.MoreStreams)
				break
			}
			fmt.Fprintf(tw, "\tpublisher %d on %s: expected %d, lost %d, duplicated %d, out of order %d, unexpected %d\n",
				s.Publisher, s.Channel, s.Expected, s.Lost, s.Duplicated, s.OutOfOrder, s.Unexpected)
		}
	}
	if r.Drops > 0 {
		fmt.Fprintf(tw, "recovery\t%d connections cut: %d resubscribes recovered, %d told they missed messages\n", r.Drops, r.Recovered, r.RecoveryFailed)
	}
	if r.Disconnects > 0 {
		fmt.Fprintf(tw, "disconnects\t%d: %s\n", r.Disconnects, describeReasons(r.DisconnectReasons))
	} else {
		fmt.Fprintf(tw, "disconnects\t0\n")
	}
	if r.Scenario != Conns {
		fmt.Fprintf(tw, "CPU\tbench %.2f cores%s during the reported round\n", r.BenchCPU, fmtServerCPU(r.ServerCPU, r.MachineCPU))
	}
	tw.Flush()

	if len(r.Steps) > 1 {
		b.WriteString("\n")
		writeStepTable(&b, r.Steps)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "result: %s in %.1fs\n", verdict, r.Elapsed)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeStepTable(w io.Writer, steps []Step) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\ttarget/s\tpublished/s\tdelivered/s\tp50\tp99\tp99.9\tmax\tlost\tdup\tooo\tCPU bench/server/all\tresult\t")
	for i, s := range steps {
		res := "pass"
		if !s.Pass {
			res = "fail: " + s.Reason
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t\n", i+1, fmtRate(s.Rate), fmtRate(s.PublishedPerSec), fmtRate(s.DeliveredPerSec),
			fmtMS(s.Latency.P50), fmtMS(s.Latency.P99), fmtMS(s.Latency.P999), fmtMS(s.Latency.Max),
			s.Check.Lost, s.Check.Duplicated, s.Check.OutOfOrder, fmtCPU(s.BenchCPU, s.ServerCPU, s.MachineCPU), res)
	}
	tw.Flush()
}

// WriteMarkdownSummary writes one table row per result, for
// bench/results/summary.md. header is printed above the table.
func WriteMarkdownSummary(w io.Writer, header string, results []*Result) error {
	var b strings.Builder
	if header != "" {
		b.WriteString(header)
		b.WriteString("\n\n")
	}
	b.WriteString("| run | load | published msg/s | delivered msg/s | p50 | p90 | p99 | p99.9 | max | expected | lost | dup | out of order | result |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range results {
		res := "pass"
		switch {
		case !r.Pass && r.Correct:
			res = "all deliveries correct; no rate met the latency bound"
		case !r.Pass:
			res = "**fail**"
			if len(r.Notes) > 0 {
				res += ": " + r.Notes[0]
			}
		}
		if r.Scenario == Conns {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | | | %d connected, %d failed, %.0f/s; %s |\n",
				r.Name, r.Config.Describe(), r.Connect.Connected, r.Connect.Failed, r.Connect.PerSec, res)
			continue
		}
		l, k := r.Latency, r.Check
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %d | %s |\n",
			r.Name, r.Config.Describe(), fmtRate(r.PublishedPerSec), fmtRate(r.DeliveredPerSec),
			fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max),
			k.Expected, k.Lost, k.Duplicated, k.OutOfOrder, res)
	}
	for _, r := range results {
		if len(r.Steps) > 1 {
			fmt.Fprintf(&b, "\n%s sweep steps:\n\n", r.Name)
			b.WriteString("| step | target msg/s | published msg/s | delivered msg/s | p50 | p99 | max | lost | CPU cores bench/server/all | result |\n")
			b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
			for i, s := range r.Steps {
				res := "pass"
				if !s.Pass {
					res = "fail: " + s.Reason
				}
				fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", i+1, fmtRate(s.Rate), fmtRate(s.PublishedPerSec),
					fmtRate(s.DeliveredPerSec), fmtMS(s.Latency.P50), fmtMS(s.Latency.P99), fmtMS(s.Latency.Max), s.Check.Lost, fmtCPU(s.BenchCPU, s.ServerCPU, s.MachineCPU), res)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtRate formats a rate compactly: 950, 12.3k, 1.25M.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// fmtMS formats milliseconds with a sensible unit.
func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 100:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 10000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}

func fmtServerCPU(server, machine float64) string {
	var s string
	if server >= 0 {
		s += fmt.Sprintf(", server %.2f", server)
	}
	if machine >= 0 {
		s += fmt.Sprintf(", whole machine %.2f", machine)
	}
	return s
}

func fmtCPU(bench, server, machine float64) string {
	f := func(v float64) string {
		if v < 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	return f(bench) + "/" + f(server) + "/" + f(machine)
}
