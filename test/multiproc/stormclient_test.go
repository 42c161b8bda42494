package multiproc

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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/wsframe"
	"github.com/sccgo/sccgo/protocol"
)

// stormEnv, when set in the environment of this test binary, makes it run
// runStormClient on stdin/stdout instead of the tests: a process that
// holds a few thousand client sockets for the presence storm.
const stormEnv = "SCC_MULTIPROC_STORM_CLIENT"

// stormConfig is what one storm client process does; it is sent as one
// JSON line on its stdin.
type stormConfig struct {
	// Addrs are the frontends' host:port; socket i connects to
	// Addrs[i%len(Addrs)]. Path is the WebSocket path.
	Addrs []string `json:"addrs"`
	Path  string   `json:"path"`
	// Conns is how many sockets the process holds.
	Conns int `json:"conns"`
	// Sources are the local addresses socket i dials from, rotated.
	Sources []string `json:"sources"`
	// Channel is the presence channel every socket subscribes to, then
	// to its companion channel of join/leave events.
	Channel string `json:"channel"`
	// Senders are the goroutines that write the subscribes.
	Senders int `json:"senders"`
	// ParseEvery: every ParseEvery-th socket decodes each event in full
	// (entries per event); the others count events only.
	ParseEvery int `json:"parse_every"`
}

// stormStatus is a storm client's report: {"ready":...} once every socket
// is handshaken, one with AckMS once every subscribe was answered, and
// the final one (Done) after "stop".
type stormStatus struct {
	Ready      bool   `json:"ready,omitempty"`
	Conns      int    `json:"conns"`
	DialErrors int    `json:"dial_errors"`
	FirstError string `json:"first_error,omitempty"`
	// SendMS is how long writing every socket's subscribes took, AckMS
	// until every subscribe was answered.
	SendMS int64 `json:"send_ms"`
	AckMS  int64 `json:"ack_ms"`
	// Acked counts subscribes answered without an error, SubErrors with
	// one.
	Acked     int64 `json:"acked"`
	SubErrors int64 `json:"sub_errors"`
	// Closed counts sockets the server closed, by close code (-1: the
	// connection ended without a close frame).
	Closed map[int]int64 `json:"closed,omitempty"`
	// Events counts the join/leave events all sockets received;
	// MaxEventsPerConn the most one socket received; MaxEntries the most
	// joins plus leaves one event listed (decoded sockets only), Parsed
	// how many events were decoded.
	Events           int64 `json:"events"`
	MaxEventsPerConn int64 `json:"max_events_per_conn"`
	MaxEntries       int64 `json:"max_entries"`
	Parsed           int64 `json:"parsed"`
	Done             bool  `json:"done,omitempty"`
}

type stormConn struct {
	nc     net.Conn
	br     *bufio.Reader
	wmu    sync.Mutex
	parse  bool
	events atomic.Int64
}

type stormClient struct {
	cfg      stormConfig
	srcs     []netip.Addr
	conns    []*stormConn
	stopping atomic.Bool
	wg       sync.WaitGroup

	acked, subErrs, evs, parsed atomic.Int64
	maxEntries                  atomic.Int64
	mu                          sync.Mutex
	closed                      map[int]int64
	allAcked                    chan struct{}
	// going is set when the storm starts; sent is closed once every
	// subscribe is written. Until then readers wait after each frame,
	// so that the senders need not compete with thousands of them.
	going       atomic.Bool
	sent        chan struct{}
	pendingAcks atomic.Int64
}

func (c *stormClient) dial(i int) (*stormConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if len(c.srcs) > 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.srcs[i%len(c.srcs)], 0))
	}
	addr := c.cfg.Addrs[i%len(c.cfg.Addrs)]
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	req := "GET " + c.cfg.Path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 8192)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: HTTP %d", resp.StatusCode)
	}
	sc := &stormConn{nc: nc, br: br, parse: c.cfg.ParseEvery > 0 && i%c.cfg.ParseEvery == 0}
	if _, err := nc.Write(wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`)); err != nil {
		nc.Close()
		return nil, err
	}
	for {
		op, p, err := sc.frame()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		if op == wsframe.OpText && bytes.HasPrefix(p, []byte(`{"rid":1,`)) {
			_ = nc.SetDeadline(time.Time{})
			return sc, nil
		}
		if op == wsframe.OpClose {
			nc.Close()
			return nil, errors.New("handshake: closed")
		}
	}
}

// frame reads one server frame.
func (sc *stormConn) frame() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(sc.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(sc.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(sc.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 16<<20 {
		return 0, nil, errors.New("frame too large")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(sc.br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}

func (sc *stormConn) write(b []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_, err := sc.nc.Write(b)
	return err
}

// read handles one socket's frames until it ends: pongs, subscribe
// acknowledgements (cid 2 and 3) and join/leave events.
func (c *stormClient) read(sc *stormConn) {
	defer c.wg.Done()
	evMark := []byte(`"channel":` + string(protocol.AppendString(nil, protocol.PresenceChannel(c.cfg.Channel))))
	for {
		op, p, err := sc.frame()
		if c.going.Load() {
			<-c.sent
		}
		if err != nil || op == wsframe.OpClose {
			if c.stopping.Load() {
				return
			}
			code := -1
			if op == wsframe.OpClose && len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			c.mu.Lock()
			c.closed[code]++
			c.mu.Unlock()
			return
		}
		if op != wsframe.OpText {
			continue
		}
		switch {
		case len(p) == 0:
			_ = sc.write(wsframe.AppendText(nil, ""))
			continue
		case string(p) == "#1":
			_ = sc.write(wsframe.AppendText(nil, "#2"))
			continue
		}
		packets := []json.RawMessage{p}
		if p[0] == '[' {
			packets = nil
			if json.Unmarshal(p, &packets) != nil {
				continue
			}
		}
		for _, pk := range packets {
			c.packet(sc, pk, evMark)
		}
	}
}

func (c *stormClient) packet(sc *stormConn, pk []byte, evMark []byte) {
	if bytes.Contains(pk, evMark) {
		c.evs.Add(1)
		sc.events.Add(1)
		if !sc.parse {
			return
		}
		var pub struct {
			Data struct {
				Data protocol.PresenceEvent `json:"data"`
			} `json:"data"`
		}
		if json.Unmarshal(pk, &pub) != nil {
			return
		}
		c.parsed.Add(1)
		n := int64(len(pub.Data.Data.Join) + len(pub.Data.Data.Leave))
		for {
			m := c.maxEntries.Load()
			if n <= m || c.maxEntries.CompareAndSwap(m, n) {
				break
			}
		}
		return
	}
	var ack struct {
		RID   int             `json:"rid"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(pk, &ack) != nil || (ack.RID != 2 && ack.RID != 3) {
		return
	}
	if len(ack.Error) > 0 && string(ack.Error) != "null" {
		c.subErrs.Add(1)
	} else {
		c.acked.Add(1)
	}
	if c.pendingAcks.Add(-1) == 0 {
		close(c.allAcked)
	}
}

// runStormClient is a storm client process's main: it reads a
// stormConfig line, opens and handshakes every socket, reports ready,
// waits for "go", subscribes every socket to the channel and its
// companion as fast as it can, waits for "stop" (or the end of stdin),
// and writes its final stormStatus.
func runStormClient(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("storm client: reading config: %w", err)
	}
	var cfg stormConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("storm client: config: %w", err)
	}
	c := &stormClient{cfg: cfg, closed: map[int]int64{}, allAcked: make(chan struct{}), sent: make(chan struct{})}
	for _, s := range cfg.Sources {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("storm client: source %q: %w", s, err)
		}
		c.srcs = append(c.srcs, ip)
	}
	enc := json.NewEncoder(out)
	var encMu sync.Mutex // the acknowledgement report and the final one

	// Open and handshake every socket, 32 at a time.
	c.conns = make([]*stormConn, cfg.Conns)
	var dialErrs atomic.Int64
	var firstErr atomic.Value
	next := atomic.Int64{}
	var dwg sync.WaitGroup
	for range 32 {
		dwg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns {
					return
				}
				sc, err := c.dial(i)
				if err != nil {
					dialErrs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				c.conns[i] = sc
			}
		})
	}
	dwg.Wait()
	live := c.conns[:0:0]
	for _, sc := range c.conns {
		if sc != nil {
			live = append(live, sc)
		}
	}
	c.conns = live
	for _, sc := range c.conns {
		c.wg.Add(1)
		go c.read(sc)
	}
	st := stormStatus{Ready: true, Conns: len(c.conns), DialErrors: int(dialErrs.Load())}
	if e, ok := firstErr.Load().(string); ok {
		st.FirstError = e
	}
	if err := enc.Encode(st); err != nil {
		return err
	}

	var ackMS atomic.Int64
	cmd, _ := br.ReadString('\n')
	if strings.TrimSpace(cmd) == "go" && len(c.conns) > 0 {
		c.pendingAcks.Store(int64(2 * len(c.conns)))
		ch := protocol.AppendString(nil, cfg.Channel)
		comp := protocol.AppendString(nil, protocol.PresenceChannel(cfg.Channel))
		batch := wsframe.AppendText(nil, `[{"event":"#subscribe","data":{"channel":`+string(ch)+`},"cid":2},`+
			`{"event":"#subscribe","data":{"channel":`+string(comp)+`},"cid":3}]`)
		c.going.Store(true)
		start := time.Now()
		senders := max(cfg.Senders, 1)
		var swg sync.WaitGroup
		for g := range senders {
			swg.Go(func() {
				for i := g; i < len(c.conns); i += senders {
					_ = c.conns[i].write(batch)
				}
			})
		}
		swg.Wait()
		st.SendMS = time.Since(start).Milliseconds()
		close(c.sent)
		go func() {
			<-c.allAcked
			ackMS.Store(time.Since(start).Milliseconds())
			encMu.Lock()
			_ = enc.Encode(stormStatus{Conns: len(c.conns), AckMS: ackMS.Load(), Acked: c.acked.Load(), SubErrors: c.subErrs.Load()})
			encMu.Unlock()
		}()
		cmd, _ = br.ReadString('\n')
	}
	_ = cmd // "stop" or the end of stdin
	if !c.going.Load() {
		close(c.sent)
	}
	c.stopping.Store(true)
	for _, sc := range c.conns {
		sc.nc.Close()
	}
	c.wg.Wait()
	st.Ready = false
	st.AckMS = ackMS.Load()
	st.Acked, st.SubErrors, st.Events, st.Parsed, st.MaxEntries = c.acked.Load(), c.subErrs.Load(), c.evs.Load(), c.parsed.Load(), c.maxEntries.Load()
	for _, sc := range c.conns {
		st.MaxEventsPerConn = max(st.MaxEventsPerConn, sc.events.Load())
	}
	c.mu.Lock()
	st.Closed = c.closed
	c.mu.Unlock()
	st.Done = true
	encMu.Lock()
	defer encMu.Unlock()
	return enc.Encode(st)
}

// stormProc is a storm client process started by this test binary.
type stormProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	status chan stormStatus
	done   chan struct{}
}

// startStormClient starts a storm client process for cfg; it is killed
// when t ends if still running.
func startStormClient(t testing.TB, cfg stormConfig) *stormProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), stormEnv+"=1")
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
	p := &stormProc{cmd: cmd, stdin: stdin, status: make(chan stormStatus, 2), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var st stormStatus
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				p.status <- st
			}
		}
	}()
	b, _ := json.Marshal(cfg)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		_ = cmd.Wait()
	})
	return p
}

// next returns the process's next status line, or false after timeout or
// when it exited.
func (p *stormProc) next(timeout time.Duration) (stormStatus, bool) {
	select {
	case st := <-p.status:
		return st, true
	case <-p.done:
		select {
		case st := <-p.status:
			return st, true
		default:
			return stormStatus{}, false
		}
	case <-time.After(timeout):
		return stormStatus{}, false
	}
}

func (p *stormProc) send(line string) { _, _ = io.WriteString(p.stdin, line+"\n") }
