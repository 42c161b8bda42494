package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/internal/config"
)

// env is what run needs from the process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	tty    bool // stderr is a terminal: redraw the progress line
}

// errRunFailed means the run completed but deliveries were wrong (loss,
// duplicates, reordering) or connections failed.
var errRunFailed = errors.New("run failed its checks")

// errBoundMissed means every delivery was right but no sweep step met
// the latency bound.
var errBoundMissed = errors.New("no step met the latency bound")

const usageHead = `scc-bench: SocketCluster load generator and delivery checker

usage:
  scc-bench [fanout|broadcast|conns|sweep] [flags]   run a scenario (default fanout)
  scc-bench summary [-o FILE] [-title TEXT] RESULT.json...
                                                      markdown table of JSON results
  scc-bench html RESULT.json OUT.html                 HTML report of a JSON result

scenarios:
  fanout     -subs subscribers over -channels channels (-k each), -pubs publishers
             at -rate msg/s in total, -size byte payloads, -warmup then -duration
  broadcast  fanout with every subscriber on one channel
  conns      open and hold -subs idle subscribed connections for -duration;
             reports the connect rate and failures
  sweep      fanout (or broadcast with -channels 1) at rising rates until p99
             exceeds -p99-bound or a message is lost; reports the highest
             sustainable delivered rate

Every payload carries a publisher id, a sequence number and a send time:
the report counts expected, received, lost, duplicated and out-of-order
deliveries per publisher and channel. Exit status: 0 pass; 1 the run could
not be made; 2 deliveries were wrong (lost, duplicated, reordered) or
connections failed; 3 sweep: every delivery was right but no step met
-p99-bound.

flags:
`

// run is scc-bench's body.
func run(ctx context.Context, args []string, e env) error {
	if len(args) > 0 {
		switch args[0] {
		case "worker":
			return bench.RunWorker(ctx, e.stdin, e.stdout, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		case "summary":
			return summary(args[1:], e)
		case "html":
			return htmlReport(args[1:], e)
		}
	}
	scenario := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}

	envr := config.NewReader(e.getenv)
	d := bench.DefaultConfig()
	urls := envr.List("SCC_BENCH_URLS", d.URLs, "default for -urls")
	token := envr.String("SCC_BENCH_AUTH_TOKEN", "", "default for -auth-token")
	if err := envr.Err(); err != nil {
		return err
	}

	cfg := d
	var (
		urlList, srcIPs, jsonOut, htmlOut string
		quiet, verbose                    bool
		cpuProfile                        string
	)
	fs := flag.NewFlagSet("scc-bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(e.stderr, usageHead)
		fs.PrintDefaults()
		fmt.Fprintln(e.stderr, "\nenvironment:")
		config.Usage(e.stderr, envr.Vars())
	}
	fs.Func("scenario", "fanout, broadcast, conns or sweep (or give it as the first argument)", func(s string) error { scenario = s; return nil })
	fs.StringVar(&cfg.Name, "name", "", "label for reports (default the scenario)")
	fs.StringVar(&urlList, "urls", strings.Join(urls, ","), "comma list of SocketCluster URLs; connections are spread over them")
	fs.IntVar(&cfg.Subscribers, "subs", d.Subscribers, "subscriber connections")
	fs.IntVar(&cfg.Channels, "channels", d.Channels, "channels")
	fs.IntVar(&cfg.SubsPerConn, "k", d.SubsPerConn, "channels each subscriber subscribes to")
	fs.IntVar(&cfg.Publishers, "pubs", d.Publishers, "publisher connections")
	fs.Float64Var(&cfg.Rate, "rate", d.Rate, "publishes per second in total (sweep: the first step)")
	fs.IntVar(&cfg.Size, "size", d.Size, "payload size in bytes")
	durationVar(fs, &cfg.Warmup, "warmup", "warm-up before measuring (Go duration or milliseconds)")
	durationVar(fs, &cfg.Duration, "duration", "measured time per round (conns: how long to hold)")
	durationVar(fs, &cfg.Drain, "drain", "how long to wait for in-flight messages after publishing stops")
	fs.Int64Var(&cfg.MessagesPerPublisher, "count", 0, "stop each publisher after this many messages per round (0: no limit)")
	fs.BoolVar(&cfg.Ack, "ack", false, "publish with invokePublish and wait for each ack (one at a time per publisher)")
	fs.IntVar(&cfg.Procs, "procs", d.Procs, "worker processes to spread the connections over")
	durationVar(fs, &cfg.P99Bound, "p99-bound", "sweep: the p99 latency bound")
	fs.Float64Var(&cfg.SweepFactor, "sweep-factor", d.SweepFactor, "sweep: rate multiplier per step")
	fs.IntVar(&cfg.SweepSteps, "sweep-steps", d.SweepSteps, "sweep: at most this many rising steps")
	fs.IntVar(&cfg.SweepRefine, "sweep-refine", d.SweepRefine, "sweep: bisection steps after the first failure")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", d.ConnectRate, "new connections per second, over all processes")
	fs.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", d.ConnectConcurrency, "connections being opened at once, per process")
	durationVar(fs, &cfg.ConnectTimeout, "connect-timeout", "bound on each connect (dial, upgrade, handshake) and subscribe")
	fs.StringVar(&srcIPs, "src-ips", "", "local source addresses rotated per connection, e.g. 127.0.0.1-127.0.0.250 (more than ~28k connections)")
	fs.StringVar(&cfg.AuthToken, "auth-token", token, "signed auth token sent in every #handshake")
	fs.IntVar(&cfg.ProtocolVersion, "protocol", d.ProtocolVersion, "SocketCluster protocol version (1 or 2)")
	fs.StringVar(&cfg.TLSCAFile, "tls-ca", "", "PEM CA file that wss:// servers are verified against (default: the system roots)")
	fs.BoolVar(&cfg.TLSInsecure, "tls-insecure", false, "do not verify wss:// servers (self-signed test servers only)")
	fs.StringVar(&cfg.ChannelPrefix, "channel-prefix", "", "channel name prefix (default bench-<random>-)")
	fs.BoolVar(&cfg.Reconnect, "reconnect", false, "let dropped connections reconnect and resubscribe (failure tests)")
	fs.DurationVar(&cfg.DropEvery, "drop-every", 0, "cut -drop-fraction of the subscriber connections this often; they reconnect and recover what they missed on channels with history, and the check counts what was still lost (implies -reconnect; 0: off)")
	fs.Float64Var(&cfg.DropFraction, "drop-fraction", cfg.DropFraction, "share of subscriber connections each -drop-every cuts")
	fs.StringVar(&jsonOut, "json", "", "write the result as JSON to this file (- for stdout)")
	fs.StringVar(&htmlOut, "report", "", "write a self-contained HTML report to this file")
	fs.BoolVar(&quiet, "quiet", false, "no progress display")
	fs.BoolVar(&verbose, "v", false, "log connection events to stderr")
	fs.Func("server-pids", "comma list of server process ids on this machine: their CPU use is reported per step", func(v string) error {
		for _, f := range config.SplitList(v) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 0 {
				return fmt.Errorf("not a process id: %q", f)
			}
			cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
		}
		return nil
	})
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags go after the scenario)", fs.Arg(0))
	}
	if scenario != "" {
		cfg.Scenario = bench.Scenario(scenario)
	}
	cfg.URLs = config.SplitList(urlList)
	if srcIPs != "" {
		ips, err := bench.ParseIPRange(srcIPs)
		if err != nil {
			return err
		}
		cfg.SourceIPs = ips
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	cfg.WorkerStderr = e.stderr
	var pp *bench.ProgressPrinter
	if !quiet {
		pp = bench.NewProgressPrinter(e.stderr, e.tty)
		cfg.OnProgress = pp.Update
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	res, err := bench.Run(ctx, cfg)
	if pp != nil {
		pp.Done()
	}
	if res == nil {
		return err
	}
	// The human report goes to stdout, unless stdout carries the JSON.
	textOut := e.stdout
	if jsonOut == "-" {
		textOut = e.stderr
	}
	bench.WriteText(textOut, res)
	if werr := writeOutputs(res, jsonOut, htmlOut, e.stdout); werr != nil {
		return errors.Join(err, werr)
	}
	if err != nil {
		return err
	}
	if !res.Pass {
		if res.Correct {
			return fmt.Errorf("%w after %s", errBoundMissed, time.Since(start).Round(time.Millisecond))
		}
		return fmt.Errorf("%w after %s", errRunFailed, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func writeOutputs(res *bench.Result, jsonOut, htmlOut string, stdout io.Writer) error {
	if jsonOut == "-" {
		if err := bench.WriteJSON(stdout, res); err != nil {
			return err
		}
	} else if jsonOut != "" {
		if err := writeFile(jsonOut, func(w io.Writer) error { return bench.WriteJSON(w, res) }); err != nil {
			return err
		}
	}
	if htmlOut != "" {
		return writeFile(htmlOut, func(w io.Writer) error { return bench.WriteHTML(w, res) })
	}
	return nil
}

// writeFile writes through a temporary file and renames it into place.
func writeFile(path string, fn func(io.Writer) error) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".scc-bench-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := fn(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func readResult(path string) (*bench.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := bench.ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// summary writes a markdown table of JSON results.
func summary(args []string, e env) error {
	fs := flag.NewFlagSet("scc-bench summary", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("o", "", "write to this file instead of stdout")
	title := fs.String("title", "", "text above the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("summary: no result files")
	}
	var results []*bench.Result
	for _, p := range fs.Args() {
		r, err := readResult(p)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	write := func(w io.Writer) error { return bench.WriteMarkdownSummary(w, *title, results) }
	if *out == "" {
		return write(e.stdout)
	}
	return writeFile(*out, write)
}

// htmlReport renders a JSON result as HTML.
func htmlReport(args []string, e env) error {
	if len(args) != 2 {
		return errors.New("html: want RESULT.json OUT.html")
	}
	r, err := readResult(args[0])
	if err != nil {
		return err
	}
	return writeFile(args[1], func(w io.Writer) error { return bench.WriteHTML(w, r) })
}

// durationVar defines a duration flag that takes Go syntax or bare
// milliseconds (SCC's form), keeping *p as the default.
func durationVar(fs *flag.FlagSet, p *time.Duration, name, usage string) {
	fs.Func(name, fmt.Sprintf("%s (default %s)", usage, *p), func(s string) error {
		d, err := config.ParseDuration(s)
		if err != nil {
			return err
		}
		*p = d
		return nil
	})
}
