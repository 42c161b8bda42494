package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/client"
)

// WorkerEnv, when set in the environment of the chaos test binary, makes
// it run RunWorker on stdin/stdout instead of the tests.
const WorkerEnv = "SCC_CHAOS_WORKER"

// WorkerConfig is what one worker process connects. It is sent as one JSON
// line on the worker's stdin.
type WorkerConfig struct {
	// URLs: client i dials URLs[i%len(URLs)].
	URLs []string `json:"urls"`
	// Alternates are host:port addresses a client fails over to when its
	// URL's frontend does not answer (FailoverHTTPClient); client i tries
	// them from position i, so a failed frontend's clients spread over
	// the others.
	Alternates []string `json:"alternates"`
	// Clients is how many subscriber clients to hold.
	Clients int `json:"clients"`
	// Channels: client i subscribes Channels[(Offset+i)%len(Channels)].
	Channels []string `json:"channels"`
	// SourceIPs are rotated per client (empty: the kernel picks).
	SourceIPs []string `json:"source_ips"`
	// Offset numbers this worker's clients after the other workers'.
	Offset int `json:"offset"`
	// ConnectRate paces the initial connections per second (default
	// 1000; negative: no pacing, a storm) and ConnectConcurrency bounds
	// how many are in progress (default 64).
	ConnectRate        float64 `json:"connect_rate"`
	ConnectConcurrency int     `json:"connect_concurrency"`
	// DialFor bounds how long one client keeps retrying its initial
	// connection (full jitter between attempts; default 60s).
	DialFor time.Duration `json:"dial_for"`
	// BackoffInitial and BackoffMax are the clients' reconnect schedule
	// (full jitter; defaults 500ms and 5s).
	BackoffInitial time.Duration `json:"backoff_initial"`
	BackoffMax     time.Duration `json:"backoff_max"`
	// ReportEvery is how often a status line is written (default 200ms).
	ReportEvery time.Duration `json:"report_every"`
	// CPUs, if set, pins the worker processes to these CPUs (taskset
	// list, e.g. "0"), so that the load's client side does not starve
	// the servers it measures.
	CPUs string `json:"-"`
}

// WorkerStatus is one status line a worker writes on stdout.
type WorkerStatus struct {
	// Ready is true once every initial connection was attempted.
	Ready bool `json:"ready"`
	// Dialed counts initial connections that succeeded, DialFailed those
	// that failed after their retries.
	Dialed     int `json:"dialed"`
	DialFailed int `json:"dial_failed"`
	// Connected counts clients with an open connection now.
	Connected int `json:"connected"`
	// Connects counts handshakes (initial and reconnects); Disconnects
	// counts connections lost.
	Connects    int64 `json:"connects"`
	Disconnects int64 `json:"disconnects"`
	// Back counts clients that received a message sent after Mark.
	Back int `json:"back"`
	// Mark is the mark (unix nanos) Back counts from; 0 before any.
	Mark int64 `json:"mark"`
	// Received counts messages received.
	Received int64 `json:"received"`
	// Codes counts disconnects by close code.
	Codes map[int]int64 `json:"codes,omitempty"`
	// FirstError is the first initial-connection error.
	FirstError string `json:"first_error,omitempty"`
	// Done is set on the last line, after every client closed.
	Done bool `json:"done"`
}

type workerClient struct {
	c        *client.Client
	lastSent atomic.Int64 // newest payload send time received, unix nanos
}

// RunWorker is a worker process's main: it reads a WorkerConfig line,
// connects the clients, writes a WorkerStatus line every ReportEvery, and
// on "mark <unix-nanos>" lines restarts the Back count from that time. At
// "stop" or the end of in it closes every client, writes a last status
// with Done set and returns.
func RunWorker(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("worker: reading config: %w", err)
	}
	var cfg WorkerConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("worker: config: %w", err)
	}
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = 1000
	}
	if cfg.DialFor <= 0 {
		cfg.DialFor = 60 * time.Second
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = 64
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = 200 * time.Millisecond
	}
	if len(cfg.URLs) == 0 || len(cfg.Channels) == 0 {
		return errors.New("worker: URLs and Channels are required")
	}
	var srcs []netip.Addr
	for _, s := range cfg.SourceIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("worker: source address %q: %w", s, err)
		}
		srcs = append(srcs, a)
	}

	var (
		mu          sync.Mutex
		codes       = map[int]int64{}
		connected   atomic.Int64
		connects    atomic.Int64
		disconnects atomic.Int64
		received    atomic.Int64
		mark        atomic.Int64
		dialed      atomic.Int64
		dialFailed  atomic.Int64
		ready       atomic.Bool
		firstErr    atomic.Pointer[string]
		wg          sync.WaitGroup // receivers
	)
	clients := make([]*workerClient, cfg.Clients)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	status := func(done bool) WorkerStatus {
		st := WorkerStatus{
			Ready: ready.Load(), Dialed: int(dialed.Load()), DialFailed: int(dialFailed.Load()),
			Connected: int(connected.Load()), Connects: connects.Load(), Disconnects: disconnects.Load(),
			Received: received.Load(), Done: done,
		}
		m := mark.Load()
		st.Mark = m
		mu.Lock()
		for _, wc := range clients {
			if wc != nil && wc.lastSent.Load() > m {
				st.Back++
			}
		}
		if len(codes) > 0 {
			st.Codes = make(map[int]int64, len(codes))
			for k, v := range codes {
				st.Codes[k] = v
			}
		}
		mu.Unlock()
		if p := firstErr.Load(); p != nil {
			st.FirstError = *p
		}
		return st
	}
	enc := json.NewEncoder(out)
	var encMu sync.Mutex
	write := func(done bool) {
		st := status(done)
		encMu.Lock()
		_ = enc.Encode(st)
		encMu.Unlock()
	}

	// Control lines.
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		for {
			l, err := br.ReadString('\n')
			l = strings.TrimSpace(l)
			if f := strings.Fields(l); len(f) == 2 && f[0] == "mark" {
				if n, perr := strconv.ParseInt(f[1], 10, 64); perr == nil {
					mark.Store(n)
				}
			} else if l == "stop" {
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// Status lines.
	var repWG sync.WaitGroup
	repWG.Go(func() {
		t := time.NewTicker(cfg.ReportEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				write(false)
			}
		}
	})

	// Initial connections: paced, bounded concurrency, a few retries with
	// full jitter (a rate-limited frontend answers 503).
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	var dialWG sync.WaitGroup
	var pace time.Duration
	if cfg.ConnectRate > 0 {
		pace = time.Duration(float64(time.Second) / cfg.ConnectRate)
	}
	start := time.Now()
dialing:
	for i := range cfg.Clients {
		select {
		case <-stop:
			break dialing
		case sem <- struct{}{}:
		}
		if d := time.Until(start.Add(time.Duration(i) * pace)); d > 0 {
			time.Sleep(d)
		}
		dialWG.Go(func() {
			defer func() { <-sem }()
			n := cfg.Offset + i
			url := cfg.URLs[n%len(cfg.URLs)]
			var local *net.TCPAddr
			if len(srcs) > 0 {
				local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(srcs[n%len(srcs)], 0))
			}
			wc := &workerClient{}
			opts := client.Options{
				HTTPClient:     FailoverHTTPClient(rotate(cfg.Alternates, n), local),
				Backoff:        client.Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax},
				ConnectTimeout: 5 * time.Second,
				OnConnect: func(client.ConnectInfo) {
					connects.Add(1)
					connected.Add(1)
				},
				OnDisconnect: func(code int, _ string) {
					disconnects.Add(1)
					connected.Add(-1)
					mu.Lock()
					codes[code]++
					mu.Unlock()
				},
			}
			var c *client.Client
			var err error
			giveUp := time.Now().Add(cfg.DialFor)
			for attempt := 0; ; attempt++ {
				dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
				c, err = client.Dial(dctx, url, opts)
				dcancel()
				if err == nil || ctx.Err() != nil || time.Now().After(giveUp) {
					break
				}
				ceil := min(cfg.BackoffMax, cfg.BackoffInitial<<min(attempt, 20))
				time.Sleep(rand.N(ceil))
			}
			if err != nil {
				dialFailed.Add(1)
				msg := err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				return
			}
			wc.c = c
			ch := cfg.Channels[n%len(cfg.Channels)]
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			sub, err := c.Subscribe(sctx, ch, client.SubscribeOptions{})
			scancel()
			if err != nil {
				dialFailed.Add(1)
				msg := "subscribe: " + err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				c.Close()
				return
			}
			dialed.Add(1)
			mu.Lock()
			clients[i] = wc
			mu.Unlock()
			wg.Go(func() {
				for m := range sub.C() {
					received.Add(1)
					if p, err := bench.DecodePayload(m.Data); err == nil {
						if ns := p.SentAt.UnixNano(); ns > wc.lastSent.Load() {
							wc.lastSent.Store(ns)
						}
					}
				}
			})
		})
	}
	dialWG.Wait()
	ready.Store(true)
	write(false)
	<-stop

	// Close every client (in parallel: a client whose frontend is gone
	// may wait out its close timeout).
	var closeWG sync.WaitGroup
	csem := make(chan struct{}, 256)
	for _, wc := range clients {
		if wc == nil || wc.c == nil {
			continue
		}
		csem <- struct{}{}
		closeWG.Go(func() {
			defer func() { <-csem }()
			wc.c.Close()
		})
	}
	closeWG.Wait()
	wg.Wait()
	cancel()
	repWG.Wait()
	write(true)
	return nil
}

// rotate returns s rotated left by n.
func rotate(s []string, n int) []string {
	if len(s) == 0 {
		return nil
	}
	n %= len(s)
	return append(append([]string{}, s[n:]...), s[:n]...)
}

// Workers are worker processes started by the chaos test binary.
type Workers struct {
	t     testing.TB
	procs []*workerProc
}

type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	last  WorkerStatus
	done  chan struct{} // closed when stdout ends
	err   error
}

// StartWorkers starts n worker processes that together hold cfg.Clients
// clients (split evenly) and stops them when t ends.
func StartWorkers(t testing.TB, n int, cfg WorkerConfig) *Workers {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := &Workers{t: t}
	t.Cleanup(func() { w.Stop(30 * time.Second) })
	per := (cfg.Clients + n - 1) / n
	for i := range n {
		c := cfg
		c.Offset = cfg.Offset + i*per
		c.Clients = min(per, cfg.Clients-i*per)
		switch {
		case cfg.ConnectRate > 0:
			c.ConnectRate = cfg.ConnectRate / float64(n)
		case cfg.ConnectRate == 0:
			c.ConnectRate = 1000 / float64(n)
		}
		cmd := exec.Command(exe, "-test.run=^$")
		if cfg.CPUs != "" {
			if ts, err := exec.LookPath("taskset"); err == nil {
				cmd = exec.Command(ts, "-c", cfg.CPUs, exe, "-test.run=^$")
			}
		}
		cmd.Env = append(os.Environ(), WorkerEnv+"=1")
		// A worker dies with the test process.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wp := &workerProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
		w.procs = append(w.procs, wp)
		go wp.read(stdout) // ends when the worker's stdout closes; Stop waits for it
		b, _ := json.Marshal(c)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (wp *workerProc) read(r io.Reader) {
	defer close(wp.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var st WorkerStatus
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			continue // test framework output
		}
		wp.mu.Lock()
		wp.last = st
		wp.mu.Unlock()
	}
}

// PIDs returns the workers' process ids.
func (w *Workers) PIDs() []int {
	var pids []int
	for _, wp := range w.procs {
		pids = append(pids, wp.cmd.Process.Pid)
	}
	return pids
}

// Status returns the latest status of every worker, summed.
func (w *Workers) Status() WorkerStatus {
	sum := WorkerStatus{Ready: true, Done: true, Codes: map[int]int64{}}
	for i, wp := range w.procs {
		wp.mu.Lock()
		st := wp.last
		wp.mu.Unlock()
		sum.Ready = sum.Ready && st.Ready
		sum.Done = sum.Done && st.Done
		sum.Dialed += st.Dialed
		sum.DialFailed += st.DialFailed
		sum.Connected += st.Connected
		sum.Connects += st.Connects
		sum.Disconnects += st.Disconnects
		sum.Back += st.Back
		if i == 0 || st.Mark < sum.Mark {
			sum.Mark = st.Mark
		}
		sum.Received += st.Received
		for k, v := range st.Codes {
			sum.Codes[k] += v
		}
		if sum.FirstError == "" {
			sum.FirstError = st.FirstError
		}
	}
	return sum
}

// WaitFor polls Status until cond holds or timeout passes; it returns the
// last status and whether cond held.
func (w *Workers) WaitFor(timeout time.Duration, cond func(WorkerStatus) bool) (WorkerStatus, bool) {
	deadline := time.Now().Add(timeout)
	for {
		st := w.Status()
		if cond(st) {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Mark makes every worker count Back from messages sent after at.
func (w *Workers) Mark(at time.Time) {
	for _, wp := range w.procs {
		_, _ = fmt.Fprintf(wp.stdin, "mark %d\n", at.UnixNano())
	}
}

// Kill SIGKILLs every worker (their connections drop at once) and reaps
// them.
func (w *Workers) Kill() {
	for _, wp := range w.procs {
		_ = wp.cmd.Process.Kill()
	}
	for _, wp := range w.procs {
		<-wp.done
		if wp.cmd.ProcessState == nil {
			_ = wp.cmd.Wait()
		}
		wp.stdin.Close()
	}
}

// Stop asks every worker to close its clients and exit, waits up to
// timeout, then kills the stragglers. It is idempotent.
func (w *Workers) Stop(timeout time.Duration) {
	for _, wp := range w.procs {
		_, _ = io.WriteString(wp.stdin, "stop\n")
		wp.stdin.Close()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, wp := range w.procs {
		select {
		case <-wp.done:
		case <-deadline.C:
		}
	}
	for _, wp := range w.procs {
		select {
		case <-wp.done:
		default:
			_ = wp.cmd.Process.Kill()
			<-wp.done
		}
		if wp.cmd.ProcessState == nil {
			_ = wp.cmd.Wait()
		}
	}
}
