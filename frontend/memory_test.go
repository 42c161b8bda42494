package frontend

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

var memConns = flag.Int("memconns", 0, "TestIdleMemory: number of idle subscribed connections to open (0 skips)")
var memDetach = flag.Duration("memdetach", 1, "TestIdleMemory: Config.IdleDetach (0 keeps every socket's WebSocket state)")

// TestIdleMemory measures the server's memory per idle subscribed
// connection. The clients run in a child process so that only the server's
// memory is counted. Run by hand:
//
//	go test ./frontend -run TestIdleMemory -memconns=10000 -v
func TestIdleMemory(t *testing.T) {
	if *memConns <= 0 {
		t.Skip("set -memconns=N to measure")
	}
	if os.Getenv("FRONTEND_MEM_HEAPPROFILE") != "" {
		// Every allocation sampled, so the profile's figures are exact.
		runtime.MemProfileRate = 1
	}
	cfg := testConfig()
	cfg.PingInterval = 8 * time.Second
	cfg.IdleDetach = *memDetach
	srv := startServer(t, cfg)

	before := memSnapshot()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryClientProcess$")
	cmd.Env = append(os.Environ(), "FRONTEND_MEMCLIENT_URL="+wsURL(srv), "FRONTEND_MEMCLIENT_N="+strconv.Itoa(*memConns))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
		waitFor(t, 30*time.Second, "connections to close", func() bool { return srv.Stats().Connections == 0 })
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatalf("client process: %s", line)
		}
		if line == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("client process ended before it was ready")
	}
	n := int64(*memConns)
	waitFor(t, 30*time.Second, "subscriptions", func() bool { return srv.Stats().Subscriptions == n })
	// Once every socket is parked (and detached, when sockets detach),
	// measure: first as the process stands (the collector has run only
	// when the heap called for it), then after forced collections.
	if srv.poller.Load() != nil {
		waitFor(t, 30*time.Second, "every socket parked", func() bool { return srv.parkedN.Load() == n })
		if cfg.IdleDetach > 0 {
			waitFor(t, 30*time.Second, "every socket detached", func() bool { return srv.detachedN.Load() == n })
		}
	}
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	liveRSS := vmRSS()
	after := memSnapshot()
	if os.Getenv("FRONTEND_MEM_STACKS") != "" {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "WaitReadable") {
				t.Logf("idle reader:\n%s", g)
				break
			}
		}
	}
	if path := os.Getenv("FRONTEND_MEM_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	t.Logf("%d idle subscribed connections, no forced GC: RSS %.0f B/conn, heap in use %.0f B/conn, stacks %.0f B/conn",
		n, per(liveRSS, before.rss), per(live.HeapInuse, before.heap), per(live.StackInuse, before.stack))
	t.Logf("%d idle subscribed connections, after forced GC: RSS %.0f B/conn, heap in use %.0f B/conn, stacks %.0f B/conn, goroutines %d → %d",
		n, per(after.rss, before.rss), per(after.heap, before.heap), per(after.stack, before.stack), before.goroutines, after.goroutines)
}

type memStats struct {
	rss, heap, stack uint64
	goroutines       int
}

func memSnapshot() memStats {
	// Several cycles: each one at most halves an idle goroutine's stack.
	for range 6 {
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memStats{rss: vmRSS(), heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// TestMemoryClientProcess is the client side of TestIdleMemory, run in a
// child process: it opens N subscribed connections from several loopback
// source addresses, answers pings, prints "ready" and holds them until
// stdin closes.
func TestMemoryClientProcess(t *testing.T) {
	url := os.Getenv("FRONTEND_MEMCLIENT_URL")
	if url == "" {
		t.Skip("helper process for TestIdleMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("FRONTEND_MEMCLIENT_N"))
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, n)
	errc := make(chan error, 1)
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src}).DialContext}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			conns[i] = ws
			ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{"authToken":null},"cid":1}`))
			ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"event":"#subscribe","data":{"channel":"idle-%d"},"cid":2}`, i)))
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				if strings.Contains(string(b), `"rid":2`) {
					break
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		fmt.Println("error", err)
		return
	default:
	}
	var readers sync.WaitGroup
	for _, ws := range conns {
		readers.Go(func() {
			for {
				_, b, err := ws.Read(context.Background())
				if err != nil {
					return
				}
				if len(b) == 0 {
					ws.Write(context.Background(), websocket.MessageText, nil)
				}
			}
		})
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, ws := range conns {
		ws.CloseNow()
	}
	readers.Wait()
}
