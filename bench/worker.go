package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/protocol"
)

// The messages a coordinator and its workers exchange. In one process they
// are passed as values; with Procs > 1 they travel as JSON lines.

// workerPlan assigns a worker its share: subscriber i and publisher p
// belong to worker i%Count and p%Count.
type workerPlan struct {
	Config    Config `json:"config"`
	AuthToken string `json:"auth_token,omitempty"`
	Index     int    `json:"index"`
	Count     int    `json:"count"`
}

// roundSpec starts one round of publishing.
type roundSpec struct {
	Round    int           `json:"round"`
	Rate     float64       `json:"rate"`
	Start    time.Time     `json:"start"`
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
}

// connectReport is a worker's connection phase.
type connectReport struct {
	Attempted  int     `json:"attempted"`
	Connected  int     `json:"connected"`
	Failed     int     `json:"failed"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	Latency    *Hist   `json:"latency"`
	FDLimit    uint64  `json:"fd_limit"`
}

// sentStream lists the sequence numbers one publisher got accepted on one
// channel in a round, as inclusive ranges.
type sentStream struct {
	Pub     int         `json:"pub"`
	Channel int         `json:"ch"`
	Spans   [][2]uint64 `json:"spans"`
}

// sentReport is what a worker's publishers sent in a round.
type sentReport struct {
	Streams   []sentStream `json:"streams"`
	Published int64        `json:"published"`
	Errors    int64        `json:"errors"`
	// InWindow counts publishes scheduled in the measured window.
	InWindow  int64  `json:"in_window"`
	LastError string `json:"last_error,omitempty"`
}

// roundReport is a worker's result for a round.
type roundReport struct {
	Check       CheckResult `json:"check"`
	Latency     *Hist       `json:"latency"`
	Delivered   int64       `json:"delivered"`
	Disconnects int64       `json:"disconnects"`
	// DisconnectReasons counts disconnects by close code and reason.
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	// Drops, Recovered and RecoveryFailed count the connections cut by
	// DropEvery and their resubscribes that recovered or were told they
	// missed messages (recovery.go).
	Drops          int64 `json:"drops,omitempty"`
	Recovered      int64 `json:"recovered,omitempty"`
	RecoveryFailed int64 `json:"recovery_failed,omitempty"`
	// CPUSeconds is the CPU time the worker process used during the round
	// (publishing, receiving and checking), WallSeconds the round's length.
	CPUSeconds  float64 `json:"cpu_s"`
	WallSeconds float64 `json:"wall_s"`
}

// tick is one second of a worker's round, or its connection progress
// (Round -1).
type tick struct {
	Round int `json:"round"`
	Index int `json:"index"`
	// Seconds is the tick's length: 1, or less for the last one.
	Seconds   float64 `json:"seconds,omitempty"`
	Delivered int64   `json:"delivered"`
	Published int64   `json:"published"`
	Errors    int64   `json:"errors"`
	Hist      *Hist   `json:"hist,omitempty"`
	Connected int     `json:"connected,omitempty"`
	Failed    int     `json:"failed,omitempty"`
	Final     bool    `json:"final,omitempty"`
}

// recorderShards bounds the locks latency recording is spread over (two
// per usable CPU: more only adds cache misses on histogram counters).
const recorderShards = 32

// worker runs a share of a scenario's connections in this process.
type worker struct {
	cfg   Config
	plan  workerPlan
	log   *slog.Logger
	emit  func(tick)
	rec   *Recorder
	ctx   context.Context // ends the readers
	stop  context.CancelFunc
	subs  []*subConn
	pubs  []*pubConn
	chans []string

	winFrom, winTo atomic.Int64 // measured window, unix nanoseconds
	winCount       atomic.Int64 // deliveries received in the window
	published      atomic.Int64 // publishes in the current tick
	errors         atomic.Int64 // publish errors and disconnects, cumulative
	disconnects    atomic.Int64
	closing        atomic.Bool
	discMu         sync.Mutex
	drops          dropStats        // DropEvery (recovery.go)
	discCodes      map[string]int64 // disconnects by close code and reason

	tickStop chan struct{}
	tickDone chan struct{}

	roundWall time.Time     // when the current round's run began
	roundCPU  time.Duration // cpuTime then
}

type subConn struct {
	index    int // global subscriber index
	c        *client.Client
	subs     []*client.Subscription
	channels []int
	checker  *Checker
}

type pubConn struct {
	index int // global publisher index
	c     *client.Client
	next  int // round-robin position over the channels
}

func newWorker(plan workerPlan, emit func(tick)) *worker {
	cfg := plan.Config
	cfg.AuthToken = plan.AuthToken
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &worker{cfg: cfg, plan: plan, log: log, emit: emit, rec: NewRecorder(min(recorderShards, 2*runtime.GOMAXPROCS(0)))}
	w.ctx, w.stop = context.WithCancel(context.Background())
	w.chans = make([]string, cfg.Channels)
	for i := range w.chans {
		w.chans[i] = cfg.ChannelPrefix + strconv.Itoa(i)
	}
	w.winFrom.Store(-1)
	w.winTo.Store(-1)
	return w
}

// ownsSub lists this worker's share of n indexes.
func (w *worker) share(n int) []int {
	var out []int
	for i := w.plan.Index; i < n; i += w.plan.Count {
		out = append(out, i)
	}
	return out
}

// dialOne opens connection number idx (subscribers first, then
// publishers), spreading URLs and source addresses round-robin.
func dialOne(ctx context.Context, cfg Config, idx int, log *slog.Logger, onDisconnect func(int, string)) (*client.Client, error) {
	u := cfg.URLs[idx%len(cfg.URLs)]
	opts := client.Options{
		AuthToken:        cfg.AuthToken,
		ProtocolVersion:  protocol.Version(cfg.ProtocolVersion),
		AckTimeout:       cfg.ConnectTimeout,
		ConnectTimeout:   cfg.ConnectTimeout,
		DisableReconnect: !cfg.Reconnect,
		OverflowPolicy:   client.DropNewest,
		Logger:           log,
		OnDisconnect:     onDisconnect,
	}
	tc, err := cfg.clientTLS()
	if err != nil {
		return nil, err
	}
	opts.TLSConfig = tc
	if len(cfg.SourceIPs) > 0 {
		ip := cfg.SourceIPs[idx%len(cfg.SourceIPs)]
		opts.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	c, err := client.Dial(dctx, u, opts)
	if err != nil {
		return nil, describeDialError(u, cfg, err)
	}
	return c, nil
}

// connect opens this worker's subscriber and publisher connections with
// bounded concurrency and rate, and subscribes the subscribers. For every
// scenario but conns it stops at the first failure.
func (w *worker) connect(ctx context.Context) (connectReport, error) {
	cfg := w.cfg
	subIdx, pubIdx := w.share(cfg.Subscribers), w.share(cfg.Publishers)
	total := len(subIdx) + len(pubIdx)
	rep := connectReport{Attempted: total, Latency: NewHist()}
	limit, err := ensureFDLimit(uint64(total + cfg.FDReserve))
	rep.FDLimit = limit
	if err != nil {
		return rep, err
	}
	w.subs = make([]*subConn, len(subIdx))
	w.pubs = make([]*pubConn, len(pubIdx))

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lim := rate.NewLimiter(rate.Limit(cfg.ConnectRate/float64(w.plan.Count)), cfg.ConnectConcurrency)
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	var (
		mu        sync.Mutex
		connected int
		failed    int
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	done := make(chan struct{})
	var twg sync.WaitGroup
	twg.Go(func() { // progress ticks
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			mu.Lock()
			tk := tick{Round: -1, Index: i, Connected: connected, Failed: failed}
			mu.Unlock()
			w.emit(tk)
		}
	})
	fail := func(err error) {
		mu.Lock()
		failed++
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		if cfg.Scenario != Conns {
			cancel()
		}
	}
	onDisc := func(code int, reason string) {
		if w.closing.Load() {
			return
		}
		w.disconnects.Add(1)
		w.errors.Add(1)
		if reason == "" {
			reason = protocol.CloseReason(code)
		}
		w.discMu.Lock()
		if w.discCodes == nil {
			w.discCodes = map[string]int64{}
		}
		w.discCodes[fmt.Sprintf("%d %s", code, reason)]++
		w.discMu.Unlock()
	}
	open := func(slot, global int, sub bool) {
		defer func() { <-sem }()
		t0 := time.Now()
		connIdx := global
		if !sub {
			connIdx = cfg.Subscribers + global
		}
		c, err := dialOne(cctx, cfg, connIdx, w.log, onDisc)
		if err != nil {
			if cctx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
				return // aborted after another connection failed
			}
			fail(err)
			return
		}
		if !sub {
			w.pubs[slot] = &pubConn{index: global, c: c, next: global % cfg.Channels}
		} else {
			sc := &subConn{index: global, c: c}
			sc.checker = NewChecker(WithObserver(w.observer(global)))
			w.subs[slot] = sc // closed by close() even if a subscribe fails
			for j := range cfg.SubsPerConn {
				ch := (global*cfg.SubsPerConn + j) % cfg.Channels
				sctx, scancel := context.WithTimeout(cctx, cfg.ConnectTimeout)
				// Messages are checked on the connection's read
				// goroutine: no buffer to overflow and no hand-off per
				// message, so the load generator costs less per delivery
				// than the server it measures.
				s, err := c.Subscribe(sctx, w.chans[ch], client.SubscribeOptions{Handler: func(m client.Message) {
					sc.checker.Observe(m.Channel, m.Data, time.Now())
				}, OnRecovery: w.drops.onRecovery})
				scancel()
				if err != nil {
					if cctx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
						return // aborted after another connection failed
					}
					fail(fmt.Errorf("subscribing to %s at %s: %w", w.chans[ch], cfg.URLs[connIdx%len(cfg.URLs)], classify(err, cfg)))
					return
				}
				sc.subs = append(sc.subs, s)
				sc.channels = append(sc.channels, ch)
			}
		}
		mu.Lock()
		connected++
		rep.Latency.Record(time.Since(t0))
		mu.Unlock()
	}
	launch := func(slot, global int, sub bool) bool {
		if lim.Wait(cctx) != nil {
			return false
		}
		select {
		case sem <- struct{}{}:
		case <-cctx.Done():
			return false
		}
		wg.Go(func() { open(slot, global, sub) })
		return true
	}
	ok := true
	for slot, g := range subIdx {
		if ok = launch(slot, g, true); !ok {
			break
		}
	}
	for slot, g := range pubIdx {
		if !ok {
			break
		}
		ok = launch(slot, g, false)
	}
	wg.Wait()
	close(done)
	twg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	rep.Connected, rep.Failed = connected, failed
	if firstErr != nil {
		rep.FirstError = firstErr.Error()
	}
	w.emit(tick{Round: -1, Index: -1, Connected: connected, Failed: failed, Final: true})
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if firstErr != nil && cfg.Scenario != Conns {
		return rep, fmt.Errorf("%d of %d connections failed; first: %w", max(failed, 1), total, firstErr)
	}
	return rep, nil
}

// observer returns the delivery hook of subscriber idx: latency samples
// for messages scheduled in the window, throughput for deliveries received
// in it, and every delivery for the time series.
func (w *worker) observer(idx int) func(Payload, time.Time) {
	return func(p Payload, recv time.Time) {
		from, to := w.winFrom.Load(), w.winTo.Load()
		sent, r := p.SentAt.UnixNano(), recv.UnixNano()
		if r >= from && r < to {
			w.winCount.Add(1)
		}
		w.rec.Observe(idx, recv.Sub(p.SentAt), sent >= from && sent < to)
	}
}

// run publishes one round and returns what was sent. It returns when the
// publishers are done; ticks go on until finish.
func (w *worker) run(ctx context.Context, rs roundSpec) (sentReport, error) {
	from := rs.Start.Add(rs.Warmup)
	to := from.Add(rs.Duration)
	w.winFrom.Store(from.UnixNano())
	w.winTo.Store(to.UnixNano())
	w.winCount.Store(0)
	w.rec.Reset()
	w.roundWall, w.roundCPU = time.Now(), cpuTime()
	w.startTicks(rs)

	outs := make([]pubOut, len(w.pubs))
	var wg sync.WaitGroup
	for i, pc := range w.pubs {
		wg.Go(func() { outs[i] = w.publish(ctx, pc, rs) })
	}
	stopDrops := w.startDrops()
	wg.Wait()
	stopDrops()
	var rep sentReport
	for _, o := range outs {
		rep.Streams = append(rep.Streams, o.streams...)
		rep.Published += o.published
		rep.Errors += o.errors
		rep.InWindow += o.inWindow
		if o.lastErr != nil {
			rep.LastError = o.lastErr.Error()
		}
	}
	return rep, ctx.Err()
}

type pubOut struct {
	streams                     []sentStream
	published, errors, inWindow int64
	lastErr                     error
}

// publish sends one publisher's share of the round on schedule: message k
// is due at Start + (k+phase)/rate and carries that time. Messages that fall more
// than a second behind the end of the round are not sent.
func (w *worker) publish(ctx context.Context, pc *pubConn, rs roundSpec) pubOut {
	cfg := w.cfg
	perPub := rs.Rate / float64(cfg.Publishers)
	end := rs.Start.Add(rs.Warmup + rs.Duration)
	winFrom := rs.Start.Add(rs.Warmup)
	pubID := rs.Round*cfg.Publishers + pc.index
	seqs := make([]uint64, cfg.Channels)
	spans := make([][][2]uint64, cfg.Channels)
	buf := make([]byte, 0, cfg.Size+64)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var out pubOut
	// Publishers are spread evenly over each interval, so that together
	// they publish at an even Rate rather than in bursts of Publishers.
	phase := float64(pc.index) / float64(cfg.Publishers)
	for k := int64(0); cfg.MessagesPerPublisher == 0 || k < cfg.MessagesPerPublisher; k++ {
		due := rs.Start.Add(time.Duration((float64(k) + phase) * float64(time.Second) / perPub))
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return w.pubResult(pc, spans, out)
			case <-pc.c.Done():
				return w.pubResult(pc, spans, out)
			case <-timer.C:
			}
		} else if time.Since(end) > time.Second || ctx.Err() != nil {
			break
		}
		ch := pc.next
		pc.next = (pc.next + 1) % cfg.Channels
		seqs[ch]++
		seq := seqs[ch]
		buf = AppendPayload(buf[:0], pubID, seq, due, cfg.Size)
		var err error
		if cfg.Ack {
			actx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
			err = pc.c.Publish(actx, w.chans[ch], json.RawMessage(buf))
			cancel()
		} else {
			err = pc.c.TransmitPublish(w.chans[ch], json.RawMessage(buf))
		}
		if err != nil {
			out.errors++
			w.errors.Add(1)
			out.lastErr = err
			continue
		}
		out.published++
		w.published.Add(1)
		if !due.Before(winFrom) {
			out.inWindow++
		}
		sp := spans[ch]
		if n := len(sp); n > 0 && sp[n-1][1]+1 == seq {
			sp[n-1][1] = seq
		} else {
			spans[ch] = append(sp, [2]uint64{seq, seq})
		}
	}
	return w.pubResult(pc, spans, out)
}

func (w *worker) pubResult(pc *pubConn, spans [][][2]uint64, out pubOut) pubOut {
	for ch, sp := range spans {
		if len(sp) > 0 {
			out.streams = append(out.streams, sentStream{Pub: pc.index, Channel: ch, Spans: sp})
		}
	}
	return out
}

// startTicks emits one tick a second, aligned on the round's start,
// until finish.
func (w *worker) startTicks(rs roundSpec) {
	w.tickStop = make(chan struct{})
	w.tickDone = make(chan struct{})
	stop, done := w.tickStop, w.tickDone
	go func() {
		defer close(done)
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		w.rec.Interval() // forget what arrived before the round
		w.published.Store(0)
		for i := 0; ; i++ {
			t.Reset(time.Until(rs.Start.Add(time.Duration(i+1) * time.Second)))
			final := false
			select {
			case <-stop:
				final = true
			case <-t.C:
			}
			secs := 1.0
			if final {
				// The last, partial second.
				secs = time.Since(rs.Start.Add(time.Duration(i) * time.Second)).Seconds()
				if secs < 0.05 {
					return
				}
			}
			n, h := w.rec.Interval()
			w.emit(tick{Round: rs.Round, Index: i, Seconds: secs, Delivered: n, Published: w.published.Swap(0), Errors: w.errors.Load(), Hist: h, Final: final})
			if final {
				return
			}
		}
	}()
}

func (w *worker) stopTicks() {
	if w.tickStop != nil {
		close(w.tickStop)
		<-w.tickDone
		w.tickStop = nil
	}
}

// finish waits until every expected message has arrived or Drain (with
// short, at most a second) has passed, then reports the round and resets
// for the next one.
func (w *worker) finish(ctx context.Context, round int, exp []sentStream, short bool) (roundReport, error) {
	cfg := w.cfg
	// Subscribers of each channel expect what was sent on it.
	byChan := make([][]sentStream, cfg.Channels)
	for _, s := range exp {
		if s.Channel >= 0 && s.Channel < cfg.Channels {
			byChan[s.Channel] = append(byChan[s.Channel], s)
		}
	}
	for _, sc := range w.subs {
		if sc == nil {
			continue
		}
		for _, ch := range sc.channels {
			for _, s := range byChan[ch] {
				for _, sp := range s.Spans {
					sc.checker.ExpectRange(round*cfg.Publishers+s.Pub, w.chans[ch], sp[0], sp[1])
				}
			}
		}
	}
	drain := cfg.Drain
	if short {
		drain = min(drain, time.Second)
	}
	deadline := time.Now().Add(drain)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !w.complete() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			w.stopTicks()
			return roundReport{}, ctx.Err()
		case <-poll.C:
		}
	}
	w.stopTicks()
	rep := roundReport{Latency: w.rec.Total(), Delivered: w.winCount.Load(), Disconnects: w.disconnects.Swap(0), DisconnectReasons: w.takeDisconnectReasons()}
	w.drops.report(&rep)
	if !w.roundWall.IsZero() {
		rep.CPUSeconds = (cpuTime() - w.roundCPU).Seconds()
		rep.WallSeconds = time.Since(w.roundWall).Seconds()
	}
	for _, sc := range w.subs {
		if sc == nil {
			continue
		}
		rep.Check.Merge(sc.checker.Result())
		sc.checker.Reset()
	}
	w.winFrom.Store(-1)
	w.winTo.Store(-1)
	return rep, nil
}

func (w *worker) complete() bool {
	for _, sc := range w.subs {
		if sc != nil && sc.checker.Missing() > 0 {
			return false
		}
	}
	return true
}

// hold keeps the connections open for d (the conns scenario), ticking.
func (w *worker) hold(ctx context.Context, d time.Duration) (roundReport, error) {
	rs := roundSpec{Round: 0, Start: time.Now()}
	w.startTicks(rs)
	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
	}
	w.stopTicks()
	return roundReport{Latency: NewHist(), Disconnects: w.disconnects.Swap(0), DisconnectReasons: w.takeDisconnectReasons()}, err
}

func (w *worker) takeDisconnectReasons() map[string]int64 {
	w.discMu.Lock()
	defer w.discMu.Unlock()
	m := w.discCodes
	w.discCodes = nil
	return m
}

// close closes every connection, a bounded number at a time, and waits
// for the readers.
func (w *worker) close() {
	w.closing.Store(true)
	w.stopTicks()
	sem := make(chan struct{}, max(w.cfg.ConnectConcurrency, 1))
	var wg sync.WaitGroup
	closeOne := func(c *client.Client) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.Close()
		})
	}
	for _, sc := range w.subs {
		if sc != nil {
			closeOne(sc.c)
		}
	}
	for _, pc := range w.pubs {
		if pc != nil {
			closeOne(pc.c)
		}
	}
	wg.Wait()
	w.stop()
}

// errFDLimit is returned when the open-file limit is too low.
var errFDLimit = errors.New("out of file descriptors")
