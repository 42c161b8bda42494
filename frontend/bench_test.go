package frontend

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkFanout measures one publish delivered to N subscribers over
// real loopback WebSocket connections: Deliver encodes the frame once and
// queues it to every socket, and each writer batches whatever is queued
// into one frame. The subscribers run in a child process (10000 sockets
// need 20000 descriptors in one process, the limit here) and report how
// many #publish packets they have received; the publisher keeps at most a
// window of messages in flight. ns/op is wall time per publish including
// its delivery; msgs/s counts delivered packets.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.QueueMaxMessages = 1 << 16
	cfg.QueueMaxBytes = 16 << 20
	srv := startServer(b, cfg)

	received, stop := startFanoutClients(b, srv, n)
	defer stop()
	waitFor(b, 30*time.Second, "subscriptions", func() bool { return srv.Stats().Subscriptions == int64(n) })

	data := []byte(`{"text":"hello subscribers","seq":12345}`)
	// In flight per subscriber: well below the queue bound, so nobody is
	// closed as a slow consumer.
	window := int64(min(cfg.QueueMaxMessages/4, max(16, 200000/n))) * int64(n)
	sent := int64(0)
	st0 := srv.Stats()
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		srv.Deliver("bench", data)
		sent += int64(n)
		for wait := 0; sent-received.Load() > window; wait++ {
			if wait > 500000 {
				b.Fatalf("stalled: sent %d, received %d, %+v", sent, received.Load(), srv.Stats())
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for received.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
	elapsed := time.Since(start)
	if got := received.Load(); got < sent {
		b.Fatalf("received %d of %d", got, sent)
	}
	st := srv.Stats()
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.MessagesOut-st0.MessagesOut)/float64(max(st.FramesOut-st0.FramesOut, 1)), "pkts/frame")
}

// startFanoutClients runs n subscribers of channel "bench" against srv
// in a child process (TestFanoutClientProcess) and returns the count of
// #publish packets they have received, kept current, and a func that
// ends the process.
func startFanoutClients(b *testing.B, srv *Server, n int) (received *atomic.Int64, stop func()) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFanoutClientProcess$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "FRONTEND_FANOUT_URL="+wsURL(srv), "FRONTEND_FANOUT_N="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	received = new(atomic.Int64)
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				ready <- nil
			case strings.HasPrefix(line, "error"):
				ready <- fmt.Errorf("client process: %s", line)
			case strings.HasPrefix(line, "n "):
				v, _ := strconv.ParseInt(line[2:], 10, 64)
				received.Store(v)
			}
		}
	}()
	stop = func() {
		stdin.Close()
		cmd.Wait()
		<-done
	}
	if err := <-ready; err != nil {
		stop()
		b.Fatal(err)
	}
	return received, stop
}

// TestFanoutClientProcess is the subscriber side of BenchmarkFanout, run
// in a child process.
func TestFanoutClientProcess(t *testing.T) {
	url := os.Getenv("FRONTEND_FANOUT_URL")
	if url == "" {
		t.Skip("helper process for BenchmarkFanout")
	}
	n, _ := strconv.Atoi(os.Getenv("FRONTEND_FANOUT_N"))
	ctx := context.Background()
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src}).DialContext}
			ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				failed.Store(err.Error())
				return
			}
			ws.SetReadLimit(-1)
			conns[i] = ws
			ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{},"cid":1}`))
			ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#subscribe","data":{"channel":"bench"},"cid":2}`))
			for {
				_, m, err := ws.Read(ctx)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				if strings.Contains(string(m), `"rid":2`) {
					return
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		fmt.Println("error", f)
		return
	}
	var count atomic.Int64
	var readers sync.WaitGroup
	for _, ws := range conns {
		readers.Go(func() {
			for {
				_, m, err := ws.Read(ctx)
				if err != nil {
					return
				}
				if len(m) == 0 {
					ws.Write(ctx, websocket.MessageText, nil)
					continue
				}
				count.Add(int64(strings.Count(string(m), `"#publish"`)))
			}
		})
	}
	fmt.Println("ready")
	stop := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	last := int64(-1)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			for _, ws := range conns {
				ws.CloseNow()
			}
			readers.Wait()
			return
		case <-tick.C:
			if v := count.Load(); v != last {
				fmt.Printf("n %d\n", v)
				last = v
			}
		}
	}
}
