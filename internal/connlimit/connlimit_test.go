package connlimit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, cfg Config) (*Listener, *Metrics, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry(), "test")
	l := Wrap(ln, cfg, m, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	unblock := make(chan struct{})
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) { <-unblock })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	l.Install(hs, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(l)
	}()
	t.Cleanup(func() {
		close(unblock)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		hs.Close()
		<-done
	})
	return l, m, ln.Addr().String()
}

func drops(t *testing.T, m *Metrics, reason string) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Drops.WithLabelValues(reason).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}

// get sends one request on a new connection and returns the status line
// and the connection (kept open: the response may keep it alive).
func get(t *testing.T, addr, path string) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "error: " + err.Error(), c
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Status, c
}

func TestIdleConnectionsAreEvictedForNewOnes(t *testing.T) {
	l, m, addr := serve(t, Config{Max: 10, Reserve: 2, IdleTimeout: time.Minute})
	var conns []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitFor(t, "10 open", func() bool { return l.Open() == 10 })
	// Full of silent connections: a new client still gets served, and the
	// oldest silent one goes.
	if st, _ := get(t, addr, "/app"); st != "200 OK" {
		t.Fatalf("new client at the cap: %s", st)
	}
	if l.Open() > 10 {
		t.Fatalf("open %d over the cap", l.Open())
	}
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("oldest idle connection not closed")
	}
	if drops(t, m, ReasonIdleEvicted) < 1 {
		t.Fatal("eviction not counted")
	}
}

func TestReserveAnswersOnlyAdminPaths(t *testing.T) {
	l, m, addr := serve(t, Config{Max: 3, Reserve: 1, IdleTimeout: time.Minute})
	// Three connections with a request in progress: not idle.
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitFor(t, "3 open", func() bool { return l.Open() == 3 })
	waitFor(t, "none idle", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.idle.Len() == 0
	})
	if st, _ := get(t, addr, "/healthz"); st != "200 OK" {
		t.Fatalf("/healthz on the reserve: %s", st)
	}
	waitFor(t, "reserve freed", func() bool { return l.Open() == 3 })
	if st, _ := get(t, addr, "/app"); !strings.HasPrefix(st, "503") {
		t.Fatalf("/app on the reserve: %s", st)
	}
	if drops(t, m, ReasonReserved) != 1 {
		t.Fatal("reserved refusal not counted")
	}
}

func TestOverLimitGets503(t *testing.T) {
	l, m, addr := serve(t, Config{Max: 3, Reserve: 0, IdleTimeout: time.Minute})
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitFor(t, "3 busy", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.open == 3 && l.idle.Len() == 0
	})
	if st, _ := get(t, addr, "/healthz"); !strings.HasPrefix(st, "503") {
		t.Fatalf("over the cap: %s", st)
	}
	if drops(t, m, ReasonOverLimit) != 1 {
		t.Fatal("over-limit refusal not counted")
	}
	if l.Open() != 3 {
		t.Fatalf("open %d", l.Open())
	}
}

func TestIdleTimeoutClosesKeepAlive(t *testing.T) {
	l, _, addr := serve(t, Config{Max: 100, IdleTimeout: 200 * time.Millisecond})
	st, c := get(t, addr, "/app")
	if st != "200 OK" {
		t.Fatal(st)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("keep-alive connection not closed by the idle timeout")
	}
	waitFor(t, "released", func() bool { return l.Open() == 0 })
}

func TestCapFor(t *testing.T) {
	for _, tc := range []struct{ nofile, reserve, want int }{
		{1024, 16, 1024 - 102 - 16},
		{20000, 16, 20000 - 2000 - 16},
		{256, 16, 256 - 64 - 16},
		{50, 16, 1},
	} {
		if got := capFor(tc.nofile, tc.reserve); got != tc.want {
			t.Errorf("capFor(%d, %d) = %d, want %d", tc.nofile, tc.reserve, got, tc.want)
		}
	}
	if DefaultMax(16) < 1 {
		t.Fatal("DefaultMax below 1")
	}
}
