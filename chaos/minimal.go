package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

// MinimalServerEnv, when set in the environment of the chaos test binary,
// makes it run RunMinimalServer instead of the tests.
const MinimalServerEnv = "SCC_CHAOS_MINIMAL_SERVER"

// MinimalConfig bounds a MinimalServer.
type MinimalConfig struct {
	// PingInterval is how often each socket gets a ping (an empty text
	// frame, protocol version 2). Default 8s, as SocketCluster's.
	PingInterval time.Duration
	// PingTimeout, advertised in the handshake reply, closes a socket
	// (4001) on which nothing arrived for that long. Default 30s.
	PingTimeout time.Duration
	// WriteTimeout bounds one frame write; a socket that does not take a
	// frame in time is dropped. Default 10s.
	WriteTimeout time.Duration
	// MaxMessageBytes is the largest inbound message; a larger one closes
	// the socket (1009). Default 256 KiB.
	MaxMessageBytes int64
	// QueuePackets and QueueBytes bound each socket's outbound queue; a
	// socket that overflows either is closed (4010). Defaults 256 (the
	// usual size of a goroutine-per-connection server's send channel) and
	// 4 MiB.
	QueuePackets int
	QueueBytes   int64
	// BatchPackets is the most queued packets written as one array
	// frame. Default 256.
	BatchPackets int
	// MaxSubscriptions is the most channels one socket may hold; more are
	// refused with an error reply. Default 1000.
	MaxSubscriptions int
	// MaxConns is the most sockets open at once; more are refused with
	// 503 before the upgrade. Default 10000.
	MaxConns int64
}

// DefaultMinimalConfig returns the defaults documented on MinimalConfig.
func DefaultMinimalConfig() MinimalConfig {
	return MinimalConfig{
		PingInterval:     8 * time.Second,
		PingTimeout:      30 * time.Second,
		WriteTimeout:     10 * time.Second,
		MaxMessageBytes:  256 << 10,
		QueuePackets:     256,
		QueueBytes:       4 << 20,
		BatchPackets:     256,
		MaxSubscriptions: 1000,
		MaxConns:         10000,
	}
}

// MinimalServer is the smallest SocketCluster-protocol pub/sub server the
// chaos scenarios' clients can use: #handshake, #subscribe, #unsubscribe
// and #publish with local fan-out, version 2 pings, and nothing else (no
// auth, no middleware, no brokers, no rate limits). It is the reference
// against which the frontend's latency under attack is judged: what a
// plain goroutine-per-connection Go server on the same machine holds.
//
// Each socket has one reader (the HTTP handler's goroutine, which owns its
// lifetime) and one writer that alone writes to the WebSocket; publishers
// enqueue the encoded frame on every subscriber's bounded queue without
// blocking. The only shared lock is mu, over the channel map; it is held
// for map changes and non-blocking enqueues, never across I/O.
type MinimalServer struct {
	cfg   MinimalConfig
	conns atomic.Int64
	ids   atomic.Int64

	mu    sync.Mutex
	chans map[string]map[*minimalSocket]struct{}
}

// NewMinimalServer returns a server with cfg; it starts nothing.
func NewMinimalServer(cfg MinimalConfig) *MinimalServer {
	return &MinimalServer{cfg: cfg, chans: map[string]map[*minimalSocket]struct{}{}}
}

// minimalSocket is one client connection.
type minimalSocket struct {
	ws *websocket.Conn
	// out holds encoded packets for the writer; qbytes is their size.
	out    chan []byte
	qbytes atomic.Int64
	// lastRecv is when anything last arrived (unix nanoseconds), for the
	// ping timeout.
	lastRecv atomic.Int64
	// kill is closed, with code set, when the socket must be closed.
	killOnce sync.Once
	kill     chan struct{}
	code     websocket.StatusCode
	// subs is the socket's channels; only the reader touches it.
	subs map[string]struct{}
}

// closeWith asks the writer to close the socket with code. It never
// blocks, so a publisher may call it under mu.
func (sk *minimalSocket) closeWith(code int) {
	sk.killOnce.Do(func() {
		sk.code = websocket.StatusCode(code)
		close(sk.kill)
	})
}

// send enqueues one packet without blocking, closing the socket when its
// queue is full.
func (sk *minimalSocket) send(cfg *MinimalConfig, pkt []byte) {
	if sk.qbytes.Add(int64(len(pkt))) > cfg.QueueBytes {
		sk.qbytes.Add(-int64(len(pkt)))
		sk.closeWith(protocol.CloseSlowConsumer)
		return
	}
	select {
	case sk.out <- pkt:
	default:
		sk.qbytes.Add(-int64(len(pkt)))
		sk.closeWith(protocol.CloseSlowConsumer)
	}
}

// ServeHTTP upgrades the request and serves the socket until it closes.
func (s *MinimalServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.conns.Add(1) > s.cfg.MaxConns {
		s.conns.Add(-1)
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	defer s.conns.Add(-1)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept has answered the request
	}
	ws.SetReadLimit(s.cfg.MaxMessageBytes)
	sk := &minimalSocket{
		ws:   ws,
		out:  make(chan []byte, s.cfg.QueuePackets),
		kill: make(chan struct{}),
		subs: map[string]struct{}{},
	}
	sk.lastRecv.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.write(ctx, sk) })
	s.read(ctx, sk, "m"+strconv.FormatInt(s.ids.Add(1), 10))
	cancel()
	s.unsubscribeAll(sk)
	wg.Wait()
	_ = ws.CloseNow()
}

// read handles inbound messages until the socket fails.
func (s *MinimalServer) read(ctx context.Context, sk *minimalSocket, id string) {
	for {
		typ, msg, err := sk.ws.Read(ctx)
		if err != nil {
			return
		}
		sk.lastRecv.Store(time.Now().UnixNano())
		if typ != websocket.MessageText {
			continue
		}
		msg = bytes.TrimLeft(msg, " \t\r\n")
		if len(msg) == 0 || msg[0] != '{' && msg[0] != '[' {
			continue // a pong ("" or "#2") or a raw string
		}
		var pkts []minimalPacket
		if msg[0] == '[' {
			if json.Unmarshal(msg, &pkts) != nil {
				continue
			}
		} else {
			var p minimalPacket
			if json.Unmarshal(msg, &p) != nil {
				continue
			}
			pkts = append(pkts, p)
		}
		for i := range pkts {
			s.handle(sk, id, &pkts[i])
		}
	}
}

// minimalPacket is an inbound event; CID is nil for a transmit.
type minimalPacket struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	CID   *int64          `json:"cid"`
}

// minimalReply is the response to a packet with a cid.
type minimalReply struct {
	RID   int64         `json:"rid"`
	Data  any           `json:"data,omitempty"`
	Error *minimalError `json:"error,omitempty"`
}

type minimalError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

type minimalHandshake struct {
	ID              string `json:"id"`
	PingTimeout     int64  `json:"pingTimeout"`
	IsAuthenticated bool   `json:"isAuthenticated"`
}

type minimalPublish struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data,omitempty"`
}

type minimalEvent struct {
	Event string         `json:"event"`
	Data  minimalPublish `json:"data"`
}

// handle serves one packet.
func (s *MinimalServer) handle(sk *minimalSocket, id string, p *minimalPacket) {
	var reply minimalReply
	switch p.Event {
	case "#handshake":
		reply.Data = minimalHandshake{ID: id, PingTimeout: s.cfg.PingTimeout.Milliseconds()}
	case "#subscribe":
		var d struct {
			Channel string `json:"channel"`
		}
		if json.Unmarshal(p.Data, &d) != nil || d.Channel == "" {
			reply.Error = &minimalError{Name: "InvalidActionError", Message: "Subscribe channel name was malformatted"}
			break
		}
		if _, ok := sk.subs[d.Channel]; !ok && len(sk.subs) >= s.cfg.MaxSubscriptions {
			reply.Error = &minimalError{Name: "BrokerError", Message: "Socket " + id + " tried to exceed the channel subscription limit"}
			break
		}
		s.subscribe(sk, d.Channel)
	case "#unsubscribe":
		var ch string
		if json.Unmarshal(p.Data, &ch) != nil {
			var d struct {
				Channel string `json:"channel"`
			}
			_ = json.Unmarshal(p.Data, &d)
			ch = d.Channel
		}
		s.unsubscribe(sk, ch)
	case "#publish":
		var d minimalPublish
		if json.Unmarshal(p.Data, &d) != nil || d.Channel == "" {
			reply.Error = &minimalError{Name: "InvalidActionError", Message: "Publish channel name was malformatted"}
			break
		}
		s.publish(d)
	default:
		if p.CID != nil {
			reply.Error = &minimalError{Name: "NoMatchingProcedureError", Message: "No handler for procedure " + p.Event}
		}
	}
	if p.CID == nil {
		return
	}
	reply.RID = *p.CID
	b, err := json.Marshal(reply)
	if err != nil {
		return
	}
	sk.send(&s.cfg, b)
}

func (s *MinimalServer) subscribe(sk *minimalSocket, ch string) {
	if _, ok := sk.subs[ch]; ok {
		return
	}
	sk.subs[ch] = struct{}{}
	s.mu.Lock()
	set := s.chans[ch]
	if set == nil {
		set = map[*minimalSocket]struct{}{}
		s.chans[ch] = set
	}
	set[sk] = struct{}{}
	s.mu.Unlock()
}

func (s *MinimalServer) unsubscribe(sk *minimalSocket, ch string) {
	if _, ok := sk.subs[ch]; !ok {
		return
	}
	delete(sk.subs, ch)
	s.mu.Lock()
	s.removeLocked(sk, ch)
	s.mu.Unlock()
}

// unsubscribeAll drops a closed socket's channels under one lock.
func (s *MinimalServer) unsubscribeAll(sk *minimalSocket) {
	if len(sk.subs) == 0 {
		return
	}
	s.mu.Lock()
	for ch := range sk.subs {
		s.removeLocked(sk, ch)
	}
	s.mu.Unlock()
	clear(sk.subs)
}

func (s *MinimalServer) removeLocked(sk *minimalSocket, ch string) {
	set := s.chans[ch]
	delete(set, sk)
	if len(set) == 0 {
		delete(s.chans, ch)
	}
}

// publish encodes the delivery once and enqueues it on every subscriber.
func (s *MinimalServer) publish(d minimalPublish) {
	b, err := json.Marshal(minimalEvent{Event: "#publish", Data: d})
	if err != nil {
		return
	}
	s.mu.Lock()
	for sk := range s.chans[d.Channel] {
		sk.send(&s.cfg, b)
	}
	s.mu.Unlock()
}

// write is the socket's writer: it writes queued packets, batching what
// is already queued into one array frame, pings every PingInterval and
// closes the socket when asked to or when nothing arrived within
// PingTimeout. It returns when ctx ends (the reader has stopped) or a
// write fails.
func (s *MinimalServer) write(ctx context.Context, sk *minimalSocket) {
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var frame []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-sk.kill:
			_ = sk.ws.Close(sk.code, "")
			return
		case <-ping.C:
			if time.Since(time.Unix(0, sk.lastRecv.Load())) > s.cfg.PingTimeout {
				_ = sk.ws.Close(protocol.ClosePongTimeout, "")
				return
			}
			if !s.writeFrame(ctx, sk, []byte{}) {
				return
			}
		case pkt := <-sk.out:
			// frame is '[' and the packets; one packet goes out without
			// the brackets.
			n, size := 1, int64(len(pkt))
			frame = append(append(frame[:0], '['), pkt...)
		batch:
			for n < s.cfg.BatchPackets {
				select {
				case more := <-sk.out:
					frame = append(append(frame, ','), more...)
					n++
					size += int64(len(more))
				default:
					break batch
				}
			}
			sk.qbytes.Add(-size)
			b := frame[1:]
			if n > 1 {
				frame = append(frame, ']')
				b = frame
			}
			if !s.writeFrame(ctx, sk, b) {
				return
			}
		}
	}
}

// writeFrame writes one text frame within WriteTimeout; on failure it
// closes the connection, which ends the reader.
func (s *MinimalServer) writeFrame(ctx context.Context, sk *minimalSocket, b []byte) bool {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	if err := sk.ws.Write(wctx, websocket.MessageText, b); err != nil {
		_ = sk.ws.CloseNow()
		return false
	}
	return true
}

// RunMinimalServer is a minimal server process's main: it serves a
// MinimalServer with the default limits on 127.0.0.1:0, writes the
// address as one line on out and serves until the process is killed.
func RunMinimalServer(out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("minimal server: listening: %w", err)
	}
	srv := &http.Server{Handler: NewMinimalServer(DefaultMinimalConfig()), ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintln(out, ln.Addr().String()); err != nil {
		return fmt.Errorf("minimal server: writing the address: %w", err)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("minimal server: %w", err)
	}
	return nil
}

// StartMinimalServer starts a minimal server process (the chaos test
// binary with MinimalServerEnv set) and returns its WebSocket URL and
// process id; the process is killed when t ends. A separate process, like
// the frontend's, so it can be pinned and its CPU time read on its own.
func StartMinimalServer(t testing.TB) (url string, pid int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own rather than StdoutPipe: its read end takes a
	// deadline, so a server that never prints fails the test instead of
	// hanging it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), MinimalServerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = w
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.Close()
	})
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("minimal server: reading its address: %v", err)
	}
	return "ws://" + line[:len(line)-1] + "/socketcluster/", cmd.Process.Pid
}
