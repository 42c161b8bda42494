package nodelink

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

var testKey = []byte("secret")

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 5*time.Second, what, cond)
}

func testConfig(id, role string, reg *prometheus.Registry) Config {
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = id, role, testKey
	cfg.Metrics = NewMetrics(reg, role)
	return cfg
}

type rec struct {
	t    protocol.MsgType
	body []byte
}

// recorder is a Handler that keeps copies of what it got.
type recorder struct {
	mu     sync.Mutex
	msgs   map[*Link][]rec
	frames map[*Link]int
	closed map[*Link]error
}

func newRecorder() *recorder {
	return &recorder{msgs: map[*Link][]rec{}, frames: map[*Link]int{}, closed: map[*Link]error{}}
}

func (r *recorder) HandleMessages(l *Link, msgs []protocol.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames[l]++
	for _, m := range msgs {
		r.msgs[l] = append(r.msgs[l], rec{m.Type, append([]byte(nil), m.Body...)})
	}
}

func (r *recorder) Closed(l *Link, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.closed[l]; dup {
		panic("Closed called twice")
	}
	r.closed[l] = err
}

func (r *recorder) got(l *Link) []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rec(nil), r.msgs[l]...)
}

func (r *recorder) all() []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rec
	for _, m := range r.msgs {
		out = append(out, m...)
	}
	return out
}

func (r *recorder) closeErr(l *Link) (error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err, ok := r.closed[l]
	return err, ok
}

// testServer accepts links and runs them with a recorder.
type testServer struct {
	cfg   Config
	reg   *prometheus.Registry
	allow func(Peer) error
	seeds []string
	h     *recorder
	ln    net.Listener
	srv   *http.Server
	wg    sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	links   []*Link
	errs    []error
}

func startServer(t *testing.T, addr string, mod func(*Config)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := &testServer{cfg: testConfig("server-1", protocol.RoleBroker, reg), reg: reg, h: newRecorder(), seeds: []string{"10.0.0.1:7946"}}
	if mod != nil {
		mod(&s.cfg)
	}
	s.listen(t, addr)
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.mu.Lock()
	s.stopped = false
	s.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		l, err := Accept(w, r, s.cfg, s.allow, s.seeds)
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, err)
		} else if s.stopped {
			l.Close(ReasonShutdown) // accepted while stopping
		} else {
			s.links = append(s.links, l)
		}
		s.mu.Unlock()
		if err == nil {
			_ = l.Run(s.h)
		}
	})
	s.srv = &http.Server{Handler: mux}
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) stop() {
	_ = s.srv.Close()
	s.mu.Lock()
	links := s.links
	s.links = nil
	s.stopped = true
	s.mu.Unlock()
	for _, l := range links {
		l.Close(ReasonShutdown)
	}
	s.wg.Wait()
}

func (s *testServer) accepted() []*Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Link(nil), s.links...)
}

func (s *testServer) rejects(reason string) float64 {
	return counterValue(s.cfg.Metrics.Rejects.WithLabelValues(reason))
}

// runLink runs l with h in a goroutine the test waits for.
func runLink(t *testing.T, l *Link, h Handler) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Run(h)
	}()
	t.Cleanup(func() {
		l.Close(ReasonShutdown)
		<-done
	})
}

func dial(t *testing.T, addr string, cfg Config) *Link {
	t.Helper()
	l, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func isReject(err error, reason string) bool {
	var re *RejectError
	return errors.As(err, &re) && re.Reason == reason
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
