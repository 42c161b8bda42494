package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// workerAPI is a share of the load: in this process, or in a worker
// process behind pipes.
type workerAPI interface {
	connect(ctx context.Context) (connectReport, error)
	run(ctx context.Context, rs roundSpec) (sentReport, error)
	finish(ctx context.Context, round int, exp []sentStream, short bool) (roundReport, error)
	hold(ctx context.Context, d time.Duration) (roundReport, error)
	close() error
}

// Runner runs one scenario. Use NewRunner then Run, or the Run function.
type Runner struct {
	cfg     Config
	workers []workerAPI

	mu       sync.Mutex // guards the fields below and serialises OnProgress
	ticks    map[[2]int]*tickAgg
	conn     map[int][2]int // per worker: connected, failed
	series   []Sample
	round    roundSpec
	step     int
	t0       time.Time // first round's start
	lastProg Progress
}

type tickAgg struct {
	n         int
	seconds   float64
	delivered int64
	published int64
	errors    map[int]int64
	hist      *Hist
}

// NewRunner validates cfg and returns a Runner.
func NewRunner(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ChannelPrefix == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.ChannelPrefix = "bench-" + hex.EncodeToString(b[:]) + "-"
	}
	return &Runner{cfg: cfg, ticks: make(map[[2]int]*tickAgg), conn: make(map[int][2]int)}, nil
}

// Run runs cfg's scenario and returns its result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r, err := NewRunner(cfg)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx)
}

// Config returns the validated configuration.
func (r *Runner) Config() Config { return r.cfg }

// Run probes every URL, opens the connections, runs the scenario and
// closes everything. On a setup error it returns the error and no result;
// once the load ran it returns the result even if ctx ended early.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	start := time.Now()
	res := &Result{Name: cfg.Name, Scenario: cfg.Scenario, Config: cfg, Start: start, Host: hostInfo(cfg), ServerCPU: -1, MachineCPU: -1}
	if err := r.probe(ctx); err != nil {
		return nil, err
	}
	if err := r.startWorkers(ctx); err != nil {
		return nil, err
	}
	defer r.closeWorkers()

	r.progress(Progress{Phase: "connect", Total: float64(cfg.Subscribers + cfg.Publishers)})
	creps, err := all(ctx, r.workers, func(ctx context.Context, w workerAPI) (connectReport, error) { return w.connect(ctx) })
	res.Connect = mergeConnect(creps)
	for _, c := range creps {
		res.Host.FDLimit = max(res.Host.FDLimit, c.FDLimit)
	}
	if err != nil {
		return nil, err
	}

	if cfg.Scenario == Conns {
		res.Rate = 0
		r.round = roundSpec{Start: time.Now(), Duration: cfg.Duration}
		r.t0 = r.round.Start
		r.progress(Progress{Phase: "hold", Total: cfg.Duration.Seconds(), Connected: res.Connect.Connected})
		reps, err := all(ctx, r.workers, func(ctx context.Context, w workerAPI) (roundReport, error) { return w.hold(ctx, cfg.Duration) })
		for _, rp := range reps {
			res.Disconnects += rp.Disconnects
			res.DisconnectReasons = addReasons(res.DisconnectReasons, rp.DisconnectReasons)
		}
		res.Pass = res.Connect.Failed == 0 && res.Disconnects == 0
		res.Correct = res.Pass
		if res.Disconnects > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d connections closed while held", res.Disconnects))
		}
		r.finishResult(res, start)
		return res, canceled(ctx, err)
	}

	if cfg.Scenario == Sweep {
		err = r.sweep(ctx, res)
	} else {
		var st Step
		st, err = r.runStep(ctx, 0, cfg.Rate)
		if st.Latency.Count > 0 || st.Check.Received > 0 || err == nil {
			res.Steps = []Step{st}
			r.applyStep(res, st)
			res.Pass = st.Pass && res.Connect.Failed == 0
		}
	}
	for _, st := range res.Steps {
		res.Disconnects += st.Disconnects
		res.DisconnectReasons = addReasons(res.DisconnectReasons, st.DisconnectReasons)
		res.Drops += st.Drops
		res.Recovered += st.Recovered
		res.RecoveryFailed += st.RecoveryFailed
	}
	res.Correct = res.Connect.Failed == 0 && res.Disconnects == 0
	for _, st := range res.Steps {
		res.Correct = res.Correct && st.Check.OK() && st.publishErrors == 0
	}
	r.finishResult(res, start)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	return res, canceled(ctx, err)
}

// canceled reports an interrupted run as such, keeping partial results.
func canceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("bench: interrupted: %w", ctx.Err())
	}
	return err
}

func (r *Runner) finishResult(res *Result, start time.Time) {
	res.Elapsed = time.Since(start).Seconds()
	r.mu.Lock()
	res.Series = slices.Clone(r.series)
	r.mu.Unlock()
	if res.MachineCPU >= 0 && res.ServerCPU >= 0 {
		if other := res.MachineCPU - res.BenchCPU - res.ServerCPU; other > 0.3 {
			res.Notes = append(res.Notes, fmt.Sprintf("other processes used %.2f cores during the reported step: they competed with bench and server, so the figures are pessimistic", other))
		}
	}
}

func (r *Runner) applyStep(res *Result, st Step) {
	res.Rate = st.Rate
	res.Published = st.published
	res.PublishErrors = st.publishErrors
	res.PublishedPerSec = st.PublishedPerSec
	res.Delivered = st.delivered
	res.DeliveredPerSec = st.DeliveredPerSec
	res.Latency = st.Latency
	res.Check = st.Check
	res.BenchCPU = st.BenchCPU
	res.ServerCPU = st.ServerCPU
	res.MachineCPU = st.MachineCPU
}

// sweep raises the rate by SweepFactor until a step fails, then bisects
// SweepRefine times between the last passing and the first failing rate.
func (r *Runner) sweep(ctx context.Context, res *Result) error {
	cfg := r.cfg
	var best *Step
	rate, failRate := cfg.Rate, 0.0
	stepNo := 0
	do := func(rt float64) (Step, error) {
		stepNo++
		st, err := r.runStep(ctx, stepNo, rt)
		res.Steps = append(res.Steps, st)
		return st, err
	}
	// Without Reconnect a closed connection stays closed: later steps
	// would measure a broken setup.
	broken := func(st Step) bool {
		if st.Disconnects == 0 || cfg.Reconnect {
			return false
		}
		res.Notes = append(res.Notes, fmt.Sprintf("stopped the sweep at %s msg/s: %d connections were closed (%s)", fmtRate(st.Rate), st.Disconnects, describeReasons(st.DisconnectReasons)))
		return true
	}
	for i := 0; i < cfg.SweepSteps; i++ {
		st, err := do(rate)
		if err != nil {
			return err
		}
		if !st.Pass {
			failRate = rate
			if broken(st) {
				failRate = 0
			}
			break
		}
		best = &st
		rate *= cfg.SweepFactor
	}
	lo := 0.0
	if best != nil {
		lo = best.Rate
	}
	for i := 0; i < cfg.SweepRefine && best != nil && failRate > 0; i++ {
		mid := (lo + failRate) / 2
		st, err := do(mid)
		if err != nil {
			return err
		}
		if st.Pass {
			lo, best = mid, &st
		} else {
			failRate = mid
			if broken(st) {
				break
			}
		}
	}
	if best == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("no step passed: even %g msg/s failed (%s); lower -rate", cfg.Rate, res.Steps[0].Reason))
		r.applyStep(res, res.Steps[0])
		return nil
	}
	if failRate == 0 && best.Rate == res.Steps[len(res.Steps)-1].Rate {
		res.Notes = append(res.Notes, fmt.Sprintf("every step passed up to %g msg/s: the sustainable rate is higher (raise -sweep-steps or -rate)", best.Rate))
	}
	b := *best
	res.Sustainable = &b
	r.applyStep(res, b)
	res.Pass = true
	return nil
}

// runStep runs one round at rate on every worker: publish, then wait for
// the deliveries, then check.
func (r *Runner) runStep(ctx context.Context, stepNo int, rate float64) (Step, error) {
	cfg := r.cfg
	lead := 100 * time.Millisecond
	if len(r.workers) > 1 {
		lead = 300 * time.Millisecond // the command travels through pipes
	}
	rs := roundSpec{Round: stepNo, Rate: rate, Start: time.Now().Add(lead), Warmup: cfg.Warmup, Duration: cfg.Duration}
	r.mu.Lock()
	r.round, r.step = rs, stepNo
	if r.t0.IsZero() {
		r.t0 = rs.Start
	}
	r.mu.Unlock()
	r.progress(Progress{Phase: "warmup", Step: stepNo, Rate: rate, Total: (cfg.Warmup + cfg.Duration).Seconds()})

	st := Step{Rate: rate, ServerCPU: -1, MachineCPU: -1}
	srvCPU0, srvOK := r.serverCPU()
	busy0, busyErr := machineBusy()
	wall0 := time.Now()
	sents, runErr := all(ctx, r.workers, func(ctx context.Context, w workerAPI) (sentReport, error) { return w.run(ctx, rs) })
	runEnd := time.Now()
	interrupted := ctx.Err() != nil
	if runErr != nil && !interrupted {
		return st, runErr
	}
	var exp []sentStream
	var inWindow int64
	var lastErr string
	for _, s := range sents {
		exp = append(exp, s.Streams...)
		st.published += s.Published
		st.publishErrors += s.Errors
		inWindow += s.InWindow
		if s.LastError != "" {
			lastErr = s.LastError
		}
	}
	fctx := ctx
	if interrupted {
		// Still collect what was delivered, briefly, for a partial report.
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), min(cfg.Drain, time.Second)+closeGrace)
		defer cancel()
	}
	reps, err := all(fctx, r.workers, func(ctx context.Context, w workerAPI) (roundReport, error) {
		return w.finish(ctx, stepNo, exp, interrupted)
	})
	if err != nil {
		return st, errors.Join(runErr, err)
	}
	lat := NewHist()
	for _, rp := range reps {
		st.Check.Merge(rp.Check)
		lat.Merge(rp.Latency)
		st.delivered += rp.Delivered
		st.Disconnects += rp.Disconnects
		st.DisconnectReasons = addReasons(st.DisconnectReasons, rp.DisconnectReasons)
		st.Drops += rp.Drops
		st.Recovered += rp.Recovered
		st.RecoveryFailed += rp.RecoveryFailed
		if rp.WallSeconds > 0 {
			st.BenchCPU += rp.CPUSeconds / rp.WallSeconds
		}
	}
	disconnects := st.Disconnects
	wall := time.Since(wall0).Seconds()
	if c1, ok := r.serverCPU(); ok && srvOK {
		st.ServerCPU = (c1 - srvCPU0).Seconds() / wall
	}
	if b1, err := machineBusy(); err == nil && busyErr == nil {
		st.MachineCPU = (b1 - busy0).Seconds() / wall
	}
	st.Latency = lat.Summary()
	// The measured window, cut short if the run was interrupted.
	secs := min(cfg.Duration, runEnd.Sub(rs.Start.Add(cfg.Warmup))).Seconds()
	if secs > 0 {
		st.DeliveredPerSec = float64(st.delivered) / secs
		st.PublishedPerSec = float64(inWindow) / secs
	}
	st.Pass, st.Reason = true, ""
	fail := func(format string, a ...any) {
		if st.Pass {
			st.Pass, st.Reason = false, fmt.Sprintf(format, a...)
		}
	}
	switch {
	case interrupted:
		fail("interrupted")
	case disconnects > 0:
		fail("%d disconnects (%s)", disconnects, describeReasons(st.DisconnectReasons))
	case st.Check.Lost > 0:
		fail("%d lost", st.Check.Lost)
	case st.Check.Duplicated > 0:
		fail("%d duplicated", st.Check.Duplicated)
	case st.Check.OutOfOrder > 0:
		fail("%d out of order", st.Check.OutOfOrder)
	case st.Check.Unexpected > 0 || st.Check.Malformed > 0:
		fail("%d unexpected, %d malformed deliveries", st.Check.Unexpected, st.Check.Malformed)
	case st.publishErrors > 0:
		fail("%d publish errors (last: %s)", st.publishErrors, lastErr)
	case st.Latency.Count == 0:
		fail("no deliveries in the measured window")
	case cfg.Scenario == Sweep && cfg.MessagesPerPublisher == 0 && st.PublishedPerSec < 0.95*rate:
		fail("publishers reached only %.0f of %.0f msg/s", st.PublishedPerSec, rate)
	case cfg.Scenario == Sweep && time.Duration(st.Latency.P99*float64(time.Millisecond)) > cfg.P99Bound:
		fail("p99 %.1fms > %s", st.Latency.P99, cfg.P99Bound)
	}
	return st, runErr
}

func addReasons(dst, src map[string]int64) map[string]int64 {
	for k, v := range src {
		if dst == nil {
			dst = map[string]int64{}
		}
		dst[k] += v
	}
	return dst
}

// describeReasons lists disconnect reasons, most frequent first.
func describeReasons(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	if len(parts) == 0 {
		return "no close code"
	}
	return strings.Join(parts, ", ")
}

// serverCPU sums the CPU time of Config.ServerPIDs.
func (r *Runner) serverCPU() (time.Duration, bool) {
	if len(r.cfg.ServerPIDs) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, pid := range r.cfg.ServerPIDs {
		c, err := processCPU(pid)
		if err != nil {
			return 0, false
		}
		sum += c
	}
	return sum, true
}

// all calls fn on every worker concurrently and returns the results in
// worker order, with the first error.
func all[T any](ctx context.Context, ws []workerAPI, fn func(context.Context, workerAPI) (T, error)) ([]T, error) {
	out := make([]T, len(ws))
	errs := make([]error, len(ws))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			out[i], errs[i] = fn(ctx, w)
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// Prefer a real error over the cancellations it caused.
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			return out, e
		}
	}
	return out, errors.Join(errs...)
}

func mergeConnect(reps []connectReport) ConnectResult {
	var c ConnectResult
	lat := NewHist()
	for _, r := range reps {
		c.Attempted += r.Attempted
		c.Connected += r.Connected
		c.Failed += r.Failed
		c.Seconds = max(c.Seconds, r.Seconds)
		if c.FirstError == "" {
			c.FirstError = r.FirstError
		}
		lat.Merge(r.Latency)
	}
	if c.Seconds > 0 {
		c.PerSec = float64(c.Connected) / c.Seconds
	}
	c.Latency = lat.Summary()
	return c
}

// probe dials every URL once, so that an unreachable server or a refused
// handshake is reported clearly before the load starts.
func (r *Runner) probe(ctx context.Context) error {
	errs := make([]error, len(r.cfg.URLs))
	var wg sync.WaitGroup
	for i := range r.cfg.URLs {
		wg.Go(func() {
			c, err := dialOne(ctx, r.cfg, i, r.cfg.Logger, nil)
			if err != nil {
				errs[i] = err
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Runner) startWorkers(ctx context.Context) error {
	n := r.cfg.Procs
	for i := range n {
		plan := workerPlan{Config: r.cfg, AuthToken: r.cfg.AuthToken, Index: i, Count: n}
		emit := func(t tick) { r.onTick(i, t) }
		if n == 1 {
			r.workers = append(r.workers, localWorker{newWorker(plan, emit)})
			continue
		}
		pw, err := startProcWorker(ctx, r.cfg, plan, emit)
		if err != nil {
			r.closeWorkers()
			return err
		}
		r.workers = append(r.workers, pw)
	}
	return nil
}

func (r *Runner) closeWorkers() {
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() { w.close() })
	}
	wg.Wait()
	r.workers = nil
}

// onTick merges the workers' ticks: a second is complete once every
// worker reported it.
func (r *Runner) onTick(worker int, t tick) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.Round < 0 {
		r.conn[worker] = [2]int{t.Connected, t.Failed}
		var c, f int
		for _, v := range r.conn {
			c += v[0]
			f += v[1]
		}
		r.progressLocked(Progress{Phase: "connect", Done: float64(c + f), Total: float64(r.cfg.Subscribers + r.cfg.Publishers), Connected: c, ConnectFailed: f})
		return
	}
	k := [2]int{t.Round, t.Index}
	a := r.ticks[k]
	if a == nil {
		a = &tickAgg{hist: NewHist(), errors: map[int]int64{}}
		r.ticks[k] = a
	}
	a.n++
	a.seconds = max(a.seconds, t.Seconds)
	a.delivered += t.Delivered
	a.published += t.Published
	a.errors[worker] = t.Errors
	a.hist.Merge(t.Hist)
	if a.n < len(r.workers) {
		return
	}
	delete(r.ticks, k)
	var errs int64
	for _, e := range a.errors {
		errs += e
	}
	rs := r.round
	end := time.Duration(t.Index)*time.Second + time.Duration(a.seconds*float64(time.Second))
	phase := "drain"
	switch {
	case r.cfg.Scenario == Conns:
		phase = "hold"
	case end <= rs.Warmup:
		phase = "warmup"
	case end <= rs.Warmup+rs.Duration:
		phase = "measure"
	}
	ls := a.hist.Summary()
	r.series = append(r.series, Sample{
		T:         rs.Start.Add(end).Sub(r.t0).Seconds(),
		Step:      t.Round,
		Phase:     phase,
		Delivered: a.delivered,
		Published: a.published,
		Seconds:   a.seconds,
		Errors:    errs,
		P50:       ls.P50,
		P90:       ls.P90,
		P99:       ls.P99,
		Max:       ls.Max,
	})
	total := (rs.Warmup + rs.Duration).Seconds()
	if r.cfg.Scenario == Conns {
		total = r.cfg.Duration.Seconds()
	}
	r.progressLocked(Progress{
		Phase: phase, Step: r.step, Rate: rs.Rate,
		Done: min(end.Seconds(), total), Total: total,
		Connected: r.lastProg.Connected,
		Delivered: float64(a.delivered) / max(a.seconds, 0.05), P99: ls.P99, Errors: errs,
	})
}

func (r *Runner) progress(p Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progressLocked(p)
}

func (r *Runner) progressLocked(p Progress) {
	if p.Connected == 0 {
		p.Connected = r.lastProg.Connected
	}
	r.lastProg = p
	if r.cfg.OnProgress != nil {
		r.cfg.OnProgress(p)
	}
}

func hostInfo(cfg Config) Host {
	h := Host{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Procs: cfg.Procs, GoVersion: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	h.FDLimit, _ = fdLimits()
	h.CPUAffinity = cpuAffinity()
	return h
}

// localWorker runs a worker in this process.
type localWorker struct{ w *worker }

func (l localWorker) connect(ctx context.Context) (connectReport, error) { return l.w.connect(ctx) }
func (l localWorker) run(ctx context.Context, rs roundSpec) (sentReport, error) {
	return l.w.run(ctx, rs)
}
func (l localWorker) finish(ctx context.Context, round int, exp []sentStream, short bool) (roundReport, error) {
	return l.w.finish(ctx, round, exp, short)
}
func (l localWorker) hold(ctx context.Context, d time.Duration) (roundReport, error) {
	return l.w.hold(ctx, d)
}
func (l localWorker) close() error { l.w.close(); return nil }
