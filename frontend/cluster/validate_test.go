package cluster

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

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

var testLinkKey = []byte("cluster-test-key")

type recordSink struct {
	mu  sync.Mutex
	got []string
}

func (s *recordSink) Deliver(ch string, data []byte) {
	s.mu.Lock()
	s.got = append(s.got, ch+" "+string(data))
	s.mu.Unlock()
}

func (s *recordSink) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

type ignore struct{}

func (ignore) HandleMessages(*nodelink.Link, []protocol.Message) {}
func (ignore) Closed(*nodelink.Link, error)                      {}

// fakeBroker accepts one frontend link on 127.0.0.1:0 and hands it to the
// test, which writes whatever it likes on it.
func fakeBroker(t *testing.T) (addr string, links <-chan *nodelink.Link) {
	t.Helper()
	return fakeBrokerWith(t, ignore{})
}

// fakeBrokerWith is fakeBroker with h reading every link.
func fakeBrokerWith(t *testing.T, h nodelink.Handler) (addr string, links <-chan *nodelink.Link) {
	t.Helper()
	return fakeBrokerNamed(t, "fake-broker", h)
}

// fakeBrokerNamed is fakeBrokerWith for a broker whose node id is id.
func fakeBrokerNamed(t *testing.T, id string, h nodelink.Handler) (addr string, links <-chan *nodelink.Link) {
	t.Helper()
	ch := make(chan *nodelink.Link, 4)
	cfg := nodelink.DefaultConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = id, protocol.RoleBroker, testLinkKey
	mux := http.NewServeMux()
	mux.HandleFunc(nodelink.Path, func(w http.ResponseWriter, r *http.Request) {
		l, err := nodelink.Accept(w, r, cfg, nil, nil)
		if err != nil {
			return
		}
		ch <- l
		_ = l.Run(h)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), ch
}

func counterValue(t *testing.T, c *prometheus.CounterVec, label string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(label).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestBrokerDeliveriesAreValidated: a broker that forwards bytes that are
// not UTF-8 or not JSON reaches no subscriber, and each such publication is
// counted once.
func TestBrokerDeliveriesAreValidated(t *testing.T) {
	addr, links := fakeBroker(t)
	cfg := DefaultConfig()
	cfg.Link = nodelink.DefaultConfig()
	cfg.Link.NodeID, cfg.Link.Role, cfg.Link.AuthKey = "frontend-1", protocol.RoleFrontend, testLinkKey
	cfg.Registry = prometheus.NewRegistry()
	b := New(cfg)
	sink := &recordSink{}
	if err := b.Start(context.Background(), sink); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Commit(protocol.Ring{Version: 1, Brokers: []protocol.BrokerInfo{{ID: "fake-broker", Addr: addr}}})
	var l *nodelink.Link
	select {
	case l = <-links:
	case <-time.After(10 * time.Second):
		t.Fatal("the frontend did not link to the broker")
	}

	var frame []byte
	for _, data := range []string{
		`{"n":1}`,
		"\"\xff\xfe\"",               // a JSON string, but not UTF-8
		`{"n":`,                      // truncated
		`{"a":1}{"b":2}`,             // two values
		`"closing</script>` + "\x00", // raw control byte
		``,                           // a publish without data
		`"ok"`,
	} {
		frame = protocol.AppendDeliverMsg(frame, "room", []byte(data))
	}
	if !l.SendRaw(frame) {
		t.Fatal("send failed")
	}
	want := []string{`room {"n":1}`, `room `, `room "ok"`}
	waitFor(t, "the valid deliveries", func() bool { return len(sink.snapshot()) >= len(want) })
	// A last valid delivery fences the check: nothing invalid arrives
	// after everything before it was handled.
	if !l.SendRaw(protocol.AppendDeliverMsg(nil, "room", []byte(`"end"`))) {
		t.Fatal("send failed")
	}
	want = append(want, `room "end"`)
	waitFor(t, "the last delivery", func() bool { return len(sink.snapshot()) >= len(want) })
	got := sink.snapshot()
	if len(got) != len(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	}
	if n := counterValue(t, b.m.deliveryDrops, protocol.InvalidUTF8); n != 1 {
		t.Fatalf("invalid_utf8 drops = %v, want 1", n)
	}
	if n := counterValue(t, b.m.deliveryDrops, protocol.InvalidJSON); n != 3 {
		t.Fatalf("invalid_json drops = %v, want 3", n)
	}
	if err := b.Close(); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}
