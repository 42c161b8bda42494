package broker

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"

	"github.com/sccgo/sccgo/internal/testwait"
)

var testKey = []byte("broker-test-key")

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 5*time.Second, what, cond)
}

type testBroker struct {
	*Server
	reg        *prometheus.Registry
	listenAddr string
}

// startBroker runs a standalone broker on 127.0.0.1:0.
func startBroker(t testing.TB, mod func(*Config)) *testBroker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = "broker-1"
	cfg.AuthKey = testKey
	cfg.GossipPort = -1
	cfg.Registry = prometheus.NewRegistry()
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testBroker{Server: s, reg: cfg.Registry, listenAddr: ln.Addr().String()}
}

func (b *testBroker) addr() string { return b.listenAddr }

// metric returns the value of the series name{labels} (0 if absent).
func (b *testBroker) metric(name string, labels ...string) float64 {
	mfs, err := b.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

type delivery struct {
	ch   string
	data string
}

// fakeFE is a frontend end of a link that records what the broker sends.
type fakeFE struct {
	t  testing.TB
	l  *nodelink.Link
	id string

	mu        sync.Mutex
	events    []protocol.MsgType
	delivers  []delivery
	pubAcks   []uint64
	subAcks   []uint64
	closed    bool
	seq       uint64
	nextSub   uint64
	nDeliver  int
	countOnly bool // benchmarks: count Delivers, keep nothing
	histories []protocol.HistoryReply
}

func feConfig(id string) nodelink.Config {
	cfg := nodelink.DefaultConfig()
	cfg.NodeID, cfg.Role, cfg.AuthKey = id, protocol.RoleFrontend, testKey
	return cfg
}

// dialFE connects and starts the link's loops; Run starts after queued
// pre-sends, see dialFEWith.
func dialFE(t testing.TB, addr, id string) *fakeFE {
	t.Helper()
	return dialFEWith(t, addr, id, nil)
}

// dialFEWith connects, lets pre enqueue messages before the writer starts
// (so they go out in one frame), then runs the link.
func dialFEWith(t testing.TB, addr, id string, pre func(f *fakeFE)) *fakeFE {
	t.Helper()
	l, err := nodelink.Dial(context.Background(), addr, feConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFE{t: t, l: l, id: id}
	if pre != nil {
		pre(f)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Run(f)
	}()
	t.Cleanup(func() {
		l.Close("test")
		<-done
	})
	return f
}

func (f *fakeFE) HandleMessages(_ *nodelink.Link, msgs []protocol.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.events = append(f.events, m.Type)
		switch m.Type {
		case protocol.MsgDeliver:
			f.nDeliver++
			if f.countOnly {
				break
			}
			ch, data, err := protocol.ParseDeliver(m.Body)
			if err != nil {
				panic(err)
			}
			f.delivers = append(f.delivers, delivery{ch, string(data)})
		case protocol.MsgPubAck:
			seq, err := protocol.ParsePubAck(m.Body)
			if err != nil {
				panic(err)
			}
			f.pubAcks = append(f.pubAcks, seq)
		case protocol.MsgHistoryReply:
			var r protocol.HistoryReply
			if err := m.Decode(&r); err != nil {
				panic(err)
			}
			f.histories = append(f.histories, r)
		case protocol.MsgSubAck:
			var a protocol.SubAck
			if err := m.Decode(&a); err != nil {
				panic(err)
			}
			f.subAcks = append(f.subAcks, a.ID)
		}
	}
}

func (f *fakeFE) Closed(*nodelink.Link, error) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

func (f *fakeFE) send(t protocol.MsgType, body any) {
	f.t.Helper()
	if err := f.l.Send(t, body); err != nil {
		f.t.Fatal(err)
	}
}

// subscribe sends Subscribe and returns its ID.
func (f *fakeFE) subscribe(chans ...string) uint64 {
	f.mu.Lock()
	f.nextSub++
	id := f.nextSub
	f.mu.Unlock()
	f.send(protocol.MsgSubscribe, protocol.Subscribe{ID: id, Channels: chans})
	return id
}

func (f *fakeFE) syncChans(chans ...string) uint64 {
	f.mu.Lock()
	f.nextSub++
	id := f.nextSub
	f.mu.Unlock()
	f.send(protocol.MsgSync, protocol.Sync{ID: id, Channels: chans})
	return id
}

// subscribeWait subscribes and waits for the SubAck.
func (f *fakeFE) subscribeWait(chans ...string) {
	f.t.Helper()
	id := f.subscribe(chans...)
	f.waitSubAck(id)
}

func (f *fakeFE) waitSubAck(id uint64) {
	f.t.Helper()
	waitFor(f.t, "suback", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.subAcks) > 0 && f.subAcks[len(f.subAcks)-1] >= id
	})
}

// publish sends one Publish with the next Seq and returns it.
func (f *fakeFE) publish(ch, data string) uint64 {
	f.t.Helper()
	f.mu.Lock()
	f.seq++
	seq := f.seq
	f.mu.Unlock()
	if !f.l.SendRaw(protocol.AppendPublishMsg(nil, seq, ch, []byte(data))) {
		f.t.Fatal("publish dropped")
	}
	return seq
}

func (f *fakeFE) lastPubAck() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pubAcks) == 0 {
		return 0
	}
	return f.pubAcks[len(f.pubAcks)-1]
}

func (f *fakeFE) got() []delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivery(nil), f.delivers...)
}

func (f *fakeFE) gotOn(ch string) []string {
	var out []string
	for _, d := range f.got() {
		if d.ch == ch {
			out = append(out, d.data)
		}
	}
	return out
}
