package chaos

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/wsframe"
)

// AttackerEnv, when set in the environment of the chaos test binary, makes
// it run RunAttacker on stdin/stdout instead of the tests.
const AttackerEnv = "SCC_CHAOS_ATTACKER"

// The attacks an attacker process runs (AttackConfig.Kind), numbered as in
// the hardening review of the client port.
const (
	// AttackBurst (4): subscribers on one channel read at a normal pace
	// while one client publishes bursts of six messages of the largest
	// accepted size and six of 1 MiB to it, every second.
	AttackBurst = "publish-burst"
	// AttackPackets (5): unsolicited pongs, empty continuation frames
	// and batches of 300k empty packets, each socket redialing once it is
	// closed.
	AttackPackets = "packet-floods"
	// AttackIdle (6): TCP connections that send nothing, reopened when
	// the server closes them.
	AttackIdle = "idle-connections"
	// AttackPartial (7): every socket leaves a 900 KB message unfinished
	// and holds it, redialing once closed.
	AttackPartial = "partial-messages"
	// AttackSubscribe (8): every socket subscribes 100 channels in one
	// batch, holds them a second, leaves, and does it again.
	AttackSubscribe = "subscription-storm"
	// AttackChurn is AttackSubscribe without the subscribes: every socket
	// upgrades, completes its #handshake, holds a second, leaves, and does
	// it again. It measures what connection churn alone costs a server.
	AttackChurn = "connection-churn"
	// AttackFanout (9): subscribers on one channel and one publisher
	// publishing to it as fast as it is allowed.
	AttackFanout = "fanout-flood"
	// AttackBurn opens no connection: the attacker process only spins on
	// its CPUs. It measures what any work on the attacker's CPU costs the
	// servers and measuring clients on the other.
	AttackBurn = "cpu-burn"
)

// AttackConfig is what one attacker process does; it is sent as one JSON
// line on the attacker's stdin.
type AttackConfig struct {
	Kind string `json:"kind"`
	// Addr is the frontend's host:port, Path its WebSocket path.
	Addr string `json:"addr"`
	Path string `json:"path"`
	// Conns is how many connections the attack holds at once.
	Conns int `json:"conns"`
	// For is how long the attack runs; the attacker then closes every
	// connection, writes its last status and exits.
	For time.Duration `json:"for"`
	// SourceIPs are rotated per connection (empty: the kernel picks).
	SourceIPs []string `json:"source_ips"`
	// MaxPublish is the frontend's largest accepted publish data size
	// (AttackBurst).
	MaxPublish int `json:"max_publish"`
	// CPUs pins the attacker process (taskset list).
	CPUs string `json:"-"`
}

// AttackStatus is an attacker's last status line.
type AttackStatus struct {
	// Dials counts connections opened (upgrades for WebSocket attacks),
	// DialErrors those refused or failed.
	Dials      int64 `json:"dials"`
	DialErrors int64 `json:"dial_errors"`
	// Closed counts connections the server ended, by close code (-1: no
	// close frame).
	Closed map[int]int64 `json:"closed,omitempty"`
	// SubscriberCloses counts the attack's reading subscribers that were
	// closed (AttackBurst, AttackFanout), Deliveries what they received.
	SubscriberCloses int64 `json:"subscriber_closes"`
	Deliveries       int64 `json:"deliveries"`
	// BytesSent is what the attack wrote.
	BytesSent int64 `json:"bytes_sent"`
	Done      bool  `json:"done"`
}

// attackConn is a WebSocket client written by hand, to send frames no
// library sends and to hold many connections cheaply.
type attackConn struct {
	nc net.Conn
	br *bufio.Reader
}

type attacker struct {
	cfg     AttackConfig
	srcs    []netip.Addr
	stop    chan struct{}
	mu      sync.Mutex
	closed  map[int]int64
	dials   atomic.Int64
	dialErr atomic.Int64
	subClos atomic.Int64
	deliv   atomic.Int64
	sent    atomic.Int64
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
}

func (a *attacker) stopped() bool {
	select {
	case <-a.stop:
		return true
	default:
		return false
	}
}

func (a *attacker) track(nc net.Conn) bool {
	a.connsMu.Lock()
	defer a.connsMu.Unlock()
	if a.stopped() {
		nc.Close()
		return false
	}
	a.conns[nc] = struct{}{}
	return true
}

func (a *attacker) untrack(nc net.Conn) {
	a.connsMu.Lock()
	delete(a.conns, nc)
	a.connsMu.Unlock()
	nc.Close()
}

func (a *attacker) closeAll() {
	a.connsMu.Lock()
	defer a.connsMu.Unlock()
	for nc := range a.conns {
		nc.Close()
	}
}

func (a *attacker) count(code int) {
	a.mu.Lock()
	a.closed[code]++
	a.mu.Unlock()
}

func (a *attacker) tcp(i int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if len(a.srcs) > 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.srcs[i%len(a.srcs)], 0))
	}
	nc, err := d.Dial("tcp", a.cfg.Addr)
	if err != nil {
		a.dialErr.Add(1)
		return nil, err
	}
	if !a.track(nc) {
		return nil, errors.New("stopped")
	}
	a.dials.Add(1)
	return nc, nil
}

// ws opens connection i and completes the WebSocket and SocketCluster
// handshakes.
func (a *attacker) ws(i int) (*attackConn, error) {
	nc, err := a.tcp(i)
	if err != nil {
		return nil, err
	}
	req := "GET " + a.cfg.Path + " HTTP/1.1\r\nHost: " + a.cfg.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		a.fail(nc)
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		a.fail(nc)
		return nil, fmt.Errorf("upgrade: %v", err)
	}
	c := &attackConn{nc: nc, br: br}
	if _, err := nc.Write(wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#handshake","data":{},"cid":1}`))); err != nil {
		a.fail(nc)
		return nil, err
	}
	for {
		op, p := c.frame()
		if op == 1 && strings.HasPrefix(string(p), `{"rid":1,`) {
			nc.SetDeadline(time.Time{})
			return c, nil
		}
		if op < 0 || op == 8 {
			a.fail(nc)
			return nil, fmt.Errorf("no handshake reply (op %d)", op)
		}
	}
}

func (a *attacker) fail(nc net.Conn) {
	a.dials.Add(-1)
	a.dialErr.Add(1)
	a.untrack(nc)
}

// frame reads one server frame: op -1 when the connection ended.
func (c *attackConn) frame() (int, []byte) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return -1, nil
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return -1, nil
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return -1, nil
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 64<<20 {
		return -1, nil
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return -1, nil
	}
	return int(h[0] & 0x0f), p
}

// drain reads until the connection ends, answering pings, and returns the
// close code (-1 without a close frame). onData sees every other text
// frame.
func (a *attackConn) drain(onData func([]byte)) int {
	for {
		op, p := a.frame()
		switch {
		case op < 0:
			return -1
		case op == 8:
			if len(p) >= 2 {
				return int(binary.BigEndian.Uint16(p))
			}
			return -1
		case op == 1 && len(p) == 0:
			_, _ = a.nc.Write(wsframe.AppendClient(nil, 1, true, nil)) // pong
		case op == 1 && onData != nil:
			onData(p)
		}
	}
}

func (a *attacker) write(nc net.Conn, b []byte) error {
	n, err := nc.Write(b)
	a.sent.Add(int64(n))
	return err
}

// pause waits d or until the attack stops; it reports whether to go on.
func (a *attacker) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.stop:
		return false
	case <-t.C:
		return true
	}
}

// loop runs one connection's attack again and again until the attack
// stops, pausing briefly after a failed dial.
func (a *attacker) loop(i int, once func(i int) error) {
	for !a.stopped() {
		if err := once(i); err != nil && !a.pause(100*time.Millisecond) {
			return
		}
	}
}

// subscriber holds one reading subscriber of channel until the attack
// stops, redialing when it is closed.
func (a *attacker) subscriber(i int, channel string, ready *sync.WaitGroup) {
	first := true
	done := func() {
		if first {
			first = false
			ready.Done()
		}
	}
	defer done()
	a.loop(i, func(i int) error {
		c, err := a.ws(i)
		if err != nil {
			return err
		}
		defer a.untrack(c.nc)
		if err := a.write(c.nc, wsframe.AppendClient(nil, 1, true, []byte(`{"event":"#subscribe","data":{"channel":"`+channel+`"},"cid":2}`))); err != nil {
			return err
		}
		done()
		code := c.drain(func(p []byte) {
			// Deliveries may come batched in one array frame.
			a.deliv.Add(int64(bytes.Count(p, []byte(`"event":"#publish"`))))
		})
		if !a.stopped() {
			a.subClos.Add(1)
			a.count(code)
		}
		return nil
	})
}

func (a *attacker) runBurst() {
	var ready, wg sync.WaitGroup
	n := max(a.cfg.Conns-1, 1)
	ready.Add(n)
	for i := range n {
		wg.Go(func() { a.subscriber(i, "atk-burst", &ready) })
	}
	ready.Wait()
	big := strings.Repeat("x", 1<<20-128)
	small := strings.Repeat("y", max(a.cfg.MaxPublish-16, 16))
	// The accepted publishes first: the byte rate closes the publisher
	// during the 1 MiB ones, and it dials again for the next burst.
	var burst []byte
	for i := range 6 {
		burst = wsframe.AppendClient(burst, 1, true, fmt.Appendf(nil, `{"event":"#publish","data":{"channel":"atk-burst","data":%q},"cid":%d}`, small, 20+i))
	}
	for i := range 6 {
		burst = wsframe.AppendClient(burst, 1, true, fmt.Appendf(nil, `{"event":"#publish","data":{"channel":"atk-burst","data":%q},"cid":%d}`, big, 10+i))
	}
	wg.Go(func() {
		a.loop(n, func(i int) error {
			c, err := a.ws(i)
			if err != nil {
				return err
			}
			defer a.untrack(c.nc)
			go func() { a.count(c.drain(nil)) }()
			for a.write(c.nc, burst) == nil && a.pause(time.Second) {
			}
			return nil
		})
	})
	<-a.stop
	a.closeAll()
	wg.Wait()
}

func (a *attacker) runPackets() {
	pong := wsframe.AppendClient(nil, 0xa, true, nil)
	var pongs []byte
	for range 1000 {
		pongs = append(pongs, pong...)
	}
	frags := wsframe.AppendClient(nil, 1, false, nil)
	for range 1000 {
		frags = wsframe.AppendClient(frags, 0, false, nil)
	}
	bomb := wsframe.AppendClient(nil, 1, true, []byte("["+strings.TrimSuffix(strings.Repeat("{},", 300000), ",")+"]"))
	kinds := [][]byte{pongs, frags, bomb}
	var wg sync.WaitGroup
	for i := range a.cfg.Conns {
		// 10 of every 11 sockets send pongs or fragments, 1 a batch.
		b := kinds[i%2]
		if i%11 == 10 {
			b = kinds[2]
		}
		wg.Go(func() {
			a.loop(i, func(i int) error {
				c, err := a.ws(i)
				if err != nil {
					return err
				}
				defer a.untrack(c.nc)
				go func() { _ = a.write(c.nc, b) }()
				a.count(c.drain(nil))
				return nil
			})
		})
	}
	<-a.stop
	a.closeAll()
	wg.Wait()
}

func (a *attacker) runIdle() {
	var wg sync.WaitGroup
	for i := range a.cfg.Conns {
		wg.Go(func() {
			a.loop(i, func(i int) error {
				nc, err := a.tcp(i)
				if err != nil {
					return err
				}
				defer a.untrack(nc)
				var b [512]byte
				for {
					if _, err := nc.Read(b[:]); err != nil {
						if !a.stopped() {
							a.count(-1)
						}
						return nil
					}
				}
			})
		})
	}
	<-a.stop
	a.closeAll()
	wg.Wait()
}

func (a *attacker) runPartial() {
	part := wsframe.AppendClient(nil, 1, false, []byte(`{"event":"x","data":"`+strings.Repeat("a", 900<<10)))
	var wg sync.WaitGroup
	for i := range a.cfg.Conns {
		wg.Go(func() {
			a.loop(i, func(i int) error {
				c, err := a.ws(i)
				if err != nil {
					return err
				}
				defer a.untrack(c.nc)
				go func() { _ = a.write(c.nc, part) }()
				code := c.drain(nil)
				if !a.stopped() {
					a.count(code)
				}
				return nil
			})
		})
	}
	<-a.stop
	a.closeAll()
	wg.Wait()
}

// runSubscribe is AttackSubscribe with channels subscribes per socket
// and round, or AttackChurn with none (the handshake only).
func (a *attacker) runSubscribe(channels int) {
	var wg sync.WaitGroup
	for i := range a.cfg.Conns {
		wg.Go(func() {
			round := 0
			a.loop(i, func(i int) error {
				c, err := a.ws(i)
				if err != nil {
					return err
				}
				defer a.untrack(c.nc)
				var b strings.Builder
				b.WriteString("[")
				for j := range channels {
					if j > 0 {
						b.WriteString(",")
					}
					fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"atk-storm-%d-%d-%d"},"cid":%d}`, i, round, j, 10+j)
				}
				b.WriteString("]")
				round++
				if channels > 0 {
					if err := a.write(c.nc, wsframe.AppendClient(nil, 1, true, []byte(b.String()))); err != nil {
						return nil
					}
				}
				ended := make(chan int, 1)
				go func() { ended <- c.drain(nil) }()
				select {
				case code := <-ended:
					a.count(code)
				case <-time.After(time.Second):
				case <-a.stop:
				}
				return nil
			})
		})
	}
	<-a.stop
	a.closeAll()
	wg.Wait()
}

// runBurn spins one goroutine per CPU the process may use until the
// attack ends.
func (a *attacker) runBurn() {
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			x := uint64(1)
			for i := 0; ; i++ {
				x = x*6364136223846793005 + 1442695040888963407
				if i%(1<<16) == 0 && a.stopped() {
					break
				}
			}
			a.sent.Add(int64(x & 1)) // keeps the loop's work observable
		})
	}
	wg.Wait()
}

func (a *attacker) runFanout() {
	var ready, wg sync.WaitGroup
	n := max(a.cfg.Conns-1, 1)
	ready.Add(n)
	for i := range n {
		wg.Go(func() { a.subscriber(i, "atk-hot", &ready) })
	}
	ready.Wait()
	var batch []byte
	for i := range 100 {
		batch = wsframe.AppendClient(batch, 1, true, fmt.Appendf(nil, `{"event":"#publish","data":{"channel":"atk-hot","data":"flood %d"}}`, i))
	}
	wg.Go(func() {
		a.loop(n, func(i int) error {
			c, err := a.ws(i)
			if err != nil {
				return err
			}
			defer a.untrack(c.nc)
			go func() { a.count(c.drain(nil)) }()
			// 100 publishes every 10ms: 10000/s, the default inbound
			// rate; the channel's publish rate refuses most.
			for a.write(c.nc, batch) == nil && a.pause(10*time.Millisecond) {
			}
			return nil
		})
	})
	<-a.stop
	a.closeAll()
	wg.Wait()
}

// RunAttacker is an attacker process's main: it reads an AttackConfig
// line, runs the attack for its duration (or until "stop" or the end of
// in), closes every connection and writes its AttackStatus line.
func RunAttacker(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("attacker: reading config: %w", err)
	}
	var cfg AttackConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("attacker: config: %w", err)
	}
	if cfg.Path == "" {
		cfg.Path = "/socketcluster/"
	}
	a := &attacker{cfg: cfg, stop: make(chan struct{}), closed: map[int]int64{}, conns: map[net.Conn]struct{}{}}
	for _, s := range cfg.SourceIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("attacker: source address %q: %w", s, err)
		}
		a.srcs = append(a.srcs, ip)
	}
	run := map[string]func(){
		AttackBurst: a.runBurst, AttackPackets: a.runPackets, AttackIdle: a.runIdle,
		AttackPartial: a.runPartial, AttackSubscribe: func() { a.runSubscribe(100) }, AttackChurn: func() { a.runSubscribe(0) },
		AttackFanout: a.runFanout, AttackBurn: a.runBurn,
	}[cfg.Kind]
	if run == nil {
		return fmt.Errorf("attacker: unknown attack %q", cfg.Kind)
	}
	go func() {
		stopIn := make(chan struct{})
		go func() {
			for {
				l, err := br.ReadString('\n')
				if strings.TrimSpace(l) == "stop" || err != nil {
					close(stopIn)
					return
				}
			}
		}()
		select {
		case <-time.After(cfg.For):
		case <-stopIn:
		}
		close(a.stop)
	}()
	run()
	st := AttackStatus{Dials: a.dials.Load(), DialErrors: a.dialErr.Load(), SubscriberCloses: a.subClos.Load(),
		Deliveries: a.deliv.Load(), BytesSent: a.sent.Load(), Done: true}
	a.mu.Lock()
	st.Closed = a.closed
	a.mu.Unlock()
	return json.NewEncoder(out).Encode(st)
}

// Attacker is an attacker process started by the chaos test binary.
type Attacker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	last  AttackStatus
}

// StartAttacker starts an attacker process for cfg; it runs for cfg.For
// and is killed when t ends if still running.
func StartAttacker(t testing.TB, cfg AttackConfig) *Attacker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	if cfg.CPUs != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			cmd = exec.Command(ts, "-c", cfg.CPUs, exe, "-test.run=^$")
		}
	}
	cmd.Env = append(os.Environ(), AttackerEnv+"=1")
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
	at := &Attacker{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		defer close(at.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var st AttackStatus
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				at.last = st
			}
		}
	}()
	b, _ := json.Marshal(cfg)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { at.Wait(10 * time.Second) })
	return at
}

// PID is the attacker's process id.
func (at *Attacker) PID() int { return at.cmd.Process.Pid }

// Wait waits up to timeout for the attack to end (asking it to stop when
// the timeout passes, then killing it) and returns its last status.
func (at *Attacker) Wait(timeout time.Duration) AttackStatus {
	select {
	case <-at.done:
	case <-time.After(timeout):
		_, _ = io.WriteString(at.stdin, "stop\n")
		select {
		case <-at.done:
		case <-time.After(10 * time.Second):
			_ = at.cmd.Process.Kill()
			<-at.done
		}
	}
	if at.cmd.ProcessState == nil {
		_ = at.cmd.Wait()
	}
	at.stdin.Close()
	return at.last
}
