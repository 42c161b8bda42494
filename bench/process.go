package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Worker processes: the coordinator starts Procs copies of
// Config.WorkerCommand, writes commands to their stdin and reads replies
// and ticks from their stdout, one JSON object per line.

// wireMsg is one line between a coordinator and a worker process.
type wireMsg struct {
	Type    string         `json:"type"`
	Plan    *workerPlan    `json:"plan,omitempty"`
	Round   *roundSpec     `json:"round,omitempty"`
	RoundNo int            `json:"round_no,omitempty"`
	Expect  []sentStream   `json:"expect,omitempty"`
	Hold    time.Duration  `json:"hold,omitempty"`
	Short   bool           `json:"short,omitempty"`
	Connect *connectReport `json:"connect,omitempty"`
	Sent    *sentReport    `json:"sent,omitempty"`
	Report  *roundReport   `json:"report,omitempty"`
	Tick    *tick          `json:"tick,omitempty"`
	Error   string         `json:"error,omitempty"`
	ErrKind string         `json:"err_kind,omitempty"`
}

// Message types.
const (
	msgPlan    = "plan"
	msgConnect = "connect"
	msgRun     = "run"
	msgFinish  = "finish"
	msgHold    = "hold"
	msgCancel  = "cancel"
	msgClose   = "close"
	msgTick    = "tick"
	msgReply   = "reply"
)

// remoteError is an error from a worker process, keeping its sentinel.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

var errKinds = map[string]error{
	"fd":          ErrFDLimit,
	"unreachable": ErrUnreachable,
	"handshake":   ErrHandshakeRefused,
	"config":      ErrConfig,
	"canceled":    context.Canceled,
}

func errKind(err error) string {
	for k, e := range errKinds {
		if errors.Is(err, e) {
			return k
		}
	}
	return ""
}

// procWorker is the coordinator's handle on one worker process.
type procWorker struct {
	index   int
	cfg     Config
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	wmu     sync.Mutex
	replies chan wireMsg
	readErr error // set before replies is closed
	waitErr error // the process's exit; set before done is closed
	stderr  *tailBuffer
	done    chan struct{} // closed when the reader has finished and the process was reaped
}

func startProcWorker(ctx context.Context, cfg Config, plan workerPlan, emit func(tick)) (*procWorker, error) {
	argv := cfg.WorkerCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: finding this executable for -procs: %w", err)
		}
		argv = []string{exe, "worker"}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(cfg.WorkerEnv) > 0 {
		cmd.Env = append(os.Environ(), cfg.WorkerEnv...)
	}
	tail := &tailBuffer{max: 4096}
	if cfg.WorkerStderr != nil {
		cmd.Stderr = io.MultiWriter(tail, &prefixWriter{w: cfg.WorkerStderr, prefix: fmt.Sprintf("worker %d: ", plan.Index)})
	} else {
		cmd.Stderr = tail
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting worker %d (%s): %w", plan.Index, argv[0], err)
	}
	p := &procWorker{index: plan.Index, cfg: cfg, cmd: cmd, stdin: stdin, replies: make(chan wireMsg, 1), stderr: tail, done: make(chan struct{})}
	go p.read(stdout, emit) // ends when the process's stdout closes; close waits for it
	if err := p.send(wireMsg{Type: msgPlan, Plan: &plan}); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *procWorker) read(stdout io.Reader, emit func(tick)) {
	defer close(p.done)
	defer close(p.replies)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var m wireMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			p.readErr = fmt.Errorf("bench: worker %d wrote something that is not a message: %.200q", p.index, sc.Bytes())
			p.cmd.Process.Kill()
			break
		}
		if m.Type == msgTick && m.Tick != nil {
			emit(*m.Tick)
			continue
		}
		p.replies <- m
	}
	if p.readErr == nil {
		p.readErr = sc.Err()
	}
	// stdout is done: the process has exited or is exiting. Wait also
	// finishes copying its stderr, which deadError quotes.
	p.waitErr = p.cmd.Wait()
}

func (p *procWorker) send(m wireMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return p.deadError(err)
	}
	return nil
}

// deadError describes a worker that stopped answering, with its exit
// status and last output once it has exited (waiting a little for that).
func (p *procWorker) deadError(err error) error {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	exited := false
	select {
	case <-p.done:
		exited = true
	case <-t.C:
	}
	msg := fmt.Sprintf("bench: worker %d stopped", p.index)
	if err != nil {
		msg += ": " + err.Error()
	}
	if exited && p.waitErr != nil {
		msg += " (" + p.waitErr.Error() + ")"
	}
	if t := p.stderr.String(); t != "" {
		msg += "; its last output: " + t
	}
	return errors.New(msg)
}

// replySlack is added to every bound on a worker's reply: the worker
// bounds its own work, so only a stuck process takes this long.
const replySlack = 30 * time.Second

// call sends m and waits for the reply. If ctx ends first the worker is
// told to cancel, and the call still waits for its reply. A worker that
// has not replied within limit (plus replySlack) is killed.
func (p *procWorker) call(ctx context.Context, m wireMsg, limit time.Duration) (wireMsg, error) {
	if err := p.send(m); err != nil {
		return wireMsg{}, err
	}
	stuck := time.NewTimer(limit + replySlack)
	defer stuck.Stop()
	cancelSent := false
	for {
		select {
		case <-stuck.C:
			p.cmd.Process.Kill()
			return wireMsg{}, fmt.Errorf("bench: worker %d did not answer %q within %s; killed it", p.index, m.Type, limit+replySlack)
		case r, ok := <-p.replies:
			if !ok {
				return wireMsg{}, p.deadError(p.readErr)
			}
			if r.Error != "" {
				return r, &remoteError{msg: r.Error, kind: errKinds[r.ErrKind]}
			}
			return r, nil
		case <-ctx.Done():
			if !cancelSent {
				cancelSent = true
				p.send(wireMsg{Type: msgCancel})
			}
			ctx = context.Background()
		}
	}
}

func (p *procWorker) connect(ctx context.Context) (connectReport, error) {
	cfg := p.cfg
	limit := 2*cfg.ConnectTimeout + time.Duration(float64(cfg.Subscribers+cfg.Publishers)/cfg.ConnectRate*2*float64(time.Second))
	r, err := p.call(ctx, wireMsg{Type: msgConnect}, limit)
	if r.Connect == nil {
		return connectReport{Latency: NewHist()}, err
	}
	return *r.Connect, err
}

func (p *procWorker) run(ctx context.Context, rs roundSpec) (sentReport, error) {
	r, err := p.call(ctx, wireMsg{Type: msgRun, Round: &rs}, time.Until(rs.Start)+rs.Warmup+rs.Duration+p.cfg.ConnectTimeout)
	if r.Sent == nil {
		return sentReport{}, err
	}
	return *r.Sent, err
}

func (p *procWorker) finish(ctx context.Context, round int, exp []sentStream, short bool) (roundReport, error) {
	r, err := p.call(ctx, wireMsg{Type: msgFinish, RoundNo: round, Expect: exp, Short: short}, p.cfg.Drain)
	if r.Report == nil {
		return roundReport{Latency: NewHist()}, err
	}
	return *r.Report, err
}

func (p *procWorker) hold(ctx context.Context, d time.Duration) (roundReport, error) {
	r, err := p.call(ctx, wireMsg{Type: msgHold, Hold: d}, d)
	if r.Report == nil {
		return roundReport{Latency: NewHist()}, err
	}
	return *r.Report, err
}

// closeGrace bounds a worker's orderly exit before it is killed.
const closeGrace = 15 * time.Second

// close asks the worker to close its connections and exit, and kills it
// if it has not within closeGrace.
func (p *procWorker) close() error {
	p.send(wireMsg{Type: msgClose})
	p.stdin.Close()
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.waitErr
}

// RunWorker is the body of a worker process: it reads the coordinator's
// commands from in and writes replies and ticks to out, one JSON object per
// line, until a close command or the end of in. Logs go to log (nil
// discards); nothing else may write to out.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wmu sync.Mutex
	bw := bufio.NewWriter(out)
	write := func(m wireMsg) {
		b, err := json.Marshal(m)
		if err != nil {
			b, _ = json.Marshal(wireMsg{Type: msgReply, Error: "bench: encoding reply: " + err.Error()})
		}
		wmu.Lock()
		bw.Write(append(b, '\n'))
		bw.Flush()
		wmu.Unlock()
	}

	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	cmds := make(chan wireMsg)
	var opMu sync.Mutex
	opCancel := context.CancelFunc(func() {})
	var rwg sync.WaitGroup
	rwg.Go(func() { // stdin reader: cancels the running command on request
		defer close(cmds)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 256<<20)
		for sc.Scan() {
			var m wireMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				log.Error("bad command", "err", err)
				continue
			}
			if m.Type == msgCancel {
				opMu.Lock()
				opCancel()
				opMu.Unlock()
				continue
			}
			select {
			case cmds <- m:
			case <-ctx.Done():
				return
			}
		}
		cancelAll() // the coordinator went away
	})
	defer rwg.Wait()
	defer cancelAll()

	var w *worker
	defer func() {
		if w != nil {
			w.close()
		}
	}()
	for m := range cmds {
		reply := wireMsg{Type: msgReply}
		opCtx, cancel := context.WithCancel(ctx)
		opMu.Lock()
		opCancel = cancel
		opMu.Unlock()
		var err error
		switch {
		case m.Type == msgPlan && m.Plan != nil:
			plan := *m.Plan
			plan.Config.Logger = log
			w = newWorker(plan, func(t tick) { write(wireMsg{Type: msgTick, Tick: &t}) })
			cancel()
			continue // no reply
		case m.Type == msgClose:
			cancel()
			return nil
		case w == nil:
			err = errors.New("bench: worker got a command before its plan")
		case m.Type == msgConnect:
			var r connectReport
			r, err = w.connect(opCtx)
			reply.Connect = &r
		case m.Type == msgRun && m.Round != nil:
			var r sentReport
			r, err = w.run(opCtx, *m.Round)
			reply.Sent = &r
		case m.Type == msgFinish:
			var r roundReport
			r, err = w.finish(opCtx, m.RoundNo, m.Expect, m.Short)
			reply.Report = &r
		case m.Type == msgHold:
			var r roundReport
			r, err = w.hold(opCtx, m.Hold)
			reply.Report = &r
		default:
			err = fmt.Errorf("bench: unknown worker command %q", m.Type)
		}
		cancel()
		if err != nil {
			reply.Error, reply.ErrKind = err.Error(), errKind(err)
		}
		write(reply)
	}
	return ctx.Err()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// prefixWriter prefixes every line.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.mid {
			out = append(out, p.prefix...)
		}
		out = append(out, line...)
		p.mid = line[len(line)-1] != '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
