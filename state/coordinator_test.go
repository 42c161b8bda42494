package state

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// fakeConn records what the coordinator sends to one node.
type fakeConn struct {
	id, role string
	h        *harness
	prepare  bool // answer Prepare with Prepared at once

	mu     sync.Mutex
	msgs   []sentMsg
	closed string
}

type sentMsg struct {
	t    protocol.MsgType
	ring protocol.Ring // Ring, Prepare, Commit
	v    uint64        // Released
	at   time.Time
}

func (s sentMsg) String() string {
	switch s.t {
	case protocol.MsgReleased:
		return fmt.Sprintf("released v%d", s.v)
	}
	return fmt.Sprintf("%v %s", s.t, ringString(s.ring))
}

func (f *fakeConn) Send(t protocol.MsgType, body any) error {
	m := sentMsg{t: t, at: time.Now()}
	switch b := body.(type) {
	case *protocol.Ring:
		m.ring = cloneRing(*b)
	case *protocol.Prepare:
		m.ring = cloneRing(b.Ring)
	case *protocol.Commit:
		m.ring = cloneRing(b.Ring)
	case *protocol.Released:
		m.v = b.Version
	default:
		panic(fmt.Sprintf("unexpected body %T", body))
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
	if t == protocol.MsgPrepare && f.prepare {
		f.h.co.prepared(f, m.ring.Version)
	}
	return nil
}

func (f *fakeConn) Close(reason string) error {
	f.mu.Lock()
	f.closed = reason
	f.mu.Unlock()
	return nil
}

func (f *fakeConn) sent() []sentMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

// log renders what f got, one message per item.
func (f *fakeConn) log() string {
	var parts []string
	for _, m := range f.sent() {
		parts = append(parts, m.String())
	}
	return strings.Join(parts, "; ")
}

// of returns the messages of type t.
func (f *fakeConn) of(t protocol.MsgType) []sentMsg {
	var out []sentMsg
	for _, m := range f.sent() {
		if m.t == t {
			out = append(out, m)
		}
	}
	return out
}

type harness struct {
	t  *testing.T
	co *coordinator
	m  *metrics
}

func testCfg() Config {
	c := DefaultConfig()
	c.MaxSeeds = 4
	return c
}

// newHarness starts a coordinator inside the current synctest bubble.
func newHarness(t *testing.T, cfg Config) *harness {
	m := newMetrics(nil)
	h := &harness{t: t, co: newCoordinator(cfg, nil, m), m: m}
	h.co.log = discardLogger()
	go h.co.run()
	t.Cleanup(h.co.stop)
	return h
}

func (h *harness) connect(id, role string, opts ...func(*nodelink.Peer)) *fakeConn {
	c := &fakeConn{id: id, role: role, h: h, prepare: true}
	p := nodelink.Peer{NodeID: id, Role: role, GossipAddr: id + ":7946"}
	if role == protocol.RoleBroker {
		p.Addr = id + ":8888"
	}
	for _, o := range opts {
		o(&p)
	}
	h.co.connect(c, p)
	synctest.Wait()
	return c
}

func withVersion(v uint64) func(*nodelink.Peer) { return func(p *nodelink.Peer) { p.RingVersion = v } }
func draining(p *nodelink.Peer)                 { p.Draining = true }

func (h *harness) disconnect(c *fakeConn) {
	h.co.disconnect(c)
	synctest.Wait()
}

// sleep advances the bubble's clock by d and lets everything settle.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func mkRing(v uint64, ids ...string) protocol.Ring {
	r := protocol.Ring{Version: v}
	for _, id := range ids {
		r.Brokers = append(r.Brokers, protocol.BrokerInfo{ID: id, Addr: id + ":8888"})
	}
	return r
}

// wantLog checks the messages a node got, rendered as by fakeConn.log.
func wantLog(t *testing.T, c *fakeConn, want string) {
	t.Helper()
	if got := c.log(); got != want {
		t.Fatalf("%s got:\n  %s\nwant:\n  %s", c.id, got, want)
	}
}

const (
	B = protocol.RoleBroker
	F = protocol.RoleFrontend
)

// startCluster connects brokers and one frontend and passes the startup
// delay.
func startCluster(t *testing.T, cfg Config, brokers ...string) (*harness, *fakeConn, map[string]*fakeConn) {
	h := newHarness(t, cfg)
	bs := map[string]*fakeConn{}
	for _, id := range brokers {
		bs[id] = h.connect(id, B)
	}
	f := h.connect("f1", F)
	sleep(cfg.StartupDelay)
	return h, f, bs
}

func TestStartupFreshCommitsConnectedBrokers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		b1 := h.connect("b1", B)
		f := h.connect("f1", F)
		sleep(4 * time.Second)
		b2 := h.connect("b2", B)
		if len(f.sent()) != 0 {
			t.Fatalf("sent during startup: %s", f.log())
		}
		sleep(time.Second)
		wantLog(t, f, "commit v1[b1,b2]")
		wantLog(t, b1, "commit v1[b1,b2]")
		wantLog(t, b2, "commit v1[b1,b2]")
		if got := value(h.m.reshards.WithLabelValues(resultDirect)); got != 1 {
			t.Fatalf("direct commits = %v", got)
		}
		// A node that connects now gets the ring.
		f2 := h.connect("f2", F)
		wantLog(t, f2, "ring v1[b1,b2]")
	})
}

func TestStartupWithoutBrokersWaitsForJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg())
		wantLog(t, f, "")
		h.connect("b1", B)
		sleep(4900 * time.Millisecond)
		wantLog(t, f, "")
		sleep(100 * time.Millisecond)
		wantLog(t, f, "prepare v1[b1]; commit v1[b1]")
	})
}

func TestJoinAfterScaleOutDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1")
		start := time.Now()
		b2 := h.connect("b2", B)
		wantLog(t, b2, "ring v1[b1]")
		sleep(4999 * time.Millisecond)
		wantLog(t, f, "commit v1[b1]")
		sleep(time.Millisecond)
		wantLog(t, f, "commit v1[b1]; prepare v2[b1,b2]; commit v2[b1,b2]")
		if d := f.of(protocol.MsgPrepare)[0].at.Sub(start); d != 5*time.Second {
			t.Fatalf("prepare after %v", d)
		}
		wantLog(t, bs["b1"], "commit v1[b1]; commit v2[b1,b2]")
		wantLog(t, b2, "ring v1[b1]; commit v2[b1,b2]")
		if got := value(h.m.reshards.WithLabelValues(resultOK)); got != 1 {
			t.Fatalf("ok reshards = %v", got)
		}
	})
}

func TestJoinThenDropBeforeDelayDoesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1")
		b2 := h.connect("b2", B)
		sleep(2 * time.Second)
		h.disconnect(b2)
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1]")
	})
}

func TestLeaveAfterScaleBackDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.disconnect(bs["b2"])
		sleep(999 * time.Millisecond)
		wantLog(t, f, "commit v1[b1,b2]")
		sleep(time.Millisecond)
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
		// b2 is gone from the status once the drain is over.
		sleep(2 * time.Second)
		st := status(t, h)
		if len(st.Members) != 2 || st.Ring.Version != 2 {
			t.Fatalf("status %+v", st)
		}
	})
}

// Brokers that fail together leave in one reshard: a ring that still
// held the others would make every frontend wait out its timeouts on
// their links before the next reshard.
func TestBrokersFailingTogetherLeaveInOneReshard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2", "b3", "b4")
		h.disconnect(bs["b2"])
		sleep(20 * time.Millisecond)
		h.disconnect(bs["b3"])
		sleep(time.Second)
		wantLog(t, f, "commit v1[b1,b2,b3,b4]; prepare v2[b1,b4]; commit v2[b1,b4]")
	})
}

// A broker that failed well after another keeps its own grace: it is not
// taken out with the first.
func TestLaterFailureKeepsItsGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2", "b3")
		h.disconnect(bs["b2"])
		sleep(700 * time.Millisecond)
		h.disconnect(bs["b3"]) // leave due at +1.7s, past half the delay
		sleep(400 * time.Millisecond)
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b3]; commit v2[b1,b3]")
		h.connect("b3", B) // back within its own delay
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b3]; commit v2[b1,b3]")
	})
}

func TestReconnectBeforeLeaveTimerKeepsRing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.disconnect(bs["b2"])
		sleep(500 * time.Millisecond)
		b2 := h.connect("b2", B)
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1,b2]")
		wantLog(t, b2, "ring v1[b1,b2]")
	})
}

// A join and a leave of different brokers each run on their own timer.
func TestJoinAndLeaveDoNotCancelEachOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.connect("b3", B) // join due at +5s
		sleep(500 * time.Millisecond)
		h.disconnect(bs["b2"]) // leave due at +1.5s
		sleep(time.Second)
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
		sleep(3500 * time.Millisecond) // +5s
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]; prepare v3[b1,b3]; commit v3[b1,b3]")
	})
}

// Changes that fire while a reshard runs are merged into the next one,
// which starts after the drain window.
func TestReshardsSerializedAndMerged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2", "b3")
		f.prepare = false
		h.disconnect(bs["b3"])
		sleep(time.Second) // prepare v2 [b1,b2], waiting for f1
		h.disconnect(bs["b2"])
		b4 := h.connect("b4", B)
		_ = b4
		sleep(time.Second) // b2's leave timer fired during the prepare
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b2]")
		h.co.prepared(f, 2)
		synctest.Wait()
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b2]; commit v2[b1,b2]")
		sleep(2 * time.Second) // drain window, then the next reshard
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b2]; commit v2[b1,b2]; prepare v3[b1]")
		h.co.prepared(f, 3)
		sleep(5 * time.Second) // b4's join (due at +6s) follows after v3's drain
		wantLog(t, f, "commit v1[b1,b2,b3]; prepare v2[b1,b2]; commit v2[b1,b2]; prepare v3[b1]; commit v3[b1]; prepare v4[b1,b4]")
	})
}

func TestVersionMonotonicAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		b1 := h.connect("b1", B, withVersion(41))
		h.co.reportRing(b1, mkRing(41, "b1", "b2"))
		f := h.connect("f1", F, withVersion(41))
		h.co.reportRing(f, mkRing(41, "b1", "b2"))
		b2 := h.connect("b2", B, withVersion(40))
		sleep(5 * time.Second)
		// Same brokers as the nodes hold: committed directly above 41.
		wantLog(t, f, "commit v42[b1,b2]")
		wantLog(t, b2, "commit v42[b1,b2]")
	})
}

func TestRestartWithMissingBrokerReshards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		f := h.connect("f1", F, withVersion(7))
		h.co.reportRing(f, mkRing(7, "b1", "b2"))
		h.connect("b1", B, withVersion(7))
		h.connect("b3", B) // new broker, not in the ring
		sleep(5 * time.Second)
		wantLog(t, f, "prepare v8[b1,b3]; commit v8[b1,b3]")
	})
}

// A restart whose startup delay ends before any broker is back (a node
// reported the ring, its brokers redial late): the first ring broker to
// return triggers the reshard that leaves out the one that never does.
func TestRestartWithBrokersBackAfterStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		f := h.connect("f1", F, withVersion(7))
		h.co.reportRing(f, mkRing(7, "b1", "b2"))
		sleep(5 * time.Second)
		wantLog(t, f, "")
		h.connect("b1", B, withVersion(7))
		synctest.Wait()
		wantLog(t, f, "prepare v8[b1]; commit v8[b1]")
	})
}

// With no startup delay, a ring a node reports later is adopted rather
// than replaced by one built from scratch.
func TestAdoptsReportedRingAfterStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testCfg()
		cfg.StartupDelay = 0
		h := newHarness(t, cfg)
		b1 := h.connect("b1", B, withVersion(5))
		h.co.reportRing(b1, mkRing(5, "b1", "b2"))
		f := h.connect("f1", F, withVersion(5))
		synctest.Wait()
		wantLog(t, f, "ring v5[b1,b2]")
		// b2 never came back: removed after the scale-back delay.
		sleep(time.Second)
		wantLog(t, f, "ring v5[b1,b2]; prepare v6[b1]; commit v6[b1]")
	})
}

func TestPrepareTimeoutCommitsAnyway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1")
		f.prepare = false
		f2 := h.connect("f2", F)
		h.connect("b2", B)
		sleep(5 * time.Second)
		wantLog(t, f, "commit v1[b1]; prepare v2[b1,b2]")
		h.co.prepared(f2, 2)
		sleep(4999 * time.Millisecond)
		wantLog(t, f, "commit v1[b1]; prepare v2[b1,b2]")
		sleep(time.Millisecond)
		wantLog(t, f, "commit v1[b1]; prepare v2[b1,b2]; commit v2[b1,b2]")
		if got := value(h.m.reshardTimeouts); got != 1 {
			t.Fatalf("timeouts = %v", got)
		}
		if got := value(h.m.reshards.WithLabelValues(resultTimeout)); got != 1 {
			t.Fatalf("timeout reshards = %v", got)
		}
	})
}

func TestFrontendDisconnectDuringPrepareIsNotWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1")
		f.prepare = false
		h.connect("b2", B)
		sleep(5 * time.Second)
		f2 := h.connect("f2", F) // joins mid-prepare: ring, then prepare
		wantLog(t, f2, "ring v1[b1]; prepare v2[b1,b2]")
		h.disconnect(f) // f2 prepared; f1 is no longer waited for
		wantLog(t, f2, "ring v1[b1]; prepare v2[b1,b2]; commit v2[b1,b2]")
	})
}

func TestLeaveReleasedAfterDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		start := time.Now()
		h.co.leave(bs["b2"])
		synctest.Wait()
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
		wantLog(t, bs["b2"], "commit v1[b1,b2]; commit v2[b1]")
		sleep(1999 * time.Millisecond)
		wantLog(t, bs["b2"], "commit v1[b1,b2]; commit v2[b1]")
		sleep(time.Millisecond)
		wantLog(t, bs["b2"], "commit v1[b1,b2]; commit v2[b1]; released v2")
		if d := bs["b2"].of(protocol.MsgReleased)[0].at.Sub(start); d != 2*time.Second {
			t.Fatalf("released after %v", d)
		}
		// It then exits: no further reshard.
		h.disconnect(bs["b2"])
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
	})
}

func TestLeaveOfBrokerNotInRingReleasedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1")
		b2 := h.connect("b2", B)
		h.co.leave(b2)
		synctest.Wait()
		wantLog(t, b2, "ring v1[b1]; released v1")
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1]")
	})
}

// A draining broker that reconnects (say after a state restart) is
// resharded out like one that sent Leave.
func TestDrainingHelloLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.disconnect(bs["b2"])
		b2 := h.connect("b2", B, draining)
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
		sleep(2 * time.Second)
		wantLog(t, b2, "ring v1[b1,b2]; commit v2[b1]; released v2")
	})
}

func TestLastBrokerLeavingKeepsRing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1")
		h.co.leave(bs["b1"])
		synctest.Wait()
		wantLog(t, bs["b1"], "commit v1[b1]; released v1")
		wantLog(t, f, "commit v1[b1]")
	})
}

func TestGossipDeadRemovesConnectedBroker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1", "b2")
		h.co.gossipMember("b2", false)
		sleep(time.Second)
		wantLog(t, f, "commit v1[b1,b2]; prepare v2[b1]; commit v2[b1]")
	})
}

// A broker that restarts quickly: gossip declares the old instance dead,
// but its new link is newer evidence, so it stays.
func TestNewLinkAfterGossipDeathIsHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.disconnect(bs["b2"])
		h.co.gossipMember("b2", false)
		synctest.Wait()
		sleep(300 * time.Millisecond)
		h.connect("b2", B)
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1,b2]")
		// And gossip seeing it alive again changes nothing.
		h.co.gossipMember("b2", true)
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1,b2]")
	})
}

func TestBrokerBackAtNewAddressReshards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1", "b2")
		h.disconnect(bs["b2"])
		h.connect("b2", B, func(p *nodelink.Peer) { p.Addr = "b2:9999" })
		got := f.of(protocol.MsgCommit)
		if len(got) != 2 || got[1].ring.Brokers[1].Addr != "b2:9999" || got[1].ring.Version != 2 {
			t.Fatalf("f1 got %s", f.log())
		}
	})
}

func TestReplacedConnectionIsClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, bs := startCluster(t, testCfg(), "b1")
		old := bs["b1"]
		h.connect("b1", B)
		old.mu.Lock()
		reason := old.closed
		old.mu.Unlock()
		if reason != reasonReplaced {
			t.Fatalf("old link close reason %q", reason)
		}
		// The old link's close must not take the broker down.
		h.disconnect(old)
		sleep(10 * time.Second)
		wantLog(t, f, "commit v1[b1]")
	})
}

func TestSeedsAndMemberGauge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, _ := startCluster(t, testCfg(), "b1", "b2")
		if got := h.co.Seeds(); !slices.Equal(got, []string{"b1:7946", "b2:7946", "f1:7946"}) {
			t.Fatalf("seeds %v", got)
		}
		if got := value(h.m.members.WithLabelValues(B)); got != 2 {
			t.Fatalf("brokers gauge %v", got)
		}
	})
}

func status(t *testing.T, h *harness) Status {
	t.Helper()
	var st Status
	if err := h.co.call(t.Context(), func() { st = h.co.status() }); err != nil {
		t.Fatal(err)
	}
	return st
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// A node that reports a higher version during a prepare pushes the commit
// above it.
func TestCommitStaysAboveVersionReportedDuringPrepare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, f, _ := startCluster(t, testCfg(), "b1")
		f.prepare = false
		h.connect("b2", B)
		sleep(5 * time.Second)
		f2 := h.connect("f2", F, withVersion(9))
		h.co.prepared(f, 2)
		h.co.prepared(f2, 2)
		synctest.Wait()
		wantLog(t, f, "commit v1[b1]; prepare v2[b1,b2]; commit v10[b1,b2]")
	})
}

// A frontend that holds an older ring than the one being left gets that
// ring before the prepare.
func TestLaggingFrontendGetsRingBeforePrepare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		f := h.connect("f1", F, withVersion(3))
		h.co.reportRing(f, mkRing(3, "b1", "b2"))
		f2 := h.connect("f2", F) // started during the state's startup, no ring
		h.connect("b1", B)
		sleep(5 * time.Second)
		wantLog(t, f2, "ring v3[b1,b2]; prepare v4[b1]; commit v4[b1]")
		wantLog(t, f, "prepare v4[b1]; commit v4[b1]")
	})
}

// A member that reports ring version 2^64-1 (in its Hello, a Ring report
// or Stats), or one far past MaxRingVersionStep, does not move the version
// floor: the next commit follows the legitimate versions and never wraps,
// and every refusal is counted.
func TestHostileRingVersionsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		b1 := h.connect("b1", B, withVersion(7))
		h.co.reportRing(b1, mkRing(7, "b1"))
		evil := h.connect("evil", F, withVersion(math.MaxUint64))
		h.co.reportRing(evil, mkRing(math.MaxUint64, "evil"))
		h.co.reportRing(evil, mkRing(7+ring.DefaultMaxVersionStep+1, "evil"))
		h.co.stats(evil, protocol.Stats{RingVersion: 1 << 63})
		f := h.connect("f1", F, withVersion(7))
		sleep(5 * time.Second)
		wantLog(t, f, "commit v8[b1]")
		if got := value(h.m.ringRejects.WithLabelValues(ring.ReasonVersionCeiling)); got != 3 {
			t.Fatalf("ring rejects {version_ceiling} = %v, want 3", got)
		}
		if got := value(h.m.ringRejects.WithLabelValues(ring.ReasonVersionJump)); got != 1 {
			t.Fatalf("ring rejects {version_jump} = %v, want 1", got)
		}
	})
}
